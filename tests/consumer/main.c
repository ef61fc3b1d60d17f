/* The smallest real program on combiner.h, built by every way of consuming
 * it (tests/consumer/run.cmake): one attention call and one cache append
 * over the same tokens, which must agree. Prints "OK combiner <version>". */
#define COMBINER_IMPLEMENTATION
#include "combiner.h"

#include <math.h>
#include <stdio.h>

enum { L = 20, H = 2, D = 8 };  /* token-major [L][H][D] */

int main(void) {
  static float q[L * H * D], k[L * H * D], v[L * H * D];
  static float out[L * H * D], cached[L * H * D];
  static unsigned char cache_buffer[1 << 20];
  combiner_config cfg = {0};
  combiner_cache *cache = NULL;
  combiner_status st;
  size_t bytes;
  float worst = 0.0f;
  int i;

  for (i = 0; i < L * H * D; i++) {
    q[i] = sinf(0.37f * (float)i);
    k[i] = cosf(0.11f * (float)i);
    v[i] = sinf(0.05f * (float)i + 1.0f);
  }
  cfg.kind = COMBINER_AXIAL;
  cfg.causal = 1;
  cfg.seq_len = L;
  cfg.head_dim = D;
  cfg.num_heads = H;

  st = combiner_attention(&cfg, q, k, v, out, NULL, 0);
  if (st != COMBINER_OK) {
    printf("combiner_attention: %s\n", combiner_status_string(st));
    return 1;
  }

  /* The same L tokens as one chunked prefill into a cache of max_len L: the
   * same block, so the same outputs within float32 rounding. */
  bytes = combiner_cache_size(&cfg, L);
  if (bytes == 0 || bytes > sizeof cache_buffer) {
    printf("combiner_cache_size: %lu bytes\n", (unsigned long)bytes);
    return 1;
  }
  st = combiner_cache_init(&cache, &cfg, L, cache_buffer, bytes);
  if (st == COMBINER_OK) st = combiner_cache_append(cache, L, q, k, v, cached);
  if (st != COMBINER_OK) {
    printf("combiner_cache: %s\n", combiner_status_string(st));
    return 1;
  }
  for (i = 0; i < L * H * D; i++) {
    float diff = fabsf(out[i] - cached[i]);
    if (!(diff <= worst)) worst = diff;  /* NaN counts as the worst */
  }
  if (!(worst <= 1e-5f) || combiner_cache_length(cache) != L) {
    printf("cache and one call differ by %g\n", (double)worst);
    return 1;
  }
  printf("OK combiner %d.%d.%d\n", COMBINER_VERSION_MAJOR, COMBINER_VERSION_MINOR,
         COMBINER_VERSION_PATCH);
  return 0;
}
