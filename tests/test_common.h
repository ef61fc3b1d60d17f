/* Shared test scaffolding: a seeded RNG, strided tensors poisoned with NaN
 * outside the rows the kernels may read, conversion to the float64
 * reference's head-major arrays, and a check counter. Compiles as C99 and
 * C++. Every test program includes this once and ends with TEST_SUMMARY(). */
#ifndef COMBINER_TEST_COMMON_H
#define COMBINER_TEST_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "combiner.h"
#include "reference.h"

#if defined(__GNUC__) || defined(__clang__)
#  define TEST_HELPER static __attribute__((unused))
#  define TEST_UNUSED __attribute__((unused))
#else
#  define TEST_HELPER static
#  define TEST_UNUSED
#endif

static int test_passed = 0, test_failed = 0;

#define CHECK(cond, ...)                                               \
  do {                                                                 \
    if (cond) {                                                        \
      ++test_passed;                                                   \
    } else {                                                           \
      ++test_failed;                                                   \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);  \
      fprintf(stderr, __VA_ARGS__);                                    \
      fputc('\n', stderr);                                             \
    }                                                                  \
  } while (0)

/* The kernel path first (AVX-512, AVX2+FMA or portable C), so that a log
 * says which code the checks ran. */
#define TEST_SUMMARY()                                                 \
  (printf("kernels: %s\n", combiner_kernel_name()),                    \
   printf("%d passed, %d failed\n", test_passed, test_failed),         \
   (test_failed || !test_passed) ? 1 : 0)

/* float32 kernels against a float64 evaluation: inf-norm relative error. */
#define TEST_TOLERANCE 1e-5

typedef struct test_rng { uint64_t s; } test_rng;

TEST_HELPER uint32_t test_rng_u32(test_rng *r) {
  r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
  return (uint32_t)(r->s >> 33);
}

/* uniform in [-1, 1] */
TEST_HELPER float test_rng_float(test_rng *r) {
  return (float)((double)test_rng_u32(r) / 2147483647.5 - 1.0);
}

TEST_HELPER void *test_alloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) { fprintf(stderr, "out of memory\n"); exit(2); }
  return p;
}

TEST_HELPER combiner_config test_config(combiner_kind kind, int L, int d, int H, int Hkv, int block,
                                   int causal) {
  combiner_config c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  c.seq_len = L;
  c.head_dim = d;
  c.num_heads = H;
  c.num_kv_heads = Hkv;
  c.block = block;
  c.causal = causal;
  return c;
}

/* Layouts the suite exercises. */
enum { LAYOUT_TOKEN_MAJOR = 0, LAYOUT_HEAD_MAJOR = 1, LAYOUT_PADDED = 2, LAYOUT_COUNT = 3 };
static const char *const layout_names[LAYOUT_COUNT] = {"token-major", "head-major", "padded"};

/* A strided tensor [L][heads][width] inside a buffer whose unused floats are
 * NaN: a kernel that reads anything it should not turns the output NaN. */
typedef struct test_tensor {
  float *data;
  size_t floats;
  int L, heads, width;
  combiner_layout lay;     /* as passed in the config (0 = default) */
  ptrdiff_t ts, hs;        /* resolved */
} test_tensor;

TEST_HELPER test_tensor test_tensor_make(int L, int heads, int width, int layout) {
  test_tensor t;
  size_t i;
  memset(&t, 0, sizeof t);
  t.L = L; t.heads = heads; t.width = width;
  switch (layout) {
    case LAYOUT_HEAD_MAJOR:
      t.ts = width; t.hs = (ptrdiff_t)L * width;
      t.lay.token_stride = t.ts; t.lay.head_stride = t.hs;
      break;
    case LAYOUT_PADDED:
      t.hs = width + 3; t.ts = heads * t.hs + 5;
      t.lay.token_stride = t.ts; t.lay.head_stride = t.hs;
      break;
    default:
      t.hs = width; t.ts = (ptrdiff_t)heads * width;   /* lay stays {0, 0} */
      break;
  }
  t.floats = (size_t)((L - 1) * t.ts + (heads - 1) * t.hs + width) + 7;
  t.data = (float *)test_alloc(t.floats * sizeof(float));
  for (i = 0; i < t.floats; ++i) t.data[i] = NAN;
  return t;
}

TEST_HELPER float *test_at(const test_tensor *t, int i, int h) {
  return t->data + (ptrdiff_t)i * t->ts + (ptrdiff_t)h * t->hs;
}

TEST_HELPER void test_tensor_fill(test_tensor *t, test_rng *r) {
  int i, h, x;
  for (i = 0; i < t->L; ++i)
    for (h = 0; h < t->heads; ++h)
      for (x = 0; x < t->width; ++x) test_at(t, i, h)[x] = test_rng_float(r);
}

TEST_HELPER void test_tensor_free(test_tensor *t) { free(t->data); t->data = NULL; }

/* head-major float64 copy: out[(h*L + i)*width + x] */
TEST_HELPER double *test_to_double(const test_tensor *t) {
  double *o = (double *)test_alloc(sizeof(double) * (size_t)t->L * t->heads * t->width);
  int i, h, x;
  for (h = 0; h < t->heads; ++h)
    for (i = 0; i < t->L; ++i)
      for (x = 0; x < t->width; ++x)
        o[((size_t)h * t->L + i) * t->width + x] = test_at(t, i, h)[x];
  return o;
}

/* Positions [0, npos) of two outputs of the same shape are bit-identical
 * (for every head): the thread-count, two-phase and causality checks. */
TEST_HELPER int test_same_rows(const test_tensor *a, const test_tensor *b, int npos) {
  int i, h;
  for (i = 0; i < npos; ++i)
    for (h = 0; h < a->heads; ++h)
      if (memcmp(test_at(a, i, h), test_at(b, i, h), sizeof(float) * (size_t)a->width)) return 0;
  return 1;
}

/* inf-norm relative error of a kernel output against the reference */
TEST_HELPER double test_rel_error(const test_tensor *out, const double *ref) {
  double err = 0.0, mag = 0.0;
  int i, h, x;
  for (h = 0; h < out->heads; ++h)
    for (i = 0; i < out->L; ++i)
      for (x = 0; x < out->width; ++x) {
        double r = ref[((size_t)h * out->L + i) * out->width + x];
        double a = test_at(out, i, h)[x];
        double e = fabs(a - r);
        if (e != e) e = INFINITY;
        if (e > err) err = e;
        if (fabs(r) > mag) mag = fabs(r);
      }
  return mag > 0.0 ? err / mag : err;
}

/* Every kind and option the suites sweep. */
typedef struct variant {
  combiner_kind kind;
  combiner_axial_key key;
  combiner_mixture_norm norm;
  const char *name;
} variant;

static const variant variants[] TEST_UNUSED = {
  {COMBINER_FIXED, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, "fixed"},
  {COMBINER_AXIAL, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, "axial-wsum"},
  {COMBINER_AXIAL, COMBINER_AXIAL_KEY_SELF, COMBINER_MIXTURE_JOINT, "axial-self"},
  {COMBINER_MIXTURE, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, "mixture-joint"},
  {COMBINER_MIXTURE, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_AVERAGE, "mixture-average"},
  {COMBINER_DENSE, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, "dense"},
  {COMBINER_LOGSPARSE, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, "logsparse"},
};
#define NVARIANTS (sizeof variants / sizeof variants[0])

/* Maps a library config to the reference's problem, resolving the defaults
 * here from the API contract (not from the library, so a wrong default in
 * the library shows up as a mismatch). */
TEST_HELPER ref_problem test_ref_problem(const combiner_config *cfg) {
  ref_problem p;
  int m = 1;
  memset(&p, 0, sizeof p);
  while ((long long)m * m < cfg->seq_len) ++m;                  /* ceil(sqrt(L)) */
  p.kind = cfg->kind == COMBINER_FIXED ? REF_FIXED : cfg->kind == COMBINER_AXIAL ? REF_AXIAL
         : cfg->kind == COMBINER_MIXTURE ? REF_MIXTURE : cfg->kind == COMBINER_DENSE ? REF_DENSE
         : cfg->kind == COMBINER_LOGSPARSE ? REF_LOGSPARSE
         : REF_AXIAL;                                          /* COMBINER_KIND_DEFAULT */
  p.L = cfg->seq_len; p.d = cfg->head_dim; p.dv = cfg->value_dim ? cfg->value_dim : cfg->head_dim;
  p.H = cfg->num_heads; p.Hkv = cfg->num_kv_heads ? cfg->num_kv_heads : cfg->num_heads;
  p.m = cfg->block ? cfg->block : m;
  p.causal = cfg->causal != 0;
  p.scale = cfg->scale != 0.0f ? (double)cfg->scale : 1.0 / sqrt((double)cfg->head_dim);
  p.pool = cfg->pool == COMBINER_POOL_MEAN ? REF_POOL_MEAN : REF_POOL_MAX;
  p.axial_key = cfg->axial_key == COMBINER_AXIAL_KEY_SELF ? REF_KEY_SELF : REF_KEY_WSUM;
  p.mixture_norm = cfg->mixture_norm == COMBINER_MIXTURE_AVERAGE ? REF_MIX_AVERAGE : REF_MIX_JOINT;
  p.caller_keys = NULL;
  return p;
}

#endif
