/* A cache on borrowed K/V (SPEC 7, "borrowed storage"): an engine keeps K
 * and V of every position in its own buffer (token-major, head-major,
 * padded, or a layer's slice of a [layer][seq][kv][d] cache); the cache
 * reads them there and keeps only what Combiner adds. Fed the same script
 * of appends and rollbacks, an owned cache (which copies K and V) and a
 * borrowed one write the same bits, for every kind and option, random
 * chunking, 1 or 2 threads, its own scratch or one shared with another
 * cache; the final outputs match the float64 reference of the final
 * sequence. combiner_cache_append_at appends at a position (equal to the
 * length, or below it within the rollback window); beyond the window
 * truncate and append_at say COMBINER_ERR_ROLLBACK and change nothing; the
 * borrowed K/V are never written; combiner_cache_kv says where K/V are.
 * The memory statement of the README (extra bytes per token over the
 * engine's K/V) is checked against combiner_cache_size_ex. */
#define COMBINER_IMPLEMENTATION
#include "test_common.h"

#include "test_kinds.h"

/* An engine's K or V buffer for one layer, `layers` layers deep when a
 * slice: element (i, g, x) at data + i*ts + g*hs + x. */
typedef struct engine_kv {
  float *all;              /* the whole allocation (NaN where unused) */
  size_t floats;
  test_tensor t;           /* this layer's view */
} engine_kv;

enum { ENGINE_TOKEN = 0, ENGINE_HEAD, ENGINE_PADDED, ENGINE_SLICE, ENGINE_LAYOUTS };
static const char *const engine_names[ENGINE_LAYOUTS] = {"token-major", "head-major", "padded",
                                                        "layer 1 of [3][seq][kv][d]"};

static engine_kv engine_make(int max_len, int heads, int width, int layout) {
  engine_kv e;
  memset(&e, 0, sizeof e);
  if (layout == ENGINE_SLICE) {
    const int layers = 3;
    size_t i;
    e.floats = (size_t)layers * max_len * heads * width;
    e.all = (float *)test_alloc(e.floats * sizeof(float));
    for (i = 0; i < e.floats; ++i) e.all[i] = NAN;
    e.t.data = e.all + (size_t)max_len * heads * width;   /* layer 1 */
    e.t.L = max_len; e.t.heads = heads; e.t.width = width;
    e.t.ts = (ptrdiff_t)heads * width; e.t.hs = width;
    e.t.lay.token_stride = e.t.ts; e.t.lay.head_stride = e.t.hs;
  } else {
    e.t = test_tensor_make(max_len, heads, width, layout);
    e.all = e.t.data;
    e.floats = e.t.floats;
  }
  return e;
}

/* The script's tokens, and what each cache wrote. */
typedef struct run {
  combiner_config cfg;     /* staging layouts (owned cache's appends) */
  combiner_config bcfg;    /* the same with the engine's K/V layouts */
  int max_len, rollback, block, threads, shared;
  test_tensor q, k, v;     /* the sequence as it stands (rewritten by rollbacks) */
  engine_kv ek, ev;        /* the engine's K/V */
  test_tensor oo, ob;      /* outputs of the owned and the borrowed cache */
  char name[240];
} run;

static void copy_rows(test_tensor *dst, int dst_pos, const test_tensor *src, int src_pos, int count) {
  int i, h;
  for (i = 0; i < count; ++i)
    for (h = 0; h < src->heads; ++h)
      memcpy(test_at(dst, dst_pos + i, h), test_at(src, src_pos + i, h), sizeof(float) * (size_t)src->width);
}

/* rows [from, to) of t as a tensor of their own (shares the data) */
static test_tensor rows(const test_tensor *t, int from, int to) {
  test_tensor r = *t;
  r.data = test_at(t, from, 0);
  r.L = to - from;
  return r;
}

static void fill_rows(test_tensor *t, int from, int to, test_rng *rng) {
  test_tensor r = rows(t, from, to);
  test_tensor_fill(&r, rng);
}

static int cases = 0, rollbacks = 0, refusals = 0;

/* The float64 reference of the whole final sequence vs the borrowed cache. */
static void check_reference(const run *r) {
  combiner_config c = r->cfg;
  double *qd, *kd, *vd, *ref, err;
  ref_problem rp;
  c.seq_len = r->max_len;
  c.block = r->block;
  rp = test_ref_problem(&c);
  qd = test_to_double(&r->q); kd = test_to_double(&r->k); vd = test_to_double(&r->v);
  ref = (double *)test_alloc(sizeof(double) * (size_t)r->max_len * rp.H * rp.dv);
  ref_attention(&rp, qd, kd, vd, ref);
  err = test_rel_error(&r->ob, ref);
  CHECK(err <= TEST_TOLERANCE, "%s: borrowed cache vs float64 reference: %.3g", r->name, err);
  free(qd); free(kd); free(vd); free(ref);
}

/* One script: appends of random sizes, now and then a rollback within the
 * window (the engine then rewrites those positions with other tokens), and
 * one refused rollback beyond it. */
static void script(const test_variant *var, int max_len, int block, int d, int dv, int H, int Hkv, int layout,
                   int rollback, int threads, int shared, test_rng *rng) {
  run r;
  combiner_cache_options bo;
  combiner_cache *owned = NULL, *borrowed = NULL, *other = NULL;
  unsigned char *obuf, *bbuf, *xbuf, *scratch = NULL;
  size_t osize, bsize, ssize = 0;
  combiner_status st;
  const void *kk, *vv;
  combiner_layout kl, vl;
  int pos = 0, refused = 0, steps = 0, reach = 0;
  test_tensor sq, so;
  memset(&r, 0, sizeof r);
  r.max_len = max_len; r.rollback = rollback; r.threads = threads; r.shared = shared;
  r.cfg = test_config(var->kind, 0, d, H, Hkv, block, 1);
  r.cfg.seq_len = block ? 0 : 3 * max_len + 1;   /* the model's context: the block comes from it */
  r.cfg.value_dim = dv;
  r.cfg.pool = (test_rng_u32(rng) & 1) ? COMBINER_POOL_MAX : COMBINER_POOL_MEAN;
  r.cfg.axial_key = var->key;
  r.cfg.mixture_norm = var->norm;
  r.cfg.num_threads = threads;
  r.block = block ? block : ceil_sqrt(r.cfg.seq_len);
  r.q = test_tensor_make(max_len, H, d, LAYOUT_TOKEN_MAJOR);
  r.k = test_tensor_make(max_len, Hkv, d, LAYOUT_TOKEN_MAJOR);
  r.v = test_tensor_make(max_len, Hkv, dv, LAYOUT_TOKEN_MAJOR);
  r.oo = test_tensor_make(max_len, H, dv, LAYOUT_TOKEN_MAJOR);
  r.ob = test_tensor_make(max_len, H, dv, LAYOUT_TOKEN_MAJOR);
  sq = test_tensor_make(max_len, H, d, LAYOUT_TOKEN_MAJOR);
  so = test_tensor_make(max_len, H, dv, LAYOUT_TOKEN_MAJOR);
  r.ek = engine_make(max_len, Hkv, d, layout);
  r.ev = engine_make(max_len, Hkv, dv, layout == ENGINE_SLICE ? ENGINE_SLICE : (layout + 1) % 3);
  r.bcfg = r.cfg;
  r.bcfg.k_layout = r.ek.t.lay;
  r.bcfg.v_layout = r.ev.t.lay;
  snprintf(r.name, sizeof r.name, "%s pool=%s max_len=%d block=%d d=%d dv=%d H=%d Hkv=%d engine=%s/%s rollback=%d "
           "threads=%d scratch=%s", var->name, r.cfg.pool == COMBINER_POOL_MAX ? "max" : "mean", max_len, r.block,
           d, dv, H, Hkv, engine_names[layout], engine_names[layout == ENGINE_SLICE ? 3 : (layout + 1) % 3],
           rollback, threads, shared ? "shared" : "own");
  test_tensor_fill(&r.q, rng); test_tensor_fill(&r.k, rng); test_tensor_fill(&r.v, rng);

  osize = combiner_cache_size(&r.cfg, max_len);
  memset(&bo, 0, sizeof bo);
  bo.max_len = max_len; bo.k = r.ek.t.data; bo.v = r.ev.t.data; bo.rollback = rollback; bo.shared_scratch = shared;
  bsize = combiner_cache_size_ex(&r.bcfg, &bo);
  CHECK(osize > 0 && bsize > 0, "%s: sizes %zu %zu", r.name, osize, bsize);
  obuf = (unsigned char *)test_alloc(osize);
  bbuf = (unsigned char *)test_alloc(bsize);
  xbuf = (unsigned char *)test_alloc(bsize);
  st = combiner_cache_init(&owned, &r.cfg, max_len, obuf, osize);
  CHECK(st == COMBINER_OK, "%s: owned init: %s", r.name, combiner_status_string(st));
  st = combiner_cache_init_ex(&borrowed, &r.bcfg, &bo, bbuf, bsize);
  CHECK(st == COMBINER_OK, "%s: borrowed init: %s", r.name, combiner_status_string(st));
  if (shared) {   /* a second cache (another layer) on the same scratch */
    ssize = combiner_cache_scratch_size(&r.bcfg, threads);
    scratch = (unsigned char *)test_alloc(ssize + 3) + 3;
    st = combiner_cache_init_ex(&other, &r.bcfg, &bo, xbuf, bsize);
    CHECK(st == COMBINER_OK, "%s: second borrowed init: %s", r.name, combiner_status_string(st));
    st = combiner_cache_append_at(borrowed, 0, 1, sq.data, NULL, NULL, so.data, NULL, 0);
    CHECK(st == COMBINER_ERR_WORKSPACE_TOO_SMALL, "%s: shared-scratch cache appended without scratch: %s", r.name,
          combiner_status_string(st));
  }
  if (!owned || !borrowed || (shared && !other)) goto done;

  st = combiner_cache_kv(borrowed, &kk, &vv, &kl, &vl);
  CHECK(st == COMBINER_OK && kk == r.ek.t.data && vv == r.ev.t.data && kl.token_stride == r.ek.t.ts &&
        kl.head_stride == r.ek.t.hs && vl.token_stride == r.ev.t.ts && vl.head_stride == r.ev.t.hs,
        "%s: combiner_cache_kv of a borrowed cache does not name the engine's buffers", r.name);

  while (pos < max_len) {
    int t = 1 + (int)(test_rng_u32(rng) % (unsigned)(test_rng_u32(rng) % 4 == 0 ? 3 * r.block + 2 : 3));
    if (test_rng_u32(rng) % 64 == 0) t = max_len;   /* the rest at once: several runs of the ring */
    int at = pos, len = combiner_cache_length(borrowed);
    ++steps;
    const int lowest = reach - rollback < 0 ? 0 : reach - rollback;
    if (pos > lowest && test_rng_u32(rng) % 5 == 0) {   /* reject a draft: go back, new tokens */
      at = lowest + (int)(test_rng_u32(rng) % (unsigned)(pos - lowest));
      fill_rows(&r.q, at, pos, rng); fill_rows(&r.k, at, pos, rng); fill_rows(&r.v, at, pos, rng);
      ++rollbacks;
    }
    if (!refused && reach > rollback && test_rng_u32(rng) % 3 == 0) {   /* beyond the window: refused */
      st = combiner_cache_truncate(borrowed, reach - rollback - 1);
      CHECK(st == COMBINER_ERR_ROLLBACK, "%s: truncate to %d, %d below the reach %d: %s", r.name,
            reach - rollback - 1, rollback + 1, reach, combiner_status_string(st));
      st = combiner_cache_append_at(borrowed, reach - rollback - 1, 1, sq.data, NULL, NULL, so.data, scratch, ssize);
      CHECK(st == COMBINER_ERR_ROLLBACK, "%s: append_at %d, %d below the reach %d: %s", r.name,
            reach - rollback - 1, rollback + 1, reach, combiner_status_string(st));
      CHECK(combiner_cache_length(borrowed) == len, "%s: a refused rollback changed the length", r.name);
      refused = 1;
      ++refusals;
    }
    if (t > max_len - at) t = max_len - at;
    /* the engine writes K/V of [at, at + t) into its cache first */
    copy_rows(&r.ek.t, at, &r.k, at, t);
    copy_rows(&r.ev.t, at, &r.v, at, t);
    copy_rows(&sq, 0, &r.q, at, t);
    st = combiner_cache_truncate(owned, at);
    CHECK(st == COMBINER_OK, "%s: owned truncate to %d: %s", r.name, at, combiner_status_string(st));
    {
      test_tensor sk = rows(&r.k, at, at + t), sv = rows(&r.v, at, at + t);
      st = combiner_cache_append(owned, t, sq.data, sk.data, sv.data, so.data);
      CHECK(st == COMBINER_OK, "%s: owned append %d at %d: %s", r.name, t, at, combiner_status_string(st));
      copy_rows(&r.oo, at, &so, 0, t);
    }
    st = combiner_cache_append_at(borrowed, at, t, sq.data, NULL, NULL, so.data, scratch, ssize);
    CHECK(st == COMBINER_OK, "%s: borrowed append_at(%d, %d) at length %d: %s", r.name, at, t, len,
          combiner_status_string(st));
    copy_rows(&r.ob, at, &so, 0, t);
    if (other) {   /* the other layer's cache, through the same scratch */
      st = combiner_cache_append_at(other, at, t, sq.data, NULL, NULL, so.data, scratch, ssize);
      CHECK(st == COMBINER_OK, "%s: second cache append_at: %s", r.name, combiner_status_string(st));
    }
    {
      test_tensor a = rows(&r.oo, at, at + t), b = rows(&r.ob, at, at + t);
      CHECK(test_same_rows(&a, &b, t), "%s: step %d, positions [%d, %d): borrowed != owned (bits)", r.name,
            steps, at, at + t);
    }
    pos = at + t;
    if (pos > reach) reach = pos;
    CHECK(combiner_cache_length(borrowed) == pos, "%s: length %d, want %d", r.name,
          combiner_cache_length(borrowed), pos);
  }
  check_reference(&r);
  {   /* the engine's K/V are the sequence's, untouched by the cache */
    test_tensor a = r.ek.t, b = r.ev.t;
    int i, g, ok = 1;
    for (i = 0; i < max_len; ++i)
      for (g = 0; g < Hkv; ++g)
        ok &= memcmp(test_at(&a, i, g), test_at(&r.k, i, g), sizeof(float) * (size_t)d) == 0 &&
              memcmp(test_at(&b, i, g), test_at(&r.v, i, g), sizeof(float) * (size_t)dv) == 0;
    CHECK(ok, "%s: the engine's K/V changed", r.name);
  }
  ++cases;
done:
  free(obuf); free(bbuf); free(xbuf);
  if (scratch) free(scratch - 3);
  test_tensor_free(&r.q); test_tensor_free(&r.k); test_tensor_free(&r.v);
  test_tensor_free(&r.oo); test_tensor_free(&r.ob); test_tensor_free(&sq); test_tensor_free(&so);
  free(r.ek.all); free(r.ev.all);
}

/* Every reach up to 40, rolled back by exactly the window and refilled with
 * other tokens: the oldest block, pool and query a window can need (one
 * more back is refused). Owned and borrowed caches, the same bits. */
static void exact_windows(const test_variant *var, int block, int window, test_rng *rng) {
  const int N = 40, d = 4, H = 2, Hkv = 1;
  combiner_config c = test_config(var->kind, 0, d, H, Hkv, block, 1);
  combiner_cache_options o;
  test_tensor q = test_tensor_make(N, H, d, LAYOUT_TOKEN_MAJOR), k = test_tensor_make(N, Hkv, d, LAYOUT_TOKEN_MAJOR);
  test_tensor v = test_tensor_make(N, Hkv, d, LAYOUT_TOKEN_MAJOR);
  test_tensor oo = test_tensor_make(N, H, d, LAYOUT_TOKEN_MAJOR), ob = test_tensor_make(N, H, d, LAYOUT_TOKEN_MAJOR);
  size_t osize, bsize;
  unsigned char *obuf, *bbuf;
  int reach, bad = 0;
  c.axial_key = var->key;
  c.mixture_norm = var->norm;
  c.pool = (test_rng_u32(rng) & 1) ? COMBINER_POOL_MAX : COMBINER_POOL_MEAN;
  memset(&o, 0, sizeof o);
  o.max_len = N; o.k = k.data; o.v = v.data; o.rollback = window;
  osize = combiner_cache_size(&c, N);
  bsize = combiner_cache_size_ex(&c, &o);
  obuf = (unsigned char *)test_alloc(osize);
  bbuf = (unsigned char *)test_alloc(bsize);
  for (reach = window + 1; reach <= N; ++reach) {
    combiner_cache *oc = NULL, *bc = NULL;
    const int at = reach - window;
    test_tensor_fill(&q, rng); test_tensor_fill(&k, rng); test_tensor_fill(&v, rng);
    if (combiner_cache_init(&oc, &c, N, obuf, osize) != COMBINER_OK ||
        combiner_cache_init_ex(&bc, &c, &o, bbuf, bsize) != COMBINER_OK) {
      CHECK(0, "%s window %d: init", var->name, window);
      break;
    }
    CHECK(combiner_cache_append(oc, reach, q.data, k.data, v.data, oo.data) == COMBINER_OK &&
          combiner_cache_append_at(bc, 0, reach, q.data, NULL, NULL, ob.data, NULL, 0) == COMBINER_OK,
          "%s window %d: append %d", var->name, window, reach);
    CHECK(combiner_cache_truncate(bc, at - 1) == COMBINER_ERR_ROLLBACK, "%s window %d: truncate %d below %d",
          var->name, window, window + 1, reach);
    {   /* new tokens at [at, reach) */
      test_tensor a = rows(&q, at, reach), b = rows(&k, at, reach), e = rows(&v, at, reach);
      test_tensor_fill(&a, rng); test_tensor_fill(&b, rng); test_tensor_fill(&e, rng);
    }
    CHECK(combiner_cache_truncate(oc, at) == COMBINER_OK &&
          combiner_cache_append(oc, N - at, test_at(&q, at, 0), test_at(&k, at, 0), test_at(&v, at, 0),
                                test_at(&oo, at, 0)) == COMBINER_OK &&
          combiner_cache_append_at(bc, at, N - at, test_at(&q, at, 0), NULL, NULL, test_at(&ob, at, 0), NULL, 0) ==
              COMBINER_OK, "%s window %d: back to %d and on to %d", var->name, window, at, N);
    bad += !test_same_rows(&oo, &ob, N);
  }
  CHECK(bad == 0, "%s block %d pool %d window %d: %d of the reaches give other bits than an owned cache", var->name,
        block, (int)c.pool, window, bad);
  free(obuf); free(bbuf);
  test_tensor_free(&q); test_tensor_free(&k); test_tensor_free(&v); test_tensor_free(&oo); test_tensor_free(&ob);
}

/* DENSE decodes a context in key ranges of 1024 positions whose partial
 * states merge in order: past 1024 the bits must still not depend on the
 * thread count or the split into appends, and match the reference. */
static void dense_ranges(test_rng *rng) {
  const int N = test_quick() ? 1300 : 2600, d = 8, H = 4, Hkv = 2;   /* quick (emulation): two ranges */
  combiner_config c = test_config(COMBINER_DENSE, N, d, H, Hkv, 0, 1);
  test_tensor q = test_tensor_make(N, H, d, LAYOUT_TOKEN_MAJOR), k = test_tensor_make(N, Hkv, d, LAYOUT_TOKEN_MAJOR);
  test_tensor v = test_tensor_make(N, Hkv, d, LAYOUT_TOKEN_MAJOR);
  test_tensor o1 = test_tensor_make(N, H, d, LAYOUT_TOKEN_MAJOR), o2 = test_tensor_make(N, H, d, LAYOUT_TOKEN_MAJOR);
  double *qd, *kd, *vd, *ref, err;
  ref_problem rp;
  int t;
  if (!kind_compiled(COMBINER_DENSE)) return;
  test_tensor_fill(&q, rng); test_tensor_fill(&k, rng); test_tensor_fill(&v, rng);
  for (t = 1; t <= 2; ++t) {
    combiner_cache *cache = NULL;
    size_t size;
    unsigned char *buf;
    int pos = 0;
    c.num_threads = t;
    size = combiner_cache_size(&c, N);
    buf = (unsigned char *)test_alloc(size);
    CHECK(combiner_cache_init(&cache, &c, N, buf, size) == COMBINER_OK, "dense ranges: init");
    while (cache && pos < N) {   /* threads 1: one token at a time past 1000; 2: random chunks */
      int n = t == 1 ? (pos < 1000 ? 1000 : 1) : 1 + (int)(test_rng_u32(rng) % 300);
      if (n > N - pos) n = N - pos;
      CHECK(combiner_cache_append(cache, n, test_at(&q, pos, 0), test_at(&k, pos, 0), test_at(&v, pos, 0),
                                  test_at(t == 1 ? &o1 : &o2, pos, 0)) == COMBINER_OK, "dense ranges: append");
      pos += n;
    }
    free(buf);
  }
  CHECK(test_same_rows(&o1, &o2, N), "dense past 1024 positions: 1 thread token by token != 2 threads in chunks");
  rp = test_ref_problem(&c);
  qd = test_to_double(&q); kd = test_to_double(&k); vd = test_to_double(&v);
  ref = (double *)test_alloc(sizeof(double) * (size_t)N * H * d);
  ref_attention(&rp, qd, kd, vd, ref);
  err = test_rel_error(&o2, ref);
  CHECK(err <= TEST_TOLERANCE, "dense past 1024 positions vs float64 reference: %.3g", err);
  free(qd); free(kd); free(vd); free(ref);
  test_tensor_free(&q); test_tensor_free(&k); test_tensor_free(&v); test_tensor_free(&o1); test_tensor_free(&o2);
}

/* Bad arguments: each has its status and changes nothing. */
static void bad_arguments(void) {
  const int L = 16, d = 8, H = 2, Hkv = 1;
  combiner_config c = test_config(COMBINER_FIXED, 0, d, H, Hkv, 4, 1);
  combiner_cache_options o;
  combiner_cache *cache = NULL, *owned = NULL;
  engine_kv ek = engine_make(L, Hkv, d, ENGINE_TOKEN), ev = engine_make(L, Hkv, d, ENGINE_TOKEN);
  test_tensor q = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR), out = test_tensor_make(L, H, d, LAYOUT_TOKEN_MAJOR);
  test_rng rng = {7};
  size_t size;
  unsigned char *buf;
  const void *kk, *vv;
  combiner_layout kl, vl;
  int i;
  if (!kind_compiled(COMBINER_FIXED)) c.kind = COMBINER_DENSE;
  (void)kind_has_blocks;
  test_tensor_fill(&q, &rng); test_tensor_fill(&ek.t, &rng); test_tensor_fill(&ev.t, &rng);
  memset(&o, 0, sizeof o);
  o.max_len = L; o.k = ek.t.data; o.v = ev.t.data; o.rollback = 3;
  size = combiner_cache_size_ex(&c, &o);
  buf = (unsigned char *)test_alloc(size + 4096);
  CHECK(size > 0, "borrowed size");
  CHECK(combiner_cache_size_ex(&c, NULL) == 0, "NULL options: size 0");
  o.v = NULL;
  CHECK(combiner_cache_size_ex(&c, &o) == 0, "k without v: size 0");
  CHECK(combiner_cache_init_ex(&cache, &c, &o, buf, size) == COMBINER_ERR_INVALID_ARGUMENT, "k without v");
  o.v = ev.t.data; o.rollback = -1;
  CHECK(combiner_cache_init_ex(&cache, &c, &o, buf, size) == COMBINER_ERR_INVALID_ARGUMENT, "negative rollback");
  o.rollback = 3;
  CHECK(combiner_cache_init_ex(&cache, &c, &o, buf, size - 1) == COMBINER_ERR_WORKSPACE_TOO_SMALL, "small buffer");
  CHECK(combiner_cache_init_ex(&cache, &c, &o, ek.t.data, size) == COMBINER_ERR_INVALID_ARGUMENT,
        "cache buffer over the engine's K");
  CHECK(cache == NULL, "a failed init set *cache");
  CHECK(combiner_cache_init_ex(&cache, &c, &o, buf, size) == COMBINER_OK, "init");
  CHECK(combiner_cache_append_at(cache, 0, 1, q.data, ek.t.data, ev.t.data, out.data, NULL, 0) ==
        COMBINER_ERR_INVALID_ARGUMENT, "borrowed append given k and v");
  CHECK(combiner_cache_append_at(cache, 1, 1, q.data, NULL, NULL, out.data, NULL, 0) ==
        COMBINER_ERR_INVALID_ARGUMENT, "append_at past the length");
  CHECK(combiner_cache_append_at(cache, 0, 1, q.data, NULL, NULL, ek.t.data, NULL, 0) ==
        COMBINER_ERR_INVALID_ARGUMENT, "out over the engine's K");
  CHECK(combiner_cache_append_at(cache, 0, 1, q.data, NULL, NULL, out.data, buf + size + 8, 16) ==
        COMBINER_ERR_WORKSPACE_TOO_SMALL, "scratch too small");
  CHECK(combiner_cache_append_at(cache, 0, L + 1, q.data, NULL, NULL, out.data, NULL, 0) == COMBINER_ERR_CACHE_FULL,
        "past max_len");
  CHECK(combiner_cache_length(cache) == 0, "refused appends changed the length");
  CHECK(combiner_cache_append_at(cache, 0, 10, q.data, NULL, NULL, out.data, NULL, 0) == COMBINER_OK, "append 10");
  CHECK(combiner_cache_truncate(cache, 6) == COMBINER_ERR_ROLLBACK, "truncate 4 back, window 3");
  CHECK(combiner_cache_truncate(cache, 7) == COMBINER_OK, "truncate 3 back, window 3");
  CHECK(combiner_cache_truncate(cache, 7) == COMBINER_OK, "truncate to the length");
  CHECK(combiner_cache_truncate(cache, 8) == COMBINER_ERR_INVALID_ARGUMENT, "truncate above the length");
  free(buf);
  /* an owned cache: append_at needs k and v; combiner_cache_kv shows what it copied */
  size = combiner_cache_size(&c, L);
  buf = (unsigned char *)test_alloc(size);
  CHECK(combiner_cache_init(&owned, &c, L, buf, size) == COMBINER_OK, "owned init");
  CHECK(combiner_cache_append_at(owned, 0, 1, q.data, NULL, NULL, out.data, NULL, 0) == COMBINER_ERR_INVALID_ARGUMENT,
        "owned append without k, v");
  CHECK(combiner_cache_append_at(owned, 0, L, q.data, ek.t.data, ev.t.data, out.data, NULL, 0) == COMBINER_OK,
        "owned append_at");
  CHECK(combiner_cache_truncate(owned, 0) == COMBINER_OK, "owned caches go back any distance");
  CHECK(combiner_cache_append_at(owned, 0, L, q.data, ek.t.data, ev.t.data, out.data, NULL, 0) == COMBINER_OK,
        "owned append_at again");
  CHECK(combiner_cache_kv(owned, &kk, &vv, &kl, &vl) == COMBINER_OK, "owned kv");
  for (i = 0; i < L; ++i) {
    CHECK(memcmp((const float *)kk + i * kl.token_stride, test_at(&ek.t, i, 0), sizeof(float) * (size_t)d) == 0 &&
          memcmp((const float *)vv + i * vl.token_stride, test_at(&ev.t, i, 0), sizeof(float) * (size_t)d) == 0,
          "combiner_cache_kv of an owned cache: position %d is not what was appended", i);
  }
  CHECK(combiner_cache_kv(owned, NULL, &vv, &kl, &vl) == COMBINER_ERR_INVALID_ARGUMENT, "kv with NULL");
  free(buf);
  free(ek.all); free(ev.all); test_tensor_free(&q); test_tensor_free(&out);
}

/* The README's memory table: max_len 16384, d 64, 8 heads, 2 kv heads, the
 * model's context 16384 (block 128), rollback 64, scratch shared. Extra
 * bytes of a borrowed cache over the engine's K/V (2 * 2 * 64 floats a
 * token): FIXED and LOGSPARSE at most 10%; AXIAL and MIXTURE what their
 * per-cell abstractions take (H * (d + dv) floats a cell, one and three
 * sections) plus at most 10%. */
static void memory_statement(void) {
  static const combiner_kind kinds[] = {COMBINER_DENSE, COMBINER_FIXED, COMBINER_AXIAL, COMBINER_MIXTURE,
                                        COMBINER_LOGSPARSE};
  const int N = 16384, d = 64, H = 8, Hkv = 2;
  const double engine = 2.0 * N * Hkv * d * sizeof(float);
  size_t i;
  printf("borrowed-cache memory, max_len %d, d %d, H %d, kv %d, rollback 64, shared scratch (engine K+V %.1f MiB):\n",
         N, d, H, Hkv, engine / 1048576.0);
  for (i = 0; i < sizeof kinds / sizeof kinds[0]; ++i) {
    combiner_config c = test_config(kinds[i], N, d, H, Hkv, 0, 1);
    combiner_cache_options o;
    static float dummy[2];
    double owned, borrowed, cells;
    if (!kind_compiled(kinds[i])) continue;
    c.num_threads = 1;   /* the owned cache's scratch: one thread's */
    memset(&o, 0, sizeof o);
    o.max_len = N; o.k = dummy; o.v = dummy + 1; o.rollback = 64; o.shared_scratch = 1;
    c.k_layout.token_stride = 0;
    owned = (double)combiner_cache_size(&c, N);
    borrowed = (double)combiner_cache_size_ex(&c, &o);
    cells = kinds[i] == COMBINER_AXIAL ? 1.0 : kinds[i] == COMBINER_MIXTURE ? 3.0 : 0.0;
    cells *= (double)N * H * (2.0 * d) * sizeof(float);
    printf("  %-9s owned %8.1f MiB (%5.2fx K+V)  borrowed %8.2f MiB (%6.2f%% of K+V, %.0f bytes/token)\n",
           combiner_kind_string(kinds[i]), owned / 1048576.0, owned / engine, borrowed / 1048576.0,
           100.0 * borrowed / engine, borrowed / N);
    CHECK(borrowed > 0, "%s: borrowed size", combiner_kind_string(kinds[i]));
    CHECK(borrowed - cells <= 0.10 * engine, "%s: borrowed cache %.0f bytes, over %.0f of per-cell abstractions "
          "+ 10%% of the engine's K/V", combiner_kind_string(kinds[i]), borrowed, cells);
  }
}

int main(void) {
  static const int lens[] = {1, 2, 7, 23, 61, 100};
  static const int blocks[] = {0, 1, 4, 9};
  static const int shapes[][4] = {{1, 1, 1, 1}, {5, 5, 4, 2}, {16, 8, 4, 1}, {8, 16, 2, 2}, {3, 3, 6, 3}};
  static const int windows[] = {0, 1, 5, 17, 64};
  const test_variant *var;
  test_rng rng = {2026};
  unsigned n = 0;
  bad_arguments();
  memory_statement();
  if (test_kind_selected(COMBINER_DENSE)) dense_ranges(&rng);
  TEST_FOR_EACH_VARIANT(var) {
    size_t li;
    if (!test_variant_selected(var) || !kind_compiled(var->kind)) continue;
    for (li = 0; li < sizeof lens / sizeof lens[0]; ++li) {
      size_t bi;
      for (bi = 0; bi < sizeof blocks / sizeof blocks[0]; ++bi, ++n) {
        const int *s = shapes[n % 5];
        const int block = blocks[bi] == 9 ? lens[li] + 3 : blocks[bi];
        script(var, lens[li], block, s[0], s[1], s[2], s[3], (int)(n % ENGINE_LAYOUTS), windows[n % 5],
               1 + (int)(n / 3 % 2), (int)(n / 2 % 2), &rng);
      }
    }
  }
  TEST_FOR_EACH_VARIANT(var) {   /* long enough for every ring to wrap (LOGSPARSE's holds 256 + window) */
    static const int long_windows[] = {0, 3, 64};
    size_t wi;
    if (!test_variant_selected(var) || !kind_compiled(var->kind)) continue;
    for (wi = test_quick() ? 2 : 0; wi < sizeof long_windows / sizeof long_windows[0]; ++wi, ++n)
      script(var, var->kind == COMBINER_DENSE ? 2200 : 700, wi == 1 ? 5 : 0, 4, 4, 2, 1, (int)(n % ENGINE_LAYOUTS),
             long_windows[wi], 1 + (int)(wi % 2), (int)(n % 2), &rng);
  }
  TEST_FOR_EACH_VARIANT(var) {
    static const int windows2[] = {1, 2, 3, 4, 5, 7, 8, 13};
    size_t wi;
    if (!test_variant_selected(var) || !kind_compiled(var->kind)) continue;
    for (wi = 0; wi < sizeof windows2 / sizeof windows2[0]; ++wi)
      exact_windows(var, 1 + (int)(wi % 4) * 2, windows2[wi], &rng);
  }
  printf("%d scripts (%d rollbacks within the window, %d refused beyond it)\n", cases, rollbacks, refusals);
  CHECK(cases > 0 && (rollbacks > 0 || cases < 10), "scripts ran");
  return TEST_SUMMARY();
}
