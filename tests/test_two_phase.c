/* The two-phase API: summarize + combine equals the one-call API bit for
 * bit, for every kind; Axial summary keys replaced by the caller between the
 * phases give the reference's result for those keys (how a trained model
 * with learned keys runs); the size queries agree with what the calls need. */
#define COMBINER_IMPLEMENTATION
#include "test_common.h"

typedef struct two_phase_run {
  float *keys, *values;
  combiner_summary_info info;
} two_phase_run;

static combiner_config make_config(const test_variant *var, int L, int block, int causal, int d, int H,
                                   int Hkv) {
  combiner_config cfg = test_config(var->kind, L, d, H, Hkv, block, causal);
  cfg.axial_key = var->key;
  cfg.mixture_norm = var->norm;
  cfg.pool = (combiner_pool)(block % 2);
  cfg.value_dim = d + 1;
  return cfg;
}

static two_phase_run summarize(const combiner_config *cfg, const test_tensor *q,
                               const test_tensor *k, const test_tensor *v) {
  two_phase_run r;
  size_t ws = combiner_phase_workspace_size(cfg);
  void *work = test_alloc(ws);
  combiner_status st;
  CHECK(combiner_query_summaries(cfg, &r.info) == COMBINER_OK, "query_summaries");
  CHECK(ws > 0, "phase workspace size");
  r.keys = (float *)test_alloc(sizeof(float) * r.info.key_floats);
  r.values = (float *)test_alloc(sizeof(float) * r.info.value_floats);
  st = combiner_summarize(cfg, q->data, k->data, v->data, r.keys, r.values, work, ws);
  CHECK(st == COMBINER_OK, "summarize: %s", combiner_status_string(st));
  free(work);
  return r;
}

static void combine(const combiner_config *cfg, const test_tensor *q, const test_tensor *k,
                    const test_tensor *v, const two_phase_run *r, test_tensor *o) {
  size_t ws = combiner_phase_workspace_size(cfg);
  void *work = test_alloc(ws);
  combiner_status st;
  st = combiner_combine(cfg, q->data, k->data, v->data, r->keys, r->values, o->data, work, ws - 1);
  CHECK(st == COMBINER_ERR_WORKSPACE_TOO_SMALL, "combine with one byte too few: %s",
        combiner_status_string(st));
  st = combiner_combine(cfg, q->data, k->data, v->data, r->keys, r->values, o->data, work, ws);
  CHECK(st == COMBINER_OK, "combine: %s", combiner_status_string(st));
  free(work);
}

static void equals_one_call(const test_variant *var, int L, int block, int causal, test_rng *rng) {
  int d = 6, H = 4, Hkv = 2;
  combiner_config cfg = make_config(var, L, block, causal, d, H, Hkv);
  test_tensor q = test_tensor_make(L, H, d, LAYOUT_PADDED);
  test_tensor k = test_tensor_make(L, Hkv, d, LAYOUT_TOKEN_MAJOR);
  test_tensor v = test_tensor_make(L, Hkv, d + 1, LAYOUT_HEAD_MAJOR);
  test_tensor o1 = test_tensor_make(L, H, d + 1, LAYOUT_TOKEN_MAJOR);
  test_tensor o2 = test_tensor_make(L, H, d + 1, LAYOUT_TOKEN_MAJOR);
  two_phase_run r;
  size_t ws = combiner_workspace_size(&cfg);
  void *work = test_alloc(ws);
  cfg.q_layout = q.lay; cfg.k_layout = k.lay; cfg.v_layout = v.lay;
  test_tensor_fill(&q, rng); test_tensor_fill(&k, rng); test_tensor_fill(&v, rng);
  CHECK(combiner_attention(&cfg, q.data, k.data, v.data, o1.data, work, ws) == COMBINER_OK,
        "one call");
  r = summarize(&cfg, &q, &k, &v);
  combine(&cfg, &q, &k, &v, &r, &o2);
  CHECK(test_same_rows(&o1, &o2, L), "%s causal=%d L=%d block=%d: two-phase != one-call",
        var->name, causal, L, block);
  free(r.keys); free(r.values); free(work);
  test_tensor_free(&q); test_tensor_free(&k); test_tensor_free(&v);
  test_tensor_free(&o1); test_tensor_free(&o2);
}

/* Arbitrary caller keys for every cell (entries 0..L-1); the short last
 * row's fixed-style abstraction (entry L, bidirectional) stays as computed. */
static void caller_keys(int L, int block, int causal, combiner_pool pool, test_rng *rng) {
  int d = 5, H = 4, Hkv = 2, h, i, x;
  combiner_config cfg = test_config(COMBINER_AXIAL, L, d, H, Hkv, block, causal);
  test_tensor q = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
  test_tensor k = test_tensor_make(L, Hkv, d, LAYOUT_HEAD_MAJOR);
  test_tensor v = test_tensor_make(L, Hkv, d, LAYOUT_TOKEN_MAJOR);
  test_tensor o = test_tensor_make(L, H, d, LAYOUT_PADDED);
  double *qd, *kd, *vd, *ref, *keys, err;
  two_phase_run r;
  ref_problem rp;
  cfg.pool = pool;
  cfg.k_layout = k.lay; cfg.out_layout = o.lay;
  test_tensor_fill(&q, rng); test_tensor_fill(&k, rng); test_tensor_fill(&v, rng);
  r = summarize(&cfg, &q, &k, &v);
  keys = (double *)test_alloc(sizeof(double) * (size_t)H * L * d);
  for (h = 0; h < H; ++h)
    for (i = 0; i < L; ++i)
      for (x = 0; x < d; ++x) {
        float key = 2.0f * test_rng_float(rng);
        r.keys[((size_t)h * r.info.count + i) * d + x] = key;
        keys[((size_t)h * L + i) * d + x] = key;
      }
  combine(&cfg, &q, &k, &v, &r, &o);
  rp = test_ref_problem(&cfg);
  rp.axial_key = REF_KEY_CALLER;
  rp.caller_keys = keys;
  qd = test_to_double(&q); kd = test_to_double(&k); vd = test_to_double(&v);
  ref = (double *)test_alloc(sizeof(double) * (size_t)H * L * d);
  ref_attention(&rp, qd, kd, vd, ref);
  err = test_rel_error(&o, ref);
  CHECK(err <= TEST_TOLERANCE, "caller keys causal=%d L=%d block=%d pool=%d: rel err %.3g",
        causal, L, block, (int)pool, err);
  free(qd); free(kd); free(vd); free(ref); free(keys); free(r.keys); free(r.values);
  test_tensor_free(&q); test_tensor_free(&k); test_tensor_free(&v); test_tensor_free(&o);
}

/* Summary counts follow combiner_summary_info's table. */
static void summary_counts(void) {
  /* each check runs when its config's variant is selected */
#define COUNT_CHECK(...) do { if (test_config_selected(&cfg)) CHECK(__VA_ARGS__); } while (0)
  combiner_config cfg = test_config(COMBINER_FIXED, 10, 4, 2, 1, 3, 1);
  combiner_summary_info info;
  COUNT_CHECK(combiner_query_summaries(&cfg, &info) == COMBINER_OK && info.count == 4, "fixed: n blocks");
  cfg.kind = COMBINER_AXIAL;
  COUNT_CHECK(combiner_query_summaries(&cfg, &info) == COMBINER_OK && info.count == 10, "axial causal: L");
  cfg.causal = 0;
  COUNT_CHECK(combiner_query_summaries(&cfg, &info) == COMBINER_OK && info.count == 11,
              "axial bidirectional, short last row: L + 1");
  cfg.block = 5;
  COUNT_CHECK(combiner_query_summaries(&cfg, &info) == COMBINER_OK && info.count == 10,
              "axial bidirectional, full rows: L");
  cfg.block = 12;
  COUNT_CHECK(combiner_query_summaries(&cfg, &info) == COMBINER_OK && info.count == 10,
              "axial bidirectional, one row (block > L): L, no short-row entry");
  cfg.block = 5;
  cfg.kind = COMBINER_MIXTURE;
  COUNT_CHECK(combiner_query_summaries(&cfg, &info) == COMBINER_OK && info.count == 40 &&
              info.sections == 4 && info.key_floats == 2u * 40 * 4, "mixture bidirectional: 4L");
  cfg.causal = 1;
  COUNT_CHECK(combiner_query_summaries(&cfg, &info) == COMBINER_OK && info.count == 30, "mixture causal: 3L");
  cfg.kind = COMBINER_DENSE;
  COUNT_CHECK(combiner_query_summaries(&cfg, &info) == COMBINER_OK && info.count == 0, "dense: none");
  cfg.kind = COMBINER_LOGSPARSE;    /* L = 10: floor(10/2) + floor(10/4) + floor(10/8) = 8 */
  COUNT_CHECK(combiner_query_summaries(&cfg, &info) == COMBINER_OK && info.count == 8 && info.sections == 1,
              "logsparse causal: 8 aligned blocks");
  cfg.causal = 0;
  COUNT_CHECK(combiner_query_summaries(&cfg, &info) == COMBINER_OK && info.count == 16 && info.sections == 2,
              "logsparse bidirectional: start- and end-aligned");
  cfg.seq_len = 1;
  COUNT_CHECK(combiner_query_summaries(&cfg, &info) == COMBINER_OK && info.count == 0, "logsparse L=1: none");
#undef COUNT_CHECK
}

/* The workspace formula the README states, recomputed here. */
static size_t r64(size_t bytes) { return (bytes + 63) / 64 * 64; }
static size_t r16(size_t floats) { return (floats + 15) / 16 * 16; }

static void workspace_formula(void) {
  static const combiner_kind wkinds[] = {COMBINER_FIXED, COMBINER_AXIAL, COMBINER_MIXTURE, COMBINER_DENSE,
                                         COMBINER_LOGSPARSE};
  size_t ki;
  int causal, avg;
  for (ki = 0; ki < 5; ++ki)
    for (causal = 0; causal < 2; ++causal)
      for (avg = 0; avg < 2; ++avg) {
        const size_t L = 1000, d = 24, dv = 40, H = 3, T = 3;
        combiner_config cfg = test_config(wkinds[ki], (int)L, (int)d, (int)H, 1, 0, causal);
        combiner_summary_info info;
        size_t sets, scratch, want, extra;
        memset(&info, 0, sizeof info);
        cfg.value_dim = (int)dv;
        cfg.num_threads = (int)T;
        cfg.mixture_norm = avg ? COMBINER_MIXTURE_AVERAGE : COMBINER_MIXTURE_JOINT;
        if (!test_config_selected(&cfg)) continue;
        CHECK(combiner_query_summaries(&cfg, &info) == COMBINER_OK, "query");
        sets = wkinds[ki] == COMBINER_AXIAL ? 1 : wkinds[ki] == COMBINER_MIXTURE ? (avg ? 2 : 1) : 0;
        scratch = r16(d * 64) + 2 * r16(64 * 64) + r16(64 * d) + r16(2 * d) + r16(64 * d) +
                  2 * r16(2 * 64 + 64 * dv) + r16(6 * 64) + r16(64 * dv) + r16(64 * d);
#if defined(_OPENMP) && !defined(COMBINER_NO_OPENMP)
        scratch *= T;                 /* one scratch per OpenMP thread */
#endif
        /* LOGSPARSE keeps the pooled queries of its level-7 blocks (128 positions) between its steps */
        extra = wkinds[ki] == COMBINER_LOGSPARSE ? (causal ? 1 : 2) * (L / 128) * H * d : 0;
        want = r64(4 * H * info.count * d) + r64(4 * H * info.count * dv) + r64(4 * sets * H * L * (dv + 2)) +
               r64(4 * extra) + 4 * scratch + 64;
        CHECK(combiner_workspace_size(&cfg) == want, "%s causal=%d avg=%d: workspace %zu, formula %zu",
              combiner_kind_string(wkinds[ki]), causal, avg, combiner_workspace_size(&cfg), want);
        want -= r64(4 * H * info.count * d) + r64(4 * H * info.count * dv);
        CHECK(combiner_phase_workspace_size(&cfg) == want, "%s: phase workspace %zu, formula %zu",
              combiner_kind_string(wkinds[ki]), combiner_phase_workspace_size(&cfg), want);
      }
}

/* The header's MEMORY statement: 256*d + 192*dv + 16*ceil(d/8) + 8832 floats
 * of scratch per thread (slot), for every kind, width and direction. The
 * split-call workspace has exactly nth slots, so one more part adds one. */
static void header_scratch_statement(void) {
  static const int ds[] = {1, 5, 16, 24, 63, 64, 65, 128}, dvs[] = {1, 7, 40, 64, 100, 128};
  int kind, causal, di, dvi;
  for (kind = COMBINER_FIXED; kind <= COMBINER_LOGSPARSE; ++kind)
    for (causal = 0; causal < 2; ++causal)
      for (di = 0; di < 8; ++di)
        for (dvi = 0; dvi < 6; ++dvi) {
          const int d = ds[di], dv = dvs[dvi];
          combiner_config cfg = test_config((combiner_kind)kind, 333, d, 4, 2, 0, causal);
          const size_t header = 4 * (size_t)(256 * d + 192 * dv + 16 * ((d + 7) / 8) + 8832);
          size_t one, two, five;
          cfg.value_dim = dv;
          if (!test_config_selected(&cfg)) continue;
          one = combiner_part_workspace_size(&cfg, 1);
          two = combiner_part_workspace_size(&cfg, 2);
          five = combiner_part_workspace_size(&cfg, 5);
          CHECK(one > 0 && two - one == header && five - one == 4 * header,
                "%s causal=%d d=%d dv=%d: a slot is %zu bytes, the header says %zu",
                combiner_kind_string(cfg.kind), causal, d, dv, two - one, header);
          if (d == 64 && dv == 64) CHECK(header == 4 * 37632, "the header's example: 37,632 floats at d = dv = 64");
        }
}

int main(void) {
  static const int lengths[] = {1, 7, 61, 64};
  static const int blocks[] = {3, 8, 0, 100};
  test_rng rng = {4242};
  const test_variant *var;
  size_t li, bi;
  int causal, pool;
  summary_counts();
  workspace_formula();
  header_scratch_statement();
  TEST_FOR_EACH_VARIANT(var)
    if (test_variant_selected(var))
      for (causal = 0; causal < 2; ++causal)
        for (li = 0; li < 4; ++li)
          for (bi = 0; bi < 4; ++bi) equals_one_call(var, lengths[li], blocks[bi], causal, &rng);
  /* Axial's summary keys (computed with WSUM) replaced by the caller's */
  if (test_variant_selected(test_variant_named("axial-wsum")))
    for (causal = 0; causal < 2; ++causal)
      for (pool = 0; pool < 2; ++pool)
        for (li = 0; li < 4; ++li)
          for (bi = 0; bi < 4; ++bi)
            caller_keys(lengths[li], blocks[bi], causal, (combiner_pool)pool, &rng);
  return TEST_SUMMARY();
}
