/* Built with COMBINER_NO_<KIND> (REMOVED_KIND): that kind reports
 * COMBINER_ERR_UNSUPPORTED, writes nothing, and the others still run. The
 * control build (REMOVED_KIND 0) runs every kind. */
#define COMBINER_IMPLEMENTATION
#include "combiner.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  enum { L = 20, D = 4 };
  static float q[L * D], k[L * D], v[L * D], out[L * D];
  const combiner_kind kinds[] = {COMBINER_FIXED, COMBINER_AXIAL, COMBINER_MIXTURE, COMBINER_DENSE,
                                 COMBINER_LOGSPARSE};
  int passed = 0, failed = 0, i, ki;
  for (i = 0; i < L * D; ++i) {
    q[i] = (float)sin(i * 0.7);
    k[i] = (float)cos(i * 1.3);
    v[i] = (float)sin(i * 0.1 + 1.0);
  }
  for (ki = 0; ki < 5; ++ki) {
    combiner_config cfg;
    combiner_status st;
    int untouched = 1;
    memset(&cfg, 0, sizeof cfg);
    cfg.kind = kinds[ki];
    cfg.seq_len = L;
    cfg.head_dim = D;
    cfg.num_heads = 1;
    cfg.causal = 1;
    for (i = 0; i < L * D; ++i) out[i] = -7.0f;
    st = combiner_attention(&cfg, q, k, v, out, NULL, 0);
    for (i = 0; i < L * D; ++i) untouched &= out[i] == -7.0f;
    if ((int)kinds[ki] == (int)(REMOVED_KIND)) {
      if (st == COMBINER_ERR_UNSUPPORTED && untouched && combiner_workspace_size(&cfg) == 0) ++passed;
      else { ++failed; fprintf(stderr, "FAIL: %s should be compiled out: %s\n", REMOVED_NAME, combiner_status_string(st)); }
    } else {
      if (st == COMBINER_OK && !untouched) ++passed;
      else { ++failed; fprintf(stderr, "FAIL: %s should run: %s\n", combiner_kind_string(kinds[ki]), combiner_status_string(st)); }
    }
  }
  printf("kernels: %s\n", combiner_kernel_name());
  printf("%d passed, %d failed\n", passed, failed);
  return failed || !passed;
}
