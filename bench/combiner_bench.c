/* combiner-bench: every kind side by side with DENSE, in one run.
 *
 *   combiner-bench [--L 1024,2048,...] [--kinds fixed,axial,mixture,dense,logsparse]
 *                  [--causal 1,0] [--d 64] [--heads 8] [--kv 8,2]
 *                  [--threads 1,2] [--reps 5] [--dense-max-L N]
 *                  [--out DIR] [--quick]
 *
 * For each configuration: median, min and max of `reps` calls after one
 * warm-up; FLOPs from combiner_flops() (the kernel's own partition: 2*(d+dv)
 * per attended term), GFLOP/s and % of the machine's peak; the speed-up over
 * DENSE measured in the same run beside the FLOP ratio; workspace bytes and
 * the process's peak resident memory. The peak is measured here: an
 * FMA-throughput loop (AVX-512, AVX2 or scalar, whichever this build
 * targets) on 1 and N threads, and our own DENSE on a large bidirectional
 * problem (a GEMM-shaped upper bound for attention). Results go to
 * DIR/bench.csv and DIR/time_vs_L.svg (log-log, with fitted slopes). */
#define _POSIX_C_SOURCE 199309L
#define COMBINER_IMPLEMENTATION
#include "combiner.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#  include <immintrin.h>
#endif
#ifdef _OPENMP
#  include <omp.h>
#endif

#define MAXV 16

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_list(const char *s, int *out) {
  int n = 0;
  while (*s && n < MAXV) {
    out[n++] = atoi(s);
    while (*s && *s != ',') ++s;
    if (*s == ',') ++s;
  }
  return n;
}

static long peak_rss_kib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* ---- peak: 12 independent FMA chains (enough to cover the FMA latency on
 * two ports), as wide as this build allows. Each chain starts from its own
 * value so that the compiler cannot merge them. ---- */
#if defined(__AVX512F__)
#  define VEC __m512
#  define VSET _mm512_set1_ps
#  define VFMA _mm512_fmadd_ps
#  define VADD _mm512_add_ps
#  define VSTORE _mm512_storeu_ps
#  define LANES 16
#elif defined(__AVX2__) && defined(__FMA__)
#  define VEC __m256
#  define VSET _mm256_set1_ps
#  define VFMA _mm256_fmadd_ps
#  define VADD _mm256_add_ps
#  define VSTORE _mm256_storeu_ps
#  define LANES 8
#else
#  define VEC float
#  define VSET(x) (x)
#  define VFMA(a, b, c) ((a) * (b) + (c))
#  define VADD(a, b) ((a) + (b))
#  define VSTORE(p, v) (*(p) = (v))
#  define LANES 1
#endif

static float fma_chains(long iters) {
  const VEC b = VSET(0.999999f), c = VSET(1e-7f);
  VEC a0 = VSET(1.0f), a1 = VSET(1.1f), a2 = VSET(1.2f), a3 = VSET(1.3f), a4 = VSET(1.4f), a5 = VSET(1.5f);
  VEC a6 = VSET(1.6f), a7 = VSET(1.7f), a8 = VSET(1.8f), a9 = VSET(1.9f), a10 = VSET(2.1f), a11 = VSET(2.2f);
  float out[LANES];
  long n;
  for (n = 0; n < iters; ++n) {
    a0 = VFMA(a0, b, c); a1 = VFMA(a1, b, c); a2 = VFMA(a2, b, c); a3 = VFMA(a3, b, c);
    a4 = VFMA(a4, b, c); a5 = VFMA(a5, b, c); a6 = VFMA(a6, b, c); a7 = VFMA(a7, b, c);
    a8 = VFMA(a8, b, c); a9 = VFMA(a9, b, c); a10 = VFMA(a10, b, c); a11 = VFMA(a11, b, c);
  }
  a0 = VADD(VADD(VADD(a0, a1), VADD(a2, a3)), VADD(VADD(a4, a5), VADD(a6, a7)));
  a0 = VADD(a0, VADD(VADD(a8, a9), VADD(a10, a11)));
  VSTORE(out, a0);
  return out[0];
}

static double fma_peak_gflops(int threads) {
  const long iters = 30000000;
  double t0 = now();
  float sink = 0.0f;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : sink)
#endif
  sink += fma_chains(iters);
  if (sink == 12345.0f) printf(" ");
#ifndef _OPENMP
  threads = 1;
#endif
  return 2.0 * 12 * LANES * (double)iters * threads / (now() - t0) * 1e-9;
}

typedef struct result {
  combiner_kind kind;
  int L, causal, d, H, Hkv, threads;
  double median, lo, hi, flops;
  size_t workspace;
  long rss_kib;
} result;

static float *random_buffer(size_t n, unsigned *seed) {
  float *p = (float *)malloc(n * sizeof(float));
  size_t i;
  if (!p) { fprintf(stderr, "out of memory (%zu floats)\n", n); exit(1); }
  for (i = 0; i < n; ++i) {
    *seed = *seed * 1664525u + 1013904223u;
    p[i] = (float)((*seed >> 8) * (2.0 / 16777216.0) - 1.0);
  }
  return p;
}

static result run_one(combiner_kind kind, int L, int causal, int d, int H, int Hkv, int threads,
                      int reps, const float *q, const float *k, const float *v, float *o) {
  combiner_config cfg;
  result r;
  double times[64];
  void *work;
  int i;
  memset(&cfg, 0, sizeof cfg);
  cfg.kind = kind; cfg.seq_len = L; cfg.head_dim = d; cfg.num_heads = H; cfg.num_kv_heads = Hkv;
  cfg.causal = causal; cfg.num_threads = threads;
  r.kind = kind; r.L = L; r.causal = causal; r.d = d; r.H = H; r.Hkv = Hkv; r.threads = threads;
  r.workspace = combiner_workspace_size(&cfg);
  r.flops = combiner_flops(&cfg);
  work = malloc(r.workspace);
  if (!work) { fprintf(stderr, "out of memory (workspace %zu)\n", r.workspace); exit(1); }
  if (reps > 64) reps = 64;
  for (i = -1; i < reps; ++i) {
    double t0 = now();
    combiner_status st = combiner_attention(&cfg, q, k, v, o, work, r.workspace);
    if (st != COMBINER_OK) { fprintf(stderr, "%s\n", combiner_status_string(st)); exit(1); }
    if (i >= 0) times[i] = now() - t0;
  }
  qsort(times, (size_t)reps, sizeof(double), cmp_double);
  r.median = reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
  r.lo = times[0];
  r.hi = times[reps - 1];
  r.rss_kib = peak_rss_kib();
  free(work);
  return r;
}

/* least-squares slope of log(time) against log(L) */
static double fit_slope(const result *rs, int n, combiner_kind kind, int causal, int threads, int Hkv) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  int i, c = 0;
  for (i = 0; i < n; ++i) {
    double x, y;
    if (rs[i].kind != kind || rs[i].causal != causal || rs[i].threads != threads || rs[i].Hkv != Hkv) continue;
    x = log((double)rs[i].L); y = log(rs[i].median);
    sx += x; sy += y; sxx += x * x; sxy += x * y; ++c;
  }
  if (c < 2) return NAN;
  return (c * sxy - sx * sy) / (c * sxx - sx * sx);
}

static void write_svg(const char *path, const result *rs, int n, int causal, int threads, int Hkv,
                      const combiner_kind *kinds, int nk) {
  /* one colour per kind, whatever subset is plotted: default, fixed, axial, mixture, dense */
  static const char *colors[] = {"#7f7f7f", "#1f77b4", "#2ca02c", "#9467bd", "#d62728", "#ff7f0e"};
  const double W = 720, Hh = 480, ml = 70, mr = 160, mt = 40, mb = 55;
  double xmin = 1e30, xmax = -1e30, ymin = 1e30, ymax = -1e30;
  FILE *f;
  int i, ki;
  for (i = 0; i < n; ++i) {
    if (rs[i].causal != causal || rs[i].threads != threads || rs[i].Hkv != Hkv) continue;
    xmin = fmin(xmin, log10((double)rs[i].L)); xmax = fmax(xmax, log10((double)rs[i].L));
    ymin = fmin(ymin, log10(rs[i].median)); ymax = fmax(ymax, log10(rs[i].median));
  }
  if (xmax <= xmin || ymax <= ymin) return;
  ymin = floor(ymin); ymax = ceil(ymax);
  f = fopen(path, "w");
  if (!f) { fprintf(stderr, "cannot write %s\n", path); return; }
  fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif' font-size='12'>\n", W, Hh);
  fprintf(f, "<rect width='100%%' height='100%%' fill='white'/>\n");
  fprintf(f, "<text x='%.0f' y='22' font-size='14'>time per call vs L (log-log), %s, %d thread(s), kv heads %d</text>\n",
          ml, causal ? "causal" : "bidirectional", threads, Hkv);
#define PX(x) (ml + ((x) - xmin) / (xmax - xmin) * (W - ml - mr))
#define PY(y) (Hh - mb - ((y) - ymin) / (ymax - ymin) * (Hh - mt - mb))
  for (i = (int)ymin; i <= (int)ymax; ++i) {
    fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", ml, PY(i), W - mr, PY(i));
    fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end'>1e%d s</text>\n", ml - 6, PY(i) + 4, i);
  }
  for (i = 0; i < n; ++i)
    if (rs[i].kind == kinds[0] && rs[i].causal == causal && rs[i].threads == threads && rs[i].Hkv == Hkv)
      fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>%d</text>\n", PX(log10((double)rs[i].L)), Hh - mb + 18, rs[i].L);
  fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>L (sequence length)</text>\n", (ml + W - mr) / 2, Hh - 12);
  for (ki = 0; ki < nk; ++ki) {
    int first = 1;
    double slope = fit_slope(rs, n, kinds[ki], causal, threads, Hkv);
    fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", colors[(int)kinds[ki] % 6]);
    for (i = 0; i < n; ++i) {
      if (rs[i].kind != kinds[ki] || rs[i].causal != causal || rs[i].threads != threads || rs[i].Hkv != Hkv) continue;
      fprintf(f, "%s%.1f,%.1f", first ? "" : " ", PX(log10((double)rs[i].L)), PY(log10(rs[i].median)));
      first = 0;
    }
    fprintf(f, "'/>\n");
    fprintf(f, "<text x='%.1f' y='%.1f' fill='%s'>%s (slope %.2f)</text>\n", W - mr + 10, mt + 20 + 20.0 * ki,
            colors[(int)kinds[ki] % 6], combiner_kind_string(kinds[ki]), slope);
  }
#undef PX
#undef PY
  fprintf(f, "</svg>\n");
  fclose(f);
}

int main(int argc, char **argv) {
  int Ls[MAXV] = {1024, 2048, 4096, 8192, 16384}, nL = 5;
  int causals[MAXV] = {1, 0}, nc = 2, ds[MAXV] = {64}, nd = 1, kvs[MAXV] = {8, 2}, nkv = 2;
  int threads[MAXV] = {1, 2}, nt = 2, H = 8, reps = 5, dense_max = 16384;
  combiner_kind kinds[6] = {COMBINER_DENSE, COMBINER_FIXED, COMBINER_AXIAL, COMBINER_MIXTURE, COMBINER_LOGSPARSE};
  int nk = 5, a, li, ci, di, ki, ti, kvi, n = 0, maxt = 1;
  const char *out_dir = "bench/results";
  result *rs;
  double peak1, peakN, attainable = 0.0;
  char path[512];
  FILE *csv;
  for (a = 1; a < argc; ++a) {
    const char *v = a + 1 < argc ? argv[a + 1] : "";
    if (!strcmp(argv[a], "--L")) { nL = parse_list(v, Ls); ++a; }
    else if (!strcmp(argv[a], "--causal")) { nc = parse_list(v, causals); ++a; }
    else if (!strcmp(argv[a], "--d")) { nd = parse_list(v, ds); ++a; }
    else if (!strcmp(argv[a], "--kv")) { nkv = parse_list(v, kvs); ++a; }
    else if (!strcmp(argv[a], "--threads")) { nt = parse_list(v, threads); ++a; }
    else if (!strcmp(argv[a], "--heads")) { H = atoi(v); ++a; }
    else if (!strcmp(argv[a], "--reps")) { reps = atoi(v); ++a; }
    else if (!strcmp(argv[a], "--dense-max-L")) { dense_max = atoi(v); ++a; }
    else if (!strcmp(argv[a], "--out")) { out_dir = v; ++a; }
    else if (!strcmp(argv[a], "--kinds")) {
      nk = 0;
      while (*v && nk < 6) {
        if (!strncmp(v, "dense", 5)) kinds[nk++] = COMBINER_DENSE;
        else if (!strncmp(v, "fixed", 5)) kinds[nk++] = COMBINER_FIXED;
        else if (!strncmp(v, "axial", 5)) kinds[nk++] = COMBINER_AXIAL;
        else if (!strncmp(v, "mixture", 7)) kinds[nk++] = COMBINER_MIXTURE;
        else if (!strncmp(v, "logsparse", 9)) kinds[nk++] = COMBINER_LOGSPARSE;
        while (*v && *v != ',') ++v;
        if (*v == ',') ++v;
      }
      ++a;
    } else if (!strcmp(argv[a], "--quick")) {
      nL = 2; Ls[0] = 256; Ls[1] = 512; nkv = 1; kvs[0] = 2; nt = 1; threads[0] = 1; reps = 3; H = 2;
    } else {
      fprintf(stderr, "usage: see the comment at the top of bench/combiner_bench.c\n");
      return 2;
    }
  }
  for (ti = 0; ti < nt; ++ti) maxt = threads[ti] > maxt ? threads[ti] : maxt;
  peak1 = fma_peak_gflops(1);
  peakN = maxt > 1 ? fma_peak_gflops(maxt) : peak1;
  printf("combiner-bench: FMA peak %.1f GFLOP/s on 1 thread, %.1f on %d (%s); %s\n", peak1, peakN, maxt,
#if defined(__AVX512F__) && !defined(COMBINER_NO_SIMD)
         "AVX-512 kernels",
#else
         "scalar/auto-vectorized kernels",
#endif
#ifdef _OPENMP
         "OpenMP"
#else
         "no OpenMP"
#endif
  );
  rs = (result *)calloc((size_t)(nL * nc * nd * nkv * nt * nk + 1), sizeof(result));
  if (!rs) return 1;
  {   /* attainable: our dense kernel on a large GEMM-shaped (bidirectional) problem */
    int L = 2048, d = 64;
    unsigned seed = 9;
    float *q = random_buffer((size_t)L * 8 * d, &seed), *k = random_buffer((size_t)L * 8 * d, &seed);
    float *v = random_buffer((size_t)L * 8 * d, &seed), *o = random_buffer((size_t)L * 8 * d, &seed);
    result r = run_one(COMBINER_DENSE, L, 0, d, 8, 8, maxt, 3, q, k, v, o);
    attainable = r.flops / r.median * 1e-9;
    printf("dense bidirectional L=%d d=%d H=8 on %d thread(s): %.1f GFLOP/s = %.0f%% of FMA peak\n\n", L, d,
           maxt, attainable, 100 * attainable / peakN);
    free(q); free(k); free(v); free(o);
  }
  printf("%-8s %6s %3s %3s %2s %2s %6s %10s %21s %8s %6s %8s %8s %11s %9s\n", "kind", "L", "cau", "d", "H",
         "kv", "thr", "median ms", "min-max ms", "GFLOP/s", "%peak", "vs dense", "flop x", "workspace", "rss MiB");
  for (di = 0; di < nd; ++di)
    for (kvi = 0; kvi < nkv; ++kvi)
      for (ci = 0; ci < nc; ++ci)
        for (ti = 0; ti < nt; ++ti)
          for (li = 0; li < nL; ++li) {
            int L = Ls[li], d = ds[di], Hkv = kvs[kvi];
            unsigned seed = 1;
            float *q = random_buffer((size_t)L * H * d, &seed), *k = random_buffer((size_t)L * Hkv * d, &seed);
            float *v = random_buffer((size_t)L * Hkv * d, &seed), *o = random_buffer((size_t)L * H * d, &seed);
            const result *dense = NULL;
            for (ki = 0; ki < nk; ++ki) {
              result *r = &rs[n];
              double peak = threads[ti] > 1 ? peakN : peak1;
              if (kinds[ki] == COMBINER_DENSE && L > dense_max) continue;
              *r = run_one(kinds[ki], L, causals[ci], d, H, Hkv, threads[ti], reps, q, k, v, o);
              ++n;
              if (kinds[ki] == COMBINER_DENSE) dense = r;
              printf("%-8s %6d %3d %3d %2d %2d %6d %10.3f %10.3f-%-10.3f %8.1f %5.0f%% ",
                     combiner_kind_string(r->kind), L, r->causal, d, H, Hkv, r->threads, 1e3 * r->median,
                     1e3 * r->lo, 1e3 * r->hi, r->flops / r->median * 1e-9, 100 * r->flops / r->median * 1e-9 / peak);
              if (dense) printf("%7.1fx %7.1fx ", dense->median / r->median, dense->flops / r->flops);
              else printf("%8s %8s ", "-", "-");
              printf("%11zu %9.1f\n", r->workspace, r->rss_kib / 1024.0);
              fflush(stdout);
            }
            free(q); free(k); free(v); free(o);
          }
  snprintf(path, sizeof path, "%s/bench.csv", out_dir);
  csv = fopen(path, "w");
  if (csv) {
    int i;
    fprintf(csv, "kind,L,causal,head_dim,heads,kv_heads,threads,median_s,min_s,max_s,flops,gflops,pct_peak,workspace_bytes,peak_rss_kib\n");
    for (i = 0; i < n; ++i) {
      double peak = rs[i].threads > 1 ? peakN : peak1;
      fprintf(csv, "%s,%d,%d,%d,%d,%d,%d,%.6g,%.6g,%.6g,%.6g,%.4g,%.4g,%zu,%ld\n", combiner_kind_string(rs[i].kind),
              rs[i].L, rs[i].causal, rs[i].d, rs[i].H, rs[i].Hkv, rs[i].threads, rs[i].median, rs[i].lo, rs[i].hi,
              rs[i].flops, rs[i].flops / rs[i].median * 1e-9, 100 * rs[i].flops / rs[i].median * 1e-9 / peak,
              rs[i].workspace, rs[i].rss_kib);
    }
    fclose(csv);
    printf("\nwrote %s\n", path);
  } else {
    printf("\n(cannot write %s; create the folder or pass --out)\n", path);
  }
  printf("\nfitted slope of log(time) vs log(L):\n");
  for (ci = 0; ci < nc; ++ci)
    for (ti = 0; ti < nt; ++ti)
      for (kvi = 0; kvi < nkv; ++kvi) {
        printf("  %s, %d thread(s), kv %d:", causals[ci] ? "causal" : "bidirectional", threads[ti], kvs[kvi]);
        for (ki = 0; ki < nk; ++ki)
          printf("  %s %.2f", combiner_kind_string(kinds[ki]), fit_slope(rs, n, kinds[ki], causals[ci], threads[ti], kvs[kvi]));
        printf("\n");
      }
  snprintf(path, sizeof path, "%s/time_vs_L.svg", out_dir);
  write_svg(path, rs, n, causals[0], threads[nt - 1], kvs[nkv - 1], kinds, nk);
  printf("wrote %s\n", path);
  free(rs);
  return 0;
}
