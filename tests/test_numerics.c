/* Numerics (hardening): huge logits stay finite and correct; NaN/Inf in one
 * position reaches only the outputs that attend it; tiny inputs (whose
 * products are denormal) stay correct; the caller's floating-point control
 * state survives a call. */
#define COMBINER_IMPLEMENTATION
#include "test_common.h"
#include <float.h>
#if defined(__SSE__) && !defined(COMBINER_KEEP_DENORMALS)
#  include <xmmintrin.h>
#endif


typedef struct problem {
  combiner_config cfg;
  test_tensor q, k, v, o;
} problem;

static problem make(const test_variant *var, int L, int block, int causal, int pool) {
  problem p;
  const int d = 4, H = 2, Hkv = 1;
  p.cfg = test_config(var->kind, L, d, H, Hkv, block, causal);
  p.cfg.mixture_norm = var->norm;
  p.cfg.axial_key = var->key;
  p.cfg.pool = (combiner_pool)pool;
  p.q = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
  p.k = test_tensor_make(L, Hkv, d, LAYOUT_TOKEN_MAJOR);
  p.v = test_tensor_make(L, Hkv, d, LAYOUT_TOKEN_MAJOR);
  p.o = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
  return p;
}

static void scale_tensor(test_tensor *t, float s) {
  int i, h, x;
  for (i = 0; i < t->L; ++i)
    for (h = 0; h < t->heads; ++h)
      for (x = 0; x < t->width; ++x) test_at(t, i, h)[x] *= s;
}

static void release(problem *p) {
  test_tensor_free(&p->q); test_tensor_free(&p->k); test_tensor_free(&p->v); test_tensor_free(&p->o);
}

static double error_vs_reference(problem *p) {
  ref_problem rp = test_ref_problem(&p->cfg);
  double *qd = test_to_double(&p->q), *kd = test_to_double(&p->k), *vd = test_to_double(&p->v);
  double *ref = (double *)test_alloc(sizeof(double) * (size_t)p->o.L * p->o.heads * p->o.width);
  double err;
  ref_attention(&rp, qd, kd, vd, ref);
  err = test_rel_error(&p->o, ref);
  free(qd); free(kd); free(vd); free(ref);
  return err;
}

static int all_finite(const test_tensor *t) {
  int i, h, x;
  for (i = 0; i < t->L; ++i)
    for (h = 0; h < t->heads; ++h)
      for (x = 0; x < t->width; ++x)
        if (!(fabsf(test_at(t, i, h)[x]) <= FLT_MAX)) return 0;
  return 1;
}

/* Logits around +-1e30: the softmax is max-subtracted, so nothing overflows;
 * the output is (nearly) the value of the winning term. */
static void huge_logits(const test_variant *var, int L, int block, int causal, int pool, test_rng *rng) {
  problem p = make(var, L, block, causal, pool);
  combiner_status st;
  double err;
  test_tensor_fill(&p.q, rng); test_tensor_fill(&p.k, rng); test_tensor_fill(&p.v, rng);
  p.cfg.scale = 1e30f;
  st = combiner_attention(&p.cfg, p.q.data, p.k.data, p.v.data, p.o.data, NULL, 0);
  CHECK(st == COMBINER_OK, "%s", combiner_status_string(st));
  CHECK(all_finite(&p.o), "%s causal=%d L=%d block=%d: non-finite output at logits ~1e30",
        var->name, causal, L, block);
  err = error_vs_reference(&p);
  CHECK(err <= TEST_TOLERANCE, "%s causal=%d L=%d block=%d pool=%d: scale 1e30 rel err %.3g",
        var->name, causal, L, block, pool, err);
  release(&p);
}

/* q, k ~ 1e-20: every product q*k is denormal (flushed), logits are ~0 and
 * attention is uniform over each set; v stays normal, so the output is exact
 * to float precision. v ~ 1e-30 checks small (normal) outputs keep their
 * relative precision. */
static void tiny_inputs(const test_variant *var, int L, int block, int causal, test_rng *rng) {
  problem p = make(var, L, block, causal, 0);
  double err;
  test_tensor_fill(&p.q, rng); test_tensor_fill(&p.k, rng); test_tensor_fill(&p.v, rng);
  scale_tensor(&p.q, 1e-20f);
  scale_tensor(&p.k, 1e-20f);
  CHECK(combiner_attention(&p.cfg, p.q.data, p.k.data, p.v.data, p.o.data, NULL, 0) == COMBINER_OK, "run");
  err = error_vs_reference(&p);
  CHECK(err <= TEST_TOLERANCE, "%s causal=%d L=%d: q,k ~1e-20 rel err %.3g",
        var->name, causal, L, err);
  scale_tensor(&p.v, 1e-30f);
  CHECK(combiner_attention(&p.cfg, p.q.data, p.k.data, p.v.data, p.o.data, NULL, 0) == COMBINER_OK, "run");
  err = error_vs_reference(&p);
  CHECK(err <= TEST_TOLERANCE, "%s causal=%d L=%d: v ~1e-30 rel err %.3g",
        var->name, causal, L, err);
  release(&p);
}

/* A NaN or Inf in q, k or v at position j (causal): outputs before j are
 * bit-identical to the clean run; bidirectional calls must not crash. */
static void poison_isolation(const test_variant *var, int L, int block, float bad, int which,
                             test_rng *rng) {
  problem p = make(var, L, block, 1, 0);
  test_tensor clean = test_tensor_make(L, 2, 4, LAYOUT_TOKEN_MAJOR);
  int j = (int)(test_rng_u32(rng) % (unsigned)L);
  test_tensor *target = which == 0 ? &p.q : which == 1 ? &p.k : &p.v;
  test_tensor_fill(&p.q, rng); test_tensor_fill(&p.k, rng); test_tensor_fill(&p.v, rng);
  CHECK(combiner_attention(&p.cfg, p.q.data, p.k.data, p.v.data, clean.data, NULL, 0) == COMBINER_OK, "clean");
  test_at(target, j, 0)[1] = bad;
  CHECK(combiner_attention(&p.cfg, p.q.data, p.k.data, p.v.data, p.o.data, NULL, 0) == COMBINER_OK, "poisoned");
  CHECK(test_same_rows(&clean, &p.o, j), "%s L=%d block=%d: %g in %c at %d leaked into earlier outputs",
        var->name, L, block, (double)bad, "qkv"[which], j);
  p.cfg.causal = 0;
  CHECK(combiner_attention(&p.cfg, p.q.data, p.k.data, p.v.data, p.o.data, NULL, 0) == COMBINER_OK,
        "bidirectional with %g", (double)bad);
  test_tensor_free(&clean);
  release(&p);
}

/* The call restores the caller's MXCSR (it flushes denormals only inside). */
static void control_state(void) {
#if defined(__SSE__) && !defined(COMBINER_KEEP_DENORMALS)
  const test_variant *var = test_variant_named("axial-wsum");
  problem p;
  test_rng rng = {3};
  unsigned before, after;
  if (!test_variant_selected(var)) return;
  p = make(var, 30, 0, 1, 0);
  test_tensor_fill(&p.q, &rng); test_tensor_fill(&p.k, &rng); test_tensor_fill(&p.v, &rng);
  before = _mm_getcsr();
  CHECK(combiner_attention(&p.cfg, p.q.data, p.k.data, p.v.data, p.o.data, NULL, 0) == COMBINER_OK, "run");
  after = _mm_getcsr();
  CHECK((before & 0xFFC0u) == (after & 0xFFC0u), "MXCSR control bits changed: %#x -> %#x", before, after);
  release(&p);
#endif
}

int main(void) {
  static const int lengths[] = {1, 7, 16, 61};
  static const float bad[] = {NAN, INFINITY, -INFINITY};
  test_rng rng = {2024};
  const test_variant *var;
  size_t li, bi;
  int causal, which, pool;
  TEST_FOR_EACH_VARIANT(var)
    if (test_variant_selected(var))
      for (li = 0; li < 4; ++li)
        for (causal = 0; causal < 2; ++causal) {
          for (pool = 0; pool < 2; ++pool) {
            huge_logits(var, lengths[li], 3, causal, pool, &rng);
            huge_logits(var, lengths[li], 0, causal, pool, &rng);
          }
          tiny_inputs(var, lengths[li], 0, causal, &rng);
        }
  TEST_FOR_EACH_VARIANT(var)
    if (test_variant_selected(var))
      for (li = 0; li < 4; ++li)
        for (bi = 0; bi < 3; ++bi)
          for (which = 0; which < 3; ++which)   /* the poisoned input: q, k or v */
            poison_isolation(var, lengths[li], 3, bad[bi], which, &rng);
  control_state();
  return TEST_SUMMARY();
}
