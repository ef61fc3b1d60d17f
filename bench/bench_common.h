/* Helpers shared by the bench programs (combiner_bench.c, peer_openblas.c):
 * the clock, the list flags, the median's comparison and the input data,
 * so that every program times the same inputs the same way. Each program
 * defines _POSIX_C_SOURCE (clock_gettime) before including it. */
#ifndef COMBINER_BENCH_COMMON_H
#define COMBINER_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAXV 16   /* values per list flag (--L 1024,2048,...) */

/* the kernels this build of combiner.h runs (its own selection rule) */
static const char *simd_name(void) {
#if defined(COMBINER_NO_SIMD)
  return "portable C kernels (COMBINER_NO_SIMD)";
#elif defined(__AVX512F__)
  return "AVX-512 kernels";
#elif defined(__AVX2__) && defined(__FMA__)
  return "AVX2+FMA kernels";
#else
  return "portable C kernels";
#endif
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* "1024,2048" -> {1024, 2048}; returns the count (at most MAXV) */
static int parse_list(const char *s, int *out) {
  int n = 0;
  while (*s && n < MAXV) {
    out[n++] = atoi(s);
    while (*s && *s != ',') ++s;
    if (*s == ',') ++s;
  }
  return n;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* n floats uniform in [-1, 1) from a 32-bit LCG: the same data in every
 * program for the same seed */
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

#endif
