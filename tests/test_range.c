/* Ranges of one sequence (SPEC 7, the header's "ranges of one sequence"):
 * nranks processes, simulated in this one, each own a contiguous range of
 * one sequence; they exchange only the two rounds of messages and get rows
 * [begin, end) of combiner_attention on the whole sequence. Every rank's
 * q, k, v and out live in their own buffers of exactly their size (ASan
 * catches a read outside them; gaps in strided layouts are NaN), its
 * messages in buffers with a guard after them. Checked, for FIXED and
 * LOGSPARSE, causal and bidirectional, lengths 1 to 1000, 1 to 5 ranks and
 * one rank per position, even, block-aligned, random and edge bounds, every
 * block option, both pools, GQA/MQA, d != dv, three layouts (head-major
 * strides count the rank's own rows), f32/f16/bf16 K/V, with and without a
 * caller workspace, 1 and 2 threads:
 *   1. kv_begin, kv_end are the union of the rank's range and the direct
 *      sets of its queries (SPEC 3, 5b), written out here twice (the
 *      direct sets position by position, and the closed form), and
 *      received_entries is the number of regions its queries read that do
 *      not lie within its range;
 *   2. the assembled output equals combiner_attention on the whole sequence
 *      bit for bit for FIXED with block-aligned bounds and for one rank,
 *      else within 1e-6 (inf-norm, relative to the largest output);
 *   3. it is within 1e-5 of the float64 reference on the rounded inputs;
 *   4. outputs and both rounds of messages are bit-identical for 1 and 2
 *      threads (every problem, half of its bounds);
 *   5. bad arguments give their status and write nothing (out, messages);
 *   6. every rank's plan of every rank (with its own layouts) agrees, and
 *      FIXED with block-aligned bounds sends no round-1 message.
 * The rounding of f16/bf16 is the tests' own (test_half.h).
 * COMBINER_TEST_QUICK=1: no L = 1000, every third problem from L = 64 on,
 * one random bounds set per problem, one rank per position up to L = 16. */
#define COMBINER_IMPLEMENTATION
#include "test_common.h"

#include "test_half.h"

/* unwritten memory: a quiet NaN with a payload no computation produces */
#define SENTINEL_BITS 0x7fcdcdcdu
enum { GUARD = 8 };   /* floats after each message buffer that must stay untouched */
#define RANGE_TOLERANCE 1e-6   /* ranges vs the whole-sequence call, where straddling regions merge */


/* a value in [-1, 1], exactly representable in `type` */
static float rounded(float f, int type) { return type == F32 ? f : widen(narrow(f, type), type); }

/* ---- tensors in buffers of exactly their size ------------------------------ */

/* rows x heads x width elements of `type` in a layout of test_common.h;
 * head-major strides count these rows; the gaps of a padded layout are NaN */
typedef struct slab {
  void *data;
  int rows, heads, width, type;
  ptrdiff_t ts, hs;
  combiner_layout lay;   /* as passed in a config (token-major: {0, 0}) */
  size_t elems;
} slab;

static size_t elem_size(int type) { return type == F32 ? sizeof(float) : sizeof(uint16_t); }

static void slab_poison(slab *s, uint32_t f32_bits) {
  size_t i;
  if (s->type == F32) {
    for (i = 0; i < s->elems; ++i) memcpy((float *)s->data + i, &f32_bits, sizeof f32_bits);
  } else {
    const uint16_t nan = s->type == F16 ? 0x7e00u : 0x7fc0u;
    for (i = 0; i < s->elems; ++i) ((uint16_t *)s->data)[i] = nan;
  }
}

static slab slab_make(int rows, int heads, int width, int layout, int type) {
  slab s;
  memset(&s, 0, sizeof s);
  s.rows = rows; s.heads = heads; s.width = width; s.type = type;
  test_layout_strides(layout, rows, heads, width, &s.ts, &s.hs, &s.lay);
  s.elems = (size_t)((rows - 1) * s.ts + (heads - 1) * s.hs + width);
  s.data = test_alloc(s.elems * elem_size(type));
  slab_poison(&s, bits_of(NAN));
  return s;
}

static void slab_free(slab *s) { free(s->data); s->data = NULL; }

static size_t slab_at(const slab *s, int i, int h) { return (size_t)(i * s->ts + h * s->hs); }

/* row i, head h := src (values exactly representable in the slab's type) */
static void slab_put(slab *s, int i, int h, const float *src) {
  const size_t o = slab_at(s, i, h);
  int x;
  for (x = 0; x < s->width; ++x) {
    if (s->type == F32) ((float *)s->data)[o + x] = src[x];
    else ((uint16_t *)s->data)[o + x] = narrow(src[x], s->type);
  }
}

static const float *slab_row(const slab *s, int i, int h) { return (const float *)s->data + slab_at(s, i, h); }

/* elements of a float32 slab outside its rows still hold SENTINEL_BITS */
static int slab_gaps_untouched(const slab *s) {
  unsigned char *in_row = (unsigned char *)test_alloc(s->elems);
  size_t e;
  int i, h, ok = 1;
  memset(in_row, 0, s->elems);
  for (i = 0; i < s->rows; ++i)
    for (h = 0; h < s->heads; ++h) memset(in_row + slab_at(s, i, h), 1, (size_t)s->width);
  for (e = 0; e < s->elems; ++e)
    if (!in_row[e] && bits_of(((const float *)s->data)[e]) != SENTINEL_BITS) ok = 0;
  free(in_row);
  return ok;
}

static float *floats_alloc(size_t n) { return (float *)test_alloc(sizeof(float) * n); }

static void sentinel_fill(float *p, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) p[i] = float_of(SENTINEL_BITS);
}

static int sentinel_kept(const float *p, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i)
    if (bits_of(p[i]) != SENTINEL_BITS) return 0;
  return 1;
}

/* ---- one problem: inputs, the whole-sequence call, the reference ------------ */

typedef struct problem {
  combiner_config cfg;   /* the whole sequence, default layouts, 1 thread */
  int L, H, Hkv, d, dv, m, kt, vt;   /* m: the resolved block (FIXED) */
  int lay[4];            /* layouts of q, k, v, out */
  float *q, *k, *v;      /* token-major [L][H][d], [L][Hkv][d], [L][Hkv][dv]; k, v rounded to kt, vt */
  float *whole;          /* combiner_attention on the whole sequence, [L][H][dv] */
  double *ref;           /* ref_attention on the same values, [H][L][dv] */
  double whole_mag;      /* max |whole| */
  char name[200];
} problem;

static int ceil_sqrt_of(int n) {
  int m = 1;
  while ((long long)m * m < n) ++m;
  return m;
}

static int problem_make(problem *p, combiner_kind kind, int causal, int L, int block, int pool, int H, int Hkv,
                        int d, int dv, const int lay[4], int kt, int vt, test_rng *rng) {
  slab qs, ks, vs, os;
  combiner_config wc;
  ref_problem rp;
  double *qd, *kd, *vd;
  size_t i;
  int t, h, x;
  combiner_status st;
  memset(p, 0, sizeof *p);
  p->cfg = test_config(kind, L, d, H, Hkv, block, causal);
  p->cfg.value_dim = dv;
  p->cfg.pool = (combiner_pool)pool;
  p->cfg.k_type = (combiner_type)kt;
  p->cfg.v_type = (combiner_type)vt;
  p->cfg.num_threads = 1;
  p->L = L; p->H = H; p->Hkv = Hkv; p->d = d; p->dv = dv; p->kt = kt; p->vt = vt;
  p->m = block ? block : ceil_sqrt_of(L);
  memcpy(p->lay, lay, sizeof p->lay);
  snprintf(p->name, sizeof p->name, "%s %s L=%d block=%d (m=%d) pool=%s H=%d Hkv=%d d=%d dv=%d layouts q/k/v/out=%s/%s/%s/%s K=%s V=%s",
           kind == COMBINER_FIXED ? "fixed" : "logsparse", causal ? "causal" : "bidir", L, block, p->m,
           pool ? "mean" : "max", H, Hkv, d, dv, layout_names[lay[0]], layout_names[lay[1]], layout_names[lay[2]],
           layout_names[lay[3]], type_names[kt], type_names[vt]);
  p->q = floats_alloc((size_t)L * H * d);
  p->k = floats_alloc((size_t)L * Hkv * d);
  p->v = floats_alloc((size_t)L * Hkv * dv);
  for (i = 0; i < (size_t)L * H * d; ++i) p->q[i] = test_rng_float(rng);
  for (i = 0; i < (size_t)L * Hkv * d; ++i) p->k[i] = rounded(test_rng_float(rng), kt);
  for (i = 0; i < (size_t)L * Hkv * dv; ++i) p->v[i] = rounded(test_rng_float(rng), vt);
  /* the whole sequence, in the same layouts */
  qs = slab_make(L, H, d, lay[0], F32);
  ks = slab_make(L, Hkv, d, lay[1], kt);
  vs = slab_make(L, Hkv, dv, lay[2], vt);
  os = slab_make(L, H, dv, lay[3], F32);
  for (t = 0; t < L; ++t) {
    for (h = 0; h < H; ++h) slab_put(&qs, t, h, p->q + ((size_t)t * H + h) * d);
    for (h = 0; h < Hkv; ++h) {
      slab_put(&ks, t, h, p->k + ((size_t)t * Hkv + h) * d);
      slab_put(&vs, t, h, p->v + ((size_t)t * Hkv + h) * dv);
    }
  }
  wc = p->cfg;
  wc.q_layout = qs.lay; wc.k_layout = ks.lay; wc.v_layout = vs.lay; wc.out_layout = os.lay;
  st = combiner_attention(&wc, (const float *)qs.data, ks.data, vs.data, (float *)os.data, NULL, 0);
  CHECK(st == COMBINER_OK, "%s: the whole-sequence call: %s", p->name, combiner_status_string(st));
  p->whole = floats_alloc((size_t)L * H * dv);
  for (t = 0; t < L; ++t)
    for (h = 0; h < H; ++h)
      for (x = 0; x < dv; ++x) {
        const float o = slab_row(&os, t, h)[x];
        p->whole[((size_t)t * H + h) * dv + x] = o;
        if (fabs((double)o) > p->whole_mag) p->whole_mag = fabs((double)o);
      }
  slab_free(&qs); slab_free(&ks); slab_free(&vs); slab_free(&os);
  /* the float64 reference on the same (rounded) values, head-major */
  qd = (double *)test_alloc(sizeof(double) * (size_t)L * H * d);
  kd = (double *)test_alloc(sizeof(double) * (size_t)L * Hkv * d);
  vd = (double *)test_alloc(sizeof(double) * (size_t)L * Hkv * dv);
  p->ref = (double *)test_alloc(sizeof(double) * (size_t)L * H * dv);
  for (t = 0; t < L; ++t) {
    for (h = 0; h < H; ++h)
      for (x = 0; x < d; ++x) qd[((size_t)h * L + t) * d + x] = p->q[((size_t)t * H + h) * d + x];
    for (h = 0; h < Hkv; ++h) {
      for (x = 0; x < d; ++x) kd[((size_t)h * L + t) * d + x] = p->k[((size_t)t * Hkv + h) * d + x];
      for (x = 0; x < dv; ++x) vd[((size_t)h * L + t) * dv + x] = p->v[((size_t)t * Hkv + h) * dv + x];
    }
  }
  rp = test_ref_problem(&p->cfg);
  ref_attention(&rp, qd, kd, vd, p->ref);
  free(qd); free(kd); free(vd);
  return st == COMBINER_OK;
}

static void problem_free(problem *p) {
  free(p->q); free(p->k); free(p->v); free(p->whole); free(p->ref);
}

/* ---- what SPEC 3 and 5b say a range needs ----------------------------------- */

/* The direct set of query p (one interval [lo, hi) for both kinds). */
static void direct_set(const problem *p, int pos, int *lo, int *hi) {
  const int causal = p->cfg.causal;
  if (p->cfg.kind == COMBINER_FIXED) {   /* SPEC 3: own block, causal: up to the query */
    const int b = pos / p->m;
    *lo = b * p->m;
    *hi = causal ? pos + 1 : ((b + 1) * p->m < p->L ? (b + 1) * p->m : p->L);
  } else {   /* SPEC 5b: {p}, p-1 when p is odd; bidirectional mirrors it from the end */
    const int rev = p->L - 1 - pos;
    *lo = pos - (pos & 1);
    *hi = pos + 1;
    if (!causal && (rev & 1)) *hi = pos + 2;
  }
}

/* The halo as a closed form (the brief's statement of the same rule). */
static void halo_closed_form(const problem *p, int b, int e, int *kb, int *ke) {
  if (p->cfg.kind == COMBINER_FIXED) {
    const int up = (e + p->m - 1) / p->m * p->m;
    *kb = b / p->m * p->m;
    *ke = p->cfg.causal ? e : (up < p->L ? up : p->L);
  } else {
    *kb = b - (b & 1);
    *ke = e + (!p->cfg.causal && ((p->L - e) & 1) ? 1 : 0);
  }
}

/* Number of distinct regions the queries of [b, e) read that do not lie
 * within [b, e): the abstractions the rank must assemble from others. A
 * region is a key: FIXED its block; LOGSPARSE (direction, level, index). */
static size_t regions_from_others(const problem *p, int b, int e) {
  const int L = p->L, levels = 32;
  const size_t keys = p->cfg.kind == COMBINER_FIXED ? (size_t)L + 1 : (size_t)2 * levels * ((size_t)L + 1);
  unsigned char *seen = (unsigned char *)test_alloc(keys);
  size_t count = 0;
  int pos;
  memset(seen, 0, keys);
#define COUNT_REGION(key, lo, hi)                                         \
  do {                                                                    \
    const size_t key_ = (key);                                            \
    if (!seen[key_] && !((lo) >= b && (hi) <= e)) { seen[key_] = 1; ++count; } \
  } while (0)
  for (pos = b; pos < e; ++pos) {
    if (p->cfg.kind == COMBINER_FIXED) {
      const int own = pos / p->m, n = (L + p->m - 1) / p->m;
      int t;
      for (t = 0; t < (p->cfg.causal ? own : n); ++t)
        if (t != own) COUNT_REGION((size_t)t, t * p->m, (t + 1) * p->m < L ? (t + 1) * p->m : L);
    } else {
      int l, dir;
      for (dir = 0; dir < (p->cfg.causal ? 1 : 2); ++dir) {
        const int x = dir ? L - 1 - pos : pos;   /* the reversed sequence for the future */
        for (l = 1; l < levels && (x >> l) > 0; ++l)
          if ((x >> l) & 1) {
            const int hi = (x >> l) << l, lo = hi - (1 << l);
            const size_t key = ((size_t)dir * levels + (size_t)l) * ((size_t)L + 1) + (size_t)(lo >> l);
            if (dir) COUNT_REGION(key, L - hi, L - lo);
            else COUNT_REGION(key, lo, hi);
          }
      }
    }
  }
#undef COUNT_REGION
  free(seen);
  return count;
}

/* ---- the simulated ranks ---------------------------------------------------- */

typedef struct bound_set {
  int P;
  int *b;          /* P + 1 bounds */
  const char *what;
} bound_set;

typedef struct sim {
  float *out;              /* [L][H][dv], rows assembled from every rank */
  float *pools, *states;   /* every rank's messages back to back (NULL when empty) */
  size_t npools, nstates;
  int ok;                  /* every call returned OK */
} sim;

static void sim_free(sim *s) { free(s->out); free(s->pools); free(s->states); }

static int same_info(const combiner_range_info *a, const combiner_range_info *b) {
  return a->begin == b->begin && a->end == b->end && a->kv_begin == b->kv_begin && a->kv_end == b->kv_end &&
         a->pool_floats == b->pool_floats && a->state_floats == b->state_floats &&
         a->received_entries == b->received_entries && a->workspace_size == b->workspace_size;
}

static const char *bounds_text(const bound_set *bs, char *buf, size_t cap) {
  size_t used = 0;
  int r;
  buf[0] = '\0';
  for (r = 0; r <= bs->P && used + 16 < cap; ++r)
    used += (size_t)snprintf(buf + used, cap - used, "%s%d", r ? "," : "{", bs->b[r]);
  if (r <= bs->P) snprintf(buf + used, cap - used, ",...");
  else snprintf(buf + used, cap - used, "}");
  return buf;
}

static int fixed_aligned(const problem *p, const bound_set *bs) {
  int r;
  if (p->cfg.kind != COMBINER_FIXED) return 0;
  for (r = 1; r < bs->P; ++r)
    if (bs->b[r] % p->m) return 0;
  return 1;
}

/* Workspace modes: NULL, a caller buffer of exactly workspace_size bytes,
 * the same one byte off alignment. */
enum { WS_NULL = 0, WS_EXACT = 1, WS_MISALIGNED = 2, WS_MODES = 3 };
static const char *const ws_names[] = {"NULL", "exact", "exact, misaligned"};

static void sim_run(const problem *p, const bound_set *bs, int threads, int ws_mode, sim *s) {
  const int P = bs->P, L = p->L, H = p->H, Hkv = p->Hkv, d = p->d, dv = p->dv;
  const int check_plans = threads == 1;   /* rank-level plan checks once per bounds */
  combiner_config base = p->cfg;
  combiner_range_info *info = (combiner_range_info *)test_alloc(sizeof(combiner_range_info) * (size_t)P);
  combiner_config *rc = (combiner_config *)test_alloc(sizeof(combiner_config) * (size_t)P);
  slab *qs = (slab *)test_alloc(sizeof(slab) * (size_t)P), *ks = (slab *)test_alloc(sizeof(slab) * (size_t)P);
  slab *vs = (slab *)test_alloc(sizeof(slab) * (size_t)P), *os = (slab *)test_alloc(sizeof(slab) * (size_t)P);
  float **pm = (float **)test_alloc(sizeof(float *) * (size_t)P), **sm = (float **)test_alloc(sizeof(float *) * (size_t)P);
  char bt[160];
  int r, a, made = 0;
  size_t off;
  combiner_status st;
  memset(s, 0, sizeof *s);
  memset(pm, 0, sizeof(float *) * (size_t)P);
  memset(sm, 0, sizeof(float *) * (size_t)P);
  s->ok = 1;
  base.num_threads = threads;
  bounds_text(bs, bt, sizeof bt);
  /* plans, the halo, the rank's buffers and config */
  for (r = 0; r < P; ++r) {
    int kb, ke, cb, ce, i, h;
    st = combiner_range_plan(&base, P, bs->b, r, &info[r]);
    CHECK(st == COMBINER_OK, "%s bounds %s (%s) rank %d: plan: %s", p->name, bt, bs->what, r,
          combiner_status_string(st));
    if (st != COMBINER_OK) { s->ok = 0; goto done; }
    if (check_plans) {
      const int b = bs->b[r], e = bs->b[r + 1];
      size_t want_received = regions_from_others(p, b, e);
      kb = b; ke = e;
      for (i = b; i < e; ++i) {
        int lo, hi;
        direct_set(p, i, &lo, &hi);
        if (lo < kb) kb = lo;
        if (hi > ke) ke = hi;
      }
      halo_closed_form(p, b, e, &cb, &ce);
      CHECK(kb == cb && ke == ce, "test bug: %s [%d,%d): direct sets give kv [%d,%d), closed form [%d,%d)", p->name, b,
            e, kb, ke, cb, ce);
      CHECK(info[r].begin == b && info[r].end == e, "%s bounds %s rank %d: plan says [%d,%d), bounds [%d,%d)", p->name,
            bt, r, info[r].begin, info[r].end, b, e);
      CHECK(info[r].kv_begin == kb && info[r].kv_end == ke,
            "%s bounds %s (%s) rank %d [%d,%d): kv [%d,%d), SPEC's direct sets need exactly [%d,%d)", p->name, bt,
            bs->what, r, b, e, info[r].kv_begin, info[r].kv_end, kb, ke);
      CHECK(info[r].received_entries == want_received,
            "%s bounds %s (%s) rank %d [%d,%d): received_entries %zu, its queries read %zu regions not within its range",
            p->name, bt, bs->what, r, b, e, info[r].received_entries, want_received);
    }
    kb = info[r].kv_begin; ke = info[r].kv_end;
    if (!(kb >= 0 && kb <= info[r].begin && ke >= info[r].end && ke <= L && info[r].begin < info[r].end)) {
      CHECK(0, "%s bounds %s rank %d: unusable plan [%d,%d) kv [%d,%d)", p->name, bt, r, info[r].begin,
            info[r].end, kb, ke);
      s->ok = 0;
      goto done;
    }
    qs[r] = slab_make(info[r].end - info[r].begin, H, d, p->lay[0], F32);
    ks[r] = slab_make(ke - kb, Hkv, d, p->lay[1], p->kt);
    vs[r] = slab_make(ke - kb, Hkv, dv, p->lay[2], p->vt);
    os[r] = slab_make(info[r].end - info[r].begin, H, dv, p->lay[3], F32);
    slab_poison(&os[r], SENTINEL_BITS);
    made = r + 1;
    for (i = info[r].begin; i < info[r].end; ++i)
      for (h = 0; h < H; ++h) slab_put(&qs[r], i - info[r].begin, h, p->q + ((size_t)i * H + h) * d);
    for (i = kb; i < ke; ++i)
      for (h = 0; h < Hkv; ++h) {
        slab_put(&ks[r], i - kb, h, p->k + ((size_t)i * Hkv + h) * d);
        slab_put(&vs[r], i - kb, h, p->v + ((size_t)i * Hkv + h) * dv);
      }
    rc[r] = base;
    rc[r].q_layout = qs[r].lay; rc[r].k_layout = ks[r].lay; rc[r].v_layout = vs[r].lay; rc[r].out_layout = os[r].lay;
  }
  if (check_plans) {   /* 6. every rank, with its own config (layouts), plans every rank the same */
    int refused_by = -1, refused_of = -1, differs_by = -1, differs_of = -1;
    combiner_status refused_st = COMBINER_OK;
    for (r = 0; r < P; ++r)
      for (a = 0; a < P; ++a) {
        combiner_range_info other;
        memset(&other, 0, sizeof other);
        st = combiner_range_plan(&rc[a], P, bs->b, r, &other);
        if (st != COMBINER_OK && refused_by < 0) { refused_by = a; refused_of = r; refused_st = st; }
        if (st == COMBINER_OK && !same_info(&other, &info[r]) && differs_by < 0) { differs_by = a; differs_of = r; }
      }
    CHECK(refused_by < 0, "%s bounds %s (%s): rank %d, with its own config, cannot plan rank %d: %s", p->name, bt,
          bs->what, refused_by, refused_of, combiner_status_string(refused_st));
    CHECK(differs_by < 0, "%s bounds %s (%s): rank %d, with its own config, plans rank %d differently", p->name, bt,
          bs->what, differs_by, differs_of);
    if (fixed_aligned(p, bs)) {
      size_t total = 0;
      for (r = 0; r < P; ++r) total += info[r].pool_floats;
      CHECK(total == 0, "%s bounds %s (%s): block-aligned FIXED bounds, yet %zu floats of round-1 messages", p->name,
            bt, bs->what, total);
    }
  }
  /* round 1 */
  for (r = 0; r < P; ++r) {
    const size_t n = info[r].pool_floats;
    pm[r] = floats_alloc(n + GUARD);
    sentinel_fill(pm[r], n + GUARD);
    st = combiner_range_pools(&rc[r], P, bs->b, r, (const float *)qs[r].data, n ? pm[r] : NULL);
    CHECK(st == COMBINER_OK, "%s bounds %s rank %d: pools: %s", p->name, bt, r, combiner_status_string(st));
    CHECK(sentinel_kept(pm[r] + n, GUARD), "%s bounds %s rank %d: pools wrote past its %zu floats", p->name, bt, r,
          n);
    if (st != COMBINER_OK) s->ok = 0;
    s->npools += n;
  }
  if (!s->ok) goto done;
  if (s->npools) s->pools = floats_alloc(s->npools);
  for (r = 0, off = 0; r < P; off += info[r].pool_floats, ++r)
    if (info[r].pool_floats) memcpy(s->pools + off, pm[r], sizeof(float) * info[r].pool_floats);
  /* round 2 */
  for (r = 0; r < P; ++r) {
    const size_t n = info[r].state_floats, wss = info[r].workspace_size;
    unsigned char *wbuf = NULL, *ws = NULL;
    sm[r] = floats_alloc(n + GUARD);
    sentinel_fill(sm[r], n + GUARD);
    if (ws_mode != WS_NULL) {
      wbuf = (unsigned char *)test_alloc(wss + (ws_mode == WS_MISALIGNED));
      ws = wbuf + (ws_mode == WS_MISALIGNED);
      if (wss > 0) {
        st = combiner_range_states(&rc[r], P, bs->b, r, (const float *)qs[r].data, ks[r].data, vs[r].data, s->pools,
                                   sm[r], ws, wss - 1);
        CHECK(st == COMBINER_ERR_WORKSPACE_TOO_SMALL && sentinel_kept(sm[r], n + GUARD),
              "%s bounds %s rank %d: states with a workspace one byte short: %s%s", p->name, bt, r,
              combiner_status_string(st), sentinel_kept(sm[r], n + GUARD) ? "" : ", message written");
        sentinel_fill(sm[r], n + GUARD);
      }
    }
    st = combiner_range_states(&rc[r], P, bs->b, r, (const float *)qs[r].data, ks[r].data, vs[r].data, s->pools,
                               sm[r], ws, ws ? wss : 0);
    CHECK(st == COMBINER_OK, "%s bounds %s rank %d: states (workspace %s): %s", p->name, bt, r, ws_names[ws_mode],
          combiner_status_string(st));
    CHECK(sentinel_kept(sm[r] + n, GUARD), "%s bounds %s rank %d: states wrote past its %zu floats", p->name, bt,
          r, n);
    if (st != COMBINER_OK) s->ok = 0;
    s->nstates += n;
    free(wbuf);
  }
  if (!s->ok) goto done;
  if (s->nstates) s->states = floats_alloc(s->nstates);
  for (r = 0, off = 0; r < P; off += info[r].state_floats, ++r)
    if (info[r].state_floats) memcpy(s->states + off, sm[r], sizeof(float) * info[r].state_floats);
  /* the outputs */
  s->out = floats_alloc((size_t)L * H * dv);
  sentinel_fill(s->out, (size_t)L * H * dv);
  for (r = 0; r < P; ++r) {
    const size_t wss = info[r].workspace_size;
    unsigned char *wbuf = NULL, *ws = NULL;
    int i, h;
    if (ws_mode != WS_NULL) {
      wbuf = (unsigned char *)test_alloc(wss + (ws_mode == WS_MISALIGNED));
      ws = wbuf + (ws_mode == WS_MISALIGNED);
      if (wss > 0) {
        st = combiner_range_combine(&rc[r], P, bs->b, r, (const float *)qs[r].data, ks[r].data, vs[r].data, s->states,
                                    (float *)os[r].data, ws, wss - 1);
        CHECK(st == COMBINER_ERR_WORKSPACE_TOO_SMALL && sentinel_kept((const float *)os[r].data, os[r].elems),
              "%s bounds %s rank %d: combine with a workspace one byte short: %s%s", p->name, bt, r,
              combiner_status_string(st),
              sentinel_kept((const float *)os[r].data, os[r].elems) ? "" : ", out written");
        slab_poison(&os[r], SENTINEL_BITS);
      }
    }
    st = combiner_range_combine(&rc[r], P, bs->b, r, (const float *)qs[r].data, ks[r].data, vs[r].data, s->states,
                                (float *)os[r].data, ws, ws ? wss : 0);
    CHECK(st == COMBINER_OK, "%s bounds %s rank %d: combine (workspace %s): %s", p->name, bt, r,
          ws_names[ws_mode], combiner_status_string(st));
    CHECK(slab_gaps_untouched(&os[r]), "%s bounds %s rank %d: combine wrote outside out's rows", p->name, bt, r);
    if (st != COMBINER_OK) s->ok = 0;
    for (i = info[r].begin; i < info[r].end; ++i)
      for (h = 0; h < H; ++h)
        memcpy(s->out + ((size_t)i * H + h) * dv, slab_row(&os[r], i - info[r].begin, h), sizeof(float) * (size_t)dv);
    free(wbuf);
  }
done:
  for (r = 0; r < made; ++r) { slab_free(&qs[r]); slab_free(&ks[r]); slab_free(&vs[r]); slab_free(&os[r]); }
  for (r = 0; r < P; ++r) { free(pm[r]); free(sm[r]); }
  free(info); free(rc); free(qs); free(ks); free(vs); free(os);
  free(pm); free(sm);
}

/* ---- one problem, many bounds ------------------------------------------------ */

/* inf-norm of the difference to the whole-sequence call, relative to its largest output */
static double vs_whole(const problem *p, const float *out, double *max_diff) {
  const size_t n = (size_t)p->L * p->H * p->dv;
  double err = 0.0;
  size_t i;
  for (i = 0; i < n; ++i) {
    double e = fabs((double)out[i] - (double)p->whole[i]);
    if (e != e) e = INFINITY;
    if (e > err) err = e;
  }
  *max_diff = err;
  return p->whole_mag > 0.0 ? err / p->whole_mag : err;
}

/* inf-norm error against the float64 reference, relative to its largest value */
static double vs_reference(const problem *p, const float *out) {
  double err = 0.0, mag = 0.0;
  int i, h, x;
  for (h = 0; h < p->H; ++h)
    for (i = 0; i < p->L; ++i)
      for (x = 0; x < p->dv; ++x) {
        const double r = p->ref[((size_t)h * p->L + i) * p->dv + x];
        double e = fabs((double)out[((size_t)i * p->H + h) * p->dv + x] - r);
        if (e != e) e = INFINITY;
        if (e > err) err = e;
        if (fabs(r) > mag) mag = fabs(r);
      }
  return mag > 0.0 ? err / mag : err;
}

static void check_bounds(const problem *p, const bound_set *bs, unsigned counter) {
  const size_t bytes = sizeof(float) * (size_t)p->L * p->H * p->dv;
  const int ws1 = (int)(counter % WS_MODES), ws2 = (int)((counter + 1) % WS_MODES);
  sim one, two;
  char bt[160];
  bounds_text(bs, bt, sizeof bt);
  sim_run(p, bs, 1, ws1, &one);
  if (counter % 2 == 0 || bs->P == 1) sim_run(p, bs, 2, ws2, &two);   /* 2 threads: every problem, half its bounds */
  else memset(&two, 0, sizeof two);
  if (one.ok) {
    double diff, rel = vs_whole(p, one.out, &diff), err = vs_reference(p, one.out);
    if (fixed_aligned(p, bs) || bs->P == 1)
      CHECK(memcmp(one.out, p->whole, bytes) == 0,
            "%s bounds %s (%s): not bit-identical to the whole-sequence call (max |diff| %.3g, relative %.3g)", p->name,
            bt, bs->what, diff, rel);
    else
      CHECK(rel <= RANGE_TOLERANCE, "%s bounds %s (%s): max |diff| to the whole-sequence call %.3g, relative %.3g",
            p->name, bt, bs->what, diff, rel);
    CHECK(err <= TEST_TOLERANCE, "%s bounds %s (%s): error %.3g vs the float64 reference", p->name, bt, bs->what, err);
  }
  if (one.ok && two.ok) {
    CHECK(memcmp(one.out, two.out, bytes) == 0, "%s bounds %s (%s): 1 and 2 threads give different outputs", p->name,
          bt, bs->what);
    CHECK(one.npools == two.npools && (!one.npools || !memcmp(one.pools, two.pools, sizeof(float) * one.npools)),
          "%s bounds %s (%s): round-1 messages differ between 1 and 2 threads", p->name, bt, bs->what);
    CHECK(one.nstates == two.nstates && (!one.nstates || !memcmp(one.states, two.states, sizeof(float) * one.nstates)),
          "%s bounds %s (%s): round-2 messages differ between 1 and 2 threads", p->name, bt, bs->what);
  }
  sim_free(&one);
  sim_free(&two);
}

enum { MAX_SETS = 24 };
typedef struct set_list {
  bound_set s[MAX_SETS];
  int n;
} set_list;

static void add_set(set_list *l, int P, const int *b, const char *what) {
  bound_set *bs;
  if (l->n == MAX_SETS) { fprintf(stderr, "test bug: more than %d bound sets\n", MAX_SETS); exit(2); }
  bs = &l->s[l->n++];
  bs->P = P;
  bs->b = (int *)test_alloc(sizeof(int) * (size_t)(P + 1));
  memcpy(bs->b, b, sizeof(int) * (size_t)(P + 1));
  bs->what = what;
}

static void free_sets(set_list *l) {
  int i;
  for (i = 0; i < l->n; ++i) free(l->s[i].b);
  l->n = 0;
}

/* P - 1 distinct interior bounds from [1, L-1], sorted */
static void random_bounds(int L, int P, int *b, test_rng *rng) {
  unsigned char *taken = (unsigned char *)test_alloc((size_t)L + 1);
  int r, i, chosen = 0;
  memset(taken, 0, (size_t)L + 1);
  while (chosen < P - 1) {
    const int x = 1 + (int)(test_rng_u32(rng) % (unsigned)(L - 1));
    if (!taken[x]) { taken[x] = 1; ++chosen; }
  }
  b[0] = 0;
  for (i = 1, r = 1; i < L; ++i)
    if (taken[i]) b[r++] = i;
  b[P] = L;
  free(taken);
}

static void make_sets(const problem *p, test_rng *rng, set_list *l) {
  const int L = p->L, m = p->m, quick = test_quick();
  int b[70], P, r, i;
  b[0] = 0; b[1] = L;
  add_set(l, 1, b, "one rank");
  for (P = 2; P <= 5 && P <= L; ++P) {   /* even: L*r/P */
    for (r = 0; r <= P; ++r) b[r] = (int)((long long)L * r / P);
    add_set(l, P, b, "even");
  }
  if (p->cfg.kind == COMBINER_FIXED) {   /* whole blocks per rank */
    const int nb = (L + m - 1) / m;
    for (P = 2; P <= 5 && P <= nb; ++P) {
      for (r = 0; r < P; ++r) b[r] = (int)((long long)nb * r / P) * m;
      b[P] = L;
      add_set(l, P, b, "block-aligned");
    }
  }
  for (i = 0; i < (quick ? 1 : 3) && L >= 2; ++i) {
    const int most = L < 5 ? L : 5;
    P = 2 + (int)(test_rng_u32(rng) % (unsigned)(most - 1));
    random_bounds(L, P, b, rng);
    add_set(l, P, b, "random");
  }
  if (L >= 4) {   /* ranges of one position at both ends */
    b[0] = 0; b[1] = 1; b[2] = 2; b[3] = L - 1; b[4] = L;
    add_set(l, 4, b, "edges");
  }
  if (p->cfg.kind == COMBINER_FIXED && m >= 3 && m + 2 < L) {   /* one range strictly inside block 1 */
    b[0] = 0; b[1] = m + 1; b[2] = m + 2; b[3] = L;
    add_set(l, 3, b, "inside a block");
  }
  if (L >= 2 && L <= (quick ? 16 : 65)) {
    for (r = 0; r <= L; ++r) b[r] = r;
    add_set(l, L, b, "one rank per position");
  }
}

/* ---- 5. bad arguments ---------------------------------------------------------- */

/* A valid two-rank problem whose middle region straddles the ranks, with
 * every rank's buffers and both rounds of messages; bad calls borrow them. */
typedef struct err_setup {
  combiner_config cfg;
  int bounds[3];
  combiner_range_info info[2];
  slab q[2], k[2], v[2], out[2];
  float *pools, *states;        /* back to back (NULL when empty) */
  size_t npools, nstates;
  float *msg;                   /* a message buffer for failing calls: big enough for either round */
  size_t msg_floats;
} err_setup;

static int err_setup_make(err_setup *e, combiner_kind kind, int causal, test_rng *rng) {
  const int L = 10, d = 4, H = 2, Hkv = 1;
  int r, i, h, x;
  float row[8];
  memset(e, 0, sizeof *e);
  e->cfg = test_config(kind, L, d, H, Hkv, 3, causal);
  e->bounds[0] = 0; e->bounds[1] = 4; e->bounds[2] = L;
  for (r = 0; r < 2; ++r) {
    combiner_status st = combiner_range_plan(&e->cfg, 2, e->bounds, r, &e->info[r]);
    CHECK(st == COMBINER_OK, "errors setup: plan rank %d: %s", r, combiner_status_string(st));
    if (st != COMBINER_OK) return 0;
    e->q[r] = slab_make(e->info[r].end - e->info[r].begin, H, d, LAYOUT_TOKEN_MAJOR, F32);
    e->k[r] = slab_make(e->info[r].kv_end - e->info[r].kv_begin, Hkv, d, LAYOUT_TOKEN_MAJOR, F32);
    e->v[r] = slab_make(e->info[r].kv_end - e->info[r].kv_begin, Hkv, d, LAYOUT_TOKEN_MAJOR, F32);
    e->out[r] = slab_make(e->info[r].end - e->info[r].begin, H, d, LAYOUT_TOKEN_MAJOR, F32);
    for (i = 0; i < e->q[r].rows; ++i)
      for (h = 0; h < H; ++h) {
        for (x = 0; x < d; ++x) row[x] = test_rng_float(rng);
        slab_put(&e->q[r], i, h, row);
      }
    for (i = 0; i < e->k[r].rows; ++i)
      for (h = 0; h < Hkv; ++h) {
        for (x = 0; x < d; ++x) row[x] = test_rng_float(rng);
        slab_put(&e->k[r], i, h, row);
        slab_put(&e->v[r], i, h, row);
      }
    e->npools += e->info[r].pool_floats;
    e->nstates += e->info[r].state_floats;
    if (e->info[r].pool_floats > e->msg_floats) e->msg_floats = e->info[r].pool_floats;
    if (e->info[r].state_floats > e->msg_floats) e->msg_floats = e->info[r].state_floats;
  }
  /* a region straddles the two ranges: its pooled query must travel */
  CHECK(e->npools > 0, "%s %s bounds {0,4,10} block 3: no round-1 message, yet a region straddles the ranks",
        combiner_kind_string(kind), causal ? "causal" : "bidir");
  CHECK(e->nstates > 0, "%s %s bounds {0,4,10}: no round-2 message", combiner_kind_string(kind),
        causal ? "causal" : "bidir");
  e->pools = e->npools ? floats_alloc(e->npools) : NULL;
  e->states = e->nstates ? floats_alloc(e->nstates) : NULL;
  e->msg = floats_alloc(e->msg_floats + GUARD);
  for (r = 0; r < 2; ++r) {
    const size_t off = r ? e->info[0].pool_floats : 0;
    CHECK(combiner_range_pools(&e->cfg, 2, e->bounds, r, (const float *)e->q[r].data,
                               e->info[r].pool_floats ? e->pools + off : NULL) == COMBINER_OK, "errors setup: pools");
  }
  for (r = 0; r < 2; ++r) {
    const size_t off = r ? e->info[0].state_floats : 0;
    CHECK(combiner_range_states(&e->cfg, 2, e->bounds, r, (const float *)e->q[r].data, e->k[r].data, e->v[r].data,
                                e->pools, e->nstates ? e->states + off : NULL, NULL, 0) == COMBINER_OK,
          "errors setup: states");
  }
  for (r = 0; r < 2; ++r) slab_poison(&e->out[r], SENTINEL_BITS);
  return 1;
}

static void err_setup_free(err_setup *e) {
  int r;
  for (r = 0; r < 2; ++r) { slab_free(&e->q[r]); slab_free(&e->k[r]); slab_free(&e->v[r]); slab_free(&e->out[r]); }
  free(e->pools); free(e->states); free(e->msg);
}

static int out_kept(const err_setup *e, int r) { return sentinel_kept((const float *)e->out[r].data, e->out[r].elems); }

/* All four calls with these arguments (rank r's buffers, rr = r when it is a
 * rank) give `want` and write nothing. */
static void expect_all(const err_setup *e, const combiner_config *cfg, int P, const int *bounds, int rank,
                       combiner_status want, const char *what) {
  const int rr = rank == 1 ? 1 : 0;
  combiner_range_info info;
  combiner_status st;
  st = combiner_range_plan(cfg, P, bounds, rank, &info);
  CHECK(st == want, "%s: plan: got \"%s\", want \"%s\"", what, combiner_status_string(st), combiner_status_string(want));
  sentinel_fill(e->msg, e->msg_floats + GUARD);
  st = combiner_range_pools(cfg, P, bounds, rank, (const float *)e->q[rr].data, e->msg);
  CHECK(st == want && sentinel_kept(e->msg, e->msg_floats + GUARD), "%s: pools: got \"%s\", want \"%s\"%s", what,
        combiner_status_string(st), combiner_status_string(want),
        sentinel_kept(e->msg, e->msg_floats + GUARD) ? "" : "; message written");
  sentinel_fill(e->msg, e->msg_floats + GUARD);
  st = combiner_range_states(cfg, P, bounds, rank, (const float *)e->q[rr].data, e->k[rr].data, e->v[rr].data,
                             e->pools, e->msg, NULL, 0);
  CHECK(st == want && sentinel_kept(e->msg, e->msg_floats + GUARD), "%s: states: got \"%s\", want \"%s\"%s", what,
        combiner_status_string(st), combiner_status_string(want),
        sentinel_kept(e->msg, e->msg_floats + GUARD) ? "" : "; message written");
  st = combiner_range_combine(cfg, P, bounds, rank, (const float *)e->q[rr].data, e->k[rr].data, e->v[rr].data,
                              e->states, (float *)e->out[rr].data, NULL, 0);
  CHECK(st == want && out_kept(e, rr), "%s: combine: got \"%s\", want \"%s\"%s", what, combiner_status_string(st),
        combiner_status_string(want), out_kept(e, rr) ? "" : "; out written");
}

static void bad_arguments(combiner_kind kind, int causal, test_rng *rng) {
  static const combiner_kind refused[] = {COMBINER_AXIAL, COMBINER_MIXTURE, COMBINER_DENSE};
  err_setup e;
  combiner_config c;
  combiner_range_info info;
  combiner_status st;
  char what[160];
  const char *kn = combiner_kind_string(kind);
  int bad[4], r;
  size_t i;
  if (!err_setup_make(&e, kind, causal, rng)) { err_setup_free(&e); return; }
  /* kinds the ranges do not run */
  for (i = 0; i < sizeof refused / sizeof refused[0]; ++i) {
    c = e.cfg;
    c.kind = refused[i];
    for (r = 0; r < 2; ++r) {
      snprintf(what, sizeof what, "%s (rank %d of the %s setup)", combiner_kind_string(refused[i]), r, kn);
      expect_all(&e, &c, 2, e.bounds, r, COMBINER_ERR_UNSUPPORTED, what);
    }
  }
  c = e.cfg;
  c.kind = COMBINER_KIND_DEFAULT;
  snprintf(what, sizeof what, "COMBINER_KIND_DEFAULT (%s)", test_kind_name(COMBINER_KIND_DEFAULT));
  if (strcmp(test_kind_name(COMBINER_KIND_DEFAULT), "fixed") && strcmp(test_kind_name(COMBINER_KIND_DEFAULT), "logsparse"))
    expect_all(&e, &c, 2, e.bounds, 0, COMBINER_ERR_UNSUPPORTED, what);
  c = e.cfg;
  c.kind = (combiner_kind)99;
  expect_all(&e, &c, 2, e.bounds, 0, COMBINER_ERR_INVALID_ARGUMENT, "kind 99");
  c = e.cfg;
  c.head_dim = 0;
  expect_all(&e, &c, 2, e.bounds, 0, COMBINER_ERR_INVALID_ARGUMENT, "head_dim 0");
  expect_all(&e, NULL, 2, e.bounds, 0, COMBINER_ERR_INVALID_ARGUMENT, "cfg NULL");
  /* nranks, bounds, rank */
  expect_all(&e, &e.cfg, 0, e.bounds, 0, COMBINER_ERR_INVALID_ARGUMENT, "nranks 0");
  expect_all(&e, &e.cfg, -1, e.bounds, 0, COMBINER_ERR_INVALID_ARGUMENT, "nranks -1");
  expect_all(&e, &e.cfg, 2, NULL, 0, COMBINER_ERR_INVALID_ARGUMENT, "bounds NULL");
  bad[0] = 1; bad[1] = 4; bad[2] = 10;
  expect_all(&e, &e.cfg, 2, bad, 1, COMBINER_ERR_INVALID_ARGUMENT, "bounds[0] = 1");
  bad[0] = -1;
  expect_all(&e, &e.cfg, 2, bad, 1, COMBINER_ERR_INVALID_ARGUMENT, "bounds[0] = -1");
  bad[0] = 0; bad[2] = 9;
  expect_all(&e, &e.cfg, 2, bad, 0, COMBINER_ERR_INVALID_ARGUMENT, "bounds[nranks] = seq_len - 1");
  bad[2] = 11;
  expect_all(&e, &e.cfg, 2, bad, 0, COMBINER_ERR_INVALID_ARGUMENT, "bounds[nranks] = seq_len + 1");
  bad[0] = 0; bad[1] = 4; bad[2] = 4; bad[3] = 10;
  expect_all(&e, &e.cfg, 3, bad, 0, COMBINER_ERR_INVALID_ARGUMENT, "bounds {0,4,4,10}: an empty range");
  bad[1] = 0; bad[2] = 4;
  expect_all(&e, &e.cfg, 3, bad, 1, COMBINER_ERR_INVALID_ARGUMENT, "bounds {0,0,4,10}: an empty first range");
  bad[1] = 6; bad[2] = 4;
  expect_all(&e, &e.cfg, 3, bad, 0, COMBINER_ERR_INVALID_ARGUMENT, "bounds {0,6,4,10}: decreasing");
  expect_all(&e, &e.cfg, 2, e.bounds, -1, COMBINER_ERR_INVALID_ARGUMENT, "rank -1");
  expect_all(&e, &e.cfg, 2, e.bounds, 2, COMBINER_ERR_INVALID_ARGUMENT, "rank = nranks");
  CHECK(combiner_range_plan(&e.cfg, 2, e.bounds, 0, NULL) == COMBINER_ERR_INVALID_ARGUMENT, "%s: plan, info NULL", kn);
  /* no context length (and block 0): nothing to split, no block */
  c = e.cfg;
  c.seq_len = 0;
  c.block = 0;
  bad[0] = 0; bad[1] = 0;
  st = combiner_range_plan(&c, 1, bad, 0, &info);
  CHECK(st == COMBINER_ERR_INVALID_ARGUMENT || st == COMBINER_ERR_NO_BLOCK, "%s: seq_len 0, block 0: plan %s", kn,
        combiner_status_string(st));
  st = combiner_range_combine(&c, 1, bad, 0, (const float *)e.q[0].data, e.k[0].data, e.v[0].data, e.states,
                              (float *)e.out[0].data, NULL, 0);
  CHECK((st == COMBINER_ERR_INVALID_ARGUMENT || st == COMBINER_ERR_NO_BLOCK) && out_kept(&e, 0),
        "%s: seq_len 0, block 0: combine %s", kn, combiner_status_string(st));
  /* NULL pointers, for a rank whose messages are not empty */
  for (r = 0; r < 2; ++r) {
    const combiner_range_info *in = &e.info[r];
    const float *q = (const float *)e.q[r].data;
    const void *k = e.k[r].data, *v = e.v[r].data;
    float *o = (float *)e.out[r].data;
    if (in->pool_floats) {
      sentinel_fill(e.msg, e.msg_floats + GUARD);
      st = combiner_range_pools(&e.cfg, 2, e.bounds, r, NULL, e.msg);
      CHECK(st == COMBINER_ERR_INVALID_ARGUMENT && sentinel_kept(e.msg, e.msg_floats + GUARD),
            "%s rank %d: pools, q NULL: %s", kn, r, combiner_status_string(st));
      st = combiner_range_pools(&e.cfg, 2, e.bounds, r, q, NULL);
      CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "%s rank %d: pools, message NULL (%zu floats): %s", kn, r,
            in->pool_floats, combiner_status_string(st));
    }
#define STATES_NULL(qq, kk, vv, pp, mm, label)                                                              \
    do {                                                                                                \
      sentinel_fill(e.msg, e.msg_floats + GUARD);                                                       \
      st = combiner_range_states(&e.cfg, 2, e.bounds, r, qq, kk, vv, pp, mm, NULL, 0);                  \
      CHECK(st == COMBINER_ERR_INVALID_ARGUMENT && sentinel_kept(e.msg, e.msg_floats + GUARD),           \
            "%s rank %d: states, %s: %s", kn, r, label, combiner_status_string(st));                    \
    } while (0)
    STATES_NULL(NULL, k, v, e.pools, e.msg, "q NULL");
    STATES_NULL(q, NULL, v, e.pools, e.msg, "k NULL");
    STATES_NULL(q, k, NULL, e.pools, e.msg, "v NULL");
    if (e.npools) STATES_NULL(q, k, v, NULL, e.msg, "pools NULL (round 1 not empty)");
    if (in->state_floats) STATES_NULL(q, k, v, e.pools, NULL, "message NULL");
#undef STATES_NULL
#define COMBINE_NULL(qq, kk, vv, ss, oo, label)                                                             \
    do {                                                                                                \
      slab_poison(&e.out[r], SENTINEL_BITS);                                                            \
      st = combiner_range_combine(&e.cfg, 2, e.bounds, r, qq, kk, vv, ss, oo, NULL, 0);                 \
      CHECK(st == COMBINER_ERR_INVALID_ARGUMENT && out_kept(&e, r), "%s rank %d: combine, %s: %s", kn, r, \
            label, combiner_status_string(st));                                                         \
    } while (0)
    COMBINE_NULL(NULL, k, v, e.states, o, "q NULL");
    COMBINE_NULL(q, NULL, v, e.states, o, "k NULL");
    COMBINE_NULL(q, k, NULL, e.states, o, "v NULL");
    COMBINE_NULL(q, k, v, NULL, o, "states NULL (round 2 not empty)");
    st = combiner_range_combine(&e.cfg, 2, e.bounds, r, q, k, v, e.states, NULL, NULL, 0);
    CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "%s rank %d: combine, out NULL: %s", kn, r, combiner_status_string(st));
#undef COMBINE_NULL
    /* a workspace one byte short, then exactly enough */
    {
      const size_t wss = in->workspace_size;
      unsigned char *w = (unsigned char *)test_alloc(wss);
      CHECK(wss > 0, "%s rank %d: workspace_size 0", kn, r);
      if (wss > 0) {
        sentinel_fill(e.msg, e.msg_floats + GUARD);
        st = combiner_range_states(&e.cfg, 2, e.bounds, r, q, k, v, e.pools, e.msg, w, wss - 1);
        CHECK(st == COMBINER_ERR_WORKSPACE_TOO_SMALL && sentinel_kept(e.msg, e.msg_floats + GUARD),
              "%s rank %d: states, workspace %zu of %zu bytes: %s", kn, r, wss - 1, wss, combiner_status_string(st));
        slab_poison(&e.out[r], SENTINEL_BITS);
        st = combiner_range_combine(&e.cfg, 2, e.bounds, r, q, k, v, e.states, o, w, wss - 1);
        CHECK(st == COMBINER_ERR_WORKSPACE_TOO_SMALL && out_kept(&e, r),
              "%s rank %d: combine, workspace %zu of %zu bytes: %s", kn, r, wss - 1, wss, combiner_status_string(st));
        st = combiner_range_combine(&e.cfg, 2, e.bounds, r, q, k, v, e.states, o, w, wss);
        CHECK(st == COMBINER_OK && !out_kept(&e, r), "%s rank %d: combine, exact workspace: %s", kn, r,
              combiner_status_string(st));
      }
      free(w);
    }
    /* a head-major q whose head stride counts one row too few: rows overlap */
    if (e.q[r].rows >= 2) {
      combiner_config hc = e.cfg;
      hc.q_layout.token_stride = hc.head_dim;
      hc.q_layout.head_stride = (ptrdiff_t)(e.q[r].rows - 1) * hc.head_dim;
      sentinel_fill(e.msg, e.msg_floats + GUARD);
      st = combiner_range_pools(&hc, 2, e.bounds, r, q, e.msg);
      CHECK(st == COMBINER_ERR_INVALID_ARGUMENT && sentinel_kept(e.msg, e.msg_floats + GUARD),
            "%s rank %d: pools, head-major q with head_stride (rows-1)*d: %s", kn, r, combiner_status_string(st));
      slab_poison(&e.out[r], SENTINEL_BITS);
      st = combiner_range_combine(&hc, 2, e.bounds, r, q, k, v, e.states, o, NULL, 0);
      CHECK(st == COMBINER_ERR_INVALID_ARGUMENT && out_kept(&e, r),
            "%s rank %d: combine, head-major q with head_stride (rows-1)*d: %s", kn, r, combiner_status_string(st));
    }
  }
  err_setup_free(&e);
}

/* ---- the sweep ---------------------------------------------------------------- */

int main(void) {
  static const int lengths[] = {1, 2, 3, 7, 16, 64, 65, 100, 257, 1000};
  static const combiner_kind kinds[] = {COMBINER_FIXED, COMBINER_LOGSPARSE};
  static const int heads[3][2] = {{4, 4}, {4, 2}, {4, 1}};
  static const int dims[4][2] = {{16, 8}, {3, 3}, {3, 7}, {8, 16}};
  static const int types[5][2] = {{F32, F32}, {F16, F16}, {BF16, BF16}, {F16, F32}, {F32, BF16}};
  static const int layouts[5][4] = {
      {LAYOUT_TOKEN_MAJOR, LAYOUT_TOKEN_MAJOR, LAYOUT_TOKEN_MAJOR, LAYOUT_TOKEN_MAJOR},
      {LAYOUT_PADDED, LAYOUT_PADDED, LAYOUT_PADDED, LAYOUT_PADDED},
      {LAYOUT_HEAD_MAJOR, LAYOUT_HEAD_MAJOR, LAYOUT_HEAD_MAJOR, LAYOUT_HEAD_MAJOR},
      {LAYOUT_HEAD_MAJOR, LAYOUT_PADDED, LAYOUT_TOKEN_MAJOR, LAYOUT_HEAD_MAJOR},
      {LAYOUT_PADDED, LAYOUT_HEAD_MAJOR, LAYOUT_HEAD_MAJOR, LAYOUT_PADDED}};
  test_rng rng = {777}, opt = {31337};
  unsigned n = 0, counter = 0;
  size_t ki, li;
  int causal, bi, si;
  for (ki = 0; ki < 2; ++ki)
    for (causal = 1; causal >= 0; --causal) {
      combiner_config sel = test_config(kinds[ki], 8, 4, 1, 1, 0, causal);
      if (!test_config_selected(&sel)) continue;
      bad_arguments(kinds[ki], causal, &rng);
      for (li = 0; li < sizeof lengths / sizeof lengths[0]; ++li) {
        const int L = lengths[li];
        /* FIXED: block 1, 5, >= L (L itself, or beyond), 0 (from seq_len); LOGSPARSE ignores it.
         * Blocks 1 and >= L make FIXED dense, O(L^2): not at L = 1000. */
        const int nblocks = kinds[ki] == COMBINER_FIXED ? 4 : 2;
        for (bi = 0; bi < nblocks; ++bi, ++n) {
          const int block = kinds[ki] == COMBINER_FIXED ? (bi == 0 ? 1 : bi == 1 ? 5 : bi == 2 ? L + (int)(n % 2) * 3 : 0)
                                                        : (bi == 0 ? 0 : 5);
          const uint32_t o = test_rng_u32(&opt);
          const int hi = (int)(o % 3), di = (int)(o / 3 % 4), ti = (int)(o / 12 % 5), lai = (int)(o / 60 % 5);
          const int pool = (int)(o / 300 % 2);
          problem p;
          set_list sets;
          if (!test_quick_keeps(L, n) || (test_quick() && L > 300)) continue;   /* quick: no L = 1000 */
          if (kinds[ki] == COMBINER_FIXED && L > 300 && (block == 1 || block >= L)) continue;
          memset(&sets, 0, sizeof sets);
          if (!problem_make(&p, kinds[ki], causal, L, block, pool, heads[hi][0], heads[hi][1], dims[di][0], dims[di][1],
                            layouts[lai], types[ti][0], types[ti][1], &rng)) {
            problem_free(&p);
            continue;
          }
          make_sets(&p, &rng, &sets);
          for (si = 0; si < sets.n; ++si) check_bounds(&p, &sets.s[si], counter++);
          free_sets(&sets);
          problem_free(&p);
        }
      }
    }
  return TEST_SUMMARY();
}
