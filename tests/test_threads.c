/* Thread-count independence (SPEC 6): work units are fixed by the problem,
 * so 1, 2 and 3 threads give bit-identical outputs for every kind, with 4
 * heads and with 2 (then 3 threads are more than the heads: causal Fixed
 * takes its two steps instead of the one pass over shares of the heads). */
#define COMBINER_IMPLEMENTATION
#include "test_common.h"

int main(void) {
  static const combiner_kind kinds[] = {COMBINER_FIXED, COMBINER_AXIAL, COMBINER_MIXTURE,
                                        COMBINER_MIXTURE, COMBINER_DENSE, COMBINER_LOGSPARSE};
  static const int heads[2][2] = {{4, 2}, {2, 1}};   /* query heads, kv heads */
  const int L = 301, d = 16;
  test_rng rng = {99};
  size_t ki;
  int causal, t, hc;
  for (hc = 0; hc < 2; ++hc) {
    const int H = heads[hc][0], Hkv = heads[hc][1];
    test_tensor q = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
    test_tensor k = test_tensor_make(L, Hkv, d, LAYOUT_TOKEN_MAJOR);
    test_tensor v = test_tensor_make(L, Hkv, d, LAYOUT_TOKEN_MAJOR);
    test_tensor o[3];
    for (t = 0; t < 3; ++t) o[t] = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
    test_tensor_fill(&q, &rng); test_tensor_fill(&k, &rng); test_tensor_fill(&v, &rng);
    for (ki = 0; ki < sizeof kinds / sizeof kinds[0]; ++ki)
      for (causal = 0; causal < 2; ++causal) {
        int same = 1;
        for (t = 0; t < 3; ++t) {
          combiner_config cfg = test_config(kinds[ki], L, d, H, Hkv, 0, causal);
          if (ki == 3) cfg.mixture_norm = COMBINER_MIXTURE_AVERAGE;
          cfg.num_threads = t + 1;
          CHECK(combiner_attention(&cfg, q.data, k.data, v.data, o[t].data, NULL, 0) == COMBINER_OK,
                "H=%d threads=%d", H, t + 1);
        }
        for (t = 1; t < 3; ++t) same &= test_same_rows(&o[0], &o[t], L);
        CHECK(same, "%s causal=%d H=%d: 1, 2, 3 threads differ", combiner_kind_string(kinds[ki]), causal, H);
      }
    test_tensor_free(&q); test_tensor_free(&k); test_tensor_free(&v);
    for (t = 0; t < 3; ++t) test_tensor_free(&o[t]);
  }
  return TEST_SUMMARY();
}
