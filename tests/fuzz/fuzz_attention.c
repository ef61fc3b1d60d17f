/* libFuzzer target: decodes a config (sometimes deliberately invalid),
 * strides and small tensors from the input and checks
 *   - a rejected call returns the status combiner_resolve_config gives,
 *     reports workspace size 0 and leaves out untouched;
 *   - an accepted call succeeds and matches the float64 reference
 *     (tests/reference.c) to 1e-5, with NaN in every float it must not read;
 *   - summarize + combine equals the one-call result bit for bit.
 * Any violation aborts, so libFuzzer keeps the input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define COMBINER_IMPLEMENTATION
#include "combiner.h"
#include "reference.h"

typedef struct reader { const uint8_t *p; size_t n, i; } reader;

static unsigned next_byte(reader *r) {
  unsigned b = r->n ? r->p[r->i % r->n] : 0u;
  r->i++;
  return b;
}

static void fail(const char *what, const combiner_config *c) {
  fprintf(stderr, "fuzz check failed: %s (kind %d L %d d %d dv %d H %d Hkv %d block %d causal %d)\n",
          what, (int)c->kind, c->seq_len, c->head_dim, c->value_dim, c->num_heads, c->num_kv_heads,
          c->block, c->causal);
  abort();
}

/* layout choice: default, head-major, padded, or raw (maybe invalid) strides */
static combiner_layout decode_layout(reader *r, int L, int heads, int width) {
  combiner_layout lay;
  unsigned sel = next_byte(r) % 8;
  lay.token_stride = 0;
  lay.head_stride = 0;
  if (sel == 1) { lay.token_stride = width; lay.head_stride = (ptrdiff_t)L * width; }
  if (sel == 2) { lay.head_stride = width + 1 + (int)(next_byte(r) % 4); lay.token_stride = heads * lay.head_stride + (int)(next_byte(r) % 3); }
  if (sel == 3) {   /* raw strides near the valid range: often overlapping or negative */
    lay.head_stride = (ptrdiff_t)width + (ptrdiff_t)(next_byte(r) % 8) - 3;
    lay.token_stride = (ptrdiff_t)heads * width + (ptrdiff_t)(next_byte(r) % 16) - 8;
  }
  return lay;
}

static size_t extent(const combiner_layout *lay, int L, int heads, int width) {
  return (size_t)((L - 1) * lay->token_stride + (heads - 1) * lay->head_stride + width);
}

static float *tensor(reader *r, const combiner_layout *lay, int L, int heads, int width, size_t *floats) {
  size_t n = extent(lay, L, heads, width), i;
  float *t = (float *)malloc(n * sizeof(float));
  int p, h, x;
  if (!t) abort();
  for (i = 0; i < n; ++i) t[i] = NAN;
  for (p = 0; p < L; ++p)
    for (h = 0; h < heads; ++h)
      for (x = 0; x < width; ++x)
        t[p * lay->token_stride + h * lay->head_stride + x] = ((float)next_byte(r) - 127.5f) / 128.0f;
  *floats = n;
  return t;
}

static double *to_double(const float *t, const combiner_layout *lay, int L, int heads, int width) {
  double *o = (double *)malloc(sizeof(double) * (size_t)L * heads * width);
  int p, h, x;
  if (!o) abort();
  for (h = 0; h < heads; ++h)
    for (p = 0; p < L; ++p)
      for (x = 0; x < width; ++x)
        o[((size_t)h * L + p) * width + x] = t[p * lay->token_stride + h * lay->head_stride + x];
  return o;
}

static void check_rejected(const combiner_config *cfg, combiner_status want) {
  float q[64], k[64], v[64], out[64];
  combiner_status st;
  int i;
  for (i = 0; i < 64; ++i) { q[i] = k[i] = v[i] = 0.5f; out[i] = -3.0f; }
  st = combiner_attention(cfg, q, k, v, out, NULL, 0);
  if (st != want) fail("status differs from combiner_resolve_config", cfg);
  for (i = 0; i < 64; ++i)
    if (out[i] != -3.0f) fail("out written by a rejected call", cfg);
  if (combiner_workspace_size(cfg) != 0) fail("workspace size of a rejected config", cfg);
}

static void check_accepted(reader *r, const combiner_config *cfg, const combiner_config *res) {
  int L = res->seq_len, d = res->head_dim, dv = res->value_dim, H = res->num_heads, Hkv = res->num_kv_heads;
  size_t nq, nk, nv, no, i;
  float *q = tensor(r, &res->q_layout, L, H, d, &nq);
  float *k = tensor(r, &res->k_layout, L, Hkv, d, &nk);
  float *v = tensor(r, &res->v_layout, L, Hkv, dv, &nv);
  float *o = tensor(r, &res->out_layout, L, H, dv, &no), *o2;
  double *qd, *kd, *vd, *ref, err = 0.0, mag = 0.0;
  ref_problem p;
  combiner_summary_info info;
  float *sk, *sv;
  int use_workspace = (int)(next_byte(r) & 1), t, h, x;
  size_t ws = combiner_workspace_size(cfg);
  void *work = use_workspace ? malloc(ws) : NULL;
  if (ws == 0) fail("accepted config with workspace size 0", cfg);
  if (combiner_attention(cfg, q, k, v, o, work, ws) != COMBINER_OK) fail("accepted config failed", cfg);
  /* the float64 reference */
  qd = to_double(q, &res->q_layout, L, H, d);
  kd = to_double(k, &res->k_layout, L, Hkv, d);
  vd = to_double(v, &res->v_layout, L, Hkv, dv);
  ref = (double *)malloc(sizeof(double) * (size_t)L * H * dv);
  if (!ref) abort();
  memset(&p, 0, sizeof p);
  p.kind = res->kind == COMBINER_FIXED ? REF_FIXED : res->kind == COMBINER_AXIAL ? REF_AXIAL
         : res->kind == COMBINER_MIXTURE ? REF_MIXTURE : res->kind == COMBINER_LOGSPARSE ? REF_LOGSPARSE
         : REF_DENSE;
  p.L = L; p.d = d; p.dv = dv; p.H = H; p.Hkv = Hkv; p.m = res->block; p.causal = res->causal != 0;
  p.scale = res->scale;
  p.pool = res->pool == COMBINER_POOL_MEAN ? REF_POOL_MEAN : REF_POOL_MAX;
  p.axial_key = res->axial_key == COMBINER_AXIAL_KEY_SELF ? REF_KEY_SELF : REF_KEY_WSUM;
  p.mixture_norm = res->mixture_norm == COMBINER_MIXTURE_AVERAGE ? REF_MIX_AVERAGE : REF_MIX_JOINT;
  ref_attention(&p, qd, kd, vd, ref);
  for (h = 0; h < H; ++h)
    for (t = 0; t < L; ++t)
      for (x = 0; x < dv; ++x) {
        double a = o[t * res->out_layout.token_stride + h * res->out_layout.head_stride + x];
        double b = ref[((size_t)h * L + t) * dv + x];
        double e = fabs(a - b);
        if (!(e <= err)) err = e == e ? e : INFINITY;
        if (fabs(b) > mag) mag = fabs(b);
      }
  if (!(err <= 1e-5 * (mag > 0 ? mag : 1.0))) fail("differs from the float64 reference", cfg);
  /* two phases equal one call */
  if (combiner_query_summaries(cfg, &info) != COMBINER_OK) fail("query_summaries", cfg);
  sk = (float *)malloc(sizeof(float) * (info.key_floats + 1));
  sv = (float *)malloc(sizeof(float) * (info.value_floats + 1));
  o2 = (float *)malloc(sizeof(float) * no);
  if (!sk || !sv || !o2) abort();
  for (i = 0; i < no; ++i) o2[i] = o[i];
  if (combiner_summarize(cfg, q, k, v, sk, sv, NULL, 0) != COMBINER_OK ||
      combiner_combine(cfg, q, k, v, sk, sv, o2, NULL, 0) != COMBINER_OK)
    fail("two-phase call failed", cfg);
  if (memcmp(o, o2, no * sizeof(float)) != 0) fail("two-phase differs from one call", cfg);
  free(sk); free(sv); free(o2);
  free(q); free(k); free(v); free(o); free(qd); free(kd); free(vd); free(ref); free(work);
  (void)nq; (void)nk; (void)nv;
}

static long fuzz_accepted = 0, fuzz_rejected = 0;

/* counts for the replay driver's summary */
void fuzz_counts(long *accepted, long *rejected);
void fuzz_counts(long *accepted, long *rejected) {
  *accepted = fuzz_accepted;
  *rejected = fuzz_rejected;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const float scales[] = {0.0f, 0.5f, 1.0f, -1.0f};
  reader r;
  combiner_config cfg, res;
  combiner_status st;
  unsigned flags, invalid;
  r.p = data; r.n = size; r.i = 0;
  memset(&cfg, 0, sizeof cfg);
  cfg.kind = (combiner_kind)(next_byte(&r) % 6);
  flags = next_byte(&r);
  cfg.causal = (int)(flags & 1u);
  cfg.pool = (combiner_pool)((flags >> 1) & 1u);
  cfg.axial_key = (combiner_axial_key)((flags >> 2) & 1u);
  cfg.mixture_norm = (combiner_mixture_norm)((flags >> 3) & 1u);
  cfg.num_threads = 1 + (int)((flags >> 4) & 1u);
  cfg.seq_len = 1 + (int)(next_byte(&r) % 40);
  cfg.block = (int)(next_byte(&r) % 45);
  cfg.head_dim = 1 + (int)(next_byte(&r) % 8);
  cfg.value_dim = (int)(next_byte(&r) % 9);
  cfg.num_heads = 1 + (int)(next_byte(&r) % 4);
  cfg.num_kv_heads = (int)(next_byte(&r) % 5);
  if (cfg.num_kv_heads && cfg.num_heads % cfg.num_kv_heads) cfg.num_kv_heads = 1;
  cfg.scale = scales[next_byte(&r) % 4];
  {
    int dv = cfg.value_dim ? cfg.value_dim : cfg.head_dim;
    int hkv = cfg.num_kv_heads ? cfg.num_kv_heads : cfg.num_heads;
    cfg.q_layout = decode_layout(&r, cfg.seq_len, cfg.num_heads, cfg.head_dim);
    cfg.k_layout = decode_layout(&r, cfg.seq_len, hkv, cfg.head_dim);
    cfg.v_layout = decode_layout(&r, cfg.seq_len, hkv, dv);
    cfg.out_layout = decode_layout(&r, cfg.seq_len, cfg.num_heads, dv);
  }
  /* one in four inputs breaks one field on purpose */
  invalid = next_byte(&r);
  if ((invalid & 3u) == 0) {
    switch ((invalid >> 2) % 10) {
      case 0: cfg.kind = (combiner_kind)(6 + (int)(invalid >> 6)); break;
      case 1: cfg.seq_len = -(int)(invalid >> 4); break;
      case 2: cfg.head_dim = 0; break;
      case 3: cfg.value_dim = -1; break;
      case 4: cfg.num_heads = 3; cfg.num_kv_heads = 2; break;
      case 5: cfg.block = -1 - (int)(invalid >> 6); break;
      case 6: cfg.scale = NAN; break;
      case 7: cfg.pool = (combiner_pool)2; break;
      case 8: cfg.num_threads = -1; break;
      default: cfg.seq_len = 0x7fffffff; cfg.head_dim = 0x7fffffff; break;
    }
  }
  st = combiner_resolve_config(&cfg, &res);
  if (st != COMBINER_OK) { check_rejected(&cfg, st); ++fuzz_rejected; }
  else { check_accepted(&r, &cfg, &res); ++fuzz_accepted; }
  return 0;
}
