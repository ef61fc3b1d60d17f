/* peer-openblas: a peer baseline for COMBINER_DENSE -- exact softmax
 * attention as a user would build it from OpenBLAS cblas_sgemm -- timed
 * beside combiner's own DENSE kernel on the same problem in the same run.
 *
 *   OPENBLAS_CORETYPE=SkylakeX ./peer-openblas [--L 4096,16384] [--causal 1,0]
 *        [--threads 1,2] [--d 64] [--heads 8] [--bq 256] [--reps 5]
 *        [--exp poly|libm] [--check-L 555] [--out bench/results/peer_openblas.txt]
 *
 * Run it with OPENBLAS_CORETYPE naming an AVX-512 core (SkylakeX or
 * Cooperlake). OpenBLAS built with DYNAMIC_ARCH (Debian's 0.3.21) picks its
 * kernels in a constructor that runs when the library is loaded, before
 * main(): a setenv() in this program would come too late. A CPU that its
 * cpuid table does not know gets a generic SSE3 ("Prescott") kernel, several
 * times slower, without a word. The program prints the CPU model, the
 * kernels and compiler of combiner's build, the core that ran
 * (openblas_get_corename(), openblas_get_config()) and the BLAS/LAPACK
 * libraries mapped into the process, and warns on stderr when the core is
 * not an AVX-512 one. Link the real OpenBLAS (-lopenblas, pthreads or
 * OpenMP variant), not the reference libblas: the mapped-library lines show
 * which one was loaded.
 *
 * Problem: q, k, v, out float32, token-major [L][H][d] (as many kv heads as
 * query heads), scale 1/sqrt(d), causal (key j visible to query i iff
 * j <= i) or bidirectional -- what combiner_attention computes with
 * kind COMBINER_DENSE.
 *
 * Method, per head, per block of Bq query rows [i0, i0+bq):
 *   nk = causal ? i0+bq : L                          keys the block may see
 *   S  = scale * Q_blk K[0:nk]^T   cblas_sgemm, rows read in place (lda = ldb
 *                                  = H*d: the strided head needs no copy)
 *   softmax of each row of S over its visible keys (j <= i when causal: the
 *   mask only cuts the diagonal block), max-subtracted, exp; the masked tail
 *   of the row is set to 0 and 1/sum is kept per row
 *   O_blk = P V[0:nk]               cblas_sgemm straight into out (ldc = H*d)
 *   O_blk row r *= 1/sum_r
 * S takes Bq*L floats (16 MiB at Bq 256, L 16384), never L*L. Threads are
 * OpenBLAS's own (openblas_set_num_threads(t)) inside each sgemm; the
 * softmax runs on the calling thread (its share of the time is the "sm%"
 * column). exp: --exp poly (default) is a branch-free Cody-Waite + Cephes
 * polynomial exp (relative error ~1e-7, float32's rounding) that
 * the compiler vectorizes; --exp libm calls expf() per element, as the
 * simplest code would (glibc's expf is not vectorized without -ffast-math).
 * The 1/sum scaling of the output rows is also on the calling thread.
 *
 * Before timing, the output at L = check-L (several query blocks, a partial
 * last one) is compared with combiner_attention(COMBINER_DENSE) for every
 * causal value and thread count asked for; the program exits 1 when the
 * relative difference max|peer - dense| / max|dense| exceeds 1e-4.
 *
 * Timing, for every causal value, thread count and L: median, min and max of
 * `reps` calls after one warm-up, OpenBLAS first, then combiner DENSE on the
 * same q, k, v (the same data as combiner-bench: its seed and generator),
 * with a 0.3 s pause before each so that the other library's idle threads
 * (OpenBLAS workers spin for a while after a call) have gone to sleep.
 * GFLOP/s count 4*d*H per attended (query, key) pair -- 2*d for the logit,
 * 2*d for its share of P V, a multiply-add being 2 flops -- with
 * L*(L+1)/2 pairs per head when causal, L*L when bidirectional; the same
 * count as combiner_flops() for DENSE. "dense x" is OpenBLAS time over
 * combiner DENSE time (> 1: DENSE is faster). The load average is printed
 * at the start and the end: other jobs on the cores make both columns
 * noise. --out FILE writes the same text to FILE as well.
 *
 * Built by CMake as `peer-openblas` only when OpenBLAS (its library and its
 * own cblas.h) is found; by hand:
 *   cc -O3 -march=native -fopenmp -std=c99 -Iinclude \
 *      -I/usr/include/x86_64-linux-gnu/openblas-pthread \
 *      bench/peer_openblas.c -o peer-openblas -lopenblas -lm */
#define _POSIX_C_SOURCE 199309L
#define COMBINER_IMPLEMENTATION
#include "combiner.h"
#include "bench_common.h"

#include <cblas.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOL 1e-4

static FILE *out_file;   /* --out: a copy of everything printed on stdout */

static void emit(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  if (out_file) {
    va_start(ap, fmt);
    vfprintf(out_file, fmt, ap);
    va_end(ap);
  }
  fflush(stdout);
}

static void pause_s(double s) {
  struct timespec ts;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  nanosleep(&ts, NULL);
}

/* ---- the peer ---- */

/* e^x for x <= 0 (arguments are max-subtracted logits), x >= -87 kept
 * normal: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, Cephes' expf
 * polynomial for e^r, 2^n built in the exponent bits. No branches and no
 * floorf (which gcc will not vectorize under the default -ftrapping-math):
 * n is rounded by adding and subtracting 1.5 * 2^23, which needs strict
 * float semantics (no -ffast-math; the check against DENSE would catch it). */
static float exp_poly(float x) {
  float n, r, p, scale;
  int bits;
  x = x < -87.0f ? -87.0f : x;
  n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  bits = ((int)n + 127) << 23;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/* The row reductions keep LANES partial maxima / sums so that the compiler
 * can vectorize them without -ffast-math (a plain float reduction must keep
 * its order). */
#define LANES 16

/* row <- exp(row - mx) over [0, n), returns the sum */
static float exp_row_poly(float *row, int n, float mx) {
  float acc[LANES] = {0}, sum = 0.0f;
  int j, l;
  for (j = 0; j < n; ++j) row[j] = exp_poly(row[j] - mx);
  for (j = 0; j + LANES <= n; j += LANES)
    for (l = 0; l < LANES; ++l) acc[l] += row[j + l];
  for (; j < n; ++j) sum += row[j];
  for (l = 0; l < LANES; ++l) sum += acc[l];
  return sum;
}

static float exp_row_libm(float *row, int n, float mx) {
  float sum = 0.0f;
  int j;
  for (j = 0; j < n; ++j) {
    const float e = expf(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  return sum;
}

static float row_max(const float *row, int n) {
  float acc[LANES], mx = row[0];
  int j = 0, l;
  for (l = 0; l < LANES; ++l) acc[l] = row[0];
  for (; j + LANES <= n; j += LANES)
    for (l = 0; l < LANES; ++l) acc[l] = row[j + l] > acc[l] ? row[j + l] : acc[l];
  for (; j < n; ++j) mx = row[j] > mx ? row[j] : mx;
  for (l = 0; l < LANES; ++l) mx = acc[l] > mx ? acc[l] : mx;
  return mx;
}

typedef struct peer {
  int L, H, d, causal, bq, use_libm;
  float *S;       /* [bq][L] scores, then probabilities */
  float *rinv;    /* [bq] 1 / row sum */
  double softmax_s;   /* time spent in the softmax by the last call */
} peer;

static void peer_attention(peer *p, const float *q, const float *k, const float *v, float *out) {
  const int L = p->L, H = p->H, d = p->d, ld = H * d;
  const float scale = 1.0f / sqrtf((float)d);
  int h, i0, r;
  p->softmax_s = 0.0;
  for (h = 0; h < H; ++h)
    for (i0 = 0; i0 < L; i0 += p->bq) {
      const int bq = L - i0 < p->bq ? L - i0 : p->bq;
      const int nk = p->causal ? i0 + bq : L;
      float *o = out + (size_t)i0 * ld + (size_t)h * d;
      double t0;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, nk, d, scale, q + (size_t)i0 * ld + (size_t)h * d,
                  ld, k + (size_t)h * d, ld, 0.0f, p->S, nk);
      t0 = now();
      for (r = 0; r < bq; ++r) {
        float *row = p->S + (size_t)r * nk;
        const int vis = p->causal ? i0 + r + 1 : nk;
        const float mx = row_max(row, vis);
        const float sum = p->use_libm ? exp_row_libm(row, vis, mx) : exp_row_poly(row, vis, mx);
        if (vis < nk) memset(row + vis, 0, (size_t)(nk - vis) * sizeof(float));
        p->rinv[r] = 1.0f / sum;
      }
      p->softmax_s += now() - t0;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bq, d, nk, 1.0f, p->S, nk, v + (size_t)h * d, ld, 0.0f,
                  o, ld);
      t0 = now();
      for (r = 0; r < bq; ++r) {
        float *orow = o + (size_t)r * ld;
        const float f = p->rinv[r];
        int c;
        for (c = 0; c < d; ++c) orow[c] *= f;
      }
      p->softmax_s += now() - t0;
    }
}

static int peer_init(peer *p, int L, int H, int d, int causal, int bq, int use_libm) {
  p->L = L; p->H = H; p->d = d; p->causal = causal; p->bq = bq; p->use_libm = use_libm;
  p->S = (float *)malloc((size_t)bq * (size_t)L * sizeof(float));
  p->rinv = (float *)malloc((size_t)bq * sizeof(float));
  p->softmax_s = 0.0;
  return p->S && p->rinv;
}

static void peer_free(peer *p) {
  free(p->S);
  free(p->rinv);
}

/* ---- combiner DENSE ---- */

typedef struct dense {
  combiner_config cfg;
  void *work;
  size_t wsize;
} dense;

static int dense_init(dense *D, int L, int H, int d, int causal, int threads) {
  memset(&D->cfg, 0, sizeof D->cfg);
  D->cfg.kind = COMBINER_DENSE;
  D->cfg.seq_len = L;
  D->cfg.head_dim = d;
  D->cfg.num_heads = H;
  D->cfg.num_kv_heads = 0;
  D->cfg.causal = causal;
  D->cfg.num_threads = threads;
  D->wsize = combiner_workspace_size(&D->cfg);
  D->work = malloc(D->wsize ? D->wsize : 1);
  return D->work != NULL;
}

static void dense_run(dense *D, const float *q, const float *k, const float *v, float *out) {
  combiner_status st = combiner_attention(&D->cfg, q, k, v, out, D->work, D->wsize);
  if (st != COMBINER_OK) {
    fprintf(stderr, "combiner_attention: %s\n", combiner_status_string(st));
    exit(1);
  }
}

/* ---- what ran ---- */

static void print_loadavg(const char *when) {
  FILE *f = fopen("/proc/loadavg", "r");
  double l1 = 0, l5 = 0, l15 = 0;
  if (f && fscanf(f, "%lf %lf %lf", &l1, &l5, &l15) == 3)
    emit("load average %s: %.2f %.2f %.2f\n", when, l1, l5, l15);
  if (f) fclose(f);
}

static int is_avx512_core(const char *name) {
  static const char *cores[] = {"skylakex", "cooperlake", "sapphirerapids"};
  char low[64];
  size_t i;
  for (i = 0; name[i] && i + 1 < sizeof low; ++i) low[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
  low[i] = 0;
  for (i = 0; i < sizeof cores / sizeof cores[0]; ++i)
    if (!strcmp(low, cores[i])) return 1;
  return 0;
}

/* the BLAS/LAPACK shared objects mapped into this process (Linux) */
static void print_blas_libraries(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[1024], seen[8][512];
  int ns = 0, i;
  if (!f) { emit("mapped BLAS: (no /proc/self/maps)\n"); return; }
  while (fgets(line, sizeof line, f)) {
    char *path = strchr(line, '/'), *base, *nl;
    if (!path) continue;
    if ((nl = strchr(path, '\n')) != NULL) *nl = 0;
    base = strrchr(path, '/') + 1;
    if (!strstr(base, ".so") || (!strstr(base, "blas") && !strstr(base, "lapack"))) continue;
    for (i = 0; i < ns; ++i)
      if (!strcmp(seen[i], path)) break;
    if (i < ns || ns == 8) continue;
    strncpy(seen[ns], path, sizeof seen[ns] - 1);
    seen[ns][sizeof seen[ns] - 1] = 0;
    emit("mapped: %s\n", seen[ns++]);
  }
  fclose(f);
  if (ns == 0) emit("mapped: no BLAS library found in /proc/self/maps\n");
}

static const char *combiner_build(void) {
  static char buf[192];
#ifdef _OPENMP
  snprintf(buf, sizeof buf, "%s kernels, %s, OpenMP", combiner_kernel_name(), compiler_name());
#else
  snprintf(buf, sizeof buf, "%s kernels, %s, no OpenMP", combiner_kernel_name(), compiler_name());
#endif
  return buf;
}

/* ---- correctness ---- */

/* max|a - b| / max|b| over n floats (NaN anywhere: returns NaN) */
static double rel_diff(const float *a, const float *b, size_t n, double *maxabs) {
  double md = 0.0, mb = 0.0;
  size_t i;
  for (i = 0; i < n; ++i) {
    double e = fabs((double)a[i] - (double)b[i]);
    if (e != e) { *maxabs = e; return e; }
    md = e > md ? e : md;
    mb = fabs((double)b[i]) > mb ? fabs((double)b[i]) : mb;
  }
  *maxabs = md;
  return mb > 0.0 ? md / mb : md;
}

/* ---- timing ---- */

typedef struct timing {
  double median, lo, hi, softmax_s;
} timing;

static timing summarize(double *t, int reps) {
  timing r;
  qsort(t, (size_t)reps, sizeof(double), cmp_double);
  r.median = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
  r.lo = t[0];
  r.hi = t[reps - 1];
  r.softmax_s = 0.0;
  return r;
}

static timing time_peer(peer *p, int reps, const float *q, const float *k, const float *v, float *out) {
  double t[64], sm[64];
  timing r;
  int i;
  for (i = -1; i < reps; ++i) {
    double t0 = now();
    peer_attention(p, q, k, v, out);
    if (i >= 0) { t[i] = now() - t0; sm[i] = p->softmax_s / t[i]; }
  }
  qsort(sm, (size_t)reps, sizeof(double), cmp_double);
  r = summarize(t, reps);
  r.softmax_s = sm[reps / 2];   /* median share */
  return r;
}

static timing time_dense(dense *D, int reps, const float *q, const float *k, const float *v, float *out) {
  double t[64];
  int i;
  for (i = -1; i < reps; ++i) {
    double t0 = now();
    dense_run(D, q, k, v, out);
    if (i >= 0) t[i] = now() - t0;
  }
  return summarize(t, reps);
}

static void usage(void) {
  fprintf(stderr,
          "usage: OPENBLAS_CORETYPE=SkylakeX peer-openblas [--L 4096,16384] [--causal 1,0] [--threads 1,2]\n"
          "         [--d 64] [--heads 8] [--bq 256] [--reps 5] [--exp poly|libm] [--check-L 555] [--out FILE]\n"
          "OPENBLAS_CORETYPE must name an AVX-512 core (SkylakeX or Cooperlake) in the environment: OpenBLAS\n"
          "picks its kernels when it is loaded, and may fall back to a slow SSE3 kernel on a CPU it does not\n"
          "know. See the comment at the top of bench/peer_openblas.c.\n");
}

int main(int argc, char **argv) {
  int Ls[MAXV] = {4096, 16384}, causals[MAXV] = {1, 0}, threads[MAXV] = {1, 2};
  int nL = 2, nc = 2, nt = 2, d = 64, H = 8, bq = 256, reps = 5, check_L = 555, use_libm = 0;
  const char *out_path = NULL, *core, *coretype_env;
  int a, li, ci, ti, fail = 0;
  for (a = 1; a < argc; ++a) {
    const char *flag = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
    if (!strcmp(flag, "--help") || !strcmp(flag, "-h")) { usage(); return 0; }
    if (!v) { usage(); return 2; }
    ++a;
    if (!strcmp(flag, "--L")) nL = parse_list(v, Ls);
    else if (!strcmp(flag, "--causal")) nc = parse_list(v, causals);
    else if (!strcmp(flag, "--threads")) nt = parse_list(v, threads);
    else if (!strcmp(flag, "--d")) d = atoi(v);
    else if (!strcmp(flag, "--heads")) H = atoi(v);
    else if (!strcmp(flag, "--bq")) bq = atoi(v);
    else if (!strcmp(flag, "--reps")) reps = atoi(v);
    else if (!strcmp(flag, "--check-L")) check_L = atoi(v);
    else if (!strcmp(flag, "--out")) out_path = v;
    else if (!strcmp(flag, "--exp") && (!strcmp(v, "poly") || !strcmp(v, "libm"))) use_libm = !strcmp(v, "libm");
    else { usage(); return 2; }
  }
  if (d < 1 || H < 1 || bq < 1 || reps < 1 || reps > 64 || check_L < 1 || nL < 1 || nc < 1 || nt < 1) {
    usage();
    return 2;
  }
  for (li = 0; li < nL; ++li)
    if (Ls[li] < 1) { usage(); return 2; }
  for (ti = 0; ti < nt; ++ti)
    if (threads[ti] < 1) { usage(); return 2; }
  if (out_path) {
    out_file = fopen(out_path, "w");
    if (!out_file) { fprintf(stderr, "cannot write %s\n", out_path); return 2; }
  }

  core = openblas_get_corename();
  coretype_env = getenv("OPENBLAS_CORETYPE");
  emit("peer-openblas: blocked exact attention on OpenBLAS cblas_sgemm vs combiner COMBINER_DENSE\n");
  emit("CPU: %s\n", cpu_model());
  emit("OpenBLAS corename: %s (OPENBLAS_CORETYPE=%s)\n", core, coretype_env ? coretype_env : "(unset)");
  emit("OpenBLAS config:   %s\n", openblas_get_config());
  emit("OpenBLAS threading: %s, %d thread(s) available\n",
       openblas_get_parallel() == 0 ? "sequential" : openblas_get_parallel() == 1 ? "pthreads" : "OpenMP",
       openblas_get_num_threads());
  print_blas_libraries();
  emit("combiner: %s\n", combiner_build());
  print_loadavg("at start");
  emit("peer: Bq %d, exp %s, softmax on the calling thread; d %d, H %d (kv heads = H), %d timed calls after a warm-up\n",
       bq, use_libm ? "libm expf" : "vectorized polynomial", d, H, reps);
  if (!is_avx512_core(core)) {
    fprintf(stderr,
            "\n*** WARNING: OpenBLAS runs its '%s' kernels, not an AVX-512 core: its times are NOT\n"
            "*** what OpenBLAS does on this CPU. Rerun as: OPENBLAS_CORETYPE=SkylakeX %s ...\n\n",
            core, argv[0]);
    emit("WARNING: OpenBLAS core '%s' is not an AVX-512 core: rerun with OPENBLAS_CORETYPE=SkylakeX\n", core);
  }

  /* correctness against combiner DENSE at a small L */
  emit("\ncheck at L=%d (relative difference = max|peer - dense| / max|dense|, limit %.0e):\n", check_L, TOL);
  for (ci = 0; ci < nc; ++ci)
    for (ti = 0; ti < nt; ++ti) {
      const size_t n = (size_t)check_L * H * d;
      unsigned seed = 7;
      float *q = random_buffer(n, &seed), *k = random_buffer(n, &seed), *v = random_buffer(n, &seed);
      float *o1 = random_buffer(n, &seed), *o2 = random_buffer(n, &seed);
      peer p;
      dense D;
      double rel, maxabs;
      if (!peer_init(&p, check_L, H, d, causals[ci], bq, use_libm) ||
          !dense_init(&D, check_L, H, d, causals[ci], threads[ti])) {
        fprintf(stderr, "out of memory\n");
        return 1;
      }
      openblas_set_num_threads(threads[ti]);
      peer_attention(&p, q, k, v, o1);
      dense_run(&D, q, k, v, o2);
      rel = rel_diff(o1, o2, n, &maxabs);
      emit("  %-13s %d thread(s): max abs diff %.3e, relative %.3e  %s\n",
           causals[ci] ? "causal" : "bidirectional", threads[ti], maxabs, rel, rel <= TOL ? "ok" : "FAIL");
      if (!(rel <= TOL)) fail = 1;
      peer_free(&p);
      free(D.work);
      free(q); free(k); free(v); free(o1); free(o2);
    }
  if (fail) {
    emit("peer output differs from combiner DENSE by more than %.0e: no timing\n", TOL);
    fprintf(stderr, "peer-openblas: correctness check FAILED\n");
    if (out_file) fclose(out_file);
    return 1;
  }

  emit("\n%6s %3s %3s %2s %3s | %10s %21s %7s %4s | %10s %21s %7s | %7s\n", "L", "cau", "d", "H", "thr",
       "openblas", "min-max ms", "GFLOP/s", "sm%", "dense", "min-max ms", "GFLOP/s", "dense x");
  for (ci = 0; ci < nc; ++ci)
    for (ti = 0; ti < nt; ++ti)
      for (li = 0; li < nL; ++li) {
        const int L = Ls[li], causal = causals[ci], t = threads[ti];
        const size_t n = (size_t)L * H * d;
        const double pairs = causal ? 0.5 * (double)L * (L + 1.0) : (double)L * L;
        const double flops = 4.0 * d * H * pairs;
        unsigned seed = 1;
        float *q = random_buffer(n, &seed), *k = random_buffer(n, &seed), *v = random_buffer(n, &seed);
        float *o = random_buffer(n, &seed);
        peer p;
        dense D;
        timing tp, td;
        if (!peer_init(&p, L, H, d, causal, bq, use_libm) || !dense_init(&D, L, H, d, causal, t)) {
          fprintf(stderr, "out of memory\n");
          return 1;
        }
        openblas_set_num_threads(t);
        pause_s(0.3);
        tp = time_peer(&p, reps, q, k, v, o);
        pause_s(0.3);
        td = time_dense(&D, reps, q, k, v, o);
        emit("%6d %3d %3d %2d %3d | %10.2f %10.2f-%-10.2f %7.1f %3.0f%% | %10.2f %10.2f-%-10.2f %7.1f | %6.2fx\n", L,
             causal, d, H, t, 1e3 * tp.median, 1e3 * tp.lo, 1e3 * tp.hi, flops / tp.median * 1e-9,
             100 * tp.softmax_s, 1e3 * td.median, 1e3 * td.lo, 1e3 * td.hi, flops / td.median * 1e-9,
             tp.median / td.median);
        peer_free(&p);
        free(D.work);
        free(q); free(k); free(v); free(o);
      }
  emit("\nopenblas/dense: median ms of the calls; GFLOP/s = 4*d*H*pairs / median; sm%% = share of the OpenBLAS\n"
       "peer's time in its single-threaded softmax and output scaling; dense x = openblas ms / dense ms.\n"
       "OpenBLAS core: %s\n", core);
  print_loadavg("at end");
  if (!is_avx512_core(core))
    fprintf(stderr, "*** WARNING: OpenBLAS ran its '%s' kernels, not AVX-512 ones (set OPENBLAS_CORETYPE=SkylakeX)\n",
            core);
  if (out_file) {
    fclose(out_file);
    printf("wrote %s\n", out_path);
  }
  return 0;
}
