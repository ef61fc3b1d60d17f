/* Half-precision K/V (SPEC 7): K and V given as IEEE binary16 or bfloat16
 * are converted exactly to float32 and the math runs on the converted
 * values. Checked here, for every kind and option, both directions, GQA,
 * strided layouts, partial blocks, 1 and 2 threads:
 *   - the conversion itself, on every binary16 and bfloat16 bit pattern
 *     (through DENSE at L = 1, whose output is v);
 *   - a call on f16/bf16 K/V (each alone or both) is bit-identical to the
 *     float32 call on the widened values, and within 1e-5 of the float64
 *     reference evaluated on the rounded inputs; split calls and the two
 *     phases agree bit for bit;
 *   - owned and borrowed caches on f16/bf16 K/V, random chunks and
 *     truncates: borrowed == owned bit for bit, == an owned float32 cache
 *     on the widened values bit for bit, within 1e-5 of the reference; an
 *     owned cache keeps K/V in their type (combiner_cache_kv, its size);
 *   - Inf and NaN in f16/bf16 K/V reach only the outputs that attend them,
 *     as the header's NUMERICS promises for float32 (earlier outputs
 *     bit-identical; a NaN or Inf value makes every later output
 *     non-finite, a NaN key its own position's);
 *   - a bad type is refused.
 * The rounding and widening here are the test's own (from the formats'
 * definitions), shared with nothing in the header. */
#define COMBINER_IMPLEMENTATION
#include "test_common.h"
#include <float.h>

#include "test_half.h"

/* A K or V tensor in `type` with the same layout as a float32 test tensor
 * (strides in elements), NaN outside its rows, and its widened float32
 * copy (`wide`, which the float32 call and the reference read). */
typedef struct typed {
  int type;
  test_tensor wide;
  uint16_t *half;   /* type != F32 */
} typed;

static const void *typed_data(const typed *t) {
  return t->type == F32 ? (const void *)t->wide.data : (const void *)t->half;
}

static void typed_fill_row(typed *t, int i, int h, const float *src) {
  int x;
  for (x = 0; x < t->wide.width; ++x) {
    if (t->type == F32) {
      test_at(&t->wide, i, h)[x] = src[x];
    } else {
      const uint16_t b = narrow(src[x], t->type);
      t->half[(ptrdiff_t)i * t->wide.ts + (ptrdiff_t)h * t->wide.hs + x] = b;
      test_at(&t->wide, i, h)[x] = widen(b, t->type);
    }
  }
}

static typed typed_make(int L, int heads, int width, int layout, int type, test_rng *rng) {
  typed t;
  size_t i;
  int p, h, x;
  float row[256];
  t.type = type;
  t.wide = test_tensor_make(L, heads, width, layout);
  t.half = NULL;
  if (type != F32) {
    t.half = (uint16_t *)test_alloc(t.wide.floats * sizeof(uint16_t));
    for (i = 0; i < t.wide.floats; ++i) t.half[i] = type == F16 ? 0x7e00u : 0x7fc0u;   /* NaN */
  }
  if (rng)
    for (p = 0; p < L; ++p)
      for (h = 0; h < heads; ++h) {
        for (x = 0; x < width; ++x) row[x] = test_rng_float(rng) * (x % 7 == 3 ? 1e-4f : 1.0f);   /* some subnormal f16 */
        typed_fill_row(&t, p, h, row);
      }
  return t;
}

static void typed_free(typed *t) { test_tensor_free(&t->wide); free(t->half); }

/* ---- 1. the conversion, every bit pattern --------------------------------- */

static void every_pattern(int type) {
  const int n = 65536 + 3;   /* a whole vector of lanes past the last, and a scalar tail */
  combiner_config cfg = test_config(COMBINER_DENSE, 1, 1, 1, 1, 0, 1);
  uint16_t *v = (uint16_t *)test_alloc(sizeof(uint16_t) * (size_t)n);
  float *out = (float *)test_alloc(sizeof(float) * (size_t)n), q = 0.5f;
  uint16_t k = 0x3c00u;
  int i, bad = 0, first = -1;
  combiner_status st;
  for (i = 0; i < n; ++i) v[i] = (uint16_t)(i & 0xffff);
  if (type == BF16) k = 0x3f80u;
  cfg.value_dim = n;
  cfg.k_type = (combiner_type)type;
  cfg.v_type = (combiner_type)type;
  st = combiner_attention(&cfg, &q, &k, v, out, NULL, 0);
  CHECK(st == COMBINER_OK, "%s: L = 1 call: %s", type_names[type], combiner_status_string(st));
  for (i = 0; i < n && st == COMBINER_OK; ++i) {
    const float want = widen(v[i], type);
    int ok = want != want ? out[i] != out[i] : bits_of(out[i]) == bits_of(want);
#if !defined(COMBINER_KEEP_DENORMALS)
    if (fabsf(want) < FLT_MIN && out[i] == 0.0f) ok = 1;   /* a bfloat16 denormal: flushed (NUMERICS) */
#endif
    if (!ok) { ++bad; if (first < 0) first = i; }
  }
  CHECK(bad == 0, "%s: %d of %d bit patterns widened wrongly (first 0x%04x)", type_names[type], bad, n,
        first < 0 ? 0u : (unsigned)(first & 0xffff));
  free(v);
  free(out);
}

/* ---- 2. one call ------------------------------------------------------------ */

typedef struct shape { int L, d, dv, H, Hkv, block, layout; } shape;

static const shape shapes[] = {
  {1, 5, 5, 2, 1, 0, LAYOUT_TOKEN_MAJOR},
  {37, 16, 16, 2, 2, 0, LAYOUT_PADDED},          /* L not a multiple of the block */
  {50, 24, 7, 4, 2, 7, LAYOUT_HEAD_MAJOR},       /* GQA, dv != d, partial blocks */
  {64, 64, 64, 1, 1, 8, LAYOUT_TOKEN_MAJOR},
  {29, 3, 20, 3, 1, 1, LAYOUT_PADDED},           /* block 1, MQA */
  {23, 17, 17, 2, 1, 40, LAYOUT_TOKEN_MAJOR},    /* block >= L */
  {130, 16, 16, 2, 1, 0, LAYOUT_TOKEN_MAJOR},    /* several key chunks */
};

static double vs_reference(const combiner_config *cfg, const test_tensor *q, const test_tensor *k,
                           const test_tensor *v, const test_tensor *o) {
  ref_problem rp = test_ref_problem(cfg);
  double *qd = test_to_double(q), *kd = test_to_double(k), *vd = test_to_double(v);
  double *ref = (double *)test_alloc(sizeof(double) * (size_t)o->L * o->heads * o->width);
  double err;
  ref_attention(&rp, qd, kd, vd, ref);
  err = test_rel_error(o, ref);
  free(qd); free(kd); free(vd); free(ref);
  return err;
}

static void one_call(const test_variant *var, const shape *sh, int causal, int ktype, int vtype, test_rng *rng) {
  combiner_config cfg = test_config(var->kind, sh->L, sh->d, sh->H, sh->Hkv, sh->block, causal), wcfg;
  test_tensor q = test_tensor_make(sh->L, sh->H, sh->d, sh->layout);
  typed k = typed_make(sh->L, sh->Hkv, sh->d, sh->layout, ktype, rng);
  typed v = typed_make(sh->L, sh->Hkv, sh->dv, sh->layout, vtype, rng);
  test_tensor o = test_tensor_make(sh->L, sh->H, sh->dv, sh->layout), ow = test_tensor_make(sh->L, sh->H, sh->dv, sh->layout);
  test_tensor o2 = test_tensor_make(sh->L, sh->H, sh->dv, sh->layout);
  combiner_summary_info info;
  combiner_status st;
  double err;
  int nth;
  test_tensor_fill(&q, rng);
  cfg.value_dim = sh->dv;
  cfg.axial_key = var->key;
  cfg.mixture_norm = var->norm;
  cfg.pool = (combiner_pool)(test_rng_u32(rng) % 2);
  cfg.q_layout = q.lay; cfg.k_layout = k.wide.lay; cfg.v_layout = v.wide.lay; cfg.out_layout = o.lay;
  cfg.num_threads = 1;
  wcfg = cfg;
  cfg.k_type = (combiner_type)ktype;
  cfg.v_type = (combiner_type)vtype;
  st = combiner_attention(&cfg, q.data, typed_data(&k), typed_data(&v), o.data, NULL, 0);
  CHECK(st == COMBINER_OK, "%s L=%d: typed call: %s", var->name, sh->L, combiner_status_string(st));
  st = combiner_attention(&wcfg, q.data, k.wide.data, v.wide.data, ow.data, NULL, 0);
  CHECK(st == COMBINER_OK, "f32 call");
  CHECK(test_same_rows(&o, &ow, sh->L), "%s %s L=%d d=%d dv=%d H=%d/%d m=%d %s K %s V %s: not the float32 call on "
        "the widened values, bit for bit", var->name, causal ? "causal" : "bidir", sh->L, sh->d, sh->dv, sh->H, sh->Hkv,
        sh->block, layout_names[sh->layout], type_names[ktype], type_names[vtype]);
  err = vs_reference(&wcfg, &q, &k.wide, &v.wide, &o);
  CHECK(err <= TEST_TOLERANCE, "%s %s L=%d K %s V %s: error %.3g vs the float64 reference on the rounded inputs",
        var->name, causal ? "causal" : "bidir", sh->L, type_names[ktype], type_names[vtype], err);
  /* 2 threads, and a split call in 3 parts: the same bits */
  cfg.num_threads = 2;
  st = combiner_attention(&cfg, q.data, typed_data(&k), typed_data(&v), o2.data, NULL, 0);
  CHECK(st == COMBINER_OK && test_same_rows(&o, &o2, sh->L), "%s L=%d: 2 threads differ", var->name, sh->L);
  cfg.num_threads = 1;
  {
    const size_t ws = combiner_part_workspace_size(&cfg, 3);
    void *w = test_alloc(ws);
    int s, ith, steps = combiner_step_count(&cfg);
    for (s = 0; s < steps; ++s)
      for (ith = 0; ith < 3; ++ith)
        CHECK(combiner_attention_part(&cfg, q.data, typed_data(&k), typed_data(&v), o2.data, w, ws, s, ith, 3) ==
              COMBINER_OK, "part");
    CHECK(test_same_rows(&o, &o2, sh->L), "%s L=%d: split call differs", var->name, sh->L);
    free(w);
  }
  /* the two phases: summaries of typed K/V, then combine */
  if (combiner_query_summaries(&cfg, &info) == COMBINER_OK) {
    float *sk = (float *)test_alloc(sizeof(float) * (info.key_floats + 1));
    float *sv = (float *)test_alloc(sizeof(float) * (info.value_floats + 1));
    st = combiner_summarize(&cfg, q.data, typed_data(&k), typed_data(&v), sk, sv, NULL, 0);
    if (st == COMBINER_OK) st = combiner_combine(&cfg, q.data, typed_data(&k), typed_data(&v), sk, sv, o2.data, NULL, 0);
    CHECK(st == COMBINER_OK && test_same_rows(&o, &o2, sh->L), "%s L=%d: two phases differ from one call (%s)",
          var->name, sh->L, combiner_status_string(st));
    free(sk);
    free(sv);
  }
  (void)nth;
  test_tensor_free(&q); typed_free(&k); typed_free(&v);
  test_tensor_free(&o); test_tensor_free(&ow); test_tensor_free(&o2);
}

/* ---- 3. caches ------------------------------------------------------------- */

static void caches(const test_variant *var, int type, int Hkv, int block, test_rng *rng) {
  const int N = 90 + (int)(test_rng_u32(rng) % 40), d = 16, H = 4, rollback = 9;
  combiner_config cfg = test_config(var->kind, 64, d, H, Hkv, block, 1), wcfg;
  typed k = typed_make(N, Hkv, d, LAYOUT_TOKEN_MAJOR, type, rng), v = typed_make(N, Hkv, d, LAYOUT_TOKEN_MAJOR, type, rng);
  typed ek = typed_make(N, Hkv, d, LAYOUT_TOKEN_MAJOR, type, NULL), ev = typed_make(N, Hkv, d, LAYOUT_TOKEN_MAJOR, type, NULL);
  test_tensor q = test_tensor_make(N, H, d, LAYOUT_TOKEN_MAJOR);
  test_tensor oo = test_tensor_make(N, H, d, LAYOUT_TOKEN_MAJOR), ob = test_tensor_make(N, H, d, LAYOUT_TOKEN_MAJOR);
  test_tensor ow = test_tensor_make(N, H, d, LAYOUT_TOKEN_MAJOR);
  combiner_cache_options bo;
  combiner_cache *owned = NULL, *borrowed = NULL, *wide = NULL;
  unsigned char *b1, *b2, *b3;
  size_t s1, s2, s3, sf;
  int pos = 0, reach = 0, i, h;
  const void *kk = NULL, *vv = NULL;
  combiner_layout kl, vl;
  memset(&kl, 0, sizeof kl);
  memset(&vl, 0, sizeof vl);
  test_tensor_fill(&q, rng);
  cfg.axial_key = var->key;
  cfg.mixture_norm = var->norm;
  cfg.num_threads = 1 + (int)(test_rng_u32(rng) % 2);
  wcfg = cfg;
  cfg.k_type = cfg.v_type = (combiner_type)type;
  memset(&bo, 0, sizeof bo);
  bo.max_len = N;
  bo.k = typed_data(&ek);
  bo.v = typed_data(&ev);
  bo.rollback = rollback;
  s1 = combiner_cache_size(&cfg, N);
  s2 = combiner_cache_size_ex(&cfg, &bo);
  s3 = combiner_cache_size(&wcfg, N);
  b1 = (unsigned char *)test_alloc(s1); b2 = (unsigned char *)test_alloc(s2); b3 = (unsigned char *)test_alloc(s3);
  CHECK(combiner_cache_init(&owned, &cfg, N, b1, s1) == COMBINER_OK, "%s: owned %s init", var->name, type_names[type]);
  CHECK(combiner_cache_init_ex(&borrowed, &cfg, &bo, b2, s2) == COMBINER_OK, "%s: borrowed init", var->name);
  CHECK(combiner_cache_init(&wide, &wcfg, N, b3, s3) == COMBINER_OK, "f32 init");
  /* an owned cache keeps K and V in their type: half the float32 bytes */
  sf = (size_t)2 * N * Hkv * d * 2;   /* K + V bytes saved per position by 2-byte elements */
  CHECK(s3 - s1 + 128 >= sf && s3 - s1 <= sf + 128, "%s: owned %s cache is %zu bytes, float32 %zu: K/V not kept as %s", var->name, type_names[type],
        s1, s3, type_names[type]);
  if (!owned || !borrowed || !wide) goto done;
  while (pos < N) {
    int t = 1 + (int)(test_rng_u32(rng) % 7), back;
    if (t > N - pos) t = N - pos;
    for (i = pos; i < pos + t; ++i)   /* the engine writes the tokens into its cache first */
      for (h = 0; h < Hkv; ++h) {
        typed_fill_row(&ek, i, h, test_at(&k.wide, i, h));
        typed_fill_row(&ev, i, h, test_at(&v.wide, i, h));
      }
    CHECK(combiner_cache_append(owned, t, test_at(&q, pos, 0), (const unsigned char *)typed_data(&k) +
                                    (size_t)pos * (size_t)k.wide.ts * (type == F32 ? 4 : 2),
                                (const unsigned char *)typed_data(&v) + (size_t)pos * (size_t)v.wide.ts * (type == F32 ? 4 : 2),
                                test_at(&oo, pos, 0)) == COMBINER_OK, "owned append");
    CHECK(combiner_cache_append_at(borrowed, pos, t, test_at(&q, pos, 0), NULL, NULL, test_at(&ob, pos, 0), NULL, 0) ==
          COMBINER_OK, "borrowed append");
    CHECK(combiner_cache_append(wide, t, test_at(&q, pos, 0), test_at(&k.wide, pos, 0), test_at(&v.wide, pos, 0),
                                test_at(&ow, pos, 0)) == COMBINER_OK, "f32 append");
    pos += t;
    if (pos > reach) reach = pos;
    if (test_rng_u32(rng) % 4 == 0 && pos < N) {   /* roll back within the window */
      back = (int)(test_rng_u32(rng) % (unsigned)(rollback + 1));
      if (back > pos - (reach - rollback)) back = pos - (reach - rollback);
      if (back > pos) back = pos;
      if (back > 0) {
        pos -= back;
        CHECK(combiner_cache_truncate(owned, pos) == COMBINER_OK, "truncate owned");
        CHECK(combiner_cache_truncate(borrowed, pos) == COMBINER_OK, "%s: truncate borrowed to %d (reach %d, window %d)",
              var->name, pos, reach, rollback);
        CHECK(combiner_cache_truncate(wide, pos) == COMBINER_OK, "truncate f32");
      }
    }
  }
  CHECK(test_same_rows(&oo, &ob, N), "%s %s kv%d m=%d: borrowed != owned", var->name, type_names[type], Hkv, block);
  CHECK(test_same_rows(&oo, &ow, N), "%s %s kv%d m=%d: owned %s cache != float32 cache on the widened values",
        var->name, type_names[type], Hkv, block, type_names[type]);
  {
    combiner_config rc = wcfg;
    double err;
    rc.seq_len = N;
    rc.block = block ? block : 8;   /* the cache's block: from seq_len 64 */
    err = vs_reference(&rc, &q, &k.wide, &v.wide, &oo);
    CHECK(err <= TEST_TOLERANCE, "%s %s kv%d m=%d: cache error %.3g vs the reference", var->name, type_names[type], Hkv,
          block, err);
  }
  CHECK(combiner_cache_kv(owned, &kk, &vv, &kl, &vl) == COMBINER_OK && kk && vv, "kv");
  for (i = 0; i < N && kk; ++i)
    for (h = 0; h < Hkv; ++h)
      CHECK(memcmp((const unsigned char *)kk + (size_t)(i * kl.token_stride + h * kl.head_stride) * 2,
                   k.half + (size_t)i * (size_t)k.wide.ts + (size_t)h * (size_t)k.wide.hs, 2 * (size_t)d) == 0,
            "%s: combiner_cache_kv: position %d head %d is not the appended %s", var->name, i, h, type_names[type]);
done:
  free(b1); free(b2); free(b3);
  typed_free(&k); typed_free(&v); typed_free(&ek); typed_free(&ev);
  test_tensor_free(&q); test_tensor_free(&oo); test_tensor_free(&ob); test_tensor_free(&ow);
}

/* Fast chunks (combiner_cache_options.fast_chunks) on half-precision K/V,
 * DENSE and FIXED: the positions of appends of >= 64 tokens equal
 * combiner_attention on the same typed K/V bit for bit, owned and borrowed
 * (no query ring at this length); every output within tolerance of the
 * reference on the widened values. */
static void fast_types(combiner_kind kind, int type, test_rng *rng) {
  static const int sizes[4] = {100, 3, 64, 33};
  const int N = 200, d = 16, H = 4, Hkv = 2;
  combiner_config cfg = test_config(kind, N, d, H, Hkv, kind == COMBINER_FIXED ? 11 : 0, 1), rc;
  typed k = typed_make(N, Hkv, d, LAYOUT_TOKEN_MAJOR, type, rng), v = typed_make(N, Hkv, d, LAYOUT_TOKEN_MAJOR, type, rng);
  test_tensor q = test_tensor_make(N, H, d, LAYOUT_TOKEN_MAJOR), one = test_tensor_make(N, H, d, LAYOUT_TOKEN_MAJOR);
  test_tensor o[2];
  combiner_cache_options opt;
  combiner_cache *cache = NULL;
  unsigned char *buf;
  size_t size;
  int mode, s, pos;
  test_tensor_fill(&q, rng);
  cfg.num_threads = 2;
  cfg.k_type = cfg.v_type = (combiner_type)type;
  CHECK(combiner_attention(&cfg, q.data, typed_data(&k), typed_data(&v), one.data, NULL, 0) == COMBINER_OK,
        "fast_types: one call");
  for (mode = 0; mode < 2; ++mode) {   /* owned, borrowed */
    o[mode] = test_tensor_make(N, H, d, LAYOUT_TOKEN_MAJOR);
    memset(&opt, 0, sizeof opt);
    opt.max_len = N;
    opt.fast_chunks = 1;
    if (mode) { opt.k = typed_data(&k); opt.v = typed_data(&v); }
    size = combiner_cache_size_ex(&cfg, &opt);
    buf = (unsigned char *)test_alloc(size);
    CHECK(combiner_cache_init_ex(&cache, &cfg, &opt, buf, size) == COMBINER_OK, "fast_types: init");
    for (s = 0, pos = 0; s < 4 && cache; pos += sizes[s++]) {
      const size_t at = (size_t)pos * (size_t)k.wide.ts * (type == F32 ? 4 : 2);
      const combiner_status st = mode ? combiner_cache_append_at(cache, pos, sizes[s], test_at(&q, pos, 0), NULL, NULL,
                                                                 test_at(&o[mode], pos, 0), NULL, 0)
                                      : combiner_cache_append(cache, sizes[s], test_at(&q, pos, 0),
                                                              (const unsigned char *)typed_data(&k) + at,
                                                              (const unsigned char *)typed_data(&v) + at,
                                                              test_at(&o[mode], pos, 0));
      CHECK(st == COMBINER_OK, "fast_types: append %d at %d: %s", sizes[s], pos, combiner_status_string(st));
      if (sizes[s] >= 64) {
        test_tensor a = o[mode], b = one;
        a.data = test_at(&o[mode], pos, 0); a.L = sizes[s];
        b.data = test_at(&one, pos, 0); b.L = sizes[s];
        CHECK(test_same_rows(&a, &b, sizes[s]), "%s %s %s: fast chunk [%d, %d) != combiner_attention (bits)",
              combiner_kind_string(kind), type_names[type], mode ? "borrowed" : "owned", pos, pos + sizes[s]);
      }
    }
    rc = cfg;
    rc.k_type = rc.v_type = COMBINER_F32;
    CHECK(vs_reference(&rc, &q, &k.wide, &v.wide, &o[mode]) <= TEST_TOLERANCE, "%s %s: fast chunks vs the reference",
          combiner_kind_string(kind), type_names[type]);
    free(buf);
    test_tensor_free(&o[mode]);
  }
  typed_free(&k); typed_free(&v);
  test_tensor_free(&q); test_tensor_free(&one);
}

/* DENSE decode past one key range (1024 positions), many heads (20: the
 * logits go 16 heads at a time, across a GQA group), odd widths: an owned
 * cache, a borrowed token-major and a borrowed head-major one give the same
 * bits for every type, each equal to the float32 owned cache on the widened
 * values, and match the reference. */
static void dense_long(int type, test_rng *rng) {
  const int N = test_quick() ? 1060 : 1300, d = 20, dv = 9, H = 20, Hkv = 4;
  combiner_config cfg = test_config(COMBINER_DENSE, N, d, H, Hkv, 0, 1), wcfg, hcfg;
  typed k = typed_make(N, Hkv, d, LAYOUT_TOKEN_MAJOR, type, rng), v = typed_make(N, Hkv, dv, LAYOUT_TOKEN_MAJOR, type, rng);
  typed kh = typed_make(N, Hkv, d, LAYOUT_HEAD_MAJOR, type, NULL), vh = typed_make(N, Hkv, dv, LAYOUT_HEAD_MAJOR, type, NULL);
  test_tensor q = test_tensor_make(N, H, d, LAYOUT_TOKEN_MAJOR), o[4];
  combiner_cache *cc[4] = {NULL, NULL, NULL, NULL};
  unsigned char *buf[4];
  combiner_cache_options bo;
  int i, h, pos, m;
  double err;
  for (i = 0; i < N; ++i)
    for (h = 0; h < Hkv; ++h) {
      typed_fill_row(&kh, i, h, test_at(&k.wide, i, h));
      typed_fill_row(&vh, i, h, test_at(&v.wide, i, h));
    }
  test_tensor_fill(&q, rng);
  cfg.value_dim = dv;
  cfg.num_threads = 2;
  wcfg = cfg;
  cfg.k_type = cfg.v_type = (combiner_type)type;
  hcfg = cfg;
  hcfg.k_layout = kh.wide.lay;
  hcfg.v_layout = vh.wide.lay;
  memset(&bo, 0, sizeof bo);
  bo.max_len = N;
  for (m = 0; m < 4; ++m) {   /* owned, borrowed token-major, borrowed head-major, owned float32 */
    const combiner_config *mc = m == 2 ? &hcfg : m == 3 ? &wcfg : &cfg;
    size_t bytes;
    bo.k = m == 1 ? typed_data(&k) : m == 2 ? typed_data(&kh) : NULL;
    bo.v = m == 1 ? typed_data(&v) : m == 2 ? typed_data(&vh) : NULL;
    bytes = combiner_cache_size_ex(mc, &bo);
    buf[m] = (unsigned char *)test_alloc(bytes);
    o[m] = test_tensor_make(N, H, dv, LAYOUT_TOKEN_MAJOR);
    CHECK(combiner_cache_init_ex(&cc[m], mc, &bo, buf[m], bytes) == COMBINER_OK, "dense long init %d", m);
  }
  for (pos = 0; pos < N && cc[0] && cc[1] && cc[2] && cc[3];) {
    int t = pos < 1000 ? 1000 : 1 + (int)(test_rng_u32(rng) % 40);
    if (t > N - pos) t = N - pos;
    const size_t es = type == F32 ? 4 : 2;
    CHECK(combiner_cache_append(cc[0], t, test_at(&q, pos, 0), (const unsigned char *)typed_data(&k) + (size_t)pos * (size_t)k.wide.ts * es,
                                (const unsigned char *)typed_data(&v) + (size_t)pos * (size_t)v.wide.ts * es,
                                test_at(&o[0], pos, 0)) == COMBINER_OK, "owned");
    CHECK(combiner_cache_append(cc[1], t, test_at(&q, pos, 0), NULL, NULL, test_at(&o[1], pos, 0)) == COMBINER_OK, "b tm");
    CHECK(combiner_cache_append(cc[2], t, test_at(&q, pos, 0), NULL, NULL, test_at(&o[2], pos, 0)) == COMBINER_OK, "b hm");
    CHECK(combiner_cache_append(cc[3], t, test_at(&q, pos, 0), test_at(&k.wide, pos, 0), test_at(&v.wide, pos, 0),
                                test_at(&o[3], pos, 0)) == COMBINER_OK, "f32");
    pos += t;
  }
  CHECK(test_same_rows(&o[0], &o[1], N) && test_same_rows(&o[0], &o[2], N),
        "dense %s N=%d: owned, borrowed token-major and head-major differ", type_names[type], N);
  CHECK(test_same_rows(&o[0], &o[3], N), "dense %s N=%d: not the float32 cache on the widened values", type_names[type], N);
  err = vs_reference(&wcfg, &q, &k.wide, &v.wide, &o[0]);
  CHECK(err <= TEST_TOLERANCE, "dense %s N=%d: error %.3g vs the reference", type_names[type], N, err);
  for (m = 0; m < 4; ++m) { free(buf[m]); test_tensor_free(&o[m]); }
  typed_free(&k); typed_free(&v); typed_free(&kh); typed_free(&vh); test_tensor_free(&q);
}

/* ---- 4. Inf and NaN --------------------------------------------------------- */

static void non_finite(const test_variant *var, int type, test_rng *rng) {
  const int L = 40, d = 8, j = 17;
  combiner_config cfg = test_config(var->kind, L, d, 2, 1, 6, 1);
  test_tensor q = test_tensor_make(L, 2, d, LAYOUT_TOKEN_MAJOR);
  typed k = typed_make(L, 1, d, LAYOUT_TOKEN_MAJOR, type, rng), v = typed_make(L, 1, d, LAYOUT_TOKEN_MAJOR, type, rng);
  test_tensor clean = test_tensor_make(L, 2, d, LAYOUT_TOKEN_MAJOR), o = test_tensor_make(L, 2, d, LAYOUT_TOKEN_MAJOR);
  const uint16_t inf = type == F16 ? 0x7c00u : 0x7f80u, nan = type == F16 ? 0x7e00u : 0x7fc0u;
  int which, i, h, x;
  test_tensor_fill(&q, rng);
  cfg.axial_key = var->key;
  cfg.mixture_norm = var->norm;
  cfg.k_type = cfg.v_type = (combiner_type)type;
  CHECK(combiner_attention(&cfg, q.data, k.half, v.half, clean.data, NULL, 0) == COMBINER_OK, "clean");
  for (which = 0; which < 3; ++which) {   /* NaN in V, Inf in V, NaN in K at position j */
    uint16_t *cell = (which == 2 ? k.half : v.half) + (ptrdiff_t)j * (which == 2 ? k.wide.ts : v.wide.ts) + 3;
    const uint16_t keep = *cell;
    int bad_before = 0, finite_after = 0;
    *cell = which == 1 ? inf : nan;
    CHECK(combiner_attention(&cfg, q.data, k.half, v.half, o.data, NULL, 0) == COMBINER_OK, "poisoned call");
    *cell = keep;
    bad_before = !test_same_rows(&o, &clean, j);   /* causal: earlier outputs untouched, bit for bit */
    for (i = j; i < (which == 2 ? j + 1 : L); ++i)   /* a NaN value: every later output; a NaN key: its own */
      for (h = 0; h < 2; ++h) {
        int any = 0;
        for (x = 0; x < d; ++x) any |= !(fabsf(test_at(&o, i, h)[x]) <= FLT_MAX);
        if (!any) ++finite_after;
      }
    CHECK(!bad_before, "%s %s: a %s at position %d changed earlier outputs", var->name, type_names[type],
          which == 1 ? "V Inf" : which ? "K NaN" : "V NaN", j);
    CHECK(finite_after == 0, "%s %s: a %s at position %d: %d later outputs that attend it stayed finite", var->name,
          type_names[type], which == 1 ? "V Inf" : which ? "K NaN" : "V NaN", j, finite_after);
  }
  test_tensor_free(&q); typed_free(&k); typed_free(&v); test_tensor_free(&clean); test_tensor_free(&o);
}

int main(void) {
  test_rng rng = {20261207u};
  const test_variant *var;
  size_t si;
  int causal, t, n = 0;
  every_pattern(F16);
  every_pattern(BF16);
  TEST_FOR_EACH_VARIANT(var) {
    if (!test_variant_selected(var)) continue;
    for (si = 0; si < sizeof shapes / sizeof shapes[0]; ++si)
      for (causal = 0; causal < 2; ++causal, ++n) {
        if (!test_quick_keeps(shapes[si].L, (unsigned)n)) continue;
        one_call(var, &shapes[si], causal, F16, F16, &rng);
        one_call(var, &shapes[si], causal, BF16, BF16, &rng);
        one_call(var, &shapes[si], causal, (int)(n % 2) ? F16 : F32, (int)(n % 2) ? F32 : BF16, &rng);   /* mixed */
      }
    for (t = F16; t <= BF16; ++t) {
      caches(var, t, 2, 0, &rng);
      caches(var, t, 1, 5, &rng);
      non_finite(var, t, &rng);
    }
  }
  if (test_variant_selected(test_variant_named("dense")))
    for (t = F32; t <= BF16; ++t) dense_long(t, &rng);
  for (t = F32; t <= BF16; ++t) {
    if (test_variant_selected(test_variant_named("dense"))) fast_types(COMBINER_DENSE, t, &rng);
    if (test_variant_selected(test_variant_named("fixed"))) fast_types(COMBINER_FIXED, t, &rng);
  }
  {   /* a type that does not exist */
    combiner_config cfg = test_config(COMBINER_FIXED, 8, 4, 1, 1, 0, 1);
    float q[32] = {0}, k[32] = {0}, v[32] = {0}, o[32];
    cfg.k_type = (combiner_type)3;
    CHECK(combiner_attention(&cfg, q, k, v, o, NULL, 0) == COMBINER_ERR_INVALID_ARGUMENT, "k_type 3 accepted");
    CHECK(combiner_cache_size(&cfg, 8) == 0, "a cache with k_type 3 has a size");
    cfg.k_type = COMBINER_F32;
    cfg.v_type = (combiner_type)-1;
    CHECK(combiner_attention(&cfg, q, k, v, o, NULL, 0) == COMBINER_ERR_INVALID_ARGUMENT, "v_type -1 accepted");
  }
  return TEST_SUMMARY();
}
