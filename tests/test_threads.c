/* Thread-count independence (SPEC 6): work units are fixed by the problem,
 * so 1, 2 and 3 threads give bit-identical outputs for every kind, with 4
 * heads and with 2 (then 3 threads are more than the heads: causal Fixed
 * takes its two steps instead of the one pass over shares of the heads). */
#define COMBINER_IMPLEMENTATION
#include "test_common.h"

int main(void) {
  static const char *const names[] = {"fixed", "axial-wsum", "mixture-joint", "mixture-average", "dense",
                                      "logsparse"};
  static const int heads[2][2] = {{4, 2}, {2, 1}};   /* query heads, kv heads */
  const int L = 301, d = 16;
  test_rng rng = {99};
  size_t ni;
  int causal, t, hc;
  for (hc = 0; hc < 2; ++hc) {
    const int H = heads[hc][0], Hkv = heads[hc][1];
    test_tensor q = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
    test_tensor k = test_tensor_make(L, Hkv, d, LAYOUT_TOKEN_MAJOR);
    test_tensor v = test_tensor_make(L, Hkv, d, LAYOUT_TOKEN_MAJOR);
    test_tensor o[3];
    for (t = 0; t < 3; ++t) o[t] = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
    test_tensor_fill(&q, &rng); test_tensor_fill(&k, &rng); test_tensor_fill(&v, &rng);
    for (ni = 0; ni < sizeof names / sizeof names[0]; ++ni)
      for (causal = 0; causal < 2; ++causal) {
        const test_variant *var = test_variant_named(names[ni]);
        int same = 1;
        if (!test_variant_selected(var)) continue;
        for (t = 0; t < 3; ++t) {
          combiner_config cfg = test_config(var->kind, L, d, H, Hkv, 0, causal);
          cfg.axial_key = var->key;
          cfg.mixture_norm = var->norm;
          cfg.num_threads = t + 1;
          CHECK(combiner_attention(&cfg, q.data, k.data, v.data, o[t].data, NULL, 0) == COMBINER_OK,
                "H=%d threads=%d", H, t + 1);
        }
        for (t = 1; t < 3; ++t) same &= test_same_rows(&o[0], &o[t], L);
        CHECK(same, "%s causal=%d H=%d: 1, 2, 3 threads differ", var->name, causal, H);
      }
    test_tensor_free(&q); test_tensor_free(&k); test_tensor_free(&v);
    for (t = 0; t < 3; ++t) test_tensor_free(&o[t]);
  }
  return TEST_SUMMARY();
}
