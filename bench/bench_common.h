/* Helpers shared by the bench programs (combiner_bench.c, peer_openblas.c):
 * the clock, the list flags, the median's comparison, the input data, the
 * CPU model and the compiler, so that every program times the same inputs
 * the same way and says where it ran. Each program defines _POSIX_C_SOURCE
 * (clock_gettime) before including it. */
#ifndef COMBINER_BENCH_COMMON_H
#define COMBINER_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAXV 16   /* values per list flag (--L 1024,2048,...) */

/* The machine and the build, for the results' headers and CSV rows. The
 * kernels are combiner_kernel_name()'s: each program defines
 * COMBINER_IMPLEMENTATION itself, so it names the kernels this build runs. */

/* the compiler that built this program, e.g. "gcc 12.2.0", "clang 14.0.6" */
static const char *compiler_name(void) {
#if defined(__cplusplus)
#  define BENCH_LANG " (C++)"
#else
#  define BENCH_LANG ""
#endif
#if defined(__INTEL_LLVM_COMPILER) && defined(__VERSION__)
  return __VERSION__ BENCH_LANG;
#elif defined(__clang__)
#  define BENCH_STR(x) #x
#  define BENCH_XSTR(x) BENCH_STR(x)
  return "clang " BENCH_XSTR(__clang_major__) "." BENCH_XSTR(__clang_minor__) "." BENCH_XSTR(__clang_patchlevel__)
         BENCH_LANG;
#  undef BENCH_XSTR
#  undef BENCH_STR
#elif defined(__GNUC__) && defined(__VERSION__)
  return "gcc " __VERSION__ BENCH_LANG;
#elif defined(__VERSION__)
  return __VERSION__ BENCH_LANG;
#else
  return "unknown compiler" BENCH_LANG;
#endif
#undef BENCH_LANG
}

/* the CPU's model name: on Linux the first "model name" line of
 * /proc/cpuinfo (x86 kernels write one; others may not), else "unknown CPU" */
static const char *cpu_model(void) {
  static char model[128];
  if (!model[0]) {
#if defined(__linux__)
    char line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
      while (fgets(line, sizeof line, f)) {
        char *b, *e;
        size_t len;
        if (strncmp(line, "model name", 10) != 0 || (b = strchr(line, ':')) == NULL) continue;
        for (++b; *b == ' ' || *b == '\t'; ++b) {}
        for (e = b + strlen(b); e > b && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'); --e) {}
        len = (size_t)(e - b) < sizeof model - 1 ? (size_t)(e - b) : sizeof model - 1;
        memcpy(model, b, len);
        model[len] = 0;
        break;
      }
      fclose(f);
    }
#endif
    if (!model[0]) strcpy(model, "unknown CPU");
  }
  return model;
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
