/* Thread safety: several threads call the library at once, sharing one
 * config and the read-only inputs, each with its own output and workspace
 * (and one thread on the allocating path). Every result must equal the
 * serial one bit for bit. Run under ThreadSanitizer in `make test`. */
#define _POSIX_C_SOURCE 200112L
#define COMBINER_IMPLEMENTATION
#include "test_common.h"
#include <pthread.h>

enum { THREADS = 4, ROUNDS = 6, L = 97, D = 8, H = 4, HKV = 2 };

typedef struct job {
  const combiner_config *cfg;
  const float *q, *k, *v;
  float *out;
  void *work;
  size_t work_size;
  combiner_status status;
} job;

static void *worker(void *arg) {
  job *j = (job *)arg;
  int r;
  j->status = COMBINER_OK;
  for (r = 0; r < ROUNDS && j->status == COMBINER_OK; ++r)
    j->status = combiner_attention(j->cfg, j->q, j->k, j->v, j->out, j->work, j->work_size);
  return NULL;
}

int main(void) {
  static const char *const names[] = {"fixed", "axial-wsum", "mixture-joint", "dense", "logsparse"};
  test_rng rng = {31337};
  test_tensor q = test_tensor_make(L, H, D, LAYOUT_TOKEN_MAJOR);
  test_tensor k = test_tensor_make(L, HKV, D, LAYOUT_TOKEN_MAJOR);
  test_tensor v = test_tensor_make(L, HKV, D, LAYOUT_TOKEN_MAJOR);
  size_t n = (size_t)L * H * D, ni;
  int t;
  test_tensor_fill(&q, &rng); test_tensor_fill(&k, &rng); test_tensor_fill(&v, &rng);
  for (ni = 0; ni < sizeof names / sizeof names[0]; ++ni) {
    const test_variant *var = test_variant_named(names[ni]);
    combiner_config cfg = test_config(var->kind, L, D, H, HKV, 0, (int)(ni % 2));   /* causal every other */
    float *serial;
    pthread_t th[THREADS];
    job jobs[THREADS];
    if (!test_variant_selected(var)) continue;
    serial = (float *)test_alloc(n * sizeof(float));
    cfg.axial_key = var->key;
    cfg.mixture_norm = var->norm;
    cfg.num_threads = 1;
    CHECK(combiner_attention(&cfg, q.data, k.data, v.data, serial, NULL, 0) == COMBINER_OK, "serial");
    for (t = 0; t < THREADS; ++t) {
      jobs[t].cfg = &cfg;
      jobs[t].q = q.data; jobs[t].k = k.data; jobs[t].v = v.data;
      jobs[t].out = (float *)test_alloc(n * sizeof(float));
      jobs[t].work_size = t == 0 ? 0 : combiner_workspace_size(&cfg);
      jobs[t].work = t == 0 ? NULL : test_alloc(jobs[t].work_size);
      CHECK(pthread_create(&th[t], NULL, worker, &jobs[t]) == 0, "pthread_create");
    }
    for (t = 0; t < THREADS; ++t) {
      pthread_join(th[t], NULL);
      CHECK(jobs[t].status == COMBINER_OK, "thread %d: %s", t, combiner_status_string(jobs[t].status));
      CHECK(memcmp(jobs[t].out, serial, n * sizeof(float)) == 0, "%s: thread %d differs from serial",
            var->name, t);
      free(jobs[t].out);
      free(jobs[t].work);
    }
    free(serial);
  }
  test_tensor_free(&q); test_tensor_free(&k); test_tensor_free(&v);
  return TEST_SUMMARY();
}
