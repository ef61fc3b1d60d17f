/* Split calls for engines with their own thread pool: running every part of
 * every step, in any order within a step, gives combiner_attention's output
 * bit for bit, for 1, 2 and 3 parts and every kind; the parts also run on
 * real threads (one per part, joined between steps); bad step/part
 * arguments are rejected without writing out. */
#define _POSIX_C_SOURCE 200112L
#define COMBINER_IMPLEMENTATION
#include "test_common.h"
#include <pthread.h>

typedef struct part_job {
  const combiner_config *cfg;
  const test_tensor *q, *k, *v;
  float *out;
  void *work;
  size_t ws;
  int step, ith, nth;
  combiner_status st;
} part_job;

static void *run_part(void *arg) {
  part_job *j = (part_job *)arg;
  j->st = combiner_attention_part(j->cfg, j->q->data, j->k->data, j->v->data, j->out, j->work, j->ws,
                                  j->step, j->ith, j->nth);
  return NULL;
}

int main(void) {
  /* the variants split here, and the steps each takes */
  static const struct { const char *name; int steps; } runs[] = {
    {"fixed", 2}, {"axial-wsum", 2}, {"mixture-joint", 3}, {"mixture-average", 3}, {"dense", 1},
    {"logsparse", 3}};
  const int L = 150, d = 8, H = 4, Hkv = 2;
  test_rng rng = {77};
  test_tensor q = test_tensor_make(L, H, d, LAYOUT_PADDED), k = test_tensor_make(L, Hkv, d, LAYOUT_TOKEN_MAJOR);
  test_tensor v = test_tensor_make(L, Hkv, d, LAYOUT_HEAD_MAJOR);
  test_tensor ref = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR), o = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
  size_t ri;
  int causal, nth, step, ith;
  test_tensor_fill(&q, &rng); test_tensor_fill(&k, &rng); test_tensor_fill(&v, &rng);
  for (ri = 0; ri < sizeof runs / sizeof runs[0]; ++ri)
    for (causal = 0; causal < 2; ++causal) {
      const test_variant *var = test_variant_named(runs[ri].name);
      combiner_config cfg = test_config(var->kind, L, d, H, Hkv, 11, causal);
      int steps;
      if (!test_variant_selected(var)) continue;
      cfg.axial_key = var->key;
      cfg.mixture_norm = var->norm;
      cfg.q_layout = q.lay; cfg.v_layout = v.lay;
      CHECK(combiner_attention(&cfg, q.data, k.data, v.data, ref.data, NULL, 0) == COMBINER_OK, "one call");
      steps = combiner_step_count(&cfg);
      CHECK(steps == runs[ri].steps, "%s: %d steps", var->name, steps);
      for (nth = 1; nth <= 3; ++nth) {
        size_t ws = combiner_part_workspace_size(&cfg, nth);
        void *work = test_alloc(ws);
        int ok = 1;
        memset(work, 0xFF, ws);                         /* NaN: no part reads what it did not write */
        for (step = 0; step < steps; ++step)
          for (ith = nth - 1; ith >= 0; --ith)          /* parts of a step in reverse order */
            ok &= combiner_attention_part(&cfg, q.data, k.data, v.data, o.data, work, ws, step, ith, nth) == COMBINER_OK;
        CHECK(ok && test_same_rows(&o, &ref, L), "%s causal=%d, %d parts in sequence: differs from one call",
              var->name, causal, nth);
        /* the same on real threads, one per part, joined after every step */
        memset(work, 0xFF, ws);
        memset(o.data, 0, o.floats * sizeof(float));
        for (step = 0; step < steps; ++step) {
          pthread_t th[3];
          part_job jobs[3];
          for (ith = 0; ith < nth; ++ith) {
            part_job j;
            j.cfg = &cfg; j.q = &q; j.k = &k; j.v = &v; j.out = o.data; j.work = work; j.ws = ws;
            j.step = step; j.ith = ith; j.nth = nth; j.st = COMBINER_ERR_INVALID_ARGUMENT;
            jobs[ith] = j;
            CHECK(pthread_create(&th[ith], NULL, run_part, &jobs[ith]) == 0, "pthread_create");
          }
          for (ith = 0; ith < nth; ++ith) {
            pthread_join(th[ith], NULL);
            ok &= jobs[ith].st == COMBINER_OK;
          }
        }
        CHECK(ok && test_same_rows(&o, &ref, L), "%s causal=%d, %d parts on threads: differs from one call",
              var->name, causal, nth);
        free(work);
      }
    }
  if (test_unfiltered()) {   /* bad arguments: specific status, out untouched */
    combiner_config cfg = test_config(COMBINER_AXIAL, L, d, H, Hkv, 11, 1);
    size_t ws = combiner_part_workspace_size(&cfg, 2), i;
    void *work = test_alloc(ws);
    struct { int step, ith, nth; size_t size; void *w; combiner_status want; const char *what; } bad[6];
    int b;
    cfg.q_layout = q.lay; cfg.v_layout = v.lay;
    bad[0].step = 3; bad[0].ith = 0; bad[0].nth = 2; bad[0].size = ws; bad[0].w = work; bad[0].want = COMBINER_ERR_INVALID_ARGUMENT; bad[0].what = "step past the last";
    bad[1].step = -1; bad[1].ith = 0; bad[1].nth = 2; bad[1].size = ws; bad[1].w = work; bad[1].want = COMBINER_ERR_INVALID_ARGUMENT; bad[1].what = "negative step";
    bad[2].step = 0; bad[2].ith = 2; bad[2].nth = 2; bad[2].size = ws; bad[2].w = work; bad[2].want = COMBINER_ERR_INVALID_ARGUMENT; bad[2].what = "ith == nth";
    bad[3].step = 0; bad[3].ith = 0; bad[3].nth = 0; bad[3].size = ws; bad[3].w = work; bad[3].want = COMBINER_ERR_INVALID_ARGUMENT; bad[3].what = "nth == 0";
    bad[4].step = 1; bad[4].ith = 1; bad[4].nth = 2; bad[4].size = ws - 1; bad[4].w = work; bad[4].want = COMBINER_ERR_WORKSPACE_TOO_SMALL; bad[4].what = "workspace one byte short";
    bad[5].step = 1; bad[5].ith = 1; bad[5].nth = 2; bad[5].size = 0; bad[5].w = NULL; bad[5].want = COMBINER_ERR_INVALID_ARGUMENT; bad[5].what = "no workspace";
    for (b = 0; b < 6; ++b) {
      combiner_status st;
      for (i = 0; i < o.floats; ++i) o.data[i] = -5.0f;
      st = combiner_attention_part(&cfg, q.data, k.data, v.data, o.data, bad[b].w, bad[b].size, bad[b].step,
                                   bad[b].ith, bad[b].nth);
      CHECK(st == bad[b].want, "%s: %s", bad[b].what, combiner_status_string(st));
      for (i = 0; i < o.floats; ++i)
        if (o.data[i] != -5.0f) break;
      CHECK(i == o.floats, "%s: out written", bad[b].what);
    }
    CHECK(combiner_part_workspace_size(&cfg, 0) == 0, "part workspace for nth 0");
    cfg.seq_len = 0;
    CHECK(combiner_step_count(&cfg) == 0, "steps of an invalid config");
    free(work);
  }
  test_tensor_free(&q); test_tensor_free(&k); test_tensor_free(&v); test_tensor_free(&ref); test_tensor_free(&o);
  return TEST_SUMMARY();
}
