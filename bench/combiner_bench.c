/* combiner-bench: every kind side by side with DENSE, in one run.
 *
 *   combiner-bench [--L 1024,2048,...] [--kinds fixed,axial,mixture,dense,logsparse]
 *                  [--causal 1,0] [--d 64] [--heads 8] [--kv 8,2]
 *                  [--threads 1,2] [--reps 5] [--dense-max-L N] [--types f32,f16,bf16]
 *                  [--out DIR] [--quick]
 *   combiner-bench --decode [--N 4096,16384,65536,262144] [--kinds ...] [--d 64] [--modes owned,borrowed]
 *                  [--types f32,f16,bf16]
 *                  [--heads 8] [--kv 8,2] [--threads 1,2] [--steps 0] [--rounds 3]
 *                  [--chunk 4096] [--dense-max-N N] [--out DIR] [--quick]
 *   combiner-bench --chunked [--L 4096] [--chunks 256,1024,4096] [--kinds ...] [--modes owned,borrowed]
 *                  [--kv 8] [--threads 2] [--reps 5] [--out DIR] [--quick]
 *
 * Prefill (the default mode), for each configuration: median, min and max of
 * `reps` calls after one warm-up; FLOPs from combiner_flops() (the kernel's
 * own partition: 2*(d+dv) per attended term), GFLOP/s and % of the machine's
 * peak; the speed-up over DENSE measured in the same run beside the FLOP
 * ratio; workspace bytes and the process's peak resident memory. The peak is
 * measured here: an FMA-throughput loop (AVX-512, AVX2 or scalar, whichever
 * this build targets) on 1 and N threads, and our own DENSE on a large
 * bidirectional problem (a GEMM-shaped upper bound for attention). Results
 * go to DIR/bench.csv and DIR/time_vs_L.svg (log-log, with fitted slopes).
 * The first line printed names the CPU (cpu_model()), the peak, the kernels
 * (combiner_kernel_name()), the compiler and OpenMP; every CSV row carries
 * the CPU (column cpu) and the peak of its thread count (peak_gflops, the
 * divisor of pct_peak).
 *
 * Decode (--decode): per-token latency of combiner_cache_append at context
 * N, every kind beside DENSE (see "decode mode" below for the method: the
 * timed window, rounds, what is amortized); one cache at a time, a
 * configuration whose cache does not fit in memory is skipped with a note.
 * Results go to DIR/decode.csv (each row with the CPU, column cpu, and the
 * read bandwidth measured on its thread count, read_gbps: the divisor of the
 * printed %bw) and DIR/decode.svg; it prints the fitted
 * slopes of log(time per token) vs log(N) and the PASS/MISS targets at
 * N = 65536. --steps S times S tokens per round for every kind (0: each
 * kind's own whole-period window); --quick is the CI smoke run (H 2, kv 2,
 * 1 thread, N 256 and 1024), any other flag still applies.
 *
 * Chunked prefill (--chunked [--L 4096] [--chunks 256,1024,4096] [--modes
 * owned,borrowed]): a causal prompt of L tokens appended to a cache in
 * chunks (outputs written, combiner_cache_append / append_at) against one
 * combiner_attention call on the same tokens, timed interleaved in the same
 * rounds, a mode (owned, borrowed) at a time (median of --reps after one
 * warm-up; the cache made again outside the timed region each round; rounds
 * mixing owned caches' 100s of MB with borrowed fills slowed the latter
 * ~1.5x), each mode without and with
 * combiner_cache_options.fast_chunks ("+fast"); prints the ratio chunked /
 * one call and PASS/MISS against 1.2 for chunks of >= 256 tokens. Results
 * go to DIR/chunked.csv.
 * The CI smoke run of every mode takes well under a second. */
#define _POSIX_C_SOURCE 199309L
#define COMBINER_IMPLEMENTATION
#include "combiner.h"
#include "bench_common.h"

#include <math.h>
#include <stdint.h>
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


/* whether this build threads, for the tables' headers (the kernels:
 * combiner_kernel_name(); the CPU and the compiler: bench_common.h) */
static const char *openmp_name(void) {
#ifdef _OPENMP
  return "OpenMP";
#else
  return "no OpenMP";
#endif
}

/* s as one CSV field: always quoted, inner quotes doubled (a CPU model may
 * hold a comma) */
static void csv_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; ++s) {
    if (*s == '"') fputc('"', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

static double cpu_now(void) {   /* CPU time of the whole process: every thread */
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long peak_rss_kib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
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
  int L, causal, d, H, Hkv, threads, type;
  double median, lo, hi, flops;
  size_t workspace;
  long rss_kib;
} result;

static result run_one(combiner_kind kind, int L, int causal, int d, int H, int Hkv, int threads,
                      int reps, int type, const float *q, const void *k, const void *v, float *o) {
  combiner_config cfg;
  result r;
  double times[64];
  void *work;
  int i;
  memset(&cfg, 0, sizeof cfg);
  cfg.kind = kind; cfg.seq_len = L; cfg.head_dim = d; cfg.num_heads = H; cfg.num_kv_heads = Hkv;
  cfg.causal = causal; cfg.num_threads = threads;
  cfg.k_type = cfg.v_type = (combiner_type)type;
  r.kind = kind; r.L = L; r.causal = causal; r.d = d; r.H = H; r.Hkv = Hkv; r.threads = threads; r.type = type;
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

/* ---- log-log charts, shared by the prefill and the decode modes ---- */
typedef struct svg_series {
  const char *name;
  combiner_kind kind;     /* picks the colour */
  int n;
  double x[MAXV], y[MAXV];
} svg_series;

/* least-squares slope of log(y) against log(x) */
static double loglog_slope(const double *x, const double *y, int n) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  int i;
  for (i = 0; i < n; ++i) {
    double lx = log(x[i]), ly = log(y[i]);
    sx += lx; sy += ly; sxx += lx * lx; sxy += lx * ly;
  }
  if (n < 2) return NAN;
  return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

/* One polyline per series on log-log axes (y in seconds, a grid line per
 * decade), each x value labelled, a legend with every series' fitted slope. */
static void write_loglog_svg(const char *path, const char *title, const char *xlabel,
                             const svg_series *s, int ns) {
  /* one colour per kind, whatever subset is plotted: default, fixed, axial, mixture, dense, logsparse */
  static const char *colors[] = {"#7f7f7f", "#1f77b4", "#2ca02c", "#9467bd", "#d62728", "#ff7f0e"};
  const double W = 720, Hh = 480, ml = 70, mr = 160, mt = 40, mb = 55;
  double xmin = 1e30, xmax = -1e30, ymin = 1e30, ymax = -1e30, labelled[MAXV * 6];
  FILE *f;
  int i, si, nl = 0, shown = 0;
  for (si = 0; si < ns; ++si)
    for (i = 0; i < s[si].n; ++i) {
      xmin = fmin(xmin, log10(s[si].x[i])); xmax = fmax(xmax, log10(s[si].x[i]));
      ymin = fmin(ymin, log10(s[si].y[i])); ymax = fmax(ymax, log10(s[si].y[i]));
    }
  if (xmax <= xmin || ymax <= ymin) return;
  ymin = floor(ymin); ymax = ceil(ymax);
  f = fopen(path, "w");
  if (!f) { fprintf(stderr, "cannot write %s\n", path); return; }
  fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif' font-size='12'>\n", W, Hh);
  fprintf(f, "<rect width='100%%' height='100%%' fill='white'/>\n");
  fprintf(f, "<text x='%.0f' y='22' font-size='14'>%s</text>\n", ml, title);
#define PX(x) (ml + ((x) - xmin) / (xmax - xmin) * (W - ml - mr))
#define PY(y) (Hh - mb - ((y) - ymin) / (ymax - ymin) * (Hh - mt - mb))
  for (i = (int)ymin; i <= (int)ymax; ++i) {
    fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", ml, PY(i), W - mr, PY(i));
    fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end'>1e%d s</text>\n", ml - 6, PY(i) + 4, i);
  }
  for (si = 0; si < ns; ++si)
    for (i = 0; i < s[si].n; ++i) {
      int j, seen = 0;
      for (j = 0; j < nl; ++j) seen |= labelled[j] == s[si].x[i];
      if (seen || nl == MAXV * 6) continue;
      labelled[nl++] = s[si].x[i];
      fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>%.0f</text>\n", PX(log10(s[si].x[i])), Hh - mb + 18,
              s[si].x[i]);
    }
  fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>%s</text>\n", (ml + W - mr) / 2, Hh - 12, xlabel);
  for (si = 0; si < ns; ++si) {
    const char *color = colors[(int)s[si].kind % 6];
    if (s[si].n == 0) continue;
    fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", color);
    for (i = 0; i < s[si].n; ++i)
      fprintf(f, "%s%.1f,%.1f", i ? " " : "", PX(log10(s[si].x[i])), PY(log10(s[si].y[i])));
    fprintf(f, "'/>\n");
    fprintf(f, "<text x='%.1f' y='%.1f' fill='%s'>%s (slope %.2f)</text>\n", W - mr + 10, mt + 20 + 20.0 * shown++,
            color, s[si].name, loglog_slope(s[si].x, s[si].y, s[si].n));
  }
#undef PX
#undef PY
  fprintf(f, "</svg>\n");
  fclose(f);
}

/* the prefill results of one kind and configuration, as a series over L */
static svg_series prefill_series(const result *rs, int n, combiner_kind kind, int causal, int threads, int Hkv) {
  svg_series s;
  int i;
  memset(&s, 0, sizeof s);
  s.name = combiner_kind_string(kind);
  s.kind = kind;
  for (i = 0; i < n && s.n < MAXV; ++i) {
    if (rs[i].kind != kind || rs[i].causal != causal || rs[i].threads != threads || rs[i].Hkv != Hkv ||
        rs[i].type != COMBINER_F32)
      continue;
    s.x[s.n] = rs[i].L; s.y[s.n] = rs[i].median; ++s.n;
  }
  return s;
}

static double fit_slope(const result *rs, int n, combiner_kind kind, int causal, int threads, int Hkv) {
  svg_series s = prefill_series(rs, n, kind, causal, threads, Hkv);
  return loglog_slope(s.x, s.y, s.n);
}

static void write_svg(const char *path, const result *rs, int n, int causal, int threads, int Hkv,
                      const combiner_kind *kinds, int nk) {
  svg_series s[6];
  char title[160];
  int ki;
  for (ki = 0; ki < nk && ki < 6; ++ki) s[ki] = prefill_series(rs, n, kinds[ki], causal, threads, Hkv);
  snprintf(title, sizeof title, "time per call vs L (log-log), %s, %d thread(s), kv heads %d",
           causal ? "causal" : "bidirectional", threads, Hkv);
  write_loglog_svg(path, title, "L (sequence length)", s, ki);
}

/* ---- decode mode: per-token latency of a combiner_cache at context N ----
 *
 * For each kind: a cache with max_len = N + 1 + window is filled with N
 * random tokens (chunks, out = NULL; timed as "fill"), one token at position
 * N is appended with its output (timed as "first": it pays for whatever
 * abstraction the fill left to the first decode token, e.g. LOGSPARSE's
 * level-log2(N) block [0, N) when N is a power of two), then `rounds` timed
 * rounds (after one untimed warm-up round) of `window` single-token appends
 * at positions N+1 .. N+window, each round ending with truncate(N + 1), which
 * forgets the window so the next round recomputes what it computed.
 *
 * The window is chosen so that each kind's amortized abstraction work is
 * counted at its long-run rate (--steps overrides it for every kind):
 *   FIXED/AXIAL/MIXTURE: whole blocks, the smallest multiple of the cache's
 *     block m >= 64 (m = ceil(sqrt(max_len)), the default, set explicitly
 *     because max_len depends on the window): a window of k*m positions
 *     holds exactly k block starts, where the block's summaries are made.
 *   LOGSPARSE: a power of two W = 2^j (>= 64, <= N/4): positions N+1..N+W
 *     make exactly W/2^l blocks of each level l <= j, i.e. the long-run rate
 *     of every level up to j; levels above j (an O(1)-per-token share each)
 *     are not in the window.
 *   DENSE: nothing amortized, 64 tokens.
 * Work per token is combiner_flops(L = N+1+W) - combiner_flops(L = N+1),
 * over W, with the cache's block: what the one-call partition spends on
 * those W positions, summaries included.
 *
 * --modes owned,borrowed times each row in both cache modes, one after the
 * other: owned (the cache copies K/V) and borrowed (the cache reads K/V in
 * an engine-side [max_len][kv][d] buffer, rollback = the window, one shared
 * scratch); the engine's write of a token's K/V row into its buffer is not
 * timed (the engine does it with or without combiner.h). */
typedef struct decode_result {
  combiner_kind kind;
  int borrowed;            /* the cache mode */
  int type;                /* K/V element type (combiner_type) */
  int N, d, H, Hkv, threads, block, window, rounds, max_len;
  double mean, mean_lo, mean_hi, median, max, first;   /* seconds per token */
  double cpu;              /* process CPU seconds per token, median of the rounds */
  int tries;               /* times the rounds were run (noise_flags) */
  double fill, flops_tok, terms_tok, kv_bytes_tok;
  size_t cache_bytes;
} decode_result;

static void random_fill(float *p, size_t n, unsigned *seed) {
  size_t i;
  for (i = 0; i < n; ++i) {
    *seed = *seed * 1664525u + 1013904223u;
    p[i] = (float)((*seed >> 8) * (2.0 / 16777216.0) - 1.0);
  }
}

static int ceil_sqrt(long long x) {
  long long r = (long long)sqrt((double)x);
  while (r * r < x) ++r;
  while (r > 1 && (r - 1) * (r - 1) >= x) --r;
  return (int)r;
}

/* the timed window of a kind at context N; *block is the cache block to set
 * explicitly (0: the library's default) */
static int decode_window(combiner_kind kind, int N, int steps, int *block) {
  int m, it, w;
  *block = 0;
  if (steps > 0) return steps;
  if (kind == COMBINER_DENSE) return 64;
  if (kind == COMBINER_LOGSPARSE) {
    for (w = 64; w * 2 <= N / 4; w *= 2) {}
    return w;
  }
  m = ceil_sqrt((long long)N + 1);
  for (it = 0; it < 32; ++it) {            /* m = ceil(sqrt(N + 1 + window(m))) */
    int m2 = ceil_sqrt((long long)N + 1 + (long long)m * ((64 + m - 1) / m));
    if (m2 == m) break;
    m = m2;
  }
  *block = m;
  return m * ((64 + m - 1) / m);
}

/* MemAvailable from /proc/meminfo in bytes; 0 if unknown */
static double available_bytes(void) {
  char line[256];
  double kib = 0;
  FILE *f = fopen("/proc/meminfo", "r");
  if (!f) return 0;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "MemAvailable:", 13)) { kib = atof(line + 13); break; }
  fclose(f);
  return kib * 1024.0;
}

/* read bandwidth of a buffer well beyond the caches, best of 5 passes */
static float sum_floats(const float *p, size_t n) {
  float acc[16] = {0};
  size_t i;
  int j;
  for (i = 0; i + 16 <= n; i += 16)
    for (j = 0; j < 16; ++j) acc[j] += p[i + j];
  for (j = 1; j < 16; ++j) acc[0] += acc[j];
  return acc[0];
}

static double read_gbs(int threads, size_t bytes) {
  size_t n = bytes / sizeof(float), i;
  float *p = (float *)malloc(n * sizeof(float)), sink = 0.0f;
  double best = 0.0;
  int rep;
  if (!p) return 0.0;
  for (i = 0; i < n; ++i) p[i] = 1.0f;
  for (rep = 0; rep < 5; ++rep) {
    double t0 = now(), t;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      size_t part = (n / (size_t)omp_get_num_threads()) & ~(size_t)15, me = (size_t)omp_get_thread_num();
      sink += sum_floats(p + me * part, part);
    }
#else
    (void)threads;
    sink += sum_floats(p, n);
#endif
    t = now() - t0;
    if ((double)bytes / t * 1e-9 > best) best = (double)bytes / t * 1e-9;
  }
  if (sink == 12345.0f) printf(" ");
  free(p);
  return best;
}

static void print_loadavg(const char *when) {
  char line[128] = "?";
  FILE *f = fopen("/proc/loadavg", "r");
  if (f) {
    if (!fgets(line, sizeof line, f)) strcpy(line, "?");
    fclose(f);
  }
  line[strcspn(line, "\n")] = 0;
  printf("load average %s: %s\n", when, line);
}

static void die_status(const char *what, combiner_status st) {
  fprintf(stderr, "%s: %s\n", what, combiner_status_string(st));
  exit(1);
}

static double median_of(double *x, int n) {
  qsort(x, (size_t)n, sizeof(double), cmp_double);
  return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static const decode_result *decode_find_typed(const decode_result *rs, int n, combiner_kind kind, int N, int d,
                                              int Hkv, int threads, int borrowed, int type) {
  int i;
  for (i = 0; i < n; ++i)
    if (rs[i].kind == kind && rs[i].N == N && rs[i].d == d && rs[i].Hkv == Hkv && rs[i].threads == threads &&
        rs[i].borrowed == borrowed && rs[i].type == type)
      return &rs[i];
  return NULL;
}

/* the row of that configuration with float32 K/V */
static const decode_result *decode_find(const decode_result *rs, int n, combiner_kind kind, int N, int d, int Hkv,
                                        int threads, int borrowed) {
  return decode_find_typed(rs, n, kind, N, d, Hkv, threads, borrowed, COMBINER_F32);
}

/* float32 -> binary16 / bfloat16 (round to nearest even; finite inputs of
 * magnitude <= 1, as the bench's random tokens are) */
static uint16_t half_of(float f, int type) {
  uint32_t x, a, h, rem;
  memcpy(&x, &f, sizeof x);
  if (type == COMBINER_BF16) return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
  a = x & 0x7fffffffu;
  if (a < 0x38800000u) return (uint16_t)(((x >> 16) & 0x8000u) | (uint32_t)rint(fabs((double)f) * 16777216.0));
  h = (((a >> 23) - 112u) << 10) | ((a & 0x7fffffu) >> 13);
  rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return (uint16_t)(((x >> 16) & 0x8000u) | h);
}

static size_t type_bytes(int type) { return type == COMBINER_F32 ? sizeof(float) : sizeof(uint16_t); }
static const char *type_name(int type) { return type == COMBINER_F16 ? "f16" : type == COMBINER_BF16 ? "bf16" : "f32"; }

/* n random values in [-1, 1) as `type` */
static void random_fill_typed(void *p, size_t n, int type, unsigned *seed) {
  size_t i;
  if (type == COMBINER_F32) { random_fill((float *)p, n, seed); return; }
  for (i = 0; i < n; ++i) {
    float f;
    random_fill(&f, 1, seed);
    ((uint16_t *)p)[i] = half_of(f, type);
  }
}

/* Why a row may not be trusted, from the run's own numbers: "r" its round
 * means differ by more than 1.5x; "p" the process got less CPU time than
 * 0.8 x wall (not even one core: other jobs took it); "t" it ran more than
 * 1.5x slower than the same configuration on 1 thread (the library splits a
 * token over heads, so more threads are never that much slower unless a
 * thread waits, at the per-token OpenMP barrier, for a core another job
 * holds). `one`: the 1-thread row of the same configuration, or NULL. */
static const char *noise_flags(const decode_result *r, const decode_result *one) {
  static char flags[4];
  char *f = flags;
  if (r->mean_hi > 1.5 * r->mean_lo) *f++ = 'r';
  if (r->cpu < 0.8 * r->mean) *f++ = 'p';
  if (one && r->mean > 1.5 * one->mean) *f++ = 't';
  *f = 0;
  return flags;
}

static const char *decode_noise(const decode_result *rs, int n, const decode_result *r) {
  return noise_flags(r, r->threads > 1 ? decode_find_typed(rs, n, r->kind, r->N, r->d, r->Hkv, 1, r->borrowed, r->type)
                                        : NULL);
}

/* What the timed rounds of one cache need. */
/* p rounded up to a multiple of 64 bytes (NULL stays NULL) */
static void *align64(void *p) {
  return p ? (void *)(((uintptr_t)p + 63u) & ~(uintptr_t)63u) : NULL;
}

typedef struct decode_ctx {
  combiner_cache *cache;
  unsigned char *ek, *ev;        /* borrowed: the engine's K/V, [max_len][Hkv][d] of `esize`-byte elements, */
  void *ek_block, *ev_block;     /* 64-byte aligned in these allocations (an engine's tensors are aligned) */
  void *scratch;                 /* borrowed: the shared scratch */
  size_t scratch_bytes, esize;
  const float *qp;               /* POOL random tokens, reused in turn */
  const unsigned char *kp, *vp;
  float *out, check;
  double *times, *means, *cpus;  /* rounds*W, rounds, rounds */
  int N, W, rounds, H, Hkv, d;
} decode_ctx;

enum { DECODE_POOL = 256 };

/* Appends count tokens at pos: owned, with their K/V; borrowed, after the
 * engine wrote them into its buffer (untimed: t0 is taken after). */
static combiner_status decode_append(decode_ctx *x, int pos, int count, const float *q, const void *k, const void *v,
                                     float *out, double *t0) {
  const size_t row = (size_t)x->Hkv * x->d * x->esize;
  if (!x->ek) {
    *t0 = now();
    return combiner_cache_append(x->cache, count, q, k, v, out);
  }
  memcpy(x->ek + (size_t)pos * row, k, (size_t)count * row);
  memcpy(x->ev + (size_t)pos * row, v, (size_t)count * row);
  *t0 = now();
  return combiner_cache_append_at(x->cache, pos, count, q, NULL, NULL, out, x->scratch, x->scratch_bytes);
}

/* `rounds` timed rounds (after an untimed warm-up one if asked) of W
 * single-token appends at positions N+1 .. N+W, each round ending with
 * truncate(N + 1); the per-token statistics go to r. */
static void decode_rounds(decode_ctx *x, int warmup, decode_result *r) {
  const int W = x->W, H = x->H, Hkv = x->Hkv, d = x->d;
  combiner_status st;
  int ri, s;
  for (ri = warmup ? -1 : 0; ri < x->rounds; ++ri) {
    double sum = 0.0, c0 = cpu_now();
    for (s = 0; s < W; ++s) {
      const size_t t = (size_t)(s + 1) % DECODE_POOL;
      double t0, dt;
      st = decode_append(x, x->N + 1 + s, 1, x->qp + t * H * d, x->kp + t * Hkv * d * x->esize,
                         x->vp + t * Hkv * d * x->esize, x->out, &t0);
      dt = now() - t0;
      if (st != COMBINER_OK) die_status("combiner_cache_append (decode)", st);
      x->check += x->out[(size_t)s % ((size_t)H * d)];
      if (ri >= 0) { x->times[(size_t)ri * W + s] = dt; sum += dt; }
    }
    if (ri >= 0) { x->means[ri] = sum / W; x->cpus[ri] = (cpu_now() - c0) / W; }
    if ((st = combiner_cache_truncate(x->cache, x->N + 1)) != COMBINER_OK) die_status("combiner_cache_truncate", st);
    if (combiner_cache_length(x->cache) != x->N + 1) {
      fprintf(stderr, "combiner_cache_length: %d after truncate(%d)\n", combiner_cache_length(x->cache), x->N + 1);
      exit(1);
    }
  }
  qsort(x->means, (size_t)x->rounds, sizeof(double), cmp_double);
  r->mean_lo = x->means[0];
  r->mean_hi = x->means[x->rounds - 1];
  r->mean = median_of(x->means, x->rounds);
  r->cpu = median_of(x->cpus, x->rounds);
  r->median = median_of(x->times, x->rounds * W);      /* sorts: the last is the max */
  r->max = x->times[x->rounds * W - 1];
}

/* one kind at one context; returns 0 (with a printed note) if its cache
 * cannot be allocated. A row that noise_flags() marks is timed again (the
 * rounds only: truncate restores the cache), up to 3 tries while a try takes
 * under 10 s; the first unmarked try is kept, else the fastest. `one`: the 1-thread row of the
 * same configuration, or NULL. */
static int decode_one(decode_result *r, combiner_kind kind, int borrowed, int type, int N, int d, int H, int Hkv,
                      int threads, int steps, int rounds, int chunk, const decode_result *one) {
  combiner_config cfg, rc;
  combiner_cache_options opt;
  combiner_status st;
  decode_ctx x;
  decode_result best;
  unsigned seed = 1;
  double need, avail, t0;
  float *qc, *qp;
  unsigned char *kc, *vc, *kp, *vp;
  size_t es = type_bytes(type);
  void *buf;
  int block, W, pos, tries;
  memset(r, 0, sizeof *r);
  memset(&cfg, 0, sizeof cfg);
  memset(&x, 0, sizeof x);
  W = decode_window(kind, N, steps, &block);
  cfg.kind = kind; cfg.causal = 1; cfg.head_dim = d; cfg.num_heads = H; cfg.num_kv_heads = Hkv;
  cfg.num_threads = threads; cfg.block = block;
  cfg.k_type = cfg.v_type = (combiner_type)type;
  r->kind = kind; r->N = N; r->d = d; r->H = H; r->Hkv = Hkv; r->threads = threads; r->window = W;
  r->rounds = rounds; r->max_len = N + 1 + W; r->borrowed = borrowed; r->type = type;
  x.esize = es;
  cfg.seq_len = r->max_len;                     /* the model's context (the block is explicit) */
  memset(&opt, 0, sizeof opt);
  opt.max_len = r->max_len;
  if (borrowed) {   /* the engine's K/V; the rounds go back W positions */
    x.ek_block = malloc((size_t)r->max_len * Hkv * d * es + 64);
    x.ev_block = malloc((size_t)r->max_len * Hkv * d * es + 64);
    x.ek = (unsigned char *)align64(x.ek_block);
    x.ev = (unsigned char *)align64(x.ev_block);
    x.scratch_bytes = combiner_cache_scratch_size(&cfg, threads);
    x.scratch = malloc(x.scratch_bytes);
    if (!x.ek || !x.ev || !x.scratch) {
      printf("  (skipped %s borrowed N=%d: no memory for the engine's K/V)\n", combiner_kind_string(kind), N);
      free(x.ek_block); free(x.ev_block); free(x.scratch);
      return 0;
    }
    opt.k = x.ek; opt.v = x.ev; opt.rollback = W; opt.shared_scratch = 1;
  }
  r->cache_bytes = combiner_cache_size_ex(&cfg, &opt);
  if (r->cache_bytes == 0) {
    st = combiner_cache_init_ex(&x.cache, &cfg, &opt, NULL, 0);
    die_status("combiner_cache_size", st);
  }
  need = (double)r->cache_bytes + 4.0 * ((double)chunk + DECODE_POOL) * (H + 2.0 * Hkv) * d;
  avail = available_bytes();
  if (avail > 0 && need > avail - 256.0 * 1048576) {
    printf("  (skipped %s N=%d kv %d, %d thread(s): cache needs %.2f GiB, %.2f GiB available)\n",
           combiner_kind_string(kind), N, Hkv, threads, need / 1073741824.0, avail / 1073741824.0);
    return 0;
  }
  buf = malloc(r->cache_bytes);
  if (!buf) {
    printf("  (skipped %s N=%d kv %d, %d thread(s): cannot allocate a %.2f GiB cache)\n",
           combiner_kind_string(kind), N, Hkv, threads, r->cache_bytes / 1073741824.0);
    return 0;
  }
  if (chunk > N) chunk = N;
  qc = (float *)malloc((size_t)chunk * H * d * sizeof(float));
  kc = (unsigned char *)malloc((size_t)chunk * Hkv * d * es);
  vc = (unsigned char *)malloc((size_t)chunk * Hkv * d * es);
  x.qp = qp = (float *)malloc((size_t)DECODE_POOL * H * d * sizeof(float));
  x.kp = kp = (unsigned char *)malloc((size_t)DECODE_POOL * Hkv * d * es);
  x.vp = vp = (unsigned char *)malloc((size_t)DECODE_POOL * Hkv * d * es);
  x.out = (float *)malloc((size_t)H * d * sizeof(float));
  x.times = (double *)malloc((size_t)rounds * W * sizeof(double));
  x.means = (double *)malloc((size_t)rounds * sizeof(double));
  x.cpus = (double *)malloc((size_t)rounds * sizeof(double));
  if (!qc || !kc || !vc || !qp || !kp || !vp || !x.out || !x.times || !x.means || !x.cpus) {
    fprintf(stderr, "out of memory (decode inputs)\n");
    exit(1);
  }
  x.N = N; x.W = W; x.rounds = rounds; x.H = H; x.Hkv = Hkv; x.d = d;
  random_fill(qp, (size_t)DECODE_POOL * H * d, &seed);
  random_fill_typed(kp, (size_t)DECODE_POOL * Hkv * d, type, &seed);
  random_fill_typed(vp, (size_t)DECODE_POOL * Hkv * d, type, &seed);
  if ((st = combiner_cache_init_ex(&x.cache, &cfg, &opt, buf, r->cache_bytes)) != COMBINER_OK)
    die_status("combiner_cache_init", st);
  if ((st = combiner_cache_config(x.cache, &rc)) != COMBINER_OK) die_status("combiner_cache_config", st);
  r->block = rc.block;
  for (pos = 0; pos < N; pos += chunk) {      /* the context: chunks with out = NULL */
    int c = N - pos < chunk ? N - pos : chunk;
    random_fill(qc, (size_t)c * H * d, &seed);
    random_fill_typed(kc, (size_t)c * Hkv * d, type, &seed);
    random_fill_typed(vc, (size_t)c * Hkv * d, type, &seed);
    st = decode_append(&x, pos, c, qc, kc, vc, NULL, &t0);
    r->fill += now() - t0;
    if (st != COMBINER_OK) die_status("combiner_cache_append (fill)", st);
  }
  st = decode_append(&x, N, 1, qp, kp, vp, x.out, &t0);   /* the first token after the fill */
  r->first = now() - t0;
  if (st != COMBINER_OK) die_status("combiner_cache_append (first)", st);
  for (tries = 1;; ++tries) {
    t0 = now();
    decode_rounds(&x, tries == 1, r);
    if (tries == 1 || r->mean < best.mean) best = *r;
    if (!*noise_flags(r, one)) { best = *r; break; }
    if (tries == 3 || now() - t0 > 10.0) break;   /* a long row is not worth more tries */
  }
  *r = best;
  r->tries = tries;
  if (!isfinite(x.check)) { fprintf(stderr, "%s decode: non-finite output\n", combiner_kind_string(kind)); exit(1); }
  rc.seq_len = N + 1 + W;                      /* the work of positions N+1 .. N+W */
  r->flops_tok = combiner_flops(&rc);
  rc.seq_len = N + 1;
  r->flops_tok = (r->flops_tok - combiner_flops(&rc)) / W;
  r->terms_tok = r->flops_tok / (2.0 * H * (d + (rc.value_dim ? rc.value_dim : d)));
  r->kv_bytes_tok = kind == COMBINER_DENSE ? r->terms_tok * Hkv * 2.0 * d * (double)es : 0.0;
  free(qc); free(kc); free(vc); free(qp); free(kp); free(vp); free(x.out); free(x.times); free(x.means); free(x.cpus);
  free(buf); free(x.ek_block); free(x.ev_block); free(x.scratch);
  return 1;
}

/* the rows of one kind and configuration as a series over N, without the
 * rows noise_flags() marks; *dropped counts those */
static svg_series decode_series(const decode_result *rs, int n, combiner_kind kind, int d, int Hkv, int threads,
                                int borrowed, int *dropped) {
  svg_series s;
  int i;
  memset(&s, 0, sizeof s);
  s.name = combiner_kind_string(kind);
  s.kind = kind;
  for (i = 0; i < n && s.n < MAXV; ++i) {
    if (rs[i].kind != kind || rs[i].d != d || rs[i].Hkv != Hkv || rs[i].threads != threads ||
        rs[i].borrowed != borrowed || rs[i].type != COMBINER_F32)
      continue;
    if (*decode_noise(rs, n, &rs[i])) { ++*dropped; continue; }
    s.x[s.n] = rs[i].N; s.y[s.n] = rs[i].mean; ++s.n;
  }
  return s;
}

typedef struct options {
  int decode, quick;
  int Ls[MAXV], nL, Ns[MAXV], nN, causals[MAXV], nc, ds[MAXV], nd, kvs[MAXV], nkv, threads[MAXV], nt;
  int H, reps, dense_max, steps, rounds, chunk, nk;
  int modes[2], nm;        /* decode, chunked: 0 owned, 1 borrowed */
  int chunked, chunks[MAXV], nch;   /* chunked prefill: chunk sizes */
  int types[3], ntypes;    /* decode: K/V element types */
  combiner_kind kinds[6];
  const char *out_dir;
} options;

static int run_decode(const options *o) {
  const double t_start = now();
  int maxt = 1, ti, kvi, di, ni, ki, mi, n = 0, noisy = 0, i;
  const int nrs = o->nN * o->nd * o->nkv * o->nt * o->nk * o->nm * o->ntypes;
  double bw[MAXV];
  decode_result *rs = (decode_result *)calloc((size_t)nrs + 1, sizeof(decode_result));
  char path[512];
  FILE *csv;
  if (!rs) return 1;
  for (ti = 0; ti < o->nt; ++ti) maxt = o->threads[ti] > maxt ? o->threads[ti] : maxt;
  printf("combiner-bench --decode on %s: per-token latency of combiner_cache_append(1 token) at context N "
         "(%s kernels, %s; %s)\n", cpu_model(), combiner_kernel_name(), compiler_name(), openmp_name());
  print_loadavg("at start (other jobs share these cores: wall times include their preemptions)");
  printf("memory read bandwidth (%d MiB buffer):", o->quick ? 64 : 1024);
  for (ti = 0; ti < o->nt; ++ti) {
    bw[ti] = read_gbs(o->threads[ti], (size_t)(o->quick ? 64 : 1024) << 20);
    printf(" %.1f GB/s on %d thread(s)%s", bw[ti], o->threads[ti], ti + 1 < o->nt ? "," : "\n");
  }
  printf("window: %s; %d timed rounds after a warm-up; us/token = median of round means (min-max of round means),\n"
         "median and max over every timed token; cpu = process CPU time per token (all threads; on 1 thread it\n"
         "excludes preemption by other jobs); first = the first token after the fill; flop x and terms/token\n"
         "from combiner_flops over the window; GB/s = K/V bytes streamed per token (DENSE) / mean\n\n",
         o->steps > 0 ? "--steps tokens for every kind" : "whole blocks (FIXED/AXIAL/MIXTURE), 2^j <= N/4 (LOGSPARSE), 64 (DENSE)",
         o->rounds);
  printf("%-9s %-8s %-4s %2s %3s %6s %5s %5s %9s %19s %9s %9s %9s %9s %8s %7s %9s %7s %6s %4s %7s %8s %s\n", "kind", "mode", "K/V", "kv", "thr",
         "N", "block", "win", "us/tok", "(min-max)", "median", "max", "cpu", "first", "vs dense", "flop x", "terms/tok",
         "GFLOP/s", "GB/s", "%bw", "B/tok", "fill s", "tries noise");
  for (di = 0; di < o->nd; ++di)
    for (kvi = 0; kvi < o->nkv; ++kvi)
      for (ti = 0; ti < o->nt; ++ti)
        for (ni = 0; ni < o->nN; ++ni) {
          for (ki = 0; ki < o->nk * o->nm * o->ntypes; ++ki) {   /* each kind in every mode and type, one after the other */
            decode_result *r = &rs[n];
            const decode_result *dense;
            const combiner_kind kind = o->kinds[ki / (o->nm * o->ntypes)];
            const int mode = o->modes[ki / o->ntypes % o->nm], type = o->types[ki % o->ntypes];
            if (kind == COMBINER_DENSE && o->Ns[ni] > o->dense_max) continue;
            if (!decode_one(r, kind, mode, type, o->Ns[ni], o->ds[di], o->H, o->kvs[kvi], o->threads[ti], o->steps,
                            o->rounds, o->chunk,
                            decode_find_typed(rs, n, kind, o->Ns[ni], o->ds[di], o->kvs[kvi], 1, mode, type)))
              continue;
            ++n;
            dense = decode_find_typed(rs, n, COMBINER_DENSE, r->N, r->d, r->Hkv, r->threads, r->borrowed, r->type);
            printf("%-9s %-8s %-4s %2d %3d %6d ", combiner_kind_string(r->kind), r->borrowed ? "borrowed" : "owned",
                   type_name(r->type), r->Hkv, r->threads, r->N);
            if (r->kind == COMBINER_DENSE || r->kind == COMBINER_LOGSPARSE) printf("%5s ", "-");  /* no blocks */
            else printf("%5d ", r->block);
            printf("%5d %9.2f %9.2f-%-9.2f %9.2f %9.2f %9.2f %9.1f ", r->window, 1e6 * r->mean, 1e6 * r->mean_lo,
                   1e6 * r->mean_hi, 1e6 * r->median, 1e6 * r->max, 1e6 * r->cpu, 1e6 * r->first);
            if (dense) printf("%7.1fx %6.1fx ", dense->mean / r->mean, dense->flops_tok / r->flops_tok);
            else printf("%8s %7s ", "-", "-");
            printf("%9.0f %7.1f ", r->terms_tok, r->flops_tok / r->mean * 1e-9);
            if (r->kv_bytes_tok > 0) printf("%6.1f %3.0f%% ", r->kv_bytes_tok / r->mean * 1e-9, 100 * r->kv_bytes_tok / r->mean * 1e-9 / bw[ti]);
            else printf("%6s %4s ", "-", "-");
            printf("%7.0f %8.3f %d %s\n", (double)r->cache_bytes / r->max_len, r->fill, r->tries,
                   decode_noise(rs, n, r));
            noisy += *decode_noise(rs, n, r) != 0;
            fflush(stdout);
          }
        }
  if (noisy)
    printf("\n%d row(s) still marked in the noise column after their tries: r = round means differ by > 1.5x,\n"
           "p = CPU time < 0.8 x wall, t = > 1.5x slower than on 1 thread; other jobs took the cores, so their\n"
           "times, speed-ups and slopes are not the library's: rerun them (--N/--kv/--threads) on a quiet machine\n",
           noisy);
  printf("\nfitted slope of log(us/token) vs log(N) (expected: ~0.5 FIXED/AXIAL/MIXTURE, ~0 LOGSPARSE, ~1 DENSE),\n"
         "over the rows without a noise mark (the points used in brackets when some were left out):\n");
  for (di = 0; di < o->nd; ++di)
    for (kvi = 0; kvi < o->nkv; ++kvi)
      for (ti = 0; ti < o->nt; ++ti)
        for (mi = 0; mi < o->nm; ++mi) {
          printf("  d %d, kv %d, %d thread(s), %s:", o->ds[di], o->kvs[kvi], o->threads[ti],
                 o->modes[mi] ? "borrowed" : "owned");
          for (ki = 0; ki < o->nk; ++ki) {
            int dropped = 0;
            svg_series s = decode_series(rs, n, o->kinds[ki], o->ds[di], o->kvs[kvi], o->threads[ti], o->modes[mi],
                                         &dropped);
            printf("  %s %.2f", combiner_kind_string(o->kinds[ki]), loglog_slope(s.x, s.y, s.n));
            if (dropped) printf(" [%d of %d]", s.n, s.n + dropped);
          }
          printf("\n");
        }
  if (o->nm == 2) {   /* the same row in both modes, timed one after the other */
    printf("\nborrowed vs owned, us/token (target: borrowed no slower; > 1.10x marked SLOWER):\n");
    for (i = 0; i < n; ++i) {
      const decode_result *b = &rs[i], *w;
      if (!b->borrowed) continue;
      w = decode_find_typed(rs, n, b->kind, b->N, b->d, b->Hkv, b->threads, 0, b->type);
      if (!w) continue;
      printf("  %-9s %-4s N %6d kv %d %d thr: owned %9.2f  borrowed %9.2f  ratio %.2f  bytes/token %7.0f -> %7.0f%s%s\n",
             combiner_kind_string(b->kind), type_name(b->type), b->N, b->Hkv, b->threads, 1e6 * w->mean, 1e6 * b->mean,
             b->mean / w->mean,
             (double)w->cache_bytes / w->max_len, (double)b->cache_bytes / b->max_len,
             b->mean > 1.10 * w->mean ? "  SLOWER" : "",
             *decode_noise(rs, n, b) || *decode_noise(rs, n, w) ? "  (noisy)" : "");
    }
  }
  if (o->ntypes > 1) {   /* the same row with half-precision K/V, timed one after the other */
    printf("\nhalf-precision vs float32 K/V, us/token (target: DENSE f16 >= 1.8x faster; every kind no slower):\n");
    for (i = 0; i < n; ++i) {
      const decode_result *h = &rs[i], *w;
      if (h->type == COMBINER_F32) continue;
      w = decode_find(rs, n, h->kind, h->N, h->d, h->Hkv, h->threads, h->borrowed);
      if (!w) continue;
      printf("  %-9s %-8s N %6d kv %d %d thr: f32 %9.2f  %-4s %9.2f  speed-up %.2fx%s\n", combiner_kind_string(h->kind),
             h->borrowed ? "borrowed" : "owned", h->N, h->Hkv, h->threads, 1e6 * w->mean, type_name(h->type),
             1e6 * h->mean, w->mean / h->mean,
             *decode_noise(rs, n, h) || *decode_noise(rs, n, w) ? "  (noisy)" : "");
    }
  }
  printf("\ntargets at N = 65536 (per-token speed-up over DENSE): FIXED >= 50x, AXIAL >= 20x, MIXTURE >= 20x\n");
  for (di = 0; di < o->nd; ++di)
    for (kvi = 0; kvi < o->nkv; ++kvi)
      for (ti = 0; ti < o->nt; ++ti)
        for (ki = 0; ki < 3; ++ki) {
          static const combiner_kind tk[3] = {COMBINER_FIXED, COMBINER_AXIAL, COMBINER_MIXTURE};
          static const double bar[3] = {50.0, 20.0, 20.0};
          const decode_result *dense = decode_find(rs, n, COMBINER_DENSE, 65536, o->ds[di], o->kvs[kvi], o->threads[ti],
                                                   o->modes[0]);
          const decode_result *r = decode_find(rs, n, tk[ki], 65536, o->ds[di], o->kvs[kvi], o->threads[ti], o->modes[0]);
          printf("  %-7s d %d, kv %d, %d thread(s): ", combiner_kind_string(tk[ki]), o->ds[di], o->kvs[kvi],
                 o->threads[ti]);
          if (!dense || !r) printf("not measured (N = 65536 and DENSE must both run)\n");
          else printf("%6.1fx  %s%s\n", dense->mean / r->mean, dense->mean / r->mean >= bar[ki] ? "PASS" : "MISS",
                      *decode_noise(rs, n, dense) || *decode_noise(rs, n, r) ? "  (noisy row: not the library's)" : "");
        }
  snprintf(path, sizeof path, "%s/decode.csv", o->out_dir);
  csv = fopen(path, "w");
  if (csv) {
    fprintf(csv, "kind,kv_heads,threads,N,head_dim,heads,block,window,rounds,us_per_token_mean,us_mean_min,"
                 "us_mean_max,us_median,us_max,cpu_us_per_token,us_first,speedup_vs_dense,flop_ratio_vs_dense,terms_per_token,"
                 "gflops,kv_gbps,cache_bytes,cache_bytes_per_token,fill_s,tries,noise,cpu,read_gbps,mode,kv_type\n");
    for (i = 0; i < n; ++i) {
      const decode_result *r = &rs[i];
      const decode_result *dense = decode_find_typed(rs, n, COMBINER_DENSE, r->N, r->d, r->Hkv, r->threads, r->borrowed,
                                                     r->type);
      double row_bw = 0.0;     /* the read bandwidth measured on this row's thread count */
      for (ti = 0; ti < o->nt; ++ti)
        if (o->threads[ti] == r->threads) { row_bw = bw[ti]; break; }
      fprintf(csv, "%s,%d,%d,%d,%d,%d,%d,%d,%d,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,", combiner_kind_string(r->kind),
              r->Hkv, r->threads, r->N, r->d, r->H, r->block, r->window, r->rounds, 1e6 * r->mean, 1e6 * r->mean_lo,
              1e6 * r->mean_hi, 1e6 * r->median, 1e6 * r->max, 1e6 * r->cpu, 1e6 * r->first);
      if (dense) fprintf(csv, "%.4g,%.4g,", dense->mean / r->mean, dense->flops_tok / r->flops_tok);
      else fprintf(csv, ",,");
      fprintf(csv, "%.6g,%.4g,", r->terms_tok, r->flops_tok / r->mean * 1e-9);
      if (r->kv_bytes_tok > 0) fprintf(csv, "%.4g,", r->kv_bytes_tok / r->mean * 1e-9);
      else fprintf(csv, ",");
      fprintf(csv, "%zu,%.1f,%.4f,%d,%s,", r->cache_bytes, (double)r->cache_bytes / r->max_len, r->fill, r->tries,
              decode_noise(rs, n, r));
      csv_string(csv, cpu_model());
      fprintf(csv, ",%.4g,%s,%s\n", row_bw, r->borrowed ? "borrowed" : "owned", type_name(r->type));
    }
    fclose(csv);
    printf("\nwrote %s\n", path);
  } else {
    printf("\n(cannot write %s; create the folder or pass --out)\n", path);
  }
  {
    svg_series s[6];
    char title[220];
    int d = o->ds[0], Hkv = o->kvs[o->nkv - 1], thr = o->threads[o->nt - 1], dropped = 0;
    for (ki = 0; ki < o->nk; ++ki) s[ki] = decode_series(rs, n, o->kinds[ki], d, Hkv, thr, o->modes[0], &dropped);
    snprintf(title, sizeof title, "decode: time per token vs context N (log-log), d %d, H %d, kv heads %d, %d thread(s)%s",
             d, o->H, Hkv, thr, dropped ? "; noisy rows left out" : "");
    snprintf(path, sizeof path, "%s/decode.svg", o->out_dir);
    write_loglog_svg(path, title, "N (tokens in the cache)", s, o->nk);
    printf("wrote %s\n", path);
  }
  print_loadavg("at end");
  printf("decode run: %.1f s wall\n", now() - t_start);
  free(rs);
  return 0;
}

/* ---- chunked prefill through the cache against one call ---- */

typedef struct chunked_run {
  combiner_config cfg;
  combiner_cache_options opt;
  void *buffer;
  size_t size;
  int chunk;
} chunked_run;

/* Appends the prompt to a new cache in chunks; returns the seconds of the appends. */
static double chunked_fill(chunked_run *c, int L, const float *q, const float *k, const float *v, float *o) {
  const int H = c->cfg.num_heads, Hkv = c->cfg.num_kv_heads, d = c->cfg.head_dim;
  combiner_cache *cache;
  combiner_status st = combiner_cache_init_ex(&cache, &c->cfg, &c->opt, c->buffer, c->size);
  double t0;
  int p;
  if (st != COMBINER_OK) die_status("combiner_cache_init_ex", st);
  t0 = now();
  for (p = 0; p < L; p += c->chunk) {
    const int n = L - p < c->chunk ? L - p : c->chunk;
    st = c->opt.k ? combiner_cache_append_at(cache, p, n, q + (size_t)p * H * d, NULL, NULL, o + (size_t)p * H * d, NULL, 0)
                  : combiner_cache_append(cache, n, q + (size_t)p * H * d, k + (size_t)p * Hkv * d,
                                          v + (size_t)p * Hkv * d, o + (size_t)p * H * d);
    if (st != COMBINER_OK) die_status("combiner_cache_append (chunked)", st);
  }
  return now() - t0;
}

static int run_chunked(const options *o) {
  char path[512];
  FILE *csv;
  int li, ki, ti, kvi, ci, mi, fi, r, misses = 0;
  snprintf(path, sizeof path, "%s/chunked.csv", o->out_dir);
  csv = fopen(path, "w");
  if (csv) fprintf(csv, "kind,L,head_dim,heads,kv_heads,threads,mode,chunk,one_call_s,chunked_s,ratio,cpu\n");
  printf("combiner-bench --chunked on %s (%s kernels, %s; %s): a causal prompt appended to a cache in chunks "
         "(outputs written) vs one combiner_attention call, interleaved, median of %d\n\n",
         cpu_model(), combiner_kernel_name(), compiler_name(), openmp_name(), o->reps);
  printf("%-9s %6s %3s %2s %2s %3s %-13s %6s %12s %12s %7s\n", "kind", "L", "d", "H", "kv", "thr", "mode", "chunk",
         "one call ms", "chunked ms", "ratio");
  for (li = 0; li < o->nL; ++li)
    for (kvi = 0; kvi < o->nkv; ++kvi)
      for (ti = 0; ti < o->nt; ++ti)
        for (ki = 0; ki < o->nk; ++ki) {
          const int L = o->Ls[li], d = o->ds[0], H = o->H, Hkv = o->kvs[kvi], nrun = 2 * o->nch;
          const int reps = o->reps < 1 ? 1 : o->reps > 64 ? 64 : o->reps;
          unsigned seed = 1;
          float *q = random_buffer((size_t)L * H * d, &seed), *k = random_buffer((size_t)L * Hkv * d, &seed);
          float *v = random_buffer((size_t)L * Hkv * d, &seed), *out = random_buffer((size_t)L * H * d, &seed);
          chunked_run runs[2 * MAXV];
          double one[64], t[2 * MAXV][64], one_med;
          combiner_config cfg;
          size_t ws;
          void *work;
          memset(&cfg, 0, sizeof cfg);
          cfg.kind = o->kinds[ki]; cfg.seq_len = L; cfg.head_dim = d; cfg.num_heads = H; cfg.num_kv_heads = Hkv;
          cfg.causal = 1; cfg.num_threads = o->threads[ti];
          ws = combiner_workspace_size(&cfg);
          work = malloc(ws);
          if (!work) { fprintf(stderr, "out of memory\n"); exit(1); }
          for (mi = 0; mi < o->nm; ++mi) {   /* a mode at a time, each with its own one-call rounds */
            for (fi = 0; fi < 2; ++fi)   /* without, then with fast_chunks */
              for (ci = 0; ci < o->nch; ++ci) {
                chunked_run *c = &runs[fi * o->nch + ci];
                memset(&c->opt, 0, sizeof c->opt);
                c->cfg = cfg;
                c->opt.max_len = L;
                c->opt.fast_chunks = fi;
                if (o->modes[mi]) { c->opt.k = k; c->opt.v = v; }
                c->chunk = o->chunks[ci];
                c->size = combiner_cache_size_ex(&cfg, &c->opt);
                c->buffer = malloc(c->size);
                if (!c->buffer) { fprintf(stderr, "out of memory (cache)\n"); exit(1); }
              }
            for (r = -1; r < reps; ++r) {   /* interleaved: each round runs the one call and the mode's fills */
              double t0 = now();
              combiner_status st = combiner_attention(&cfg, q, k, v, out, work, ws);
              if (st != COMBINER_OK) die_status("combiner_attention", st);
              if (r >= 0) one[r] = now() - t0;
              for (ci = 0; ci < nrun; ++ci) {
                const double s = chunked_fill(&runs[ci], L, q, k, v, out);
                if (r >= 0) t[ci][r] = s;
              }
            }
            one_med = median_of(one, reps);
            for (ci = 0; ci < nrun; ++ci) {
              const chunked_run *c = &runs[ci];
              const double med = median_of(t[ci], reps), ratio = med / one_med;
              const char *mode = c->opt.k ? (c->opt.fast_chunks ? "borrowed+fast" : "borrowed")
                                          : (c->opt.fast_chunks ? "owned+fast" : "owned");
              const int judged = c->chunk >= 256;
              misses += judged && ratio > 1.2;
              printf("%-9s %6d %3d %2d %2d %3d %-13s %6d %12.3f %12.3f %6.2fx%s\n", combiner_kind_string(cfg.kind), L, d, H,
                     Hkv, cfg.num_threads, mode, c->chunk, 1e3 * one_med, 1e3 * med, ratio,
                     judged ? (ratio <= 1.2 ? "  PASS" : "  MISS") : "");
              if (csv) {
                fprintf(csv, "%s,%d,%d,%d,%d,%d,%s,%d,%.6g,%.6g,%.4g,", combiner_kind_string(cfg.kind), L, d, H, Hkv,
                        cfg.num_threads, mode, c->chunk, one_med, med, ratio);
                csv_string(csv, cpu_model());
                fprintf(csv, "\n");
              }
              free(c->buffer);
            }
          }
          fflush(stdout);
          free(work); free(q); free(k); free(v); free(out);
        }
  if (csv) { fclose(csv); printf("\nwrote %s\n", path); }
  printf("target (chunks >= 256: <= 1.2x the one call): %d miss(es)\n", misses);
  return 0;
}

/* Options in two passes: --decode and --quick pick the defaults, then every
 * other flag overrides them, whatever the order. */
static int parse_options(int argc, char **argv, options *o) {
  static const int Ls[] = {1024, 2048, 4096, 8192, 16384}, Ns[] = {4096, 16384, 65536, 262144};
  static const combiner_kind kinds[] = {COMBINER_DENSE, COMBINER_FIXED, COMBINER_AXIAL, COMBINER_MIXTURE,
                                        COMBINER_LOGSPARSE};
  int a;
  memset(o, 0, sizeof *o);
  for (a = 1; a < argc; ++a) {
    o->decode |= !strcmp(argv[a], "--decode");
    o->quick |= !strcmp(argv[a], "--quick");
    o->chunked |= !strcmp(argv[a], "--chunked");
  }
  memcpy(o->Ls, Ls, sizeof Ls); o->nL = 5;
  memcpy(o->Ns, Ns, sizeof Ns); o->nN = 4;
  memcpy(o->kinds, kinds, sizeof kinds); o->nk = 5;
  o->causals[0] = 1; o->causals[1] = 0; o->nc = 2;
  o->ds[0] = 64; o->nd = 1;
  o->kvs[0] = 8; o->kvs[1] = 2; o->nkv = 2;
  o->threads[0] = 1; o->threads[1] = 2; o->nt = 2;
  o->H = 8; o->reps = 5; o->dense_max = o->decode ? 1 << 30 : 16384;
  o->steps = 0; o->rounds = 3; o->chunk = 4096;
  o->modes[0] = 0; o->nm = 1;
  o->types[0] = COMBINER_F32; o->ntypes = 1;
  o->out_dir = "bench/results";
  o->chunks[0] = 256; o->chunks[1] = 1024; o->chunks[2] = 4096; o->nch = 3;
  if (o->chunked) {
    o->nL = 1; o->Ls[0] = 4096; o->nc = 1; o->nt = 1; o->threads[0] = 2; o->nkv = 1;
    o->nm = 2; o->modes[1] = 1;
  }
  if (o->quick) {
    o->nch = 2; o->chunks[0] = 64; o->chunks[1] = 256;
    o->nL = 2; o->Ls[0] = 256; o->Ls[1] = 512; o->nkv = 1; o->kvs[0] = 2; o->nt = 1; o->threads[0] = 1;
    o->reps = 3; o->H = 2;
    o->nN = 2; o->Ns[0] = 256; o->Ns[1] = 1024;
  }
  for (a = 1; a < argc; ++a) {
    const char *v = a + 1 < argc ? argv[a + 1] : "";
    if (!strcmp(argv[a], "--decode") || !strcmp(argv[a], "--quick") || !strcmp(argv[a], "--chunked")) continue;
    if (a + 1 >= argc) break;
    ++a;
    if (!strcmp(argv[a - 1], "--L")) o->nL = parse_list(v, o->Ls);
    else if (!strcmp(argv[a - 1], "--N")) o->nN = parse_list(v, o->Ns);
    else if (!strcmp(argv[a - 1], "--causal")) o->nc = parse_list(v, o->causals);
    else if (!strcmp(argv[a - 1], "--d")) o->nd = parse_list(v, o->ds);
    else if (!strcmp(argv[a - 1], "--kv")) o->nkv = parse_list(v, o->kvs);
    else if (!strcmp(argv[a - 1], "--threads")) o->nt = parse_list(v, o->threads);
    else if (!strcmp(argv[a - 1], "--heads")) o->H = atoi(v);
    else if (!strcmp(argv[a - 1], "--reps")) o->reps = atoi(v);
    else if (!strcmp(argv[a - 1], "--dense-max-L") || !strcmp(argv[a - 1], "--dense-max-N")) o->dense_max = atoi(v);
    else if (!strcmp(argv[a - 1], "--steps")) o->steps = atoi(v);
    else if (!strcmp(argv[a - 1], "--rounds")) o->rounds = atoi(v);
    else if (!strcmp(argv[a - 1], "--chunk")) o->chunk = atoi(v);
    else if (!strcmp(argv[a - 1], "--chunks")) o->nch = parse_list(v, o->chunks);
    else if (!strcmp(argv[a - 1], "--out")) o->out_dir = v;
    else if (!strcmp(argv[a - 1], "--types")) {
      const char *t = v;
      o->ntypes = 0;
      while (*t && o->ntypes < 3) {   /* comma-separated names, in the order given */
        const size_t len = strcspn(t, ",");
        if (len == 3 && !strncmp(t, "f32", 3)) o->types[o->ntypes++] = COMBINER_F32;
        else if (len == 3 && !strncmp(t, "f16", 3)) o->types[o->ntypes++] = COMBINER_F16;
        else if (len == 4 && !strncmp(t, "bf16", 4)) o->types[o->ntypes++] = COMBINER_BF16;
        else { fprintf(stderr, "--types: f32, f16 or bf16, comma-separated\n"); return 0; }
        t += len + (t[len] == ',');
      }
      if (!o->ntypes) return 0;
    }
    else if (!strcmp(argv[a - 1], "--modes")) {
      o->nm = 0;
      if (strstr(v, "owned") && o->nm < 2) o->modes[o->nm++] = 0;
      if (strstr(v, "borrowed") && o->nm < 2) o->modes[o->nm++] = 1;
      if (!o->nm) return 0;
    }
    else if (!strcmp(argv[a - 1], "--kinds")) {
      o->nk = 0;
      while (*v && o->nk < 6) {
        if (!strncmp(v, "dense", 5)) o->kinds[o->nk++] = COMBINER_DENSE;
        else if (!strncmp(v, "fixed", 5)) o->kinds[o->nk++] = COMBINER_FIXED;
        else if (!strncmp(v, "axial", 5)) o->kinds[o->nk++] = COMBINER_AXIAL;
        else if (!strncmp(v, "mixture", 7)) o->kinds[o->nk++] = COMBINER_MIXTURE;
        else if (!strncmp(v, "logsparse", 9)) o->kinds[o->nk++] = COMBINER_LOGSPARSE;
        while (*v && *v != ',') ++v;
        if (*v == ',') ++v;
      }
    } else {
      --a;
      break;
    }
  }
  if (a < argc || o->nk < 1 || o->rounds < 1 || o->chunk < 1 || o->steps < 0 || o->nch < 1 || o->chunks[0] < 1) {
    fprintf(stderr, "usage: see the comment at the top of bench/combiner_bench.c\n");
    return 0;
  }
  if (o->decode) {     /* DENSE first: every other kind's row prints its speed-up over it */
    int k, j;
    for (k = 1; k < o->nk; ++k)
      if (o->kinds[k] == COMBINER_DENSE) {
        for (j = k; j > 0; --j) o->kinds[j] = o->kinds[j - 1];
        o->kinds[0] = COMBINER_DENSE;
      }
  }
  return 1;
}

int main(int argc, char **argv) {
  options opt;
  int *Ls, nL, *causals, nc, *ds, nd, *kvs, nkv, *threads, nt, H, reps, dense_max;
  combiner_kind *kinds;
  int nk, li, ci, di, ki, ti, kvi, n = 0, maxt = 1;
  const char *out_dir;
  result *rs;
  double peak1, peakN, attainable = 0.0;
  char path[512];
  FILE *csv;
  if (!parse_options(argc, argv, &opt)) return 2;
  if (opt.decode) return run_decode(&opt);
  if (opt.chunked) return run_chunked(&opt);
  Ls = opt.Ls; nL = opt.nL; causals = opt.causals; nc = opt.nc; ds = opt.ds; nd = opt.nd; kvs = opt.kvs;
  nkv = opt.nkv; threads = opt.threads; nt = opt.nt; H = opt.H; reps = opt.reps; dense_max = opt.dense_max;
  kinds = opt.kinds; nk = opt.nk; out_dir = opt.out_dir;
  for (ti = 0; ti < nt; ++ti) maxt = threads[ti] > maxt ? threads[ti] : maxt;
  peak1 = fma_peak_gflops(1);
  peakN = maxt > 1 ? fma_peak_gflops(maxt) : peak1;
  printf("combiner-bench on %s: FMA peak %.1f GFLOP/s on 1 thread, %.1f on %d (%s kernels, %s; %s)\n",
         cpu_model(), peak1, peakN, maxt, combiner_kernel_name(), compiler_name(), openmp_name());
  rs = (result *)calloc((size_t)(nL * nc * nd * nkv * nt * nk * opt.ntypes + 1), sizeof(result));
  if (!rs) return 1;
  {   /* attainable: our dense kernel on a large GEMM-shaped (bidirectional) problem */
    int L = 2048, d = 64;
    unsigned seed = 9;
    float *q = random_buffer((size_t)L * 8 * d, &seed), *k = random_buffer((size_t)L * 8 * d, &seed);
    float *v = random_buffer((size_t)L * 8 * d, &seed), *o = random_buffer((size_t)L * 8 * d, &seed);
    result r = run_one(COMBINER_DENSE, L, 0, d, 8, 8, maxt, 3, COMBINER_F32, q, k, v, o);
    attainable = r.flops / r.median * 1e-9;
    printf("dense bidirectional L=%d d=%d H=8 on %d thread(s): %.1f GFLOP/s = %.0f%% of FMA peak\n\n", L, d,
           maxt, attainable, 100 * attainable / peakN);
    free(q); free(k); free(v); free(o);
  }
  printf("%-8s %6s %3s %3s %2s %2s %4s %6s %10s %21s %8s %6s %8s %8s %11s %9s\n", "kind", "L", "cau", "d", "H",
         "kv", "K/V", "thr", "median ms", "min-max ms", "GFLOP/s", "%peak", "vs dense", "flop x", "workspace", "rss MiB");
  for (di = 0; di < nd; ++di)
    for (kvi = 0; kvi < nkv; ++kvi)
      for (ci = 0; ci < nc; ++ci)
        for (ti = 0; ti < nt; ++ti)
          for (li = 0; li < nL; ++li) {
            int L = Ls[li], d = ds[di], Hkv = kvs[kvi];
            unsigned seed = 1;
            float *q = random_buffer((size_t)L * H * d, &seed), *k = random_buffer((size_t)L * Hkv * d, &seed);
            float *v = random_buffer((size_t)L * Hkv * d, &seed), *o = random_buffer((size_t)L * H * d, &seed);
            void *kt[3], *vt[3];
            const result *dense[3] = {NULL, NULL, NULL};
            int yi;
            for (yi = 0; yi < opt.ntypes; ++yi) {   /* K/V in each type asked for (the same values, rounded) */
              const int type = opt.types[yi];
              const size_t nkv_el = (size_t)L * Hkv * d;
              size_t e;
              kt[yi] = k; vt[yi] = v;
              if (type == COMBINER_F32) continue;
              kt[yi] = malloc(nkv_el * 2); vt[yi] = malloc(nkv_el * 2);
              if (!kt[yi] || !vt[yi]) { fprintf(stderr, "out of memory (half K/V)\n"); exit(1); }
              for (e = 0; e < nkv_el; ++e) {
                ((uint16_t *)kt[yi])[e] = half_of(k[e], type);
                ((uint16_t *)vt[yi])[e] = half_of(v[e], type);
              }
            }
            for (ki = 0; ki < nk * opt.ntypes; ++ki) {   /* each kind in every type, one after the other */
              result *r = &rs[n];
              double peak = threads[ti] > 1 ? peakN : peak1;
              const combiner_kind kind = kinds[ki / opt.ntypes];
              const int yj = ki % opt.ntypes, type = opt.types[yj];
              if (kind == COMBINER_DENSE && L > dense_max) continue;
              *r = run_one(kind, L, causals[ci], d, H, Hkv, threads[ti], reps, type, q, kt[yj], vt[yj], o);
              ++n;
              if (kind == COMBINER_DENSE) dense[type] = r;
              printf("%-8s %6d %3d %3d %2d %2d %4s %6d %10.3f %10.3f-%-10.3f %8.1f %5.0f%% ",
                     combiner_kind_string(r->kind), L, r->causal, d, H, Hkv, type_name(type), r->threads, 1e3 * r->median,
                     1e3 * r->lo, 1e3 * r->hi, r->flops / r->median * 1e-9, 100 * r->flops / r->median * 1e-9 / peak);
              if (dense[type]) printf("%7.1fx %7.1fx ", dense[type]->median / r->median, dense[type]->flops / r->flops);
              else printf("%8s %8s ", "-", "-");
              printf("%11zu %9.1f", r->workspace, r->rss_kib / 1024.0);
              if (type != COMBINER_F32 && ki % opt.ntypes > 0 && r[-(ki % opt.ntypes)].type == COMBINER_F32)
                printf("  %s/f32 time %.2f", type_name(type), r->median / r[-(ki % opt.ntypes)].median);
              printf("\n");
              fflush(stdout);
            }
            for (yi = 0; yi < opt.ntypes; ++yi)
              if (kt[yi] != (void *)k) { free(kt[yi]); free(vt[yi]); }
            free(q); free(k); free(v); free(o);
          }
  snprintf(path, sizeof path, "%s/bench.csv", out_dir);
  csv = fopen(path, "w");
  if (csv) {
    int i;
    fprintf(csv, "kind,L,causal,head_dim,heads,kv_heads,threads,median_s,min_s,max_s,flops,gflops,pct_peak,workspace_bytes,peak_rss_kib,cpu,peak_gflops,kv_type\n");
    for (i = 0; i < n; ++i) {
      double peak = rs[i].threads > 1 ? peakN : peak1;
      fprintf(csv, "%s,%d,%d,%d,%d,%d,%d,%.6g,%.6g,%.6g,%.6g,%.4g,%.4g,%zu,%ld,", combiner_kind_string(rs[i].kind),
              rs[i].L, rs[i].causal, rs[i].d, rs[i].H, rs[i].Hkv, rs[i].threads, rs[i].median, rs[i].lo, rs[i].hi,
              rs[i].flops, rs[i].flops / rs[i].median * 1e-9, 100 * rs[i].flops / rs[i].median * 1e-9 / peak,
              rs[i].workspace, rs[i].rss_kib);
      csv_string(csv, cpu_model());
      fprintf(csv, ",%.4g,%s\n", peak, type_name(rs[i].type));
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
