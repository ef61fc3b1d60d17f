/* Shared test scaffolding: a seeded RNG, strided tensors poisoned with NaN
 * outside the rows the kernels may read, conversion to the float64
 * reference's head-major arrays, and a check counter. Compiles as C99 and
 * C++. Every test program includes this once and ends with TEST_SUMMARY();
 * named variants and the COMBINER_TEST_KINDS filter are below. */
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

static int test_passed TEST_UNUSED = 0, test_failed TEST_UNUSED = 0;

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
 * says which code the checks ran; then test_summary_end (below): the
 * variants COMBINER_TEST_KINDS let run, the counts, the exit status. */
#define TEST_SUMMARY()                                                 \
  (printf("kernels: %s\n", combiner_kernel_name()),                    \
   test_summary_end(test_passed, test_failed))

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

/* The strides of `layout` for rows x heads x width elements (head-major
 * strides count these rows), and the layout as passed in a config
 * (token-major: {0, 0}, the default). */
TEST_HELPER void test_layout_strides(int layout, int rows, int heads, int width, ptrdiff_t *ts, ptrdiff_t *hs,
                                     combiner_layout *lay) {
  lay->token_stride = 0;
  lay->head_stride = 0;
  switch (layout) {
    case LAYOUT_HEAD_MAJOR:
      *ts = width; *hs = (ptrdiff_t)rows * width;
      break;
    case LAYOUT_PADDED:
      *hs = width + 3; *ts = heads * *hs + 5;
      break;
    default:
      *hs = width; *ts = (ptrdiff_t)heads * width;
      return;
  }
  lay->token_stride = *ts;
  lay->head_stride = *hs;
}

TEST_HELPER test_tensor test_tensor_make(int L, int heads, int width, int layout) {
  test_tensor t;
  size_t i;
  memset(&t, 0, sizeof t);
  t.L = L; t.heads = heads; t.width = width;
  test_layout_strides(layout, L, heads, width, &t.ts, &t.hs, &t.lay);
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

/* ------------------------------------------------------------------------ */
/* Named variants and the COMBINER_TEST_KINDS filter                        */
/* ------------------------------------------------------------------------ */

/* Every kind with each option the suites sweep, by name: the kind's name
 * (combiner_kind_string), then "-" and the option where the kind has one.
 * Programs iterate this table by entry (TEST_FOR_EACH_VARIANT) and name the
 * entries they need one by one (test_variant_named). */
typedef struct test_variant {
  const char *name;
  combiner_kind kind;
  combiner_axial_key key;       /* AXIAL's option; WSUM (the default) elsewhere */
  combiner_mixture_norm norm;   /* MIXTURE's option; JOINT (the default) elsewhere */
} test_variant;

static const test_variant test_variants[] TEST_UNUSED = {
  {"fixed", COMBINER_FIXED, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT},
  {"axial-wsum", COMBINER_AXIAL, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT},
  {"axial-self", COMBINER_AXIAL, COMBINER_AXIAL_KEY_SELF, COMBINER_MIXTURE_JOINT},
  {"mixture-joint", COMBINER_MIXTURE, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT},
  {"mixture-average", COMBINER_MIXTURE, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_AVERAGE},
  {"dense", COMBINER_DENSE, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT},
  {"logsparse", COMBINER_LOGSPARSE, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT},
};
#define TEST_NVARIANTS (sizeof test_variants / sizeof test_variants[0])
#define TEST_FOR_EACH_VARIANT(var) \
  for ((var) = test_variants; (var) < test_variants + TEST_NVARIANTS; ++(var))

/* The entry's place in the table, for programs that rotate shapes by it. */
TEST_HELPER size_t test_variant_index(const test_variant *var) { return (size_t)(var - test_variants); }

/* The entry of that name, or NULL. */
TEST_HELPER const test_variant *test_variant_find(const char *name) {
  const test_variant *var;
  TEST_FOR_EACH_VARIANT(var)
    if (!strcmp(var->name, name)) return var;
  return NULL;
}

/* The entry of that name; an unknown name is a bug in the test. */
TEST_HELPER const test_variant *test_variant_named(const char *name) {
  const test_variant *var = test_variant_find(name);
  if (var) return var;
  fprintf(stderr, "test bug: no variant named \"%s\" in test_variants\n", name);
  exit(2);
}

/* The name of a kind (COMBINER_KIND_DEFAULT: the kind it stands for). */
TEST_HELPER const char *test_kind_name(combiner_kind kind) {
  if (kind == COMBINER_KIND_DEFAULT) {
#ifdef COMBINER_DEFAULT_KIND
    kind = COMBINER_DEFAULT_KIND;
#else
    kind = COMBINER_AXIAL;
#endif
  }
  switch (kind) {
    case COMBINER_FIXED: return "fixed";
    case COMBINER_AXIAL: return "axial";
    case COMBINER_MIXTURE: return "mixture";
    case COMBINER_DENSE: return "dense";
    case COMBINER_LOGSPARSE: return "logsparse";
    default: return "unknown";
  }
}

/* The entry a config runs: its kind with the option that kind reads (the
 * other kinds' options do not matter); COMBINER_KIND_DEFAULT resolved. */
TEST_HELPER const test_variant *test_variant_of(const combiner_config *cfg) {
  const char *kind = test_kind_name(cfg->kind);
  const test_variant *var;
  TEST_FOR_EACH_VARIANT(var) {
    if (strcmp(kind, test_kind_name(var->kind))) continue;
    if (var->kind == COMBINER_AXIAL && var->key != cfg->axial_key) continue;
    if (var->kind == COMBINER_MIXTURE && var->norm != cfg->mixture_norm) continue;
    return var;
  }
  fprintf(stderr, "test bug: no variant for kind %d, axial key %d, mixture norm %d\n", (int)cfg->kind,
          (int)cfg->axial_key, (int)cfg->mixture_norm);
  exit(2);
}

/* COMBINER_TEST_KINDS: comma-separated variant names ("axial-self") or kind
 * names ("mixture": every variant of that kind). Unset or empty: everything
 * runs. Set, a program runs only what belongs to a selected variant:
 *   - a variant's checks when it is selected (test_variant_selected; a
 *     config not taken from the table: test_config_selected);
 *   - checks of a kind as a whole, whatever its options (support maps, say),
 *     when any variant of the kind is (test_kind_selected);
 *   - checks that belong to no variant (bad arguments, status strings) not
 *     at all (test_unfiltered).
 * TEST_SUMMARY then says which variants ran, or that none of this program's
 * did ("0 passed, 0 failed", exit 0). An unknown name stops the program. */
enum { TEST_FILTER_MAX = 32 };

typedef struct test_filter_state {
  int parsed, active, skipped;          /* skipped: checks of no variant */
  char spec[256], words[256];           /* the variable; its words, each NUL-terminated */
  const char *tok[TEST_FILTER_MAX];
  const char *ran[TEST_FILTER_MAX];     /* names selected so far, in order */
  int ntok, nran;
} test_filter_state;

static test_filter_state test_filter_st TEST_UNUSED;

/* "axial-self" and "axial" both have the kind part "axial" */
TEST_HELPER size_t test_kind_part(const char *name) { return strcspn(name, "-"); }

/* word `w` selects the variant, kind or other named check `name`: the same
 * name, w is name's kind, or name is w's kind (a kind-level check) */
TEST_HELPER int test_word_selects(const char *w, const char *name) {
  size_t lw = strlen(w), ln = strlen(name);
  return !strcmp(w, name) || (lw == test_kind_part(name) && !strncmp(w, name, lw)) ||
         (ln == test_kind_part(w) && !strncmp(w, name, ln));
}

TEST_HELPER test_filter_state *test_filter(void) {
  test_filter_state *f = &test_filter_st;
  const char *env;
  char *s;
  if (f->parsed) return f;
  f->parsed = 1;
  env = getenv("COMBINER_TEST_KINDS");
  if (!env) return f;
  if (strlen(env) >= sizeof f->spec) {
    fprintf(stderr, "COMBINER_TEST_KINDS is longer than %d characters\n", (int)sizeof f->spec - 1);
    exit(2);
  }
  memcpy(f->spec, env, strlen(env) + 1);
  memcpy(f->words, env, strlen(env) + 1);
  for (s = f->words; *(s += strspn(s, ", ")) != '\0';) {
    char *end = s + strcspn(s, ", ");
    const test_variant *var;
    int known = 0;
    if (*end) *end++ = '\0';
    TEST_FOR_EACH_VARIANT(var)
      known |= !strcmp(s, var->name) || !strcmp(s, test_kind_name(var->kind));
    if (!known || f->ntok == TEST_FILTER_MAX) {
      fprintf(stderr, "COMBINER_TEST_KINDS=%s: %s \"%s\"; variants:", f->spec,
              known ? "too many words at" : "unknown name", s);
      TEST_FOR_EACH_VARIANT(var) fprintf(stderr, "%s %s", var == test_variants ? "" : ",", var->name);
      fprintf(stderr, "; kinds: fixed, axial, mixture, dense, logsparse\n");
      exit(2);
    }
    f->tok[f->ntok++] = s;
    s = end;
  }
  f->active = f->ntok > 0;
  return f;
}

/* Whether the checks named `name` run (a variant's name, a kind's name, or
 * a name of the same form for a program's own variants); records it. */
TEST_HELPER int test_name_selected(const char *name) {
  test_filter_state *f = test_filter();
  int i, j;
  if (!f->active) return 1;
  for (i = 0; i < f->ntok; ++i)
    if (test_word_selects(f->tok[i], name)) {
      for (j = 0; j < f->nran && strcmp(f->ran[j], name); ++j) {}
      if (j == f->nran && f->nran < TEST_FILTER_MAX) f->ran[f->nran++] = name;
      return 1;
    }
  return 0;
}

TEST_HELPER int test_variant_selected(const test_variant *var) { return test_name_selected(var->name); }

TEST_HELPER int test_config_selected(const combiner_config *cfg) {
  return test_variant_selected(test_variant_of(cfg));
}

TEST_HELPER int test_kind_selected(combiner_kind kind) { return test_name_selected(test_kind_name(kind)); }

/* Checks that belong to no variant: they run when no filter is set. */
/* COMBINER_TEST_QUICK=1 (make test-arm, under emulation): the heaviest
 * sweeps keep every third case from the longest lengths on; every kernel
 * path, kind, direction and pool still runs. Unset: everything. */
TEST_HELPER int test_quick(void) {
  const char *q = getenv("COMBINER_TEST_QUICK");
  return q && *q && strcmp(q, "0") != 0;
}

/* Whether case n of a sweep at length L runs in quick mode. */
TEST_HELPER int test_quick_keeps(int L, unsigned n) {
  return !test_quick() || L < 61 || n % 3 == 0;
}

TEST_HELPER int test_unfiltered(void) {
  test_filter_state *f = test_filter();
  if (f->active) f->skipped = 1;
  return !f->active;
}

/* The end of every program: which variants ran when a filter is set, the
 * counts, and the exit status. Nothing checked is a failure, except when
 * the filter selects nothing this program covers. */
TEST_HELPER int test_summary_end(int passed, int failed) {
  test_filter_state *f = test_filter();
  const int none = f->active && f->nran == 0;
  if (none) printf("no variant of this program matches COMBINER_TEST_KINDS=%s\n", f->spec);
  if (f->active && !none) {
    const test_variant *var;
    int i, n = 0;
    printf("COMBINER_TEST_KINDS=%s: ran", f->spec);
    TEST_FOR_EACH_VARIANT(var)   /* in the table's order */
      for (i = 0; i < f->nran; ++i)
        if (!strcmp(f->ran[i], var->name)) printf("%s %s", n++ ? "," : "", var->name);
    for (i = 0; i < f->nran; ++i)   /* a program's own variants ("axial-caller") */
      if (!test_variant_find(f->ran[i]) && strchr(f->ran[i], '-')) printf("%s %s", n++ ? "," : "", f->ran[i]);
    for (i = 0, n = 0; i < f->nran; ++i)   /* checks of a whole kind ("axial") */
      if (!test_variant_find(f->ran[i]) && !strchr(f->ran[i], '-'))
        printf("%s %s", n++ ? "," : "; checks of the whole kind:", f->ran[i]);
    printf("%s\n", f->skipped ? "; checks of no variant skipped" : "");
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : passed ? 0 : none ? 0 : 1;
}

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
