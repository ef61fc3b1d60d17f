/* The decode cache (SPEC 6, "decode equals prefill"): feeding a causal
 * sequence through combiner_cache_append one token at a time, in random
 * chunks or all at once gives the float64 reference's output of the whole
 * sequence (with the model's block: block 0 resolves from seq_len, never
 * from max_len, SPEC 7), the same bits
 * whatever the split and the thread count, and the one-call
 * combiner_attention's output within tolerance. Truncating (into a block, to
 * 0, to the current length) and appending other tokens equals a fresh cache
 * fed the final sequence; a full cache refuses one more token and changes
 * nothing; every bad argument has its status and changes nothing; caches
 * used interleaved or from two threads do not see each other.
 *
 * Every append reads its tokens from staging buffers that are NaN outside
 * the appended rows and poisoned again before the next append, so a cache
 * that reads outside them, or keeps pointers to an earlier append's inputs
 * instead of copying, turns its outputs NaN. The staging output is NaN too
 * and must be written in exactly its rows. Cache buffers sit at random
 * alignments between guard bytes that must survive. */
#define _POSIX_C_SOURCE 200112L
#define COMBINER_IMPLEMENTATION
#include "test_common.h"
#include <limits.h>
#include <pthread.h>

#include "test_kinds.h"
/* ------------------------------------------------------------------------ */
/* A problem: one sequence of max_len tokens and the cache config           */
/* ------------------------------------------------------------------------ */

typedef struct problem {
  combiner_config cfg;          /* as given to the caches: causal, seq_len the model's context */
  int max_len, block;           /* block: what the contract says it resolves to */
  test_tensor q, k, v;          /* the sequence, max_len positions */
  test_tensor sq, sk, sv, so;   /* one append's staging buffers (same layouts) */
  float *nan;                   /* NaN floats, as many as the largest tensor */
  int layout;                   /* of q and v; k and out rotate from it */
  int stray;                    /* appends whose out writes missed their rows */
  char name[200];
} problem;

static int out_layout_of(int layout) { return (layout + 2) % LAYOUT_COUNT; }

static problem problem_make(const test_variant *var, combiner_pool pool, int max_len, int block, int d, int dv,
                            int H, int Hkv, int layout, int seq_len, float scale, test_rng *rng) {
  problem p;
  size_t most;
  memset(&p, 0, sizeof p);
  p.cfg = test_config(var->kind, seq_len, d, H, Hkv, block, 1 + (int)(test_rng_u32(rng) % 3));
  p.cfg.value_dim = dv == d && (test_rng_u32(rng) & 1) ? 0 : dv;   /* 0 means head_dim */
  p.cfg.pool = pool;
  p.cfg.axial_key = var->key;
  p.cfg.mixture_norm = var->norm;
  p.cfg.scale = scale;
  p.max_len = max_len;
  p.layout = layout;
  /* A cache with blocks needs the model's block: from seq_len when block is
   * 0. Without either, DENSE and LOGSPARSE (no blocks) resolve the unused
   * block from max_len. */
  if (!block && seq_len < 1 && kind_has_blocks(var->kind)) p.cfg.seq_len = 2 * max_len + 3;
  p.block = block ? block : p.cfg.seq_len >= 1 ? ceil_sqrt(p.cfg.seq_len) : ceil_sqrt(max_len);
  p.q = test_tensor_make(max_len, H, d, layout);
  p.k = test_tensor_make(max_len, Hkv, d, (layout + 1) % LAYOUT_COUNT);
  p.v = test_tensor_make(max_len, Hkv, dv, layout);
  p.sq = test_tensor_make(max_len, H, d, layout);
  p.sk = test_tensor_make(max_len, Hkv, d, (layout + 1) % LAYOUT_COUNT);
  p.sv = test_tensor_make(max_len, Hkv, dv, layout);
  p.so = test_tensor_make(max_len, H, dv, out_layout_of(layout));
  p.cfg.q_layout = p.q.lay; p.cfg.k_layout = p.k.lay; p.cfg.v_layout = p.v.lay; p.cfg.out_layout = p.so.lay;
  test_tensor_fill(&p.q, rng); test_tensor_fill(&p.k, rng); test_tensor_fill(&p.v, rng);
  most = p.q.floats;
  if (p.k.floats > most) most = p.k.floats;
  if (p.v.floats > most) most = p.v.floats;
  if (p.so.floats > most) most = p.so.floats;
  p.nan = (float *)test_alloc(most * sizeof(float));
  memcpy(p.nan, p.so.data, p.so.floats * sizeof(float));     /* test_tensor_make's NaN */
  {
    size_t i;
    for (i = p.so.floats; i < most; ++i) p.nan[i] = p.so.data[0];
  }
  snprintf(p.name, sizeof p.name,
           "%s pool=%s max_len=%d block=%d(->%d) d=%d dv=%d H=%d Hkv=%d layout=%s scale=%g seq_len=%d",
           var->name, pool == COMBINER_POOL_MAX ? "max" : "mean", max_len, block, p.block, d, dv, H, Hkv,
           layout_names[layout], (double)scale, seq_len);
  return p;
}

static void problem_free(problem *p) {
  test_tensor_free(&p->q); test_tensor_free(&p->k); test_tensor_free(&p->v);
  test_tensor_free(&p->sq); test_tensor_free(&p->sk); test_tensor_free(&p->sv); test_tensor_free(&p->so);
  free(p->nan);
}

/* an output tensor for the problem's max_len positions (NaN) */
static test_tensor out_make(const problem *p) {
  return test_tensor_make(p->max_len, p->cfg.num_heads, p->v.width, out_layout_of(p->layout));
}

/* positions [from, to) of t, as a tensor of its own (shares the data) */
static test_tensor rows(const test_tensor *t, int from, int to) {
  test_tensor r = *t;
  r.data = test_at(t, from, 0);
  r.L = to - from;
  return r;
}

static void copy_rows(test_tensor *dst, int dst_pos, const test_tensor *src, int src_pos, int count) {
  int i, h;
  for (i = 0; i < count; ++i)
    for (h = 0; h < src->heads; ++h)
      memcpy(test_at(dst, dst_pos + i, h), test_at(src, src_pos + i, h), sizeof(float) * (size_t)src->width);
}

static void fill_rows(test_tensor *t, int from, int to, test_rng *rng) {
  test_tensor r = rows(t, from, to);
  test_tensor_fill(&r, rng);
}

/* the float64 reference output of positions [0, n): the one-call causal
 * attention over those n positions with the cache's block */
static double *reference(const problem *p, int n) {
  combiner_config c = p->cfg;
  test_tensor q = rows(&p->q, 0, n), k = rows(&p->k, 0, n), v = rows(&p->v, 0, n);
  double *qd, *kd, *vd, *ref;
  ref_problem rp;
  c.seq_len = n;
  c.block = p->block;
  rp = test_ref_problem(&c);
  qd = test_to_double(&q); kd = test_to_double(&k); vd = test_to_double(&v);
  ref = (double *)test_alloc(sizeof(double) * (size_t)n * rp.H * rp.dv);
  ref_attention(&rp, qd, kd, vd, ref);
  free(qd); free(kd); free(vd);
  return ref;
}

/* inf-norm of a - b over positions [0, n), relative to the reference's scale */
static double rel_diff(const test_tensor *a, const test_tensor *b, const double *ref, int n) {
  double err = 0.0, mag = 0.0;
  int i, h, x;
  for (h = 0; h < a->heads; ++h)
    for (i = 0; i < n; ++i)
      for (x = 0; x < a->width; ++x) {
        double e = fabs((double)test_at(a, i, h)[x] - (double)test_at(b, i, h)[x]);
        double r = fabs(ref[((size_t)h * n + i) * a->width + x]);
        if (e != e) e = INFINITY;
        if (e > err) err = e;
        if (r > mag) mag = r;
      }
  return mag > 0.0 ? err / mag : err;
}

/* ------------------------------------------------------------------------ */
/* Caches in guarded buffers, and one append                                */
/* ------------------------------------------------------------------------ */

enum { GUARD = 64 };

typedef struct cache_box {
  unsigned char *raw;           /* GUARD-free prefix of `offset` bytes, buffer, GUARD bytes */
  unsigned char *buffer;
  size_t size, offset;
  combiner_cache *c;
} cache_box;

static cache_box cache_open(const problem *p, int threads, size_t offset) {
  combiner_config c = p->cfg;
  cache_box b;
  combiner_status st;
  c.num_threads = threads;
  b.c = NULL;
  b.offset = offset;
  b.size = combiner_cache_size(&c, p->max_len);
  CHECK(b.size > 0, "%s: combiner_cache_size is 0", p->name);
  b.raw = (unsigned char *)test_alloc(offset + b.size + GUARD);
  memset(b.raw, 0xA5, offset + b.size + GUARD);
  b.buffer = b.raw + offset;
  st = combiner_cache_init(&b.c, &c, p->max_len, b.buffer, b.size);
  CHECK(st == COMBINER_OK, "%s threads=%d offset=%d: init: %s", p->name, threads, (int)offset,
        combiner_status_string(st));
  if (st != COMBINER_OK) b.c = NULL;
  CHECK(combiner_cache_length(b.c) == 0, "%s: new cache length %d", p->name, combiner_cache_length(b.c));
  return b;
}

/* the cache wrote nothing outside its buffer */
static int guards_intact(const cache_box *b) {
  size_t i;
  for (i = 0; i < b->offset; ++i)
    if (b->raw[i] != 0xA5) return 0;
  for (i = 0; i < GUARD; ++i)
    if (b->buffer[b->size + i] != 0xA5) return 0;
  return 1;
}

static void cache_close(cache_box *b, const char *name) {
  CHECK(guards_intact(b), "%s: cache wrote outside its buffer (offset %d)", name, (int)b->offset);
  free(b->raw);
  b->raw = b->buffer = NULL;
  b->c = NULL;
}

/* Appends tokens [src, src+count) of the sequence through freshly poisoned
 * staging buffers; out NULL: fill only, else the outputs land in rows
 * [dst, dst+count) of out. The staging out must change in exactly its first
 * `count` rows, and not at all on failure (counted in p->stray). */
static combiner_status feed(problem *p, combiner_cache *c, int src, int count, test_tensor *out, int dst) {
  combiner_status st;
  memcpy(p->sq.data, p->nan, p->sq.floats * sizeof(float));
  memcpy(p->sk.data, p->nan, p->sk.floats * sizeof(float));
  memcpy(p->sv.data, p->nan, p->sv.floats * sizeof(float));
  memcpy(p->so.data, p->nan, p->so.floats * sizeof(float));
  copy_rows(&p->sq, 0, &p->q, src, count);
  copy_rows(&p->sk, 0, &p->k, src, count);
  copy_rows(&p->sv, 0, &p->v, src, count);
  st = combiner_cache_append(c, count, p->sq.data, p->sk.data, p->sv.data, out ? p->so.data : NULL);
  if (st == COMBINER_OK && out) {
    int i, h;
    copy_rows(out, dst, &p->so, 0, count);
    for (i = 0; i < count; ++i)
      for (h = 0; h < p->so.heads; ++h) memcpy(test_at(&p->so, i, h), p->nan, sizeof(float) * (size_t)p->so.width);
  }
  if (memcmp(p->so.data, p->nan, p->so.floats * sizeof(float)) != 0) ++p->stray;
  return st;
}

enum { SPLIT_ONE = 0, SPLIT_RANDOM = 1, SPLIT_ALL = 2 };
static const char *const split_names[] = {"one at a time", "random chunks", "all at once"};

static int random_chunk(const problem *p, int left, test_rng *rng) {
  int m = p->block < 9 ? p->block : 9;
  int t = 1 + (int)(test_rng_u32(rng) % (unsigned)(2 * m + 1));
  if (test_rng_u32(rng) % 8 == 0) t = 1 + (int)(test_rng_u32(rng) % (unsigned)left);
  return t < left ? t : left;
}

/* Feeds positions [from, to) (the cache holds `from`); checks every append
 * and the length after it. */
static void feed_range(problem *p, combiner_cache *c, int from, int to, int split, test_tensor *out,
                       test_rng *rng) {
  int pos = from;
  while (pos < to) {
    int t = split == SPLIT_ONE ? 1 : split == SPLIT_ALL ? to - pos : random_chunk(p, to - pos, rng);
    combiner_status st = feed(p, c, pos, t, out, pos);
    CHECK(st == COMBINER_OK, "%s: append %d at %d (%s): %s", p->name, t, pos, split_names[split],
          combiner_status_string(st));
    if (st != COMBINER_OK) return;
    pos += t;
    CHECK(combiner_cache_length(c) == pos, "%s: length %d after appending up to %d", p->name,
          combiner_cache_length(c), pos);
  }
}

/* combiner_cache_config is combiner_resolve_config of cfg with
 * seq_len = max_len and the block made explicit. */
static void check_resolved(const problem *p, const combiner_cache *c) {
  combiner_config got, want, in = p->cfg;
  combiner_status st;
  memset(&got, 0, sizeof got);
  memset(&want, 0, sizeof want);
  in.seq_len = p->max_len;
  in.block = p->block;
  CHECK(combiner_resolve_config(&in, &want) == COMBINER_OK, "%s: resolve_config", p->name);
  st = combiner_cache_config(c, &got);
  CHECK(st == COMBINER_OK, "%s: cache_config: %s", p->name, combiner_status_string(st));
  CHECK(got.seq_len == p->max_len, "%s: resolved seq_len %d, want max_len %d", p->name, got.seq_len, p->max_len);
  CHECK(got.block == p->block, "%s: resolved block %d, want %d", p->name, got.block, p->block);
  CHECK(got.causal != 0, "%s: resolved config not causal", p->name);
  CHECK(got.kind == want.kind && got.head_dim == want.head_dim && got.value_dim == want.value_dim &&
        got.num_heads == want.num_heads && got.num_kv_heads == want.num_kv_heads &&
        got.scale == want.scale && got.pool == want.pool && got.axial_key == want.axial_key &&
        got.mixture_norm == want.mixture_norm,
        "%s: cache_config differs from combiner_resolve_config (kind %d/%d value_dim %d/%d kv %d/%d "
        "scale %g/%g)", p->name, (int)got.kind, (int)want.kind, got.value_dim, want.value_dim,
        got.num_kv_heads, want.num_kv_heads, (double)got.scale, (double)want.scale);
  CHECK(got.q_layout.token_stride == want.q_layout.token_stride &&
        got.q_layout.head_stride == want.q_layout.head_stride &&
        got.k_layout.token_stride == want.k_layout.token_stride &&
        got.k_layout.head_stride == want.k_layout.head_stride &&
        got.v_layout.token_stride == want.v_layout.token_stride &&
        got.v_layout.head_stride == want.v_layout.head_stride &&
        got.out_layout.token_stride == want.out_layout.token_stride &&
        got.out_layout.head_stride == want.out_layout.head_stride,
        "%s: cache_config layouts differ from combiner_resolve_config", p->name);
}

/* A kind compiled out: no size, init (with ample room) says UNSUPPORTED and
 * sets nothing. */
static void check_unsupported(const problem *p) {
  const size_t room = (size_t)1 << 22;
  unsigned char *buf = (unsigned char *)test_alloc(room);
  combiner_cache *const sentinel = (combiner_cache *)(void *)(buf + 1), *c = sentinel;
  combiner_status st;
  CHECK(combiner_cache_size(&p->cfg, p->max_len) == 0, "%s compiled out: cache size not 0", p->name);
  st = combiner_cache_init(&c, &p->cfg, p->max_len, buf, room);
  CHECK(st == COMBINER_ERR_UNSUPPORTED, "%s compiled out: init: %s", p->name, combiner_status_string(st));
  CHECK(c == sentinel, "%s compiled out: init set *cache", p->name);
  free(buf);
}

/* ------------------------------------------------------------------------ */
/* 1. Decode equals prefill                                                 */
/* ------------------------------------------------------------------------ */

static const int head_dims[] = {1, 5, 16, 64};
static const int head_counts[][2] = {{1, 1}, {4, 1}, {4, 2}, {4, 4}, {2, 2}, {3, 3}, {6, 2}};
static int cases_decode = 0, cases_truncate = 0, cases_full = 0;

/* the case's rotating choices, each from its own bits of a hash of n */
typedef struct shape { int d, dv, H, Hkv, layout, extra, seq_len; float scale; } shape;

static shape shape_of(unsigned n, int L) {
  unsigned hsh = (n + 1u) * 2654435761u, mix = hsh ^ (hsh >> 15);
  shape s;
  int dvs[3];
  s.d = head_dims[mix % 4];
  s.H = head_counts[(mix >> 4) % 7][0];
  s.Hkv = head_counts[(mix >> 4) % 7][1];
  s.layout = (int)((mix >> 8) % LAYOUT_COUNT);
  dvs[0] = s.d + 3; dvs[1] = s.d; dvs[2] = s.d > 4 ? s.d - 4 : s.d + 1;
  s.dv = dvs[(mix >> 12) % 3];
  /* max_len beyond the sequence, and a model context (seq_len) that is
   * neither: block 0 resolves from seq_len only (0: from 2*max_len + 3 for
   * kinds with blocks, see problem_make) */
  s.extra = (mix >> 16) % 3 == 0 ? 0 : 1 + (int)((mix >> 18) % (unsigned)(L + 7));
  s.seq_len = (mix >> 24) % 3 == 0 ? 0 : (mix >> 24) % 3 == 1 ? 1 + (int)((mix >> 20) % 3u) * L : 1000003;
  s.scale = (mix >> 27) % 4 == 0 ? 0.37f : 0.0f;
  return s;
}

static void decode_with_shape(const test_variant *var, combiner_pool pool, int L, int block, shape s,
                              test_rng *rng) {
  problem p = problem_make(var, pool, L + s.extra, block, s.d, s.dv, s.H, s.Hkv, s.layout, s.seq_len,
                           s.scale, rng);
  test_tensor o[5], att;
  double *ref, err;
  int run, null_prefix = (int)(test_rng_u32(rng) % (unsigned)L);
  static const int splits[5] = {SPLIT_ONE, SPLIT_RANDOM, SPLIT_ALL, SPLIT_ALL, SPLIT_RANDOM};
  static const int threads[5] = {1, 2, 1, 2, 0};   /* 0: the OpenMP default */
  ++cases_decode;
  if (!kind_compiled(var->kind)) { check_unsupported(&p); problem_free(&p); return; }
  for (run = 0; run < 5; ++run) {
    cache_box b = cache_open(&p, threads[run], test_rng_u32(rng) % 64);
    o[run] = out_make(&p);
    if (run == 0) check_resolved(&p, b.c);
    if (run == 4) {   /* a prompt whose outputs are not wanted, then the rest */
      feed_range(&p, b.c, 0, null_prefix, SPLIT_RANDOM, NULL, rng);
      feed_range(&p, b.c, null_prefix, L, SPLIT_RANDOM, &o[run], rng);
    } else {
      feed_range(&p, b.c, 0, L, splits[run], &o[run], rng);
    }
    cache_close(&b, p.name);
  }
  CHECK(p.stray == 0, "%s: %d appends wrote outside their output rows", p.name, p.stray);
  ref = reference(&p, L);
  for (run = 0; run < 3; ++run) {
    test_tensor r = rows(&o[run], 0, L);
    err = test_rel_error(&r, ref);
    CHECK(err <= TEST_TOLERANCE, "%s L=%d (%s): rel err %.3g vs reference", p.name, L, split_names[splits[run]],
          err);
  }
  CHECK(test_same_rows(&o[0], &o[1], L), "%s L=%d: random chunks (2 threads) != one at a time (1 thread)",
        p.name, L);
  CHECK(test_same_rows(&o[0], &o[2], L), "%s L=%d: all at once != one at a time", p.name, L);
  CHECK(test_same_rows(&o[2], &o[3], L), "%s L=%d: all at once, 2 threads != 1 thread", p.name, L);
  {
    test_tensor a = rows(&o[4], null_prefix, L), b2 = rows(&o[2], null_prefix, L);
    CHECK(test_same_rows(&a, &b2, L - null_prefix), "%s L=%d: after %d tokens appended with out NULL, "
          "outputs differ", p.name, L, null_prefix);
  }
  {   /* the one-call API on the same L and block */
    combiner_config c = p.cfg;
    combiner_status st;
    c.seq_len = L;
    c.block = p.block;
    att = out_make(&p);
    st = combiner_attention(&c, p.q.data, p.k.data, p.v.data, att.data, NULL, 0);
    CHECK(st == COMBINER_OK, "%s: combiner_attention: %s", p.name, combiner_status_string(st));
    err = rel_diff(&o[2], &att, ref, L);
    CHECK(err <= TEST_TOLERANCE, "%s L=%d: cache vs combiner_attention differ by %.3g", p.name, L, err);
    test_tensor_free(&att);
  }
  free(ref);
  for (run = 0; run < 5; ++run) test_tensor_free(&o[run]);
  problem_free(&p);
}

static void decode_equals_prefill(const test_variant *var, combiner_pool pool, int L, int block, unsigned n,
                                  test_rng *rng) {
  decode_with_shape(var, pool, L, block, shape_of(n, L), rng);
}

/* ------------------------------------------------------------------------ */
/* 1b. Fast chunks (combiner_cache_options.fast_chunks)                     */
/* ------------------------------------------------------------------------ */

static int cases_fast = 0;

/* A cache with fast_chunks, owned or borrowed (K/V read in p->k, p->v),
 * fed the appends `sizes` (n of them) with outputs into out. */
static void fast_feed(problem *p, int borrowed, int fast, int threads, const int *sizes, int n, test_tensor *out) {
  combiner_config c = p->cfg;
  combiner_cache_options opt;
  combiner_cache *cache = NULL;
  combiner_status st;
  unsigned char *buf;
  size_t size;
  int i, pos = 0;
  c.num_threads = threads;
  memset(&opt, 0, sizeof opt);
  opt.max_len = p->max_len;
  opt.fast_chunks = fast;
  if (borrowed) { opt.k = p->k.data; opt.v = p->v.data; }
  size = combiner_cache_size_ex(&c, &opt);
  buf = (unsigned char *)test_alloc(size);
  st = combiner_cache_init_ex(&cache, &c, &opt, buf, size);
  CHECK(st == COMBINER_OK, "%s: fast_chunks init (%s): %s", p->name, borrowed ? "borrowed" : "owned",
        combiner_status_string(st));
  for (i = 0; i < n && st == COMBINER_OK; ++i) {
    if (borrowed) {   /* the engine's K/V hold the positions already; q and out through the staging buffers */
      memcpy(p->so.data, p->nan, p->so.floats * sizeof(float));
      copy_rows(&p->sq, 0, &p->q, pos, sizes[i]);
      st = combiner_cache_append_at(cache, pos, sizes[i], p->sq.data, NULL, NULL, p->so.data, NULL, 0);
      if (st == COMBINER_OK) copy_rows(out, pos, &p->so, 0, sizes[i]);
    } else {
      st = feed(p, cache, pos, sizes[i], out, pos);
    }
    CHECK(st == COMBINER_OK, "%s: fast_chunks append %d at %d: %s", p->name, sizes[i], pos, combiner_status_string(st));
    pos += sizes[i];
  }
  free(buf);
}

/* An append of 64 tokens or more with outputs runs the prefill kernels
 * where the kind has them (DENSE, FIXED): the positions of such appends
 * get combiner_attention's bits; every output stays within tolerance of
 * the reference; 1 and 2 threads give the same bits, owned and borrowed
 * too (a borrowed FIXED cache cuts a long append into runs of its query
 * ring, each long enough for the prefill kernels); kinds without prefill kernels
 * ignore the flag (the default cache's bits). */
static void fast_chunks(const test_variant *var, int L, int block, unsigned n, test_rng *rng) {
  shape s = shape_of(n, L);
  problem p = problem_make(var, (combiner_pool)(n % 2), L + s.extra, block, s.d, s.dv, s.H, s.Hkv, s.layout,
                           s.seq_len, s.scale, rng);
  static const int pick[7] = {1, 5, 64, 65, 100, 200, 320};
  const int tiles = var->kind == COMBINER_DENSE || var->kind == COMBINER_FIXED;
  int sizes[64], big[64], ns = 0, pos = 0, i, run;
  test_tensor o[4], att;
  double *ref, err;
  combiner_config c = p.cfg;
  combiner_status st;
  ++cases_fast;
  if (!kind_compiled(var->kind)) { check_unsupported(&p); problem_free(&p); return; }
  while (pos < L && ns < 64) {   /* the appends: small and large, the rest at once at the end */
    int t = ns == 63 ? L - pos : pick[test_rng_u32(rng) % 7];
    if (t > L - pos) t = L - pos;
    big[ns] = t >= 64;
    sizes[ns++] = t;
    pos += t;
  }
  for (run = 0; run < 4; ++run) {   /* owned 1 thread, owned 2 threads, borrowed, default (not fast) */
    o[run] = out_make(&p);
    fast_feed(&p, run == 2, run != 3, run == 1 ? 2 : 1, sizes, ns, &o[run]);
  }
  ref = reference(&p, L);
  for (run = 0; run < 4; ++run) {
    test_tensor r = rows(&o[run], 0, L);
    err = test_rel_error(&r, ref);
    CHECK(err <= TEST_TOLERANCE, "%s L=%d fast_chunks (run %d): rel err %.3g vs reference", p.name, L, run, err);
  }
  CHECK(test_same_rows(&o[0], &o[1], L), "%s L=%d: fast_chunks, 2 threads != 1 thread", p.name, L);
  CHECK(test_same_rows(&o[0], &o[2], L), "%s L=%d: fast_chunks, borrowed != owned", p.name, L);
  if (!tiles) CHECK(test_same_rows(&o[0], &o[3], L), "%s L=%d: fast_chunks changed a kind without prefill kernels",
                    p.name, L);
  c.seq_len = L;
  c.block = p.block;
  att = out_make(&p);
  st = combiner_attention(&c, p.q.data, p.k.data, p.v.data, att.data, NULL, 0);
  CHECK(st == COMBINER_OK, "%s: combiner_attention: %s", p.name, combiner_status_string(st));
  for (i = 0, pos = 0; i < ns; pos += sizes[i++])
    if (tiles && big[i]) {
      test_tensor a = rows(&o[0], pos, pos + sizes[i]), b = rows(&att, pos, pos + sizes[i]);
      CHECK(test_same_rows(&a, &b, sizes[i]), "%s L=%d: fast chunk [%d, %d) != combiner_attention (bits)", p.name, L,
            pos, pos + sizes[i]);
    }
  test_tensor_free(&att);
  free(ref);
  for (run = 0; run < 4; ++run) test_tensor_free(&o[run]);
  problem_free(&p);
}

/* ------------------------------------------------------------------------ */
/* 2. Truncate, then append other tokens                                    */
/* ------------------------------------------------------------------------ */

static int truncate_target(const problem *p, int cur, int round, test_rng *rng) {
  int m = p->block, full = cur / m;
  switch (round % 5) {
    case 0: return 0;
    case 1: return cur;
    case 2:   /* into a completed block (its summary may exist) */
      if (full >= 1 && m > 1) return (int)(test_rng_u32(rng) % (unsigned)full) * m + 1 +
                                     (int)(test_rng_u32(rng) % (unsigned)(m - 1));
      return cur / 2;
    case 3:   /* onto a block boundary */
      return full >= 1 ? (int)(test_rng_u32(rng) % (unsigned)(full + 1)) * m : 0;
    default: return (int)(test_rng_u32(rng) % (unsigned)(cur + 1));
  }
}

static void truncate_then_append(const test_variant *var, combiner_pool pool, int max_len, int block,
                                 unsigned n, test_rng *rng) {
  shape s = shape_of(n, max_len);
  problem p = problem_make(var, pool, max_len, block, s.d, s.dv, s.H, s.Hkv, s.layout, s.seq_len, s.scale, rng);
  test_tensor oa, ob;
  cache_box a, b;
  double *ref, err;
  int round, cur = 0, len, fin;
  char trail[160] = "";
  unsigned char *snapshot;
  ++cases_truncate;
  if (!kind_compiled(var->kind)) { check_unsupported(&p); problem_free(&p); return; }
  oa = out_make(&p); ob = out_make(&p);
  a = cache_open(&p, 1 + (int)(n % 2), test_rng_u32(rng) % 64);
  snapshot = (unsigned char *)test_alloc(a.size);
  for (round = 0; round < 7; ++round) {
    combiner_status st;
    int target = cur + (int)(test_rng_u32(rng) % (unsigned)(max_len - cur + 1));
    if (round == 0 && target < max_len / 2) target = max_len / 2 + 1 > max_len ? max_len : max_len / 2 + 1;
    feed_range(&p, a.c, cur, target, SPLIT_RANDOM, &oa, rng);
    cur = target;
    len = truncate_target(&p, cur, round, rng);
    memcpy(snapshot, a.buffer, a.size);
    st = combiner_cache_truncate(a.c, len);
    CHECK(st == COMBINER_OK, "%s: truncate %d -> %d: %s", p.name, cur, len, combiner_status_string(st));
    {   /* O(1): a truncation rewrites a few bytes (the length), it recomputes nothing */
      size_t i, changed = 0;
      for (i = 0; i < a.size; ++i) changed += snapshot[i] != a.buffer[i];
      CHECK(changed <= 64, "%s: truncate %d -> %d changed %d bytes of the cache", p.name, cur, len, (int)changed);
    }
    if (round == 4 && len > 0) {   /* twice in a row */
      int len2 = (int)(test_rng_u32(rng) % (unsigned)len);
      st = combiner_cache_truncate(a.c, len2);
      CHECK(st == COMBINER_OK, "%s: second truncate %d -> %d: %s", p.name, len, len2, combiner_status_string(st));
      len = len2;
    }
    CHECK(combiner_cache_length(a.c) == len, "%s: length %d after truncate to %d", p.name,
          combiner_cache_length(a.c), len);
    {
      size_t used = strlen(trail);
      snprintf(trail + used, sizeof trail - used, "%d>%d ", cur, len);
    }
    /* other tokens from here on */
    fill_rows(&p.q, len, max_len, rng); fill_rows(&p.k, len, max_len, rng); fill_rows(&p.v, len, max_len, rng);
    cur = len;
  }
  fin = cur == max_len ? max_len : cur + 1 + (int)(test_rng_u32(rng) % (unsigned)(max_len - cur));
  feed_range(&p, a.c, cur, fin, SPLIT_RANDOM, &oa, rng);
  check_resolved(&p, a.c);
  cache_close(&a, p.name);
  free(snapshot);
  b = cache_open(&p, 2 - (int)(n % 2), test_rng_u32(rng) % 64);
  feed_range(&p, b.c, 0, fin, (int)(n % 3), &ob, rng);
  cache_close(&b, p.name);
  CHECK(p.stray == 0, "%s: %d appends wrote outside their output rows", p.name, p.stray);
  CHECK(test_same_rows(&oa, &ob, fin), "%s: truncations %s then up to %d: differs from a fresh cache",
        p.name, trail, fin);
  ref = reference(&p, fin);
  {
    test_tensor r = rows(&oa, 0, fin);
    err = test_rel_error(&r, ref);
  }
  CHECK(err <= TEST_TOLERANCE, "%s: truncations %s then up to %d: rel err %.3g vs reference", p.name, trail,
        fin, err);
  free(ref);
  test_tensor_free(&oa); test_tensor_free(&ob);
  problem_free(&p);
}

/* ------------------------------------------------------------------------ */
/* 3. max_len                                                               */
/* ------------------------------------------------------------------------ */

/* An append that must fail with `want` and change nothing: not the length,
 * not one byte of the cache buffer, not the staging out. */
static void expect_refused(problem *p, cache_box *b, int count, combiner_status want, const char *what) {
  unsigned char *before = (unsigned char *)test_alloc(b->size);
  int len = combiner_cache_length(b->c), stray = p->stray;
  combiner_status st;
  test_tensor scratch = out_make(p);
  memcpy(before, b->buffer, b->size);
  st = feed(p, b->c, 0, count, &scratch, 0);
  CHECK(st == want, "%s: %s: got \"%s\", want \"%s\"", p->name, what, combiner_status_string(st),
        combiner_status_string(want));
  CHECK(combiner_cache_length(b->c) == len, "%s: %s: length %d -> %d", p->name, what, len,
        combiner_cache_length(b->c));
  CHECK(memcmp(before, b->buffer, b->size) == 0, "%s: %s: the cache buffer changed", p->name, what);
  CHECK(p->stray == stray, "%s: %s: out written on failure", p->name, what);
  p->stray = stray;
  test_tensor_free(&scratch);
  free(before);
}

static void fill_to_max_len(const test_variant *var, int max_len, int block, unsigned n, test_rng *rng) {
  shape s = shape_of(n, max_len);
  problem p = problem_make(var, COMBINER_POOL_MAX, max_len, block, s.d, s.dv, s.H, s.Hkv, s.layout, s.seq_len,
                           s.scale, rng);
  test_tensor o, o2;
  cache_box b;
  double *ref, err;
  int r;
  ++cases_full;
  if (!kind_compiled(var->kind)) { check_unsupported(&p); problem_free(&p); return; }
  o = out_make(&p); o2 = out_make(&p);
  b = cache_open(&p, 1 + (int)(n % 2), test_rng_u32(rng) % 64);
  feed_range(&p, b.c, 0, max_len, SPLIT_RANDOM, &o, rng);
  CHECK(combiner_cache_length(b.c) == max_len, "%s: length %d when full", p.name, combiner_cache_length(b.c));
  expect_refused(&p, &b, 1, COMBINER_ERR_CACHE_FULL, "one token past max_len");
  expect_refused(&p, &b, max_len, COMBINER_ERR_CACHE_FULL, "max_len tokens onto a full cache");
  CHECK(combiner_cache_truncate(b.c, max_len) == COMBINER_OK, "%s: truncate to the full length", p.name);
  r = 1 + (int)(test_rng_u32(rng) % (unsigned)(max_len < 3 ? max_len : 3));
  CHECK(combiner_cache_truncate(b.c, max_len - r) == COMBINER_OK, "%s: truncate by %d", p.name, r);
  if (r + 1 <= max_len)
    expect_refused(&p, &b, r + 1, COMBINER_ERR_CACHE_FULL, "one token more than the room left");
  /* the refused appends left no trace: the same tokens give the same outputs */
  feed_range(&p, b.c, max_len - r, max_len, SPLIT_RANDOM, &o2, rng);
  {
    test_tensor x = rows(&o, max_len - r, max_len), y = rows(&o2, max_len - r, max_len);
    CHECK(test_same_rows(&x, &y, r), "%s: last %d outputs differ after refused appends", p.name, r);
  }
  expect_refused(&p, &b, 1, COMBINER_ERR_CACHE_FULL, "one token past max_len, again");
  cache_close(&b, p.name);
  CHECK(p.stray == 0, "%s: %d appends wrote outside their output rows", p.name, p.stray);
  ref = reference(&p, max_len);
  {
    test_tensor x = rows(&o, 0, max_len);
    err = test_rel_error(&x, ref);
  }
  CHECK(err <= TEST_TOLERANCE, "%s: filled to max_len: rel err %.3g vs reference", p.name, err);
  free(ref);
  test_tensor_free(&o); test_tensor_free(&o2);
  problem_free(&p);
}

/* ------------------------------------------------------------------------ */
/* 4. Bad arguments                                                         */
/* ------------------------------------------------------------------------ */

/* a small config of a kind this build carries */
static combiner_config small_config(void) {
  combiner_kind kind = kind_compiled(COMBINER_AXIAL) ? COMBINER_AXIAL
                     : kind_compiled(COMBINER_FIXED) ? COMBINER_FIXED : COMBINER_DENSE;
  combiner_config c = test_config(kind, 0, 4, 2, 1, 3, 1);
  return c;
}

static void sizes(void) {
  static const combiner_kind kinds[] = {COMBINER_KIND_DEFAULT, COMBINER_FIXED, COMBINER_AXIAL,
                                        COMBINER_MIXTURE, COMBINER_DENSE, COMBINER_LOGSPARSE};
  combiner_config c = small_config();
  size_t ki;
  int m, block;
  if (test_unfiltered()) {   /* bad arguments belong to no variant */
    CHECK(combiner_cache_size(NULL, 10) == 0, "size: cfg NULL");
    CHECK(combiner_cache_size(&c, 0) == 0, "size: max_len 0");
    CHECK(combiner_cache_size(&c, -1) == 0, "size: max_len -1");
    CHECK(combiner_cache_size(&c, INT_MIN) == 0, "size: max_len INT_MIN");
    c.causal = 0;
    CHECK(combiner_cache_size(&c, 10) == 0, "size: not causal");
    c = small_config(); c.head_dim = 0;
    CHECK(combiner_cache_size(&c, 10) == 0, "size: head_dim 0");
    c = small_config(); c.num_kv_heads = 3;
    CHECK(combiner_cache_size(&c, 10) == 0, "size: kv heads not dividing heads");
    c = small_config(); c.kind = (combiner_kind)99;
    CHECK(combiner_cache_size(&c, 10) == 0, "size: bad kind");
    c = small_config(); c.block = -1;
    CHECK(combiner_cache_size(&c, 10) == 0, "size: block -1");
    c = small_config(); c.k_layout.head_stride = -4;
    CHECK(combiner_cache_size(&c, 10) == 0, "size: negative k head stride");
    c = small_config(); c.q_layout.head_stride = 3;
    CHECK(combiner_cache_size(&c, 10) == 0, "size: q heads overlapping (head_stride < width)");
    c = small_config(); c.seq_len = -7;
    CHECK(combiner_cache_size(&c, 10) == 0, "size: seq_len -7");
    c = small_config(); c.block = 0; c.seq_len = 0;
    CHECK(combiner_cache_size(&c, 10) == 0, "size: neither block nor seq_len");
  }
  for (ki = 0; ki < sizeof kinds / sizeof kinds[0]; ++ki)
    for (block = 0; block < 8; block += 7) {
      size_t prev = 0;
      int monotonic = 1, positive = 1;
      c = small_config();
      c.kind = kinds[ki];
      c.block = block;
      c.seq_len = 100;   /* the model's context: block 0 is 10 at every max_len */
      if (!kind_compiled(kinds[ki]) || !test_config_selected(&c)) continue;
      for (m = 1; m <= 300; ++m) {
        size_t sz = combiner_cache_size(&c, m);
        positive &= sz > 0;
        monotonic &= sz >= prev;
        prev = sz;
      }
      CHECK(positive && monotonic, "size of %s block %d: not positive and non-decreasing in max_len 1..300",
            combiner_kind_string(kinds[ki]), block);
    }
}

/* Layouts are checked for the T rows of each append: a token stride that
 * makes two tokens overlap either fails at init or fails every append of
 * two or more tokens (changing nothing) while single tokens work. */
static void layout_per_append(void) {
  combiner_config c = small_config();   /* H = 2, Hkv = 1, d = 4 */
  float q[2 * 8], k[2 * 4], v[2 * 4], out[2 * 8];
  size_t size, i;
  unsigned char *buf;
  combiner_cache *cache = NULL;
  combiner_status st;
  for (i = 0; i < sizeof q / sizeof q[0]; ++i) q[i] = 0.1f * (float)i;
  for (i = 0; i < sizeof k / sizeof k[0]; ++i) k[i] = v[i] = 0.2f * (float)i;
  c.q_layout.token_stride = 3;          /* one token spans 8 floats */
  size = combiner_cache_size(&c, 10);
  buf = (unsigned char *)test_alloc(size + 64);
  st = combiner_cache_init(&cache, &c, 10, buf, size ? size : 64);
  if (size == 0) {
    CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "q tokens overlapping: init says %s", combiner_status_string(st));
  } else {
    CHECK(st == COMBINER_OK, "q tokens overlapping, size %d: init says %s", (int)size, combiner_status_string(st));
    if (st == COMBINER_OK) {
      st = combiner_cache_append(cache, 1, q, k, v, out);
      CHECK(st == COMBINER_OK, "q tokens overlapping, one token: %s", combiner_status_string(st));
      st = combiner_cache_append(cache, 2, q, k, v, out);
      CHECK(st == COMBINER_ERR_INVALID_ARGUMENT && combiner_cache_length(cache) == 1,
            "q tokens overlapping, two tokens: %s, length %d", combiner_status_string(st),
            combiner_cache_length(cache));
    }
  }
  free(buf);
}

static void init_errors(void) {
  combiner_config c = small_config();
  size_t need = combiner_cache_size(&c, 20);
  unsigned char *buf = (unsigned char *)test_alloc(need + 64), *copy = (unsigned char *)test_alloc(need + 64);
  combiner_cache *sentinel = (combiner_cache *)copy, *cache;
  combiner_status st;
  int which;
  CHECK(need > 0, "init: size");
  memset(buf, 0x5A, need + 64);
  memcpy(copy, buf, need + 64);
  for (which = 0; which < 16; ++which) {
    combiner_status want = COMBINER_ERR_INVALID_ARGUMENT;
    const char *what = "";
    combiner_cache **pc = &cache;
    const combiner_config *pcfg = &c;
    int max_len = 20;
    void *b = buf;
    size_t bsize = need;
    c = small_config();
    cache = sentinel;
    switch (which) {
      case 0: what = "cache NULL"; pc = NULL; break;
      case 1: what = "cfg NULL"; pcfg = NULL; break;
      case 2: what = "buffer NULL"; b = NULL; break;
      case 3: what = "not causal"; c.causal = 0; break;
      case 4: what = "max_len 0"; max_len = 0; break;
      case 5: what = "max_len -3"; max_len = -3; break;
      case 6: what = "head_dim 0"; c.head_dim = 0; break;
      case 7: what = "bad pool"; c.pool = (combiner_pool)2; break;
      case 8: what = "one byte short"; bsize = need - 1; want = COMBINER_ERR_WORKSPACE_TOO_SMALL; break;
      case 9: what = "one byte short, misaligned"; b = buf + 13; bsize = need - 1;
              want = COMBINER_ERR_WORKSPACE_TOO_SMALL; break;
      case 10: what = "size 0"; bsize = 0; want = COMBINER_ERR_WORKSPACE_TOO_SMALL; break;
      case 11: what = "num_threads -1"; c.num_threads = -1; break;
      case 12: what = "scale NaN"; c.scale = NAN; break;
      case 13: what = "seq_len -1"; c.seq_len = -1; break;
      case 14: what = "no block and no seq_len"; c.block = 0; c.seq_len = 0; want = COMBINER_ERR_NO_BLOCK;
               if (!kind_has_blocks(c.kind)) continue;
               break;
      default: what = "buffer of another max_len"; max_len = 400;
               want = COMBINER_ERR_WORKSPACE_TOO_SMALL; break;
    }
    st = combiner_cache_init(pc, pcfg, max_len, b, bsize);
    CHECK(st == want, "init %s: got \"%s\", want \"%s\"", what, combiner_status_string(st),
          combiner_status_string(want));
    CHECK(cache == sentinel, "init %s: *cache written on failure", what);
    CHECK(memcmp(buf, copy, need + 64) == 0, "init %s: buffer written on failure", what);
  }
  /* valid edge cases */
  for (which = 0; which < 4; ++which) {   /* an explicit block (3): seq_len only resolves block 0 */
    static const int seq_lens[4] = {0, 5, 20, INT_MAX};
    c = small_config();
    c.seq_len = seq_lens[which];
    cache = NULL;
    st = combiner_cache_init(&cache, &c, 20, buf + which, need);
    CHECK(st == COMBINER_OK && combiner_cache_length(cache) == 0, "init with seq_len %d and block 3: %s",
          seq_lens[which], combiner_status_string(st));
  }
  for (which = 0; which < 2; ++which) {   /* block 0: the model's context (50), whatever max_len */
    const int max_len = which ? 400 : 20;
    unsigned char *room;
    c = small_config(); c.block = 0; c.seq_len = 50; c.kind = COMBINER_KIND_DEFAULT;
    room = (unsigned char *)test_alloc(combiner_cache_size(&c, max_len));
    st = combiner_cache_init(&cache, &c, max_len, room, combiner_cache_size(&c, max_len));
    CHECK(st == COMBINER_OK, "init default kind, block 0, seq_len 50, max_len %d: %s", max_len,
          combiner_status_string(st));
    if (st == COMBINER_OK) {
      combiner_config r;
      st = combiner_cache_config(cache, &r);
      CHECK(st == COMBINER_OK, "max_len %d: cache_config: %s", max_len, combiner_status_string(st));
      if (st == COMBINER_OK)
        CHECK(r.block == 8 && r.seq_len == max_len && r.kind != COMBINER_KIND_DEFAULT,
              "max_len %d: block 0 of a model with seq_len 50 is 8 (got %d), kind explicit", max_len, r.block);
    }
    free(room);
  }
  free(buf); free(copy);
}

static void uninitialized(void) {
  void *zero = calloc(4096, 1), *garbage = test_alloc(4096);
  unsigned char *z = (unsigned char *)zero;
  combiner_cache *c = (combiner_cache *)zero;
  float q[8], k[4], v[4], out[8];
  combiner_config r;
  size_t i;
  int clean = 1;
  memset(q, 0, sizeof q); memset(k, 0, sizeof k); memset(v, 0, sizeof v);
  memset(garbage, 0xC3, 4096);
  CHECK(combiner_cache_length(NULL) == -1, "length of NULL");
  CHECK(combiner_cache_length(c) == -1, "length of a zeroed buffer: %d", combiner_cache_length(c));
  CHECK(combiner_cache_length((combiner_cache *)garbage) == -1, "length of a garbage buffer");
  CHECK(combiner_cache_append(c, 1, q, k, v, out) == COMBINER_ERR_INVALID_ARGUMENT, "append to a zeroed buffer");
  CHECK(combiner_cache_append(c, 1, q, k, v, NULL) == COMBINER_ERR_INVALID_ARGUMENT,
        "append (fill only) to a zeroed buffer");
  CHECK(combiner_cache_truncate(c, 0) == COMBINER_ERR_INVALID_ARGUMENT, "truncate a zeroed buffer");
  CHECK(combiner_cache_config(c, &r) == COMBINER_ERR_INVALID_ARGUMENT, "config of a zeroed buffer");
  CHECK(combiner_cache_append((combiner_cache *)garbage, 1, q, k, v, out) == COMBINER_ERR_INVALID_ARGUMENT,
        "append to a garbage buffer");
  for (i = 0; i < 4096; ++i) clean &= z[i] == 0;
  CHECK(clean, "a zeroed buffer was written");
  free(zero); free(garbage);
}

/* Every failing call on a live cache: its status, and nothing changes. */
static void live_errors(test_rng *rng) {
  const test_variant *var = test_variant_named("mixture-joint");
  problem p;
  if (!kind_compiled(var->kind) || !test_variant_selected(var)) return;
  p = problem_make(var, COMBINER_POOL_MAX, 24, 4, 5, 6, 4, 2, LAYOUT_TOKEN_MAJOR, 24, 0.0f, rng);
  test_tensor o = out_make(&p), fresh = out_make(&p);
  cache_box b = cache_open(&p, 1, 3), f;
  unsigned char *before = (unsigned char *)test_alloc(b.size);
  const float *nf = NULL;
  float *q_copy = (float *)test_alloc(p.sq.floats * sizeof(float));
  combiner_status st;
  combiner_config r;
  int which;
  if (!b.c) {
    cache_close(&b, p.name);
    test_tensor_free(&o); test_tensor_free(&fresh);
    free(before); free(q_copy); problem_free(&p);
    return;
  }
  feed_range(&p, b.c, 0, 9, SPLIT_RANDOM, &o, rng);
#define REFUSED(call, want, what)                                                               \
  do {                                                                                          \
    memcpy(before, b.buffer, b.size);                                                           \
    st = (call);                                                                                \
    CHECK(st == (want), "%s: got \"%s\"", what, combiner_status_string(st));                    \
    CHECK(combiner_cache_length(b.c) == 9, "%s: length now %d", what, combiner_cache_length(b.c)); \
    CHECK(memcmp(before, b.buffer, b.size) == 0, "%s: cache buffer changed", what);             \
  } while (0)
  /* staged token 9 in sq/sk/sv, out poisoned */
  memcpy(p.sq.data, p.nan, p.sq.floats * sizeof(float));
  memcpy(p.sk.data, p.nan, p.sk.floats * sizeof(float));
  memcpy(p.sv.data, p.nan, p.sv.floats * sizeof(float));
  memcpy(p.so.data, p.nan, p.so.floats * sizeof(float));
  copy_rows(&p.sq, 0, &p.q, 9, 3); copy_rows(&p.sk, 0, &p.k, 9, 3); copy_rows(&p.sv, 0, &p.v, 9, 3);
  memcpy(q_copy, p.sq.data, p.sq.floats * sizeof(float));
  REFUSED(combiner_cache_append(NULL, 1, p.sq.data, p.sk.data, p.sv.data, p.so.data), COMBINER_ERR_INVALID_ARGUMENT,
          "append cache NULL");
  for (which = 0; which < 3; ++which)
    REFUSED(combiner_cache_append(b.c, 1, which == 0 ? nf : p.sq.data, which == 1 ? nf : p.sk.data,
                                  which == 2 ? nf : p.sv.data, p.so.data),
            COMBINER_ERR_INVALID_ARGUMENT, which == 0 ? "append q NULL" : which == 1 ? "append k NULL" : "append v NULL");
  REFUSED(combiner_cache_append(b.c, 0, p.sq.data, p.sk.data, p.sv.data, p.so.data), COMBINER_ERR_INVALID_ARGUMENT,
          "append count 0");
  REFUSED(combiner_cache_append(b.c, -1, p.sq.data, p.sk.data, p.sv.data, p.so.data), COMBINER_ERR_INVALID_ARGUMENT,
          "append count -1");
  REFUSED(combiner_cache_append(b.c, INT_MIN, p.sq.data, p.sk.data, p.sv.data, NULL), COMBINER_ERR_INVALID_ARGUMENT,
          "append count INT_MIN");
  REFUSED(combiner_cache_append(b.c, INT_MAX, p.sq.data, p.sk.data, p.sv.data, NULL), COMBINER_ERR_CACHE_FULL,
          "append count INT_MAX");
  CHECK(memcmp(p.so.data, p.nan, p.so.floats * sizeof(float)) == 0, "refused appends wrote out");
  REFUSED(combiner_cache_append(b.c, 3, p.sq.data, p.sk.data, p.sv.data, p.sq.data), COMBINER_ERR_INVALID_ARGUMENT,
          "append out == q");
  REFUSED(combiner_cache_append(b.c, 3, p.sq.data, p.sk.data, p.sv.data, p.sq.data + 7), COMBINER_ERR_INVALID_ARGUMENT,
          "append out overlapping q");
  CHECK(memcmp(q_copy, p.sq.data, p.sq.floats * sizeof(float)) == 0, "refused append wrote into q");
  REFUSED(combiner_cache_append(b.c, 3, p.sq.data, p.sk.data, p.sv.data, p.sk.data + 1), COMBINER_ERR_INVALID_ARGUMENT,
          "append out overlapping k");
  REFUSED(combiner_cache_append(b.c, 3, p.sq.data, p.sk.data, p.sv.data, p.sv.data + 2), COMBINER_ERR_INVALID_ARGUMENT,
          "append out overlapping v");
  {   /* out inside the cache buffer (a float-aligned spot in it) */
    unsigned char *spot = b.buffer + b.size / 2;
    spot += (4 - (size_t)((uintptr_t)spot % 4)) % 4;
    REFUSED(combiner_cache_append(b.c, 1, p.sq.data, p.sk.data, p.sv.data, (float *)(void *)spot),
            COMBINER_ERR_INVALID_ARGUMENT, "append out inside the cache buffer");
    spot = b.buffer;
    spot += (4 - (size_t)((uintptr_t)spot % 4)) % 4;
    REFUSED(combiner_cache_append(b.c, 1, p.sq.data, p.sk.data, p.sv.data, (float *)(void *)spot),
            COMBINER_ERR_INVALID_ARGUMENT, "append out at the start of the cache buffer");
  }
  REFUSED(combiner_cache_truncate(NULL, 0), COMBINER_ERR_INVALID_ARGUMENT, "truncate NULL");
  REFUSED(combiner_cache_truncate(b.c, -1), COMBINER_ERR_INVALID_ARGUMENT, "truncate -1");
  REFUSED(combiner_cache_truncate(b.c, 10), COMBINER_ERR_INVALID_ARGUMENT, "truncate past the length");
  REFUSED(combiner_cache_truncate(b.c, INT_MAX), COMBINER_ERR_INVALID_ARGUMENT, "truncate INT_MAX");
  REFUSED(combiner_cache_truncate(b.c, 9), COMBINER_OK, "truncate to the length");
  REFUSED(combiner_cache_config(NULL, &r), COMBINER_ERR_INVALID_ARGUMENT, "config cache NULL");
  REFUSED(combiner_cache_config(b.c, NULL), COMBINER_ERR_INVALID_ARGUMENT, "config resolved NULL");
#undef REFUSED
  /* after all that, the cache goes on as if nothing happened */
  feed_range(&p, b.c, 9, 24, SPLIT_RANDOM, &o, rng);
  f = cache_open(&p, 2, 0);
  feed_range(&p, f.c, 0, 24, SPLIT_ALL, &fresh, rng);
  CHECK(test_same_rows(&o, &fresh, 24), "outputs after refused calls differ from a fresh cache");
  CHECK(p.stray == 0, "%d appends wrote outside their output rows", p.stray);
  cache_close(&b, p.name); cache_close(&f, p.name);
  test_tensor_free(&o); test_tensor_free(&fresh);
  free(before); free(q_copy);
  problem_free(&p);
}

/* Any alignment works with exactly combiner_cache_size bytes, and gives the
 * same bits as an aligned buffer; the guards around it stay intact. */
static void alignments(test_rng *rng) {
  problem ps[TEST_NVARIANTS];
  test_tensor aligned[TEST_NVARIANTS], o;
  int on[TEST_NVARIANTS];
  size_t vi, off;
  for (vi = 0; vi < TEST_NVARIANTS; ++vi) {   /* ps[vi] and aligned[vi]: test_variants[vi]'s */
    const test_variant *var = &test_variants[vi];
    cache_box b;
    on[vi] = test_variant_selected(var);
    if (!on[vi]) continue;
    ps[vi] = problem_make(var, (combiner_pool)(vi % 2), 13, 0, 3, 2, 2, 1, (int)(vi % 3), 0, 0.0f, rng);
    aligned[vi] = out_make(&ps[vi]);
    if (!kind_compiled(var->kind)) continue;
    b = cache_open(&ps[vi], 1, 0);
    feed_range(&ps[vi], b.c, 0, 13, SPLIT_RANDOM, &aligned[vi], rng);
    cache_close(&b, ps[vi].name);
  }
  for (off = 1; off < 64; ++off) {   /* the offsets take turns among the variants */
    cache_box b;
    vi = off % TEST_NVARIANTS;
    if (!on[vi] || !kind_compiled(test_variants[vi].kind)) continue;
    o = out_make(&ps[vi]);
    b = cache_open(&ps[vi], 1 + (int)(off % 2), off);
    feed_range(&ps[vi], b.c, 0, 13, SPLIT_RANDOM, &o, rng);
    CHECK(test_same_rows(&o, &aligned[vi], 13), "%s: buffer offset %d differs from aligned", ps[vi].name, (int)off);
    cache_close(&b, ps[vi].name);
    test_tensor_free(&o);
  }
  for (vi = 0; vi < TEST_NVARIANTS; ++vi) {
    if (!on[vi]) continue;
    CHECK(ps[vi].stray == 0, "%s: appends wrote outside their output rows", ps[vi].name);
    test_tensor_free(&aligned[vi]);
    problem_free(&ps[vi]);
  }
}

static void status_strings(void) {
  static const combiner_status all[] = {COMBINER_OK, COMBINER_ERR_INVALID_ARGUMENT,
                                        COMBINER_ERR_WORKSPACE_TOO_SMALL, COMBINER_ERR_OUT_OF_MEMORY,
                                        COMBINER_ERR_OVERFLOW, COMBINER_ERR_UNSUPPORTED,
                                        COMBINER_ERR_CACHE_FULL};
  const char *unknown = combiner_status_string((combiner_status)(COMBINER_ERR_CACHE_FULL + 1));
  size_t i, j;
  for (i = 0; i < sizeof all / sizeof all[0]; ++i) {
    const char *s = combiner_status_string(all[i]);
    CHECK(s && *s && strcmp(s, unknown) != 0, "status %d has no string of its own", (int)all[i]);
    for (j = 0; j < i; ++j)
      CHECK((int)all[i] != (int)all[j] && strcmp(s, combiner_status_string(all[j])) != 0,
            "statuses %d and %d are not distinct", (int)all[i], (int)all[j]);
  }
}

/* ------------------------------------------------------------------------ */
/* 5. Independent caches                                                    */
/* ------------------------------------------------------------------------ */

/* A replayable sequence of appends and truncations on one cache (the
 * tokens stay; only the split and the truncations vary). Counts its own
 * failures, so that it can run on a thread of its own. */
typedef struct script {
  problem *p;
  cache_box box;
  test_rng rng;
  int cur, steps, failures;
  test_tensor out;
} script;

static void script_start(script *s, problem *p, uint64_t seed, int threads, size_t offset) {
  s->p = p;
  s->box = cache_open(p, threads, offset);
  s->rng.s = seed;
  s->cur = 0; s->steps = 0; s->failures = 0;
  s->out = out_make(p);
}

static void script_step(script *s) {
  problem *p = s->p;
  unsigned r = test_rng_u32(&s->rng);
  if (s->cur == p->max_len || (s->cur > 0 && r % 5 == 0)) {
    int len = (int)(test_rng_u32(&s->rng) % (unsigned)(s->cur + 1));
    if (combiner_cache_truncate(s->box.c, len) != COMBINER_OK) ++s->failures;
    s->cur = len;
  } else {
    int t = random_chunk(p, p->max_len - s->cur, &s->rng);
    if (feed(p, s->box.c, s->cur, t, &s->out, s->cur) != COMBINER_OK) ++s->failures;
    s->cur += t;
  }
  if (combiner_cache_length(s->box.c) != s->cur) ++s->failures;
  ++s->steps;
}

enum { SCRIPT_STEPS = 60 };

static void *script_thread(void *arg) {
  script *s = (script *)arg;
  int i;
  for (i = 0; i < SCRIPT_STEPS; ++i) script_step(s);
  return NULL;
}

static void script_finish(script *s, const script *solo, const char *mode) {
  CHECK(s->failures == 0, "%s (%s): %d failed calls or wrong lengths", s->p->name, mode, s->failures);
  CHECK(s->cur == solo->cur && test_same_rows(&s->out, &solo->out, s->cur),
        "%s (%s): outputs differ from the cache used alone", s->p->name, mode);
  cache_close(&s->box, s->p->name);
  test_tensor_free(&s->out);
}

static void independence(test_rng *rng) {
  const test_variant *va = test_variant_named("axial-wsum"), *vb = test_variant_named("mixture-average");
  const int a_on = test_variant_selected(va), b_on = test_variant_selected(vb);   /* either: both run */
  problem pa, pb, pa2, pb2;   /* pa2, pb2: the threaded runs need staging of their own */
  script sa, sb, ia, ib, ta, tb;
  pthread_t th[2];
  double *ref;
  int i;
  if (!a_on && !b_on) return;
  pa = problem_make(va, COMBINER_POOL_MAX, 40, 0, 8, 8, 4, 2, LAYOUT_TOKEN_MAJOR, 0, 0.0f, rng);
  pb = problem_make(vb, COMBINER_POOL_MEAN, 31, 4, 5, 7, 2, 1, LAYOUT_PADDED, 0, 0.0f, rng);
  pa2 = pa; pb2 = pb;
  if (!kind_compiled(pa.cfg.kind) || !kind_compiled(pb.cfg.kind)) { problem_free(&pa); problem_free(&pb); return; }
  pa2.sq = test_tensor_make(pa.max_len, pa.sq.heads, pa.sq.width, LAYOUT_TOKEN_MAJOR);
  pa2.sk = test_tensor_make(pa.max_len, pa.sk.heads, pa.sk.width, (LAYOUT_TOKEN_MAJOR + 1) % LAYOUT_COUNT);
  pa2.sv = test_tensor_make(pa.max_len, pa.sv.heads, pa.sv.width, LAYOUT_TOKEN_MAJOR);
  pa2.so = test_tensor_make(pa.max_len, pa.so.heads, pa.so.width, out_layout_of(LAYOUT_TOKEN_MAJOR));
  pb2.sq = test_tensor_make(pb.max_len, pb.sq.heads, pb.sq.width, LAYOUT_PADDED);
  pb2.sk = test_tensor_make(pb.max_len, pb.sk.heads, pb.sk.width, (LAYOUT_PADDED + 1) % LAYOUT_COUNT);
  pb2.sv = test_tensor_make(pb.max_len, pb.sv.heads, pb.sv.width, LAYOUT_PADDED);
  pb2.so = test_tensor_make(pb.max_len, pb.so.heads, pb.so.width, out_layout_of(LAYOUT_PADDED));
  /* alone */
  script_start(&sa, &pa, 77, 1, 5);
  for (i = 0; i < SCRIPT_STEPS; ++i) script_step(&sa);
  script_start(&sb, &pb, 78, 2, 9);
  for (i = 0; i < SCRIPT_STEPS; ++i) script_step(&sb);
  /* interleaved on one thread */
  script_start(&ia, &pa, 77, 2, 17);
  script_start(&ib, &pb, 78, 1, 0);
  for (i = 0; i < SCRIPT_STEPS; ++i) { script_step(&ia); script_step(&ib); }
  script_finish(&ia, &sa, "interleaved");
  script_finish(&ib, &sb, "interleaved");
  /* at the same time on two threads */
  script_start(&ta, &pa2, 77, 1, 33);
  script_start(&tb, &pb2, 78, 1, 1);
  CHECK(pthread_create(&th[0], NULL, script_thread, &ta) == 0, "pthread_create");
  CHECK(pthread_create(&th[1], NULL, script_thread, &tb) == 0, "pthread_create");
  pthread_join(th[0], NULL);
  pthread_join(th[1], NULL);
  script_finish(&ta, &sa, "concurrent threads");
  script_finish(&tb, &sb, "concurrent threads");
  /* and the solo runs against the reference */
  CHECK(sa.failures == 0 && sb.failures == 0, "solo scripts: failed calls");
  ref = reference(&pa, sa.cur);
  {
    test_tensor x = rows(&sa.out, 0, sa.cur);
    CHECK(sa.cur == 0 || test_rel_error(&x, ref) <= TEST_TOLERANCE, "%s: script vs reference", pa.name);
  }
  free(ref);
  ref = reference(&pb, sb.cur);
  {
    test_tensor x = rows(&sb.out, 0, sb.cur);
    CHECK(sb.cur == 0 || test_rel_error(&x, ref) <= TEST_TOLERANCE, "%s: script vs reference", pb.name);
  }
  free(ref);
  CHECK(pa.stray + pa2.stray + pb.stray + pb2.stray == 0, "independent caches: appends wrote outside their rows");
  cache_close(&sa.box, pa.name); cache_close(&sb.box, pb.name);
  test_tensor_free(&sa.out); test_tensor_free(&sb.out);
  test_tensor_free(&pa2.sq); test_tensor_free(&pa2.sk); test_tensor_free(&pa2.sv); test_tensor_free(&pa2.so);
  test_tensor_free(&pb2.sq); test_tensor_free(&pb2.sk); test_tensor_free(&pb2.sv); test_tensor_free(&pb2.so);
  problem_free(&pa); problem_free(&pb);
}

/* ------------------------------------------------------------------------ */

int main(void) {
  static const int lengths[] = {1, 2, 7, 16, 33, 63, 64, 65, 100};
  test_rng rng = {20240611};
  const test_variant *var;
  unsigned n = 0;
  size_t vi, li;
  int pool, bi;
  if (test_unfiltered()) status_strings();   /* bad arguments belong to no variant */
  sizes();
  if (test_unfiltered()) {
    init_errors();
    layout_per_append();
    uninitialized();
  }
  live_errors(&rng);
  alignments(&rng);
  independence(&rng);
  /* a variant left out by COMBINER_TEST_KINDS still counts its cases (n),
   * so that the others keep their shapes */
  TEST_FOR_EACH_VARIANT(var) {
    const int on = test_variant_selected(var);
    for (li = 0; li < sizeof lengths / sizeof lengths[0]; ++li)
      for (pool = 0; pool < 2; ++pool)
        for (bi = 0; bi < 5; ++bi, ++n) {
          int L = lengths[li], blocks[5];
          blocks[0] = 1; blocks[1] = 3; blocks[2] = 5; blocks[3] = 0; blocks[4] = L + (int)(n % 4);
          if (on && test_quick_keeps(L, n)) decode_equals_prefill(var, (combiner_pool)pool, L, blocks[bi], n, &rng);
        }
  }
  TEST_FOR_EACH_VARIANT(var) {   /* fast chunks: long enough for several tiles of 64 */
    static const int fast_lens[4] = {64, 150, 333, 700};   /* 700: several runs of a borrowed FIXED ring */
    const int on = test_variant_selected(var);
    for (li = 0; li < 4; ++li)
      for (bi = 0; bi < 5; ++bi, ++n) {
        const int L = fast_lens[li], blocks[5] = {1, 5, 0, 50, 400};
        if (on && test_quick_keeps(L, n)) fast_chunks(var, L, blocks[bi], n, &rng);
      }
  }
  TEST_FOR_EACH_VARIANT(var) {   /* head_dim 64 with GQA on the longest sequence, every kind */
    shape s;
    vi = test_variant_index(var);
    s.d = 64; s.dv = vi % 2 ? 64 : 40; s.H = 4; s.Hkv = 2; s.layout = (int)(vi % LAYOUT_COUNT);
    s.extra = (int)(vi % 3) * 11; s.seq_len = 0; s.scale = 0.0f;
    if (test_variant_selected(var))
      decode_with_shape(var, (combiner_pool)(vi % 2), 100, vi % 2 ? 0 : 7, s, &rng);
  }
  {   /* the default kind (test_ref_problem maps it to AXIAL), and a longer sequence where optimized */
    test_variant dflt = {"default-kind", COMBINER_KIND_DEFAULT, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT};
    if ((int)COMBINER_DEFAULT_KIND == (int)COMBINER_AXIAL) {   /* with WSUM keys: axial-wsum */
      if (test_variant_selected(test_variant_named("axial-wsum")))
        decode_equals_prefill(&dflt, COMBINER_POOL_MAX, 30, 0, n, &rng);
      ++n;
    }
#if defined(__OPTIMIZE__)
    TEST_FOR_EACH_VARIANT(var) {
      if (test_variant_selected(var)) decode_equals_prefill(var, COMBINER_POOL_MAX, 300, 0, n, &rng);
      ++n;
    }
#endif
  }
  TEST_FOR_EACH_VARIANT(var) {
    const int on = test_variant_selected(var);
    for (pool = 0; pool < 2; ++pool)
      for (bi = 0; bi < 8; ++bi, ++n) {
        static const int blocks[8] = {1, 3, 5, 0, 2, 4, 7, 0};
        static const int max_lens[5] = {17, 40, 65, 12, 33};
        if (on)
          truncate_then_append(var, (combiner_pool)pool, max_lens[(n + (unsigned)bi) % 5], blocks[bi], n, &rng);
      }
  }
  TEST_FOR_EACH_VARIANT(var) {
    const int on = test_variant_selected(var);
    vi = test_variant_index(var);
    for (bi = 0; bi < 3; ++bi, ++n) {
      static const int max_lens[3] = {1, 9, 30};
      static const int blocks[3] = {0, 4, 2};
      if (on) fill_to_max_len(var, max_lens[bi], blocks[(vi + (size_t)bi) % 3], n, &rng);
    }
  }
  printf("test_cache: %d decode-vs-prefill configurations (5 caches each), %d fast-chunk configurations (4 caches "
         "each), %d truncation scripts, %d max_len cases\n", cases_decode, cases_fast, cases_truncate, cases_full);
  return TEST_SUMMARY();
}
