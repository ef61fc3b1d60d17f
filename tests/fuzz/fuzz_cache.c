/* libFuzzer target for the decode cache (combiner_cache_*): decodes a config
 * (every kind, pool, Axial key, Mixture norm, block 1..beyond max_len, GQA,
 * padded/head-major/raw strides, 0..3 threads, sometimes one field broken on
 * purpose), a max_len and a script of operations -- appends of 1..max_len+
 * tokens with or without out, truncations (valid and not), bad arguments,
 * re-init -- and checks, against a shadow model of the cache:
 *   - every status is the documented one (computed here from the contract,
 *     not by asking the library), combiner_cache_size is 0 exactly when init
 *     refuses the config, and combiner_cache_config resolves the defaults;
 *   - a failing call changes nothing: not the cache buffer, not its length,
 *     not a float of out; a succeeding one writes exactly out's rows;
 *   - accepted tensors never have overlapping rows;
 *   - combiner_cache_length always equals the model's length;
 *   - the guard bytes around the buffer (at any alignment) and around every
 *     out survive;
 *   - at the end, the outputs the session produced for the surviving
 *     positions (appended with out after the last truncation below them)
 *     are bit-identical to a fresh cache (default layouts, other thread
 *     count, sometimes max_len = length) fed the final sequence in one
 *     append, finite while the inputs are finite and not huge, and within
 *     1e-4 of combiner_attention over the sequence's tame prefix with the
 *     cache's block.
 * Inputs are NaN outside their rows and freed after each append, so a cache
 * that reads past its rows or keeps a caller's pointer shows up (NaN or
 * ASan). Any violation aborts, so libFuzzer keeps the input.
 * Built with COMBINER_NO_<KIND>, those kinds must answer UNSUPPORTED. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <float.h>
#include <limits.h>

#define COMBINER_IMPLEMENTATION
#include "combiner.h"
#include "../test_kinds.h"

typedef struct reader { const uint8_t *p; size_t n, i; } reader;

/* 0 once the input is used up (so the op script simply ends) */
static unsigned next_byte(reader *r) { return r->i < r->n ? r->p[r->i++] : 0u; }

static combiner_config fail_cfg;
static int fail_max_len, fail_op;

static void fail(const char *what) {
  const combiner_config *c = &fail_cfg;
  fprintf(stderr,
          "fuzz_cache check failed: %s (op %d; kind %d max_len %d d %d dv %d H %d Hkv %d block %d pool %d "
          "key %d norm %d threads %d scale %g; strides q %td/%td k %td/%td v %td/%td out %td/%td)\n",
          what, fail_op, (int)c->kind, fail_max_len, c->head_dim, c->value_dim, c->num_heads, c->num_kv_heads,
          c->block, (int)c->pool, (int)c->axial_key, (int)c->mixture_norm, c->num_threads, (double)c->scale,
          c->q_layout.token_stride, c->q_layout.head_stride, c->k_layout.token_stride, c->k_layout.head_stride,
          c->v_layout.token_stride, c->v_layout.head_stride, c->out_layout.token_stride,
          c->out_layout.head_stride);
  abort();
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) abort();
  return p;
}

static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static float float_of(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

#define SENTINEL 0xFFBADBADu   /* a signalling NaN no computation produces */
#define GUARD_FLOATS 16
#define GUARD_BYTE 0xC3

/* ------------------------------------------------------------------------ */
/* Layouts: what the contract says about a tensor of T tokens               */
/* ------------------------------------------------------------------------ */

/* default, head-major over max_len, padded, raw (maybe invalid), token
 * padding, or head-major over a few tokens (valid only up to that many) */
static combiner_layout decode_layout(reader *r, int max_len, int heads, int width) {
  combiner_layout lay;
  unsigned sel = next_byte(r) % 10;
  lay.token_stride = 0;
  lay.head_stride = 0;
  if (sel == 1) { lay.token_stride = width; lay.head_stride = (ptrdiff_t)max_len * width; }
  if (sel == 2) {
    lay.head_stride = width + 1 + (int)(next_byte(r) % 4);
    lay.token_stride = heads * lay.head_stride + (int)(next_byte(r) % 3);
  }
  if (sel == 3) {
    lay.head_stride = (ptrdiff_t)width + (ptrdiff_t)(next_byte(r) % 8) - 3;
    lay.token_stride = (ptrdiff_t)heads * width + (ptrdiff_t)(next_byte(r) % 16) - 8;
  }
  if (sel == 4) lay.token_stride = (ptrdiff_t)heads * width + 1 + (int)(next_byte(r) % 5);
  if (sel == 5) { lay.token_stride = width; lay.head_stride = (ptrdiff_t)(1 + next_byte(r) % 8) * width; }
  return lay;
}

typedef struct strides { ptrdiff_t ts, hs; } strides;

static strides resolved(const combiner_layout *lay, int heads, int width) {
  strides s;
  s.hs = lay->head_stride ? lay->head_stride : width;
  s.ts = lay->token_stride ? lay->token_stride : (ptrdiff_t)heads * width;
  return s;
}

static size_t extent(strides s, int T, int heads, int width) {
  return (size_t)((ptrdiff_t)(T - 1) * s.ts + (ptrdiff_t)(heads - 1) * s.hs + width);
}

static int cmp_ptrdiff(const void *a, const void *b) {
  ptrdiff_t x = *(const ptrdiff_t *)a, y = *(const ptrdiff_t *)b;
  return x < y ? -1 : x > y;
}

/* "Rows may not overlap": T x heads rows of `width` floats, checked exactly */
static int rows_disjoint(strides s, int T, int heads, int width) {
  size_t n = (size_t)T * (size_t)heads, i;
  ptrdiff_t *start = (ptrdiff_t *)xmalloc(n * sizeof *start);
  int t, h, ok = 1;
  for (t = 0; t < T; ++t)
    for (h = 0; h < heads; ++h) start[(size_t)t * heads + h] = t * s.ts + h * s.hs;
  qsort(start, n, sizeof *start, cmp_ptrdiff);
  for (i = 1; i < n; ++i)
    if (start[i] < start[i - 1] + width) ok = 0;
  free(start);
  return ok;
}

/* The library's (sufficient) rule: rows nested as a grid, the smaller
 * stride at least a row wide, the larger spanning the smaller's rows. It
 * also refuses interleaved but disjoint grids (token stride 2, head stride
 * 3, width 1, 3 tokens x 2 heads): stricter than "rows may not overlap",
 * and so expected here; what it accepts must be disjoint. */

static int grid_ok(strides s, int T, int heads, int width) {
  ptrdiff_t ss, sl, ns, nl;
  if (s.ts <= s.hs) { ss = s.ts; ns = T; sl = s.hs; nl = heads; }
  else              { ss = s.hs; ns = heads; sl = s.ts; nl = T; }
  if (ns == 1) { ss = sl; ns = nl; nl = 1; }
  if (ns > 1 && ss < width) return 0;
  if (nl > 1 && sl < (ns - 1) * ss + width) return 0;
  return 1;
}

/* can a tensor of this layout carry T tokens? */
static int layout_accepts(const combiner_layout *lay, int T, int heads, int width) {
  strides s;
  int grid;
  if (lay->token_stride < 0 || lay->head_stride < 0) return 0;
  s = resolved(lay, heads, width);
  grid = grid_ok(s, T, heads, width);
  if (grid && !rows_disjoint(s, T, heads, width)) fail("the grid rule accepts overlapping rows");
  return grid;
}

/* ------------------------------------------------------------------------ */
/* The config and what init must say about it                               */
/* ------------------------------------------------------------------------ */

enum { SIZE_NORMAL, SIZE_OVERFLOW, SIZE_HUGE };

typedef struct plan {
  combiner_config cfg;
  int max_len;
  int size_case;            /* SIZE_*: absurd sizes, never allocated */
  combiner_status expect;   /* of init with a large enough buffer */
  int kind, dv, Hkv, block; /* resolved, when expect is OK */
  float scale;
} plan;

static combiner_status expected_init(plan *pl) {
  const combiner_config *c = &pl->cfg;
  int kind = c->kind == COMBINER_KIND_DEFAULT ? (int)(COMBINER_DEFAULT_KIND) : (int)c->kind;
  int Hkv, dv;
  pl->kind = kind;
  if (kind < COMBINER_FIXED || kind > COMBINER_LOGSPARSE) return COMBINER_ERR_INVALID_ARGUMENT;
  if (pl->max_len < 1 || c->seq_len < 0 || c->head_dim < 1 || c->value_dim < 0 || c->num_heads < 1 ||
      c->num_kv_heads < 0 || c->block < 0 || c->num_threads < 0)
    return COMBINER_ERR_INVALID_ARGUMENT;
  if ((int)c->pool < 0 || (int)c->pool > 1 || (int)c->axial_key < 0 || (int)c->axial_key > 1 ||
      (int)c->mixture_norm < 0 || (int)c->mixture_norm > 1)
    return COMBINER_ERR_INVALID_ARGUMENT;
  if (!(fabsf(c->scale) <= FLT_MAX)) return COMBINER_ERR_INVALID_ARGUMENT;
  Hkv = c->num_kv_heads ? c->num_kv_heads : c->num_heads;
  dv = c->value_dim ? c->value_dim : c->head_dim;
  if (Hkv > c->num_heads || c->num_heads % Hkv) return COMBINER_ERR_INVALID_ARGUMENT;
  pl->Hkv = Hkv;
  pl->dv = dv;
  /* the model's block; DENSE and LOGSPARSE without one resolve an unused
   * block from max_len */
  pl->block = c->block ? c->block : ceil_sqrt(c->seq_len >= 1 ? c->seq_len : pl->max_len);
  pl->scale = c->scale != 0.0f ? c->scale : (float)(1.0 / sqrt((double)c->head_dim));
  if (pl->size_case == SIZE_OVERFLOW) return COMBINER_ERR_OVERFLOW;
  if (!c->causal) return COMBINER_ERR_INVALID_ARGUMENT;
  if (pl->size_case == SIZE_NORMAL &&
      (!layout_accepts(&c->q_layout, 1, c->num_heads, c->head_dim) ||
       !layout_accepts(&c->k_layout, 1, Hkv, c->head_dim) || !layout_accepts(&c->v_layout, 1, Hkv, dv) ||
       !layout_accepts(&c->out_layout, 1, c->num_heads, dv)))
    return COMBINER_ERR_INVALID_ARGUMENT;
  if (!kind_compiled(kind)) return COMBINER_ERR_UNSUPPORTED;
  if (!c->block && c->seq_len < 1 && kind_has_blocks(kind)) return COMBINER_ERR_NO_BLOCK;
  return COMBINER_OK;
}

static void zero_layouts(combiner_config *c) {
  memset(&c->q_layout, 0, sizeof c->q_layout);
  memset(&c->k_layout, 0, sizeof c->k_layout);
  memset(&c->v_layout, 0, sizeof c->v_layout);
  memset(&c->out_layout, 0, sizeof c->out_layout);
}

static void decode_plan(reader *r, plan *pl) {
  static const float scales[] = {0.0f, 0.0f, 0.5f, 1.0f, -1.0f, 0.125f, 2.0f, 0.0f};
  combiner_config *c = &pl->cfg;
  unsigned flags, b, inv;
  memset(pl, 0, sizeof *pl);
  c->kind = (combiner_kind)(next_byte(r) % 6);
  flags = next_byte(r);
  c->pool = (combiner_pool)(flags & 1u);
  c->axial_key = (combiner_axial_key)((flags >> 1) & 1u);
  c->mixture_norm = (combiner_mixture_norm)((flags >> 2) & 1u);
  c->num_threads = (int)((flags >> 3) & 3u);          /* 0: OpenMP's default */
  c->causal = (flags >> 5) ? (int)(flags >> 5) : 1;   /* any nonzero */
  b = next_byte(r);
  pl->max_len = b < 128 ? 1 + (int)(b % 24) : 1 + (int)((b * 7u + next_byte(r)) % 200);
  b = next_byte(r);
  switch (b % 6) {
    case 0: case 1: c->block = 0; break;                              /* ceil(sqrt(seq_len)) */
    case 2: c->block = 1; break;
    case 3:   /* one block, up to INT_MAX wide */
      c->block = (b >> 3) % 9 == 8 ? INT_MAX : pl->max_len + 1 + (int)(b >> 3) % 9;
      break;
    default: c->block = 1 + (int)(b >> 3) % pl->max_len; break;
  }
  b = next_byte(r);
  if (b >= 240) { static const int wide[] = {16, 17, 31, 64}; c->head_dim = wide[b % 4]; }
  else c->head_dim = 1 + (int)(b % 8);
  b = next_byte(r);
  c->value_dim = b >= 240 ? 16 + (int)(b % 3) : (int)(b % 9);
  b = next_byte(r);
  {   /* H in 1..4 (sometimes 6 or 8); Hkv 0 (= H) or any divisor of H */
    static const int heads[] = {1, 2, 3, 4, 2, 4, 6, 8};
    int divisors[8], nd = 0, h;
    c->num_heads = heads[b % 4 + (b >= 224 ? 4u : 0u)];
    for (h = 1; h <= c->num_heads; ++h)
      if (c->num_heads % h == 0) divisors[nd++] = h;
    h = (int)((b >> 2) % (unsigned)(nd + 1));
    c->num_kv_heads = h == 0 ? 0 : divisors[h - 1];
  }
  c->scale = scales[next_byte(r) % 8];
  {
    int dv = c->value_dim ? c->value_dim : c->head_dim;
    int Hkv = c->num_kv_heads ? c->num_kv_heads : c->num_heads;
    c->q_layout = decode_layout(r, pl->max_len, c->num_heads, c->head_dim);
    c->k_layout = decode_layout(r, pl->max_len, Hkv, c->head_dim);
    c->v_layout = decode_layout(r, pl->max_len, Hkv, dv);
    c->out_layout = decode_layout(r, pl->max_len, c->num_heads, dv);
  }
  b = next_byte(r);   /* the model's context: resolves block 0 (SPEC 7); 0 = not given */
  c->seq_len = b < 100 ? 0 : (int)b - 99;
  /* one in four inputs breaks one field on purpose */
  inv = next_byte(r);
  if ((inv & 3u) == 0) {
    switch ((inv >> 2) % 16) {
      case 0: c->kind = (combiner_kind)((inv & 64u) ? 6 + (int)(inv >> 7) : -1); break;
      case 1: pl->max_len = (inv & 64u) ? -(int)(inv >> 7) : INT_MIN; break;
      case 2: c->head_dim = -(int)(inv >> 6); break;
      case 3: c->value_dim = -1; break;
      case 4: c->num_heads = 3; c->num_kv_heads = 2; break;
      case 5: c->num_kv_heads = c->num_heads * 2; break;
      case 6: c->block = -1 - (int)(inv >> 6); break;
      case 7: c->scale = (inv & 64u) ? NAN : (inv & 128u) ? INFINITY : -INFINITY; break;
      case 8: c->pool = (combiner_pool)((inv & 64u) ? 2 : -1); break;
      case 9: c->axial_key = (combiner_axial_key)2; break;
      case 10: c->mixture_norm = (combiner_mixture_norm)((inv & 64u) ? 2 : -1); break;
      case 11: c->num_threads = -1; break;
      case 12: c->causal = 0; break;
      case 13:
        if (inv & 64u) c->k_layout.head_stride = -(ptrdiff_t)(1 + (inv >> 7));
        else c->out_layout.token_stride = -1;
        break;
      case 14:   /* byte counts beyond ptrdiff_t */
        zero_layouts(c);
        pl->max_len = INT_MAX; c->head_dim = INT_MAX; pl->size_case = SIZE_OVERFLOW;
        break;
      default:   /* valid, but tens of terabytes: only sized, never allocated */
        zero_layouts(c);
        pl->max_len = 1 << 20; c->head_dim = 1 << 24; pl->size_case = SIZE_HUGE;
        break;
    }
  }
  pl->expect = expected_init(pl);
}

/* ------------------------------------------------------------------------ */
/* A cache in a guarded buffer, and the model of what it holds              */
/* ------------------------------------------------------------------------ */

typedef struct session {
  plan *pl;
  combiner_config cfg;      /* as given */
  int H, Hkv, d, dv, max_len;
  unsigned char *alloc, *buffer;
  size_t alloc_size, buffer_size, cache_size, room;   /* room: floats free after the cache */
  combiner_cache *cache;
  /* the model: positions [0, len) and the outputs the session produced */
  int len;
  float *q, *k, *v, *out;   /* token-major, max_len positions */
  unsigned char *valid;     /* out of position i came from the session */
  long appends, truncations;
} session;

static void check_guards(const session *s) {
  size_t i, before = (size_t)(s->buffer - s->alloc);
  for (i = 0; i < before; ++i)
    if (s->alloc[i] != GUARD_BYTE) fail("guard bytes before the cache buffer written");
  for (i = before + s->buffer_size; i < s->alloc_size; ++i)
    if (s->alloc[i] != GUARD_BYTE) fail("guard bytes after the cache buffer written");
}

static void check_length(const session *s) {
  if (combiner_cache_length(s->cache) != s->len) fail("combiner_cache_length differs from the model");
}

static void check_resolved(const session *s) {
  const combiner_config *c = &s->cfg;
  const plan *pl = s->pl;
  combiner_config r;
  strides want;
  if (combiner_cache_config(s->cache, &r) != COMBINER_OK) fail("combiner_cache_config");
  if ((int)r.kind != pl->kind || r.seq_len != s->max_len || r.block != pl->block || !r.causal ||
      r.head_dim != s->d || r.value_dim != s->dv || r.num_heads != s->H || r.num_kv_heads != s->Hkv ||
      bits_of(r.scale) != bits_of(pl->scale) || r.pool != c->pool || r.axial_key != c->axial_key ||
      r.mixture_norm != c->mixture_norm || r.num_threads < 1 ||
      (c->num_threads > 0 && r.num_threads != c->num_threads))
    fail("combiner_cache_config: a field is not the resolved one");
  want = resolved(&c->q_layout, s->H, s->d);
  if (r.q_layout.token_stride != want.ts || r.q_layout.head_stride != want.hs) fail("resolved q layout");
  want = resolved(&c->k_layout, s->Hkv, s->d);
  if (r.k_layout.token_stride != want.ts || r.k_layout.head_stride != want.hs) fail("resolved k layout");
  want = resolved(&c->v_layout, s->Hkv, s->dv);
  if (r.v_layout.token_stride != want.ts || r.v_layout.head_stride != want.hs) fail("resolved v layout");
  want = resolved(&c->out_layout, s->H, s->dv);
  if (r.out_layout.token_stride != want.ts || r.out_layout.head_stride != want.hs) fail("resolved out layout");
}

/* ------------------------------------------------------------------------ */
/* Token data: pseudo-random from a seed, or cycled input bytes, scaled, with */
/* NaN / Inf / huge / denormal values injected                              */
/* ------------------------------------------------------------------------ */

typedef struct source {
  unsigned mode;            /* 0 hash, 1 input bytes */
  uint32_t seed;
  float factor;
  uint8_t pool[64];
  int npool;
} source;

static uint32_t mix32(uint32_t x) {
  x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16;
  return x;
}

static float source_value(const source *src, uint32_t idx) {
  float u;
  if (src->mode == 1) u = ((float)src->pool[idx % (uint32_t)src->npool] - 127.5f) / 128.0f;
  else u = (float)(mix32(src->seed * 0x9E3779B9u + idx) >> 8) * (1.0f / 8388608.0f) - 1.0f;
  return u * src->factor;
}

static void decode_source(reader *r, source *src) {
  static const float factors[] = {1.0f, 1.0f, 1.0f, 0.25f, 1e-39f, 1e-20f, 8.0f, 1.0f};
  unsigned b = next_byte(r);
  int i;
  src->mode = (b & 7u) == 0 ? 1u : 0u;
  src->factor = factors[(b >> 3) % 8];
  src->seed = (uint32_t)next_byte(r) | (uint32_t)b << 8;
  src->npool = 0;
  if (src->mode == 1) {
    src->npool = 1 + (int)(next_byte(r) % 64);
    for (i = 0; i < src->npool; ++i) src->pool[i] = (uint8_t)next_byte(r);
  }
}

/* up to three special values into q (0), k (1) or v (2) of a T-token chunk */
static void inject(reader *r, float *tq, float *tk, float *tv, int T, const session *s) {
  static const float special[] = {NAN, INFINITY, -INFINITY, 1e15f, -1e15f, 1e30f, 3e38f, -3e38f,
                                  1e-40f, -1e-45f, -0.0f, FLT_MIN, 1e-38f, 0.0f, 7.0f, -1e30f};
  unsigned b = next_byte(r);
  int n, j;
  if (!(b & 1u)) return;
  n = 1 + (int)((b >> 1) % 3);
  for (j = 0; j < n; ++j) {
    unsigned what = next_byte(r), where = next_byte(r), elem = next_byte(r);
    int t = (int)(where % (unsigned)T);
    float val = special[what % 16];
    switch ((what >> 4) % 3) {
      case 0: tq[((size_t)t * s->H + elem % (unsigned)s->H) * s->d + (elem >> 3) % (unsigned)s->d] = val; break;
      case 1: tk[((size_t)t * s->Hkv + elem % (unsigned)s->Hkv) * s->d + (elem >> 3) % (unsigned)s->d] = val; break;
      default: tv[((size_t)t * s->Hkv + elem % (unsigned)s->Hkv) * s->dv + (elem >> 3) % (unsigned)s->dv] = val; break;
    }
  }
}

/* T tokens of [heads][width] (token-major, packed) into a buffer of layout s
 * that is NaN outside its rows */
static float *stage(const float *packed, strides st, int T, int heads, int width) {
  size_t n = extent(st, T, heads, width), i;
  float *buf = (float *)xmalloc(n * sizeof(float));
  int t, h;
  for (i = 0; i < n; ++i) buf[i] = NAN;
  for (t = 0; t < T; ++t)
    for (h = 0; h < heads; ++h)
      memcpy(buf + t * st.ts + h * st.hs, packed + ((size_t)t * heads + h) * width, (size_t)width * sizeof(float));
  return buf;
}

/* ------------------------------------------------------------------------ */
/* Operations                                                               */
/* ------------------------------------------------------------------------ */

enum { V_NONE, V_NULL_CACHE, V_COUNT_ZERO, V_COUNT_NEG, V_NULL_Q, V_NULL_K, V_NULL_V, V_OUT_IS_Q,
       V_OUT_IS_V, V_OUT_IS_K, V_Q_IN_CACHE, V_V_IN_CACHE, V_OUT_IN_CACHE, V_K_IS_CACHE,
       V_OUT_AFTER_CACHE, V_COUNT };

#define ST(s) (1u << (unsigned)(s))

static void append(session *s, reader *r, int count, int with_out, int variant) {
  const int P = s->len, T = count > 0 ? count : 1;
  strides sq = resolved(&s->cfg.q_layout, s->H, s->d), sk = resolved(&s->cfg.k_layout, s->Hkv, s->d);
  strides sv = resolved(&s->cfg.v_layout, s->Hkv, s->dv), so = resolved(&s->cfg.out_layout, s->H, s->dv);
  size_t nq = (size_t)T * s->H * s->d, nk = (size_t)T * s->Hkv * s->d, nv = (size_t)T * s->Hkv * s->dv;
  float *tq = (float *)xmalloc(nq * sizeof(float)), *tk = (float *)xmalloc(nk * sizeof(float));
  float *tv = (float *)xmalloc(nv * sizeof(float));
  float *bq, *bk, *bv, *ob = NULL, *ob_mem = NULL, *out = NULL;
  const float *q, *k, *v;
  combiner_cache *cache = s->cache;
  unsigned char *snapshot = NULL;
  size_t i, on = 0, out_floats = 0;
  unsigned allowed = 0;
  combiner_status st;
  source src;
  int t, h, x, out_owned = 1;
  decode_source(r, &src);
  for (i = 0; i < nq; ++i) tq[i] = source_value(&src, (uint32_t)(3 * i));
  for (i = 0; i < nk; ++i) tk[i] = source_value(&src, (uint32_t)(3 * i + 1));
  for (i = 0; i < nv; ++i) tv[i] = source_value(&src, (uint32_t)(3 * i + 2));
  inject(r, tq, tk, tv, T, s);
  bq = stage(tq, sq, T, s->H, s->d);
  bk = stage(tk, sk, T, s->Hkv, s->d);
  bv = stage(tv, sv, T, s->Hkv, s->dv);
  q = bq; k = bk; v = bv;
  if (variant == V_OUT_AFTER_CACHE && !(with_out && count == 1 && extent(so, 1, s->H, s->dv) <= s->room))
    variant = V_NONE;
  if (with_out) {
    if (variant == V_OUT_AFTER_CACHE) {   /* right after the cache's own bytes, inside its buffer */
      out_owned = 0;
      out_floats = extent(so, 1, s->H, s->dv);
      ob = out = (float *)(void *)((unsigned char *)(void *)cache + (s->cache_size - 64));
      for (i = 0; i < out_floats; ++i) out[i] = float_of(SENTINEL);
    } else {
      out_floats = extent(so, T, s->H, s->dv);
      on = out_floats + 2 * GUARD_FLOATS;
      ob = ob_mem = (float *)xmalloc(on * sizeof(float));
      for (i = 0; i < on; ++i) ob[i] = float_of(SENTINEL);
      out = ob + GUARD_FLOATS;
    }
  }
  /* the bad arguments, and the statuses the contract allows */
  switch (variant) {
    case V_NULL_CACHE: cache = NULL; allowed |= ST(COMBINER_ERR_INVALID_ARGUMENT); break;
    case V_COUNT_ZERO: count = 0; break;
    case V_COUNT_NEG: count = (src.seed & 1u) ? -1 : INT_MIN; break;
    case V_NULL_Q: q = NULL; allowed |= ST(COMBINER_ERR_INVALID_ARGUMENT); break;
    case V_NULL_K: k = NULL; allowed |= ST(COMBINER_ERR_INVALID_ARGUMENT); break;
    case V_NULL_V: v = NULL; allowed |= ST(COMBINER_ERR_INVALID_ARGUMENT); break;
    case V_OUT_IS_Q: if (out) { out = bq; out_owned = 0; allowed |= ST(COMBINER_ERR_INVALID_ARGUMENT); } break;
    case V_OUT_IS_V: if (out) { out = bv; out_owned = 0; allowed |= ST(COMBINER_ERR_INVALID_ARGUMENT); } break;
    case V_OUT_IS_K: if (out) { out = bk; out_owned = 0; allowed |= ST(COMBINER_ERR_INVALID_ARGUMENT); } break;
    case V_Q_IN_CACHE: q = (const float *)(const void *)cache + 16; allowed |= ST(COMBINER_ERR_INVALID_ARGUMENT); break;
    case V_V_IN_CACHE:   /* the last float of the cache */
      v = (const float *)(const void *)cache + (s->cache_size - 64) / sizeof(float) - 1;
      allowed |= ST(COMBINER_ERR_INVALID_ARGUMENT);
      break;
    case V_OUT_IN_CACHE:
      if (out) {
        out = (float *)(void *)cache + (s->cache_size - 64) / sizeof(float) - 1;
        out_owned = 0;
        allowed |= ST(COMBINER_ERR_INVALID_ARGUMENT);
      }
      break;
    case V_K_IS_CACHE: k = (const float *)(const void *)cache; allowed |= ST(COMBINER_ERR_INVALID_ARGUMENT); break;
    default: break;
  }
  if (count < 1) allowed |= ST(COMBINER_ERR_INVALID_ARGUMENT);
  if (count > s->max_len - P) allowed |= ST(COMBINER_ERR_CACHE_FULL);
  if (count >= 1 &&
      (!layout_accepts(&s->cfg.q_layout, count, s->H, s->d) || !layout_accepts(&s->cfg.k_layout, count, s->Hkv, s->d) ||
       !layout_accepts(&s->cfg.v_layout, count, s->Hkv, s->dv) ||
       !layout_accepts(&s->cfg.out_layout, count, s->H, s->dv)))
    allowed |= ST(COMBINER_ERR_INVALID_ARGUMENT);
  if (!allowed) {
    allowed = ST(COMBINER_OK);
    /* out inside the cache's buffer, past the bytes it uses: the buffer is
     * the cache's, so refusing is fine too */
    if (variant == V_OUT_AFTER_CACHE && out) allowed |= ST(COMBINER_ERR_INVALID_ARGUMENT);
  }
  if (allowed != ST(COMBINER_OK)) {
    snapshot = (unsigned char *)xmalloc(s->buffer_size);
    memcpy(snapshot, s->buffer, s->buffer_size);
  }
  st = combiner_cache_append(cache, count, q, k, v, out);
  if (!(allowed & ST(st))) {
    fprintf(stderr, "append(count %d, out %s, variant %d) at length %d returned %s\n", count,
            out ? "set" : "NULL", variant, P, combiner_status_string(st));
    fail("append status is not the documented one");
  }
  if (st != COMBINER_OK) {
    if (memcmp(snapshot, s->buffer, s->buffer_size) != 0) fail("a failed append changed the cache buffer");
    if (ob_mem)
      for (i = 0; i < on; ++i)
        if (bits_of(ob_mem[i]) != SENTINEL) fail("a failed append wrote out");
  } else {
    size_t row;
    /* out: every row float written, nothing else */
    if (out) {
      unsigned char *touched = (unsigned char *)xmalloc(out_floats);
      memset(touched, 0, out_floats);
      for (t = 0; t < count; ++t)
        for (h = 0; h < s->H; ++h) {
          row = (size_t)(t * so.ts + h * so.hs);
          memset(touched + row, 1, (size_t)s->dv);
          for (x = 0; x < s->dv; ++x) {
            float o = out[row + (size_t)x];
            if (bits_of(o) == SENTINEL) fail("append left an out float of its rows unwritten");
            s->out[((size_t)(P + t) * s->H + h) * s->dv + (size_t)x] = o;
          }
        }
      for (i = 0; i < out_floats; ++i)
        if (!touched[i] && bits_of(out[i]) != SENTINEL) fail("append wrote out between its rows");
      if (out_owned)
        for (i = 0; i < GUARD_FLOATS; ++i)
          if (bits_of(ob[i]) != SENTINEL || bits_of(ob[on - 1 - i]) != SENTINEL) fail("append wrote around out");
      free(touched);
    }
    memcpy(s->q + (size_t)P * s->H * s->d, tq, nq * sizeof(float));
    memcpy(s->k + (size_t)P * s->Hkv * s->d, tk, nk * sizeof(float));
    memcpy(s->v + (size_t)P * s->Hkv * s->dv, tv, nv * sizeof(float));
    memset(s->valid + P, out ? 1 : 0, (size_t)count);
    s->len += count;
    ++s->appends;
  }
  free(snapshot);
  free(ob_mem);
  free(tq); free(tk); free(tv); free(bq); free(bk); free(bv);
}

static void truncate_to(session *s, int length, int use_null) {
  combiner_status want = use_null || length < 0 || length > s->len ? COMBINER_ERR_INVALID_ARGUMENT : COMBINER_OK;
  combiner_status st = combiner_cache_truncate(use_null ? NULL : s->cache, length);
  if (st != want) fail("truncate status is not the documented one");
  if (st == COMBINER_OK) { s->len = length; ++s->truncations; }
}

static void queries(session *s) {
  combiner_config r;
  memset(&r, 0x5A, sizeof r);
  check_length(s);
  if (combiner_cache_length(NULL) != -1) fail("combiner_cache_length(NULL) is not -1");
  if (combiner_cache_config(NULL, &r) != COMBINER_ERR_INVALID_ARGUMENT) fail("combiner_cache_config(NULL, ...)");
  if (combiner_cache_config(s->cache, NULL) != COMBINER_ERR_INVALID_ARGUMENT) fail("combiner_cache_config(..., NULL)");
  check_resolved(s);
}

/* ------------------------------------------------------------------------ */
/* The end: a fresh cache fed the final sequence at once, and one call       */
/* ------------------------------------------------------------------------ */

static int tame(float x, float bound) { return fabsf(x) <= bound; }   /* false for NaN */

static void final_checks(session *s, unsigned how) {
  const int L = s->len, H = s->H, Hkv = s->Hkv, d = s->d, dv = s->dv;
  combiner_config c2 = s->cfg, c3;
  combiner_cache *fresh = NULL;
  size_t size2, no = (size_t)L * H * dv, i;
  unsigned char *buf2;
  float *out2, *ref;
  int max2 = (how & 1u) ? L : s->max_len, clean = 0, bounded = 0, pos, h, x;
  float maxq = 0.0f, maxk = 0.0f;
  if (L == 0) return;
  /* positions [0, clean): finite, |x| <= 8; [0, bounded): finite, q and k <= 1e15, v <= 1e30 */
  for (pos = 0; pos < L; ++pos) {
    int ok = 1, okb = 1;
    for (i = 0; i < (size_t)H * d; ++i) {
      float f = s->q[(size_t)pos * H * d + i];
      ok &= tame(f, 8.0f); okb &= tame(f, 1e15f);
    }
    for (i = 0; i < (size_t)Hkv * d; ++i) {
      float f = s->k[(size_t)pos * Hkv * d + i];
      ok &= tame(f, 8.0f); okb &= tame(f, 1e15f);
    }
    for (i = 0; i < (size_t)Hkv * dv; ++i) {
      float f = s->v[(size_t)pos * Hkv * dv + i];
      ok &= tame(f, 8.0f); okb &= tame(f, 1e30f);
    }
    if (okb && bounded == pos) bounded = pos + 1;
    if (ok && clean == pos) clean = pos + 1;
  }
  /* the fresh cache: default layouts, the resolved block, another thread count */
  zero_layouts(&c2);
  c2.block = s->pl->block;
  c2.num_threads = 1 + (int)((how >> 1) % 3);
  size2 = combiner_cache_size(&c2, max2);
  if (size2 == 0) fail("fresh cache: size 0");
  buf2 = (unsigned char *)xmalloc(size2);
  if (combiner_cache_init(&fresh, &c2, max2, buf2, size2) != COMBINER_OK) fail("fresh cache: init");
  out2 = (float *)xmalloc(no * sizeof(float));
  if (combiner_cache_append(fresh, L, s->q, s->k, s->v, out2) != COMBINER_OK) fail("fresh cache: append");
  if (combiner_cache_length(fresh) != L) fail("fresh cache: length");
  for (pos = 0; pos < L; ++pos) {
    if (!s->valid[pos]) continue;
    for (i = (size_t)pos * H * dv; i < (size_t)(pos + 1) * H * dv; ++i) {
      float a = s->out[i], b = out2[i];
      if (bits_of(a) != bits_of(b) && !(a != a && b != b))
        fail("session output differs from a fresh cache fed the final sequence at once");
    }
  }
  if (fabsf(s->pl->scale) <= 4.0f)
    for (i = 0; i < (size_t)bounded * H * dv; ++i)
      if (!(fabsf(out2[i]) <= FLT_MAX)) fail("non-finite output from finite, bounded inputs");
  /* combiner_attention over the tame prefix, when the logits are moderate */
  for (pos = 0; pos < clean; ++pos) {
    for (i = 0; i < (size_t)H * d; ++i) maxq = fmaxf(maxq, fabsf(s->q[(size_t)pos * H * d + i]));
    for (i = 0; i < (size_t)Hkv * d; ++i) maxk = fmaxf(maxk, fabsf(s->k[(size_t)pos * Hkv * d + i]));
  }
  if (clean > 0 && (double)fabsf(s->pl->scale) * d * maxq * maxk <= 64.0) {
    double err = 0.0, mag = 0.0;
    c3 = c2;
    c3.seq_len = clean;
    ref = (float *)xmalloc((size_t)clean * H * dv * sizeof(float));
    if (combiner_attention(&c3, s->q, s->k, s->v, ref, NULL, 0) != COMBINER_OK) fail("combiner_attention");
    for (pos = 0; pos < clean; ++pos)
      for (h = 0; h < H; ++h)
        for (x = 0; x < dv; ++x) {
          size_t at = ((size_t)pos * H + h) * dv + (size_t)x;
          double e = fabs((double)out2[at] - (double)ref[at]);
          if (!(e <= err)) err = e == e ? e : INFINITY;
          if (fabs((double)ref[at]) > mag) mag = fabs((double)ref[at]);
        }
    if (!(err <= 1e-4 * mag + 1e-30)) {
      fprintf(stderr, "cache vs combiner_attention over %d positions: err %g, magnitude %g\n", clean, err, mag);
      fail("cache differs from combiner_attention");
    }
    free(ref);
  }
  free(out2);
  free(buf2);
}

/* ------------------------------------------------------------------------ */
/* The target                                                               */
/* ------------------------------------------------------------------------ */

static long fuzz_accepted = 0, fuzz_rejected = 0;

/* counts for the replay driver's summary: sessions run and checked, configs
 * refused (and checked to change nothing) */
void fuzz_counts(long *accepted, long *rejected);
void fuzz_counts(long *accepted, long *rejected) {
  *accepted = fuzz_accepted;
  *rejected = fuzz_rejected;
}

/* init refusing: what it says, nothing written, *cache kept */
static void check_init_refused(combiner_cache **pc, const combiner_config *cfg, int max_len, void *buf,
                               size_t bytes, size_t room, combiner_status want) {
  combiner_cache *keep = (combiner_cache *)(void *)&keep;
  combiner_cache *c = keep;
  unsigned char *copy = NULL;
  combiner_status st;
  if (buf && room) {
    copy = (unsigned char *)xmalloc(room);
    memcpy(copy, buf, room);
  }
  st = combiner_cache_init(pc ? &c : NULL, cfg, max_len, buf, bytes);
  if (st != want) {
    fprintf(stderr, "init returned %s, want %s\n", combiner_status_string(st), combiner_status_string(want));
    fail("init status is not the documented one");
  }
  if (c != keep) fail("a refused init set *cache");
  if (copy && memcmp(copy, buf, room) != 0) fail("a refused init wrote its buffer");
  free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader r;
  plan pl;
  session s;
  size_t csize, misalign, extra;
  unsigned setup, how;
  int ops;
  r.p = data; r.n = size; r.i = 0;
  decode_plan(&r, &pl);
  fail_cfg = pl.cfg;
  fail_max_len = pl.max_len;
  fail_op = -1;
  csize = combiner_cache_size(&pl.cfg, pl.max_len);
  if ((csize == 0) != (pl.expect != COMBINER_OK)) fail("combiner_cache_size is 0 iff the config is refused");
  if (pl.expect != COMBINER_OK || pl.size_case != SIZE_NORMAL) {
    unsigned char small[1024];
    memset(small, 0xA5, sizeof small);
    if (pl.size_case == SIZE_HUGE && pl.expect == COMBINER_OK &&
        csize / 4 < (size_t)pl.max_len * (size_t)pl.Hkv * (size_t)(pl.cfg.head_dim + pl.dv))
      fail("combiner_cache_size smaller than K and V");
    check_init_refused(&s.cache, &pl.cfg, pl.max_len, small, sizeof small, sizeof small,
                       pl.expect != COMBINER_OK ? pl.expect : COMBINER_ERR_WORKSPACE_TOO_SMALL);
    if (combiner_cache_length((const combiner_cache *)(const void *)(small + (64 - (uintptr_t)small % 64) % 64)) != -1)
      fail("combiner_cache_length of a buffer that is no cache is not -1");
    ++fuzz_rejected;
    return 0;
  }
  /* the buffer: misaligned, sometimes larger, between guard bytes */
  setup = next_byte(&r);
  misalign = setup % 64;
  extra = 0;
  memset(&s, 0, sizeof s);
  s.pl = &pl;
  s.cfg = pl.cfg;
  s.H = pl.cfg.num_heads; s.Hkv = pl.Hkv; s.d = pl.cfg.head_dim; s.dv = pl.dv; s.max_len = pl.max_len;
  s.cache_size = csize;
  if ((setup >> 6) == 1) extra = 4 * extent(resolved(&pl.cfg.out_layout, s.H, s.dv), 1, s.H, s.dv) + 64;
  if ((setup >> 6) == 2) extra = 1 + next_byte(&r);
  s.buffer_size = csize + extra;
  s.alloc_size = 64 + s.buffer_size + 64;
  s.alloc = (unsigned char *)xmalloc(s.alloc_size);
  memset(s.alloc, GUARD_BYTE, s.alloc_size);
  s.buffer = s.alloc + misalign;
  memset(s.buffer, 0xA5, s.buffer_size);
  /* refusals first: NULL cache pointer, NULL buffer, NULL config, one byte short */
  check_init_refused(NULL, &pl.cfg, pl.max_len, s.buffer, s.buffer_size, s.buffer_size,
                     COMBINER_ERR_INVALID_ARGUMENT);
  check_init_refused(&s.cache, &pl.cfg, pl.max_len, NULL, s.buffer_size, 0, COMBINER_ERR_INVALID_ARGUMENT);
  check_init_refused(&s.cache, NULL, pl.max_len, s.buffer, s.buffer_size, s.buffer_size,
                     COMBINER_ERR_INVALID_ARGUMENT);
  check_init_refused(&s.cache, &pl.cfg, pl.max_len, s.buffer, csize - 1, s.buffer_size,
                     COMBINER_ERR_WORKSPACE_TOO_SMALL);
  check_guards(&s);
  if (combiner_cache_init(&s.cache, &pl.cfg, pl.max_len, s.buffer, s.buffer_size) != COMBINER_OK)
    fail("init refused a valid config");
  /* The cache sits at the buffer's first 64-byte boundary and uses size - 64
   * bytes from there (the rest is alignment slack): the appends that place
   * out or an input at the cache's last float, or out right after it, rely
   * on that. */
  if ((unsigned char *)s.cache < s.buffer || (unsigned char *)s.cache >= s.buffer + 64 ||
      (uintptr_t)s.cache % 64 != 0)
    fail("the cache is not at the buffer's first 64-byte boundary");
  s.room = (size_t)(s.buffer + s.buffer_size - ((unsigned char *)s.cache + (csize - 64))) / sizeof(float);
  s.q = (float *)xmalloc((size_t)s.max_len * s.H * s.d * sizeof(float));
  s.k = (float *)xmalloc((size_t)s.max_len * s.Hkv * s.d * sizeof(float));
  s.v = (float *)xmalloc((size_t)s.max_len * s.Hkv * s.dv * sizeof(float));
  s.out = (float *)xmalloc((size_t)s.max_len * s.H * s.dv * sizeof(float));
  s.valid = (unsigned char *)xmalloc((size_t)s.max_len);
  check_length(&s);
  check_resolved(&s);
  check_guards(&s);
  how = next_byte(&r);
  /* the script */
  for (ops = 0; r.i < r.n && ops < 96; ++ops) {
    unsigned op = next_byte(&r), b = next_byte(&r);
    int left = s.max_len - s.len, count;
    fail_op = ops;
    switch (op % 12) {
      case 0: case 1: case 2: case 3: /* append, with out or not */
        switch ((op >> 4) % 6) {
          case 0: case 1: count = 1; break;
          case 2: count = 1 + (int)(b % 4); break;
          case 3: count = 1 + (int)(b % 16); break;
          case 4: count = 1 + (int)(b % 64); break;
          default: count = left > 0 ? 1 + (int)(b % (unsigned)left) : 1; break;
        }
        append(&s, &r, count, (op % 4) != 3, V_NONE);
        break;
      case 4:   /* fill up exactly (count 0 when full: refused) */
        append(&s, &r, left, (b & 1u) != 0, V_NONE);
        break;
      case 5:   /* one token, or a few, past max_len */
        append(&s, &r, left + 1 + (int)(b % 3), (b & 1u) != 0, V_NONE);
        break;
      case 6: { /* roll back */
        int m = s.pl->block, to;
        switch (b % 6) {
          case 0: to = s.len - 1 - (int)((b >> 3) % 4); break;
          case 1: to = (int)((b >> 3) % (unsigned)(s.len + 1)); break;
          case 2: to = s.len / m * m; break;
          case 3: to = s.len > 0 ? (s.len - 1) / m * m : 0; break;
          case 4: to = 0; break;
          default: to = s.len; break;
        }
        if (to < 0) to = 0;
        truncate_to(&s, to, 0);
        break;
      }
      case 7: { /* bad truncations */
        static const int bad[] = {-1, -2, INT_MIN, 1, 2, 0};
        int i = (int)(b % 6);
        truncate_to(&s, i < 3 ? bad[i] : i < 5 ? s.len + bad[i] : s.max_len + 1 + (int)(b >> 3), 0);
        if (b & 128u) truncate_to(&s, 0, 1);
        break;
      }
      case 8: case 9: /* bad arguments, and out right after the cache (valid) */
        append(&s, &r, left > 0 ? 1 + (int)((b >> 4) % (unsigned)(left < 4 ? left : 4)) : 1, 1,
               1 + (int)(b % (V_COUNT - 1)));
        break;
      case 10:
        queries(&s);
        break;
      default:  /* init again on the same buffer: an empty cache; or refused there */
        if (b % 4 == 0) {
          combiner_cache *again = NULL;
          if (combiner_cache_init(&again, &s.cfg, s.max_len, s.buffer, s.buffer_size) != COMBINER_OK ||
              again != s.cache)
            fail("init again on the same buffer");
          s.len = 0;
        } else if (b % 4 == 1) {   /* refused on the live cache's buffer: the cache lives on */
          check_init_refused(&s.cache, (b & 4u) ? NULL : &s.cfg, s.max_len, s.buffer,
                             (b & 4u) ? s.buffer_size : csize - 1, s.buffer_size,
                             (b & 4u) ? COMBINER_ERR_INVALID_ARGUMENT : COMBINER_ERR_WORKSPACE_TOO_SMALL);
        } else {
          queries(&s);
        }
        break;
    }
    check_length(&s);
    check_guards(&s);
  }
  fail_op = -2;
  final_checks(&s, how);
  check_guards(&s);
  free(s.q); free(s.k); free(s.v); free(s.out); free(s.valid); free(s.alloc);
  ++fuzz_accepted;
  return 0;
}
