/* combiner demo: runs every factorization on a generated input and prints
 *   - time at L = 2048 (8 heads, 2 kv heads, d = 64, causal) and the speed-up
 *     over exact dense attention measured in the same run;
 *   - the largest relative error against a float64 evaluation of SPEC.md
 *     (tests/reference.c) at L = 300, causal and bidirectional;
 *   - whether every query reaches every position it may attend (the effective
 *     attention matrix, built with one-hot values, is > 0 on the whole
 *     attended set and its rows sum to 1).
 * Exit status is nonzero if an error is above 1e-5 or attention is not full. */
#define _POSIX_C_SOURCE 199309L
#define COMBINER_IMPLEMENTATION
#include "combiner.h"
#include "reference.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *random_floats(size_t n, unsigned *seed) {
  float *p = (float *)malloc(n * sizeof(float));
  size_t i;
  if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
  for (i = 0; i < n; ++i) {
    *seed = *seed * 1664525u + 1013904223u;
    p[i] = (float)((*seed >> 8) * (2.0 / 16777216.0) - 1.0);
  }
  return p;
}

static combiner_config make_config(combiner_kind kind, int L, int H, int Hkv, int d, int causal) {
  combiner_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.kind = kind;
  cfg.seq_len = L;
  cfg.head_dim = d;
  cfg.num_heads = H;
  cfg.num_kv_heads = Hkv;
  cfg.causal = causal;
  return cfg;
}

/* best of `reps` calls, in seconds */
static double time_kind(combiner_kind kind, int L, int H, int Hkv, int d, int reps) {
  unsigned seed = 1;
  combiner_config cfg = make_config(kind, L, H, Hkv, d, 1);
  float *q = random_floats((size_t)L * H * d, &seed), *k = random_floats((size_t)L * Hkv * d, &seed);
  float *v = random_floats((size_t)L * Hkv * d, &seed), *o = random_floats((size_t)L * H * d, &seed);
  size_t ws = combiner_workspace_size(&cfg);
  void *work = malloc(ws);
  double best = 1e30;
  int r;
  for (r = 0; r < reps; ++r) {
    double t0 = now_seconds();
    if (combiner_attention(&cfg, q, k, v, o, work, ws) != COMBINER_OK) { fprintf(stderr, "call failed\n"); exit(1); }
    t0 = now_seconds() - t0;
    if (t0 < best) best = t0;
  }
  free(q); free(k); free(v); free(o); free(work);
  return best;
}

/* max over causal/bidirectional of the inf-norm relative error vs float64 */
static double error_vs_float64(combiner_kind kind, int L, int H, int Hkv, int d) {
  double worst = 0.0;
  int causal;
  for (causal = 0; causal < 2; ++causal) {
    unsigned seed = 7;
    combiner_config cfg = make_config(kind, L, H, Hkv, d, causal), r;
    size_t nq = (size_t)L * H * d, nk = (size_t)L * Hkv * d;
    float *q = random_floats(nq, &seed), *k = random_floats(nk, &seed), *v = random_floats(nk, &seed);
    float *o = random_floats(nq, &seed);
    double *qd = (double *)malloc(nq * sizeof(double)), *kd = (double *)malloc(nk * sizeof(double));
    double *vd = (double *)malloc(nk * sizeof(double)), *od = (double *)malloc(nq * sizeof(double));
    double err = 0.0, mag = 0.0;
    ref_problem p;
    int h, t, x;
    if (combiner_attention(&cfg, q, k, v, o, NULL, 0) != COMBINER_OK ||
        combiner_resolve_config(&cfg, &r) != COMBINER_OK) return INFINITY;
    /* token-major float32 -> head-major float64 */
    for (t = 0; t < L; ++t)
      for (h = 0; h < H; ++h)
        for (x = 0; x < d; ++x) {
          qd[((size_t)h * L + t) * d + x] = q[((size_t)t * H + h) * d + x];
          if (h < Hkv) {
            kd[((size_t)h * L + t) * d + x] = k[((size_t)t * Hkv + h) * d + x];
            vd[((size_t)h * L + t) * d + x] = v[((size_t)t * Hkv + h) * d + x];
          }
        }
    memset(&p, 0, sizeof p);
    p.kind = kind == COMBINER_FIXED ? REF_FIXED : kind == COMBINER_AXIAL ? REF_AXIAL
           : kind == COMBINER_MIXTURE ? REF_MIXTURE : kind == COMBINER_LOGSPARSE ? REF_LOGSPARSE : REF_DENSE;
    p.L = L; p.d = d; p.dv = d; p.H = H; p.Hkv = Hkv; p.m = r.block; p.causal = causal;
    p.scale = r.scale;
    ref_attention(&p, qd, kd, vd, od);
    for (t = 0; t < L; ++t)
      for (h = 0; h < H; ++h)
        for (x = 0; x < d; ++x) {
          double a = o[((size_t)t * H + h) * d + x], b = od[((size_t)h * L + t) * d + x];
          if (fabs(a - b) > err || a != a) err = a != a ? INFINITY : fabs(a - b);
          if (fabs(b) > mag) mag = fabs(b);
        }
    err /= mag;
    if (err > worst) worst = err;
    free(q); free(k); free(v); free(o); free(qd); free(kd); free(vd); free(od);
  }
  return worst;
}

/* effective matrix with one-hot values: full attention, both directions */
static int full_attention(combiner_kind kind, int L) {
  int ok = 1, causal, i, j;
  for (causal = 0; causal < 2; ++causal) {
    unsigned seed = 3;
    combiner_config cfg = make_config(kind, L, 1, 1, 8, causal);
    float *q = random_floats((size_t)L * 8, &seed), *k = random_floats((size_t)L * 8, &seed);
    float *v = (float *)calloc((size_t)L * L, sizeof(float)), *a = (float *)malloc((size_t)L * L * sizeof(float));
    cfg.value_dim = L;
    for (j = 0; j < L; ++j) v[(size_t)j * L + j] = 1.0f;
    combiner_attention(&cfg, q, k, v, a, NULL, 0);
    for (i = 0; i < L; ++i) {
      double sum = 0.0;
      for (j = 0; j < L; ++j) {
        float x = a[(size_t)i * L + j];
        sum += x;
        if (causal && j > i) ok &= x == 0.0f;
        else ok &= x > 0.0f;
      }
      ok &= fabs(sum - 1.0) < 1e-5;
    }
    free(q); free(k); free(v); free(a);
  }
  return ok;
}

int main(void) {
  static const combiner_kind kinds[] = {COMBINER_DENSE, COMBINER_FIXED, COMBINER_AXIAL, COMBINER_MIXTURE,
                                        COMBINER_LOGSPARSE};
  const int L = 2048, H = 8, Hkv = 2, d = 64;
  double dense_time = 0.0;
  int failed = 0;
  size_t i;
  combiner_config probe = make_config(COMBINER_FIXED, L, H, Hkv, d, 1), r;
  if (combiner_resolve_config(&probe, &r) != COMBINER_OK) return 1;
  printf("combiner.h %d.%d.%d demo: L=%d, %d heads (%d kv), head_dim=%d, causal, block=%d, %d thread(s)\n\n",
         COMBINER_VERSION_MAJOR, COMBINER_VERSION_MINOR, COMBINER_VERSION_PATCH, L, H, Hkv, d,
         r.block, r.num_threads);
  printf("%-8s %12s %10s %22s %15s\n", "kind", "time (ms)", "speed-up", "max rel err vs f64", "full attention");
  for (i = 0; i < sizeof kinds / sizeof kinds[0]; ++i) {
    double t = time_kind(kinds[i], L, H, Hkv, d, 3);
    double err = error_vs_float64(kinds[i], 300, 2, 1, 16);
    int full = full_attention(kinds[i], 77);
    if (kinds[i] == COMBINER_DENSE) dense_time = t;
    printf("%-8s %12.2f %9.1fx %22.2e %15s\n", combiner_kind_string(kinds[i]), 1e3 * t,
           dense_time / t, err, full ? "yes" : "NO");
    failed |= !(err <= 1e-5) || !full;
  }
  printf("\nerror: L=300, 2 heads (1 kv), d=16, causal and bidirectional, vs float64 SPEC evaluation\n");
  printf("full attention: L=77, every attended entry of the effective matrix > 0, rows sum to 1\n");
  return failed;
}
