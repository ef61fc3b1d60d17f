/* Every kernel against the independent float64 reference (tests/reference.c),
 * over SPEC's sizes: all kinds, causal and bidirectional, both pools, both
 * axial keys, both mixture normalizations, L in {1,2,7,16,61,64,200} (and
 * DENSE at 333, Logsparse at 1100), block
 * in {1,3,8,default,70,>=L}; head dims, head/kv-head counts, layouts, value
 * widths (wider, equal, narrower) and thread counts rotate through every
 * combination. Unused memory
 * of every tensor is NaN, so a stray read shows up as a failure. */
#define COMBINER_IMPLEMENTATION
#include "test_common.h"


static const int lengths[] = {1, 2, 7, 16, 61, 64, 200};
static const int head_dims[] = {1, 5, 64};
static const int heads[][2] = {{1, 1}, {4, 1}, {4, 2}, {4, 4}};

static int configurations = 0;

/* Runs one configuration and compares with the reference. */
static void run_case(const test_variant *var, int L, int block, int causal, combiner_pool pool,
                     unsigned n, test_rng *rng) {
  /* each rotating choice from its own bits of a hash of the case number, so
   * that every choice meets every kind, length and block */
  unsigned hsh = (n + 1u) * 2654435761u, mix = hsh ^ (hsh >> 15);
  int d = head_dims[mix % 3];
  int H = heads[(mix >> 4) % 4][0], Hkv = heads[(mix >> 4) % 4][1];
  int layout = (int)((mix >> 8) % LAYOUT_COUNT);
  int threads = 1 + (int)((mix >> 12) % 2);
  int dv_choices[3];
  int dv;
  combiner_config cfg;
  dv_choices[0] = d + 2; dv_choices[1] = d; dv_choices[2] = d > 3 ? d - 3 : d;   /* value wider, equal, narrower */
  dv = dv_choices[(mix >> 16) % 3];
  cfg = test_config(var->kind, L, d, H, Hkv, block, causal);
  test_tensor q = test_tensor_make(L, H, d, layout);
  test_tensor k = test_tensor_make(L, Hkv, d, (layout + 1) % LAYOUT_COUNT);
  test_tensor v = test_tensor_make(L, Hkv, dv, layout);
  test_tensor o = test_tensor_make(L, H, dv, (layout + 2) % LAYOUT_COUNT);
  ref_problem rp;
  double *qd, *kd, *vd, *ref;
  double err;
  combiner_status st;
  ++configurations;
  cfg.value_dim = dv;
  cfg.pool = pool;
  cfg.axial_key = var->key;
  cfg.mixture_norm = var->norm;
  cfg.num_threads = threads;
  cfg.q_layout = q.lay; cfg.k_layout = k.lay; cfg.v_layout = v.lay; cfg.out_layout = o.lay;
  test_tensor_fill(&q, rng);
  test_tensor_fill(&k, rng);
  test_tensor_fill(&v, rng);
  {   /* a caller workspace full of NaN: reading scratch before writing it shows */
    size_t ws = combiner_workspace_size(&cfg);
    void *work = test_alloc(ws);
    memset(work, 0xFF, ws);
    st = combiner_attention(&cfg, q.data, k.data, v.data, o.data, work, ws);
    free(work);
  }
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

/* A case number whose hash picks head_dims[d_idx] and heads[h_idx] (the
 * `skip`-th such number, so that the other choices still vary). */
static unsigned case_with(unsigned d_idx, unsigned h_idx, unsigned skip) {
  unsigned n;
  for (n = 100000;; ++n) {
    unsigned hsh = (n + 1u) * 2654435761u, mix = hsh ^ (hsh >> 15);
    if (mix % 3 == d_idx && (mix >> 4) % 4 == h_idx && skip-- == 0) return n;
  }
}

int main(void) {
  test_rng rng = {12345};
  unsigned n = 0;
  const test_variant *var;
  size_t li;
  int causal, pool, bi;
  /* a variant left out by COMBINER_TEST_KINDS still counts its cases, so
   * that the others keep their shapes */
  TEST_FOR_EACH_VARIANT(var) {
    const int on = test_variant_selected(var);
    for (li = 0; li < sizeof lengths / sizeof lengths[0]; ++li)
      for (causal = 0; causal < 2; ++causal)
        for (pool = 0; pool < 2; ++pool)
          for (bi = 0; bi < 6; ++bi, ++n) {
            int L = lengths[li];
            int blocks[6];
            /* 70: rows and row tiles longer than the kernels' 64-query tile */
            blocks[0] = 1; blocks[1] = 3; blocks[2] = 8; blocks[3] = 0; blocks[4] = 70; blocks[5] = L + 5;
            if (on && test_quick_keeps(L, n)) run_case(var, L, blocks[bi], causal, (combiner_pool)pool, n, &rng);
          }
  }
  /* head_dim 64 with GQA on the largest size, every kind, both directions */
  TEST_FOR_EACH_VARIANT(var)
    for (causal = 0; causal < 2; ++causal)
      if (test_variant_selected(var))
        run_case(var, 200, 0, causal, COMBINER_POOL_MAX,
                 case_with(2, 2, (unsigned)test_variant_index(var) * 2 + (unsigned)causal), &rng);
  /* Logsparse past 2^10 positions: its summaries run per 128-position chunk
   * (levels 1-7, a short last chunk of 76 here) and per block above (levels
   * 8-10, every head at once) */
  var = test_variant_named("logsparse");
  for (causal = 0; causal < 2; ++causal)
    for (pool = 0; pool < 2; ++pool)
      if (test_variant_selected(var))
        run_case(var, 1100, 0, causal, (combiner_pool)pool, case_with(1, 2, (unsigned)(causal * 2 + pool)), &rng);
  /* DENSE past 256 keys: the tile packs each value chunk before P.V there
   * (strided rows only); every head dim, GQA 4/1 and 4/2, both directions,
   * layouts, value widths and 1/2 threads rotating; L = 333 is no multiple
   * of the 64-key chunk */
  {
    unsigned di, hi;
    var = test_variant_named("dense");
    for (di = 0; di < 3; ++di)
      for (hi = 1; hi < 3; ++hi)
        for (causal = 0; causal < 2; ++causal)
          for (bi = 0; bi < (test_quick() ? 1 : 2); ++bi)
            if (test_variant_selected(var))
              run_case(var, 333, 0, causal, COMBINER_POOL_MAX, case_with(di, hi, (unsigned)(causal * 2 + bi)),
                       &rng);
  }
  printf("test_kernels: %d configurations\n", configurations);
  return TEST_SUMMARY();
}
