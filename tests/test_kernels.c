/* Every kernel against the independent float64 reference (tests/reference.c),
 * over SPEC's sizes: all kinds, causal and bidirectional, both pools, both
 * axial keys, both mixture normalizations, L in {1,2,7,16,61,64,200}, block
 * in {1,3,8,default,>=L}; head dims, head/kv-head counts, layouts, value
 * widths and thread counts rotate through every combination. Unused memory
 * of every tensor is NaN, so a stray read shows up as a failure. */
#define COMBINER_IMPLEMENTATION
#include "test_common.h"

typedef struct variant {
  combiner_kind kind;
  combiner_axial_key key;
  combiner_mixture_norm norm;
  const char *name;
} variant;

static const variant variants[] = {
  {COMBINER_FIXED, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, "fixed"},
  {COMBINER_AXIAL, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, "axial-wsum"},
  {COMBINER_AXIAL, COMBINER_AXIAL_KEY_SELF, COMBINER_MIXTURE_JOINT, "axial-self"},
  {COMBINER_MIXTURE, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, "mixture-joint"},
  {COMBINER_MIXTURE, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_AVERAGE, "mixture-average"},
  {COMBINER_DENSE, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, "dense"},
};

static const int lengths[] = {1, 2, 7, 16, 61, 64, 200};
static const int head_dims[] = {1, 5, 64};
static const int heads[][2] = {{1, 1}, {4, 1}, {4, 2}, {4, 4}};

/* Runs one configuration and compares with the reference. */
static void run_case(const variant *var, int L, int block, int causal, combiner_pool pool,
                     unsigned n, test_rng *rng) {
  int d = head_dims[n % 3];
  int H = heads[(n / 3) % 4][0], Hkv = heads[(n / 3) % 4][1];
  int layout = (int)((n / 12) % LAYOUT_COUNT);
  int threads = 1 + (int)((n / 36) % 2);
  int dv = (n / 72) % 2 ? d : d + 2;
  combiner_config cfg = test_config(var->kind, L, d, H, Hkv, block, causal);
  test_tensor q = test_tensor_make(L, H, d, layout);
  test_tensor k = test_tensor_make(L, Hkv, d, (layout + 1) % LAYOUT_COUNT);
  test_tensor v = test_tensor_make(L, Hkv, dv, layout);
  test_tensor o = test_tensor_make(L, H, dv, (layout + 2) % LAYOUT_COUNT);
  ref_problem rp;
  double *qd, *kd, *vd, *ref;
  double err;
  combiner_status st;
  cfg.value_dim = dv;
  cfg.pool = pool;
  cfg.axial_key = var->key;
  cfg.mixture_norm = var->norm;
  cfg.num_threads = threads;
  cfg.q_layout = q.lay; cfg.k_layout = k.lay; cfg.v_layout = v.lay; cfg.out_layout = o.lay;
  test_tensor_fill(&q, rng);
  test_tensor_fill(&k, rng);
  test_tensor_fill(&v, rng);
  st = combiner_attention(&cfg, q.data, k.data, v.data, o.data, NULL, 0);
  CHECK(st == COMBINER_OK, "%s: %s", var->name, combiner_status_string(st));
  rp = test_ref_problem(&cfg);
  qd = test_to_double(&q); kd = test_to_double(&k); vd = test_to_double(&v);
  ref = (double *)test_alloc(sizeof(double) * (size_t)L * H * dv);
  ref_attention(&rp, qd, kd, vd, ref);
  err = test_rel_error(&o, ref);
  CHECK(err <= TEST_TOLERANCE,
        "%s causal=%d pool=%s L=%d block=%d d=%d dv=%d H=%d Hkv=%d layout=%s threads=%d: rel err %.3g",
        var->name, causal, pool == COMBINER_POOL_MAX ? "max" : "mean", L, block, d, dv, H, Hkv,
        layout_names[layout], threads, err);
  free(qd); free(kd); free(vd); free(ref);
  test_tensor_free(&q); test_tensor_free(&k); test_tensor_free(&v); test_tensor_free(&o);
}

int main(void) {
  test_rng rng = {12345};
  unsigned n = 0;
  size_t vi, li;
  int causal, pool, bi;
  for (vi = 0; vi < sizeof variants / sizeof variants[0]; ++vi)
    for (li = 0; li < sizeof lengths / sizeof lengths[0]; ++li)
      for (causal = 0; causal < 2; ++causal)
        for (pool = 0; pool < 2; ++pool)
          for (bi = 0; bi < 5; ++bi) {
            int L = lengths[li];
            int blocks[5];
            blocks[0] = 1; blocks[1] = 3; blocks[2] = 8; blocks[3] = 0; blocks[4] = L + 5;
            run_case(&variants[vi], L, blocks[bi], causal, (combiner_pool)pool, n++, &rng);
          }
  /* head_dim 64 with GQA on the largest size, every kind, both directions */
  for (vi = 0; vi < sizeof variants / sizeof variants[0]; ++vi)
    for (causal = 0; causal < 2; ++causal)
      run_case(&variants[vi], 200, 0, causal, COMBINER_POOL_MAX, 2 + 3 * 2 + 12 * 2, &rng);
  printf("test_kernels: %u configurations\n", n + 12);
  return TEST_SUMMARY();
}
