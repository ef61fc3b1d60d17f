/* Thread-count independence (SPEC 6): work units are fixed by the problem,
 * so 1, 2, 3 and 5 threads give bit-identical outputs for every kind (5 is
 * more threads than heads: causal Fixed then takes its two steps instead of
 * the one pass over shares of the heads). */
#define COMBINER_IMPLEMENTATION
#include "test_common.h"

int main(void) {
  static const combiner_kind kinds[] = {COMBINER_FIXED, COMBINER_AXIAL, COMBINER_MIXTURE,
                                        COMBINER_MIXTURE, COMBINER_DENSE, COMBINER_LOGSPARSE};
  const int L = 301, d = 16, H = 4, Hkv = 2;
  test_rng rng = {99};
  size_t ki;
  int causal, t;
  test_tensor q = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
  test_tensor k = test_tensor_make(L, Hkv, d, LAYOUT_TOKEN_MAJOR);
  test_tensor v = test_tensor_make(L, Hkv, d, LAYOUT_TOKEN_MAJOR);
  test_tensor o[4];
  static const int threads[4] = {1, 2, 3, 5};
  for (t = 0; t < 4; ++t) o[t] = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
  test_tensor_fill(&q, &rng); test_tensor_fill(&k, &rng); test_tensor_fill(&v, &rng);
  for (ki = 0; ki < sizeof kinds / sizeof kinds[0]; ++ki)
    for (causal = 0; causal < 2; ++causal) {
      int same = 1;
      for (t = 0; t < 4; ++t) {
        combiner_config cfg = test_config(kinds[ki], L, d, H, Hkv, 0, causal);
        if (ki == 3) cfg.mixture_norm = COMBINER_MIXTURE_AVERAGE;
        cfg.num_threads = threads[t];
        CHECK(combiner_attention(&cfg, q.data, k.data, v.data, o[t].data, NULL, 0) == COMBINER_OK,
              "threads=%d", threads[t]);
      }
      for (t = 1; t < 4; ++t) same &= test_same_rows(&o[0], &o[t], L);
      CHECK(same, "%s causal=%d: 1, 2, 3, 5 threads differ", combiner_kind_string(kinds[ki]), causal);
    }
  test_tensor_free(&q); test_tensor_free(&k); test_tensor_free(&v);
  for (t = 0; t < 4; ++t) test_tensor_free(&o[t]);
  return TEST_SUMMARY();
}
