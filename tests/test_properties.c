/* SPEC section 6 on the kernels themselves:
 *  - full attention: the effective matrix A (out = A v, built with one-hot
 *    values) has rows summing to 1, A[i][j] > 0 on the whole attended set,
 *    and A[i][j] == 0 exactly above the diagonal when causal;
 *  - causality: changing positions > p never changes out[0..p] (bitwise);
 *  - degenerate blocks: m >= L is dense attention for every kind; m = 1 is
 *    dense for FIXED, AXIAL (WSUM and SELF) and MIXTURE (JOINT). */
#define COMBINER_IMPLEMENTATION
#include "test_common.h"


static combiner_config variant_config(const test_variant *var, int L, int d, int H, int Hkv, int block,
                                      int causal, combiner_pool pool) {
  combiner_config cfg = test_config(var->kind, L, d, H, Hkv, block, causal);
  cfg.axial_key = var->key;
  cfg.mixture_norm = var->norm;
  cfg.pool = pool;
  return cfg;
}

/* A[h][i][j] for every query head: values are one-hot, v_j = e_j. */
static void full_attention(const test_variant *var, int L, int block, int causal, combiner_pool pool,
                           test_rng *rng) {
  int d = 3, H = 2, Hkv = 1, i, j, h;
  combiner_config cfg = variant_config(var, L, d, H, Hkv, block, causal, pool);
  test_tensor q = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
  test_tensor k = test_tensor_make(L, Hkv, d, LAYOUT_TOKEN_MAJOR);
  test_tensor v = test_tensor_make(L, Hkv, L, LAYOUT_TOKEN_MAJOR);
  test_tensor a = test_tensor_make(L, H, L, LAYOUT_TOKEN_MAJOR);
  int rows_ok = 1, positive_ok = 1, zero_ok = 1;
  double worst_sum = 0.0;
  combiner_status st;
  cfg.value_dim = L;
  test_tensor_fill(&q, rng);
  test_tensor_fill(&k, rng);
  for (j = 0; j < L; ++j)
    for (i = 0; i < L; ++i) test_at(&v, j, 0)[i] = (float)(i == j);
  st = combiner_attention(&cfg, q.data, k.data, v.data, a.data, NULL, 0);
  CHECK(st == COMBINER_OK, "%s", combiner_status_string(st));
  for (h = 0; h < H; ++h)
    for (i = 0; i < L; ++i) {
      const float *row = test_at(&a, i, h);
      double sum = 0.0;
      for (j = 0; j < L; ++j) {
        sum += row[j];
        if (causal && j > i) { if (row[j] != 0.0f) zero_ok = 0; }
        else if (!(row[j] > 0.0f)) positive_ok = 0;
      }
      if (fabs(sum - 1.0) > worst_sum) worst_sum = fabs(sum - 1.0);
      if (!(fabs(sum - 1.0) <= TEST_TOLERANCE)) rows_ok = 0;
    }
  CHECK(rows_ok, "%s L=%d block=%d causal=%d: rows of A sum to 1 (worst |sum-1| %.3g)",
        var->name, L, block, causal, worst_sum);
  CHECK(positive_ok, "%s L=%d block=%d causal=%d: A > 0 on the attended set", var->name, L,
        block, causal);
  CHECK(zero_ok, "%s L=%d block=%d: A == 0 above the diagonal", var->name, L, block);
  test_tensor_free(&q); test_tensor_free(&k); test_tensor_free(&v); test_tensor_free(&a);
}

/* Changing q, k, v after position p leaves out[0..p] bit-identical. */
static void causality(const test_variant *var, int L, int block, combiner_pool pool, test_rng *rng) {
  int d = 4, H = 2, Hkv = 2, p = (int)(test_rng_u32(rng) % (unsigned)L), i, h;
  combiner_config cfg = variant_config(var, L, d, H, Hkv, block, 1, pool);
  test_tensor q = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
  test_tensor k = test_tensor_make(L, Hkv, d, LAYOUT_TOKEN_MAJOR);
  test_tensor v = test_tensor_make(L, Hkv, d, LAYOUT_TOKEN_MAJOR);
  test_tensor o1 = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
  test_tensor o2 = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
  test_tensor_fill(&q, rng);
  test_tensor_fill(&k, rng);
  test_tensor_fill(&v, rng);
  CHECK(combiner_attention(&cfg, q.data, k.data, v.data, o1.data, NULL, 0) == COMBINER_OK, "run 1");
  for (i = p + 1; i < L; ++i)
    for (h = 0; h < H; ++h) {
      int x;
      for (x = 0; x < d; ++x) test_at(&q, i, h)[x] = 5.0f * test_rng_float(rng);
      if (h < Hkv)
        for (x = 0; x < d; ++x) {
          test_at(&k, i, h)[x] = 5.0f * test_rng_float(rng);
          test_at(&v, i, h)[x] = 5.0f * test_rng_float(rng);
        }
    }
  CHECK(combiner_attention(&cfg, q.data, k.data, v.data, o2.data, NULL, 0) == COMBINER_OK, "run 2");
  CHECK(test_same_rows(&o1, &o2, p + 1), "%s L=%d block=%d: out[0..%d] changed when later tokens changed", var->name, L,
        block, p);
  test_tensor_free(&q); test_tensor_free(&k); test_tensor_free(&v);
  test_tensor_free(&o1); test_tensor_free(&o2);
}

/* The kind at this block equals DENSE (kernel against kernel). */
static void equals_dense(const test_variant *var, int L, int block, int causal, combiner_pool pool,
                         test_rng *rng) {
  int d = 5, H = 4, Hkv = 2;
  combiner_config cfg = variant_config(var, L, d, H, Hkv, block, causal, pool);
  combiner_config dense = variant_config(test_variant_named("dense"), L, d, H, Hkv, block, causal, pool);
  test_tensor q = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
  test_tensor k = test_tensor_make(L, Hkv, d, LAYOUT_TOKEN_MAJOR);
  test_tensor v = test_tensor_make(L, Hkv, d, LAYOUT_TOKEN_MAJOR);
  test_tensor o = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
  test_tensor od = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
  double *ref, err;
  test_tensor_fill(&q, rng);
  test_tensor_fill(&k, rng);
  test_tensor_fill(&v, rng);
  CHECK(combiner_attention(&cfg, q.data, k.data, v.data, o.data, NULL, 0) == COMBINER_OK, "kind");
  CHECK(combiner_attention(&dense, q.data, k.data, v.data, od.data, NULL, 0) == COMBINER_OK, "dense");
  ref = test_to_double(&od);
  err = test_rel_error(&o, ref);
  CHECK(err <= TEST_TOLERANCE, "%s L=%d block=%d causal=%d pool=%d: differs from dense by %.3g",
        var->name, L, block, causal, (int)pool, err);
  free(ref);
  test_tensor_free(&q); test_tensor_free(&k); test_tensor_free(&v);
  test_tensor_free(&o); test_tensor_free(&od);
}

int main(void) {
  static const int lengths[] = {1, 2, 7, 16, 17, 33, 61, 64, 65};   /* 2^k - 1, 2^k, 2^k + 1 */
  test_rng rng = {777};
  const test_variant *var;
  size_t li;
  int causal, pool, bi;
  TEST_FOR_EACH_VARIANT(var)
    if (test_variant_selected(var))
      for (li = 0; li < sizeof lengths / sizeof lengths[0]; ++li)
        for (pool = 0; pool < 2; ++pool)
          for (bi = 0; bi < 5; ++bi) {
            int L = lengths[li];
            int blocks[5];
            blocks[0] = 1; blocks[1] = 3; blocks[2] = 4; blocks[3] = 0; blocks[4] = L + 2;
            for (causal = 0; causal < 2; ++causal)
              full_attention(var, L, blocks[bi], causal, (combiner_pool)pool, &rng);
            causality(var, L, blocks[bi], (combiner_pool)pool, &rng);
          }
  TEST_FOR_EACH_VARIANT(var)
    if (var->kind != COMBINER_LOGSPARSE && test_variant_selected(var))   /* blocks do not apply */
      for (li = 0; li < sizeof lengths / sizeof lengths[0]; ++li)
        for (causal = 0; causal < 2; ++causal)
          for (pool = 0; pool < 2; ++pool) {
            int L = lengths[li];
            equals_dense(var, L, L, causal, (combiner_pool)pool, &rng);
            equals_dense(var, L, L + 9, causal, (combiner_pool)pool, &rng);
            /* SPEC names MIXTURE JOINT for m = 1; AVERAGE holds too: with one
             * column neither plan has an abstraction left. */
            equals_dense(var, L, 1, causal, (combiner_pool)pool, &rng);
          }
  return TEST_SUMMARY();
}
