/* The introspection API against SPEC.md:
 *  - combiner_attention_matrix: A times v is combiner_attention's output, A
 *    is the float64 reference's effective matrix (unit-vector values), and A
 *    has SPEC 6's shape: rows sum to 1, A > 0 exactly on the attended set,
 *    A == 0 above the diagonal when causal;
 *  - combiner_support_map: -1/0/region ids exactly where A is zero/direct/
 *    reached through an abstraction, and the direct set and regions of
 *    SPEC 3-5b, rebuilt here from the SPEC's own words (not from the
 *    header's code), with the region numbering the header documents;
 *  - the abstraction structure of A (SPEC 1): inside a region reached through
 *    one shared abstraction, A[i][j] / A[i][region] = p(j | region) does not
 *    depend on the query i (FIXED and LOGSPARSE blocks, AXIAL cells R_{t,c}
 *    and the short row's fixed-style abstraction);
 *  - errors: NULL pointers, bad plans, invalid configs, overlap, overflow and
 *    a failing allocator give their specific status and write nothing. */
#include <limits.h>
#include <stdlib.h>
#include <time.h>

static int malloc_fail_countdown = 0;   /* > 0: the n-th next allocation fails */
static long malloc_live = 0;            /* allocations not yet freed */
static size_t malloc_live_bytes = 0, malloc_peak_bytes = 0;
/* Each block carries its size in a prefix as wide as malloc's alignment. */
typedef union counting_prefix { size_t n; long double ld; void *p; long long ll; } counting_prefix;
static void *counting_malloc(size_t n) {
  counting_prefix *p;
  if (malloc_fail_countdown > 0 && --malloc_fail_countdown == 0) return NULL;
  p = (counting_prefix *)malloc(sizeof *p + n);
  if (!p) return NULL;
  p->n = n;
  ++malloc_live;
  malloc_live_bytes += n;
  if (malloc_live_bytes > malloc_peak_bytes) malloc_peak_bytes = malloc_live_bytes;
  return p + 1;
}
static void counting_free(void *q) {
  counting_prefix *p = (counting_prefix *)q;
  if (!p) return;
  --p;
  --malloc_live;
  malloc_live_bytes -= p->n;
  free(p);
}
#define COMBINER_MALLOC(n) counting_malloc(n)
#define COMBINER_FREE(p) counting_free(p)
#define COMBINER_IMPLEMENTATION
#include "test_common.h"

/* Coverage, printed at the end. */
static int cov_matrix = 0, cov_matrix_kind[8], cov_layout[LAYOUT_COUNT], cov_hkv[5];
static int cov_maps = 0, cov_map_queries = 0, cov_regions = 0, cov_errors = 0;
static long cov_shared_pairs = 0, cov_shared_groups = 0;

/* ------------------------------------------------------------------------ */
/* SPEC 3-5b, from the SPEC's words: the factorization of one query.        */
/* ------------------------------------------------------------------------ */

/* Query i's direct set and its regions. Each region carries the id that
 * combiner_support_map documents and `shared`, the abstraction it is reached
 * through: two queries whose regions have the same `shared` value use the
 * same p(j | region) (-1: the SPEC mixes several abstractions, MIXTURE). */
typedef struct spec_query {
  int L, m, n, causal;
  signed char *direct;        /* [L] */
  int nreg, npos, cap, overflowed;
  int *id, *shared, *first;   /* region r is pos[first[r] .. first[r+1]) */
  int *pos;
} spec_query;

static spec_query spec_make(int L, int m, int causal) {
  spec_query sq;
  memset(&sq, 0, sizeof sq);
  sq.L = L; sq.m = m; sq.n = (L + m - 1) / m; sq.causal = causal;
  sq.cap = 4 * L + 80;
  sq.direct = (signed char *)test_alloc((size_t)L);
  sq.id = (int *)test_alloc(sizeof(int) * (size_t)sq.cap);
  sq.shared = (int *)test_alloc(sizeof(int) * (size_t)sq.cap);
  sq.first = (int *)test_alloc(sizeof(int) * (size_t)(sq.cap + 1));
  sq.pos = (int *)test_alloc(sizeof(int) * (size_t)sq.cap);
  return sq;
}

static void spec_free(spec_query *sq) {
  free(sq->direct); free(sq->id); free(sq->shared); free(sq->first); free(sq->pos);
}

static int spec_attended(const spec_query *sq, int i, int j) { return !sq->causal || j <= i; }

/* position of cell (t, c) of the 2-D view, -1 if that cell does not exist */
static int spec_cell(const spec_query *sq, int t, int c) {
  if (t < 0 || c < 0 || c >= sq->m || t >= sq->n || t * sq->m + c >= sq->L) return -1;
  return t * sq->m + c;
}

static void spec_open(spec_query *sq, int id, int shared) {
  if (sq->nreg >= sq->cap) { sq->overflowed = 1; return; }
  sq->id[sq->nreg] = id;
  sq->shared[sq->nreg] = shared;
  sq->first[sq->nreg] = sq->npos;
}

static void spec_member(spec_query *sq, int j) {
  if (sq->npos >= sq->cap || sq->nreg >= sq->cap) { sq->overflowed = 1; return; }
  sq->pos[sq->npos++] = j;
}

/* An empty region contributes nothing (SPEC 2): it is dropped. */
static void spec_close(spec_query *sq) {
  if (sq->nreg >= sq->cap) return;
  if (sq->npos > sq->first[sq->nreg]) ++sq->nreg;
  sq->first[sq->nreg] = sq->npos;
}

/* SPEC 3. Direct: own block (causal: up to i). Regions: every other block
 * (causal: every earlier one), through the block's abstraction; id 1 + t. */
static void spec_fixed(spec_query *sq, int i) {
  int b = i / sq->m, t, j;
  for (j = b * sq->m; j < sq->L && j < (b + 1) * sq->m; ++j)
    if (spec_attended(sq, i, j)) sq->direct[j] = 1;
  for (t = 0; t < sq->n; ++t) {
    if (t == b || (sq->causal && t > b)) continue;
    spec_open(sq, 1 + t, t);
    for (j = t * sq->m; j < sq->L && j < (t + 1) * sq->m; ++j) spec_member(sq, j);
    spec_close(sq);
  }
}

/* SPEC 4, query (r, c). Direct: row r (causal: columns <= c). Regions: every
 * other row t (causal: t < r), through cell (t, c) -- value R_{t,c}, shared by
 * the queries of column c -- or, bidirectional, when row t is the short last
 * row that lacks column c, through that row's fixed-style abstraction,
 * shared by every query that uses it. id 1 + t. */
static void spec_axial(spec_query *sq, int i) {
  int r = i / sq->m, c = i % sq->m, t, c2, j;
  for (c2 = 0; c2 < sq->m; ++c2)
    if ((j = spec_cell(sq, r, c2)) >= 0 && (!sq->causal || c2 <= c)) sq->direct[j] = 1;
  for (t = 0; t < sq->n; ++t) {
    int through;
    if (t == r || (sq->causal && t > r)) continue;
    through = spec_cell(sq, t, c);
    spec_open(sq, 1 + t, through >= 0 ? through : sq->L + t);
    for (c2 = 0; c2 < sq->m; ++c2)
      if ((j = spec_cell(sq, t, c2)) >= 0) spec_member(sq, j);
    spec_close(sq);
  }
}

/* Column c, rows t0..t1: a plan-0 region (id given). */
static void spec_column_region(spec_query *sq, int id, int c, int t0, int t1) {
  int t, j;
  spec_open(sq, id, -1);
  for (t = t0; t <= t1; ++t)
    if ((j = spec_cell(sq, t, c)) >= 0) spec_member(sq, j);
  spec_close(sq);
}

/* Row t, columns c0..c1: a plan-1 region (id given). */
static void spec_row_region(spec_query *sq, int id, int t, int c0, int c1) {
  int c, j;
  spec_open(sq, id, -1);
  for (c = c0; c <= c1; ++c)
    if ((j = spec_cell(sq, t, c)) >= 0) spec_member(sq, j);
  spec_close(sq);
}

/* SPEC 5, query (s, u). Plan 0 (vertical) = groups 1, 2, 3; plan 1
 * (horizontal) = groups 1, 2, 4, 5. Documented ids: plan 0: 1 + c for column
 * c above row s, 1 + m + c below it; plan 1: 1 + 2t for the left part of row
 * t, 2 + 2t for its right part. */
static void spec_mixture(spec_query *sq, int plan, int i) {
  int m = sq->m, s = i / m, u = i % m, t, c, j;
  if (sq->causal) {
    for (t = 0; t < s; ++t)                                   /* 1. column direct */
      if ((j = spec_cell(sq, t, u)) >= 0) sq->direct[j] = 1;
    for (c = 0; c <= u; ++c)                                  /* 2. row direct */
      if ((j = spec_cell(sq, s, c)) >= 0) sq->direct[j] = 1;
    if (plan == 0) {
      if (s >= 1)                                             /* 3. columns, rows 0..s-1 */
        for (c = 0; c < m; ++c)
          if (c != u) spec_column_region(sq, 1 + c, c, 0, s - 1);
    } else {
      for (t = 0; t < s; ++t) {
        if (u >= 1) spec_row_region(sq, 1 + 2 * t, t, 0, u - 1);   /* 4. left */
        spec_row_region(sq, 2 + 2 * t, t, u + 1, m - 1);           /* 5. right (if any) */
      }
    }
  } else {
    for (t = 0; t < sq->n; ++t)                               /* 1. column direct, t != s */
      if (t != s && (j = spec_cell(sq, t, u)) >= 0) sq->direct[j] = 1;
    for (c = 0; c < m; ++c)                                   /* 2. the whole row s */
      if ((j = spec_cell(sq, s, c)) >= 0) sq->direct[j] = 1;
    if (plan == 0) {
      for (c = 0; c < m; ++c) {                               /* 3. above and below */
        if (c == u) continue;
        spec_column_region(sq, 1 + c, c, 0, s - 1);
        spec_column_region(sq, 1 + m + c, c, s + 1, sq->n - 1);
      }
    } else {
      for (t = 0; t < sq->n; ++t) {                           /* 4-5. every row t != s */
        if (t == s) continue;
        spec_row_region(sq, 1 + 2 * t, t, 0, u - 1);
        spec_row_region(sq, 2 + 2 * t, t, u + 1, m - 1);
      }
    }
  }
}

/* SPEC 5b, one side: the causal construction for index p of a sequence whose
 * index x is position (reversed ? L-1-x : x). Direct p-1 when p is odd; for
 * every bit l >= 1 set in p, the block [(floor(p/2^l) - 1)*2^l,
 * floor(p/2^l)*2^l) with id base + l. The abstraction is the block's (a set
 * of positions), so `shared` names the set: lo*(L+1) + hi in positions. */
static void spec_logsparse_side(spec_query *sq, int p, int reversed, int base) {
  int L = sq->L, l, x;
  if (p % 2 == 1) sq->direct[reversed ? L - 1 - (p - 1) : p - 1] = 1;
  for (l = 1; (1 << l) <= p; ++l) {
    int w = 1 << l, f = p / w, lo = (f - 1) * w, hi = f * w;
    int plo = reversed ? L - hi : lo, phi = reversed ? L - lo : hi;   /* positions [plo, phi) */
    if (f % 2 != 1) continue;                                         /* bit l of p not set */
    spec_open(sq, base + l, plo * (L + 1) + phi);
    for (x = lo; x < hi; ++x) spec_member(sq, reversed ? L - 1 - x : x);
    spec_close(sq);
  }
}

static void spec_logsparse(spec_query *sq, int i) {
  sq->direct[i] = 1;                                      /* the query itself, once */
  spec_logsparse_side(sq, i, 0, 0);                       /* the past */
  if (!sq->causal) spec_logsparse_side(sq, sq->L - 1 - i, 1, 32);   /* the future, end-aligned */
}

static void spec_build(spec_query *sq, combiner_kind kind, int plan, int i) {
  int j;
  memset(sq->direct, 0, (size_t)sq->L);
  sq->nreg = 0; sq->npos = 0; sq->first[0] = 0; sq->overflowed = 0;
  switch (kind) {
    case COMBINER_FIXED: spec_fixed(sq, i); break;
    case COMBINER_KIND_DEFAULT:   /* COMBINER_DEFAULT_KIND is AXIAL unless defined */
    case COMBINER_AXIAL: spec_axial(sq, i); break;
    case COMBINER_MIXTURE: spec_mixture(sq, plan, i); break;
    case COMBINER_LOGSPARSE: spec_logsparse(sq, i); break;
    default:
      for (j = 0; j < sq->L; ++j) sq->direct[j] = (signed char)spec_attended(sq, i, j);
      break;
  }
}

/* The construction above is itself a partition of the attended set (the
 * SPEC says so; this checks the test's reading of it). */
static int spec_is_partition(const spec_query *sq, int i, int *count) {
  int j, a;
  if (sq->overflowed) return 0;
  for (j = 0; j < sq->L; ++j) count[j] = sq->direct[j];
  for (a = 0; a < sq->npos; ++a) ++count[sq->pos[a]];
  for (j = 0; j < sq->L; ++j)
    if (count[j] != spec_attended(sq, i, j)) return 0;
  for (a = 0; a < sq->nreg; ++a)
    if (sq->id[a] < 1) return 0;
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Check 4: combiner_support_map against the SPEC partition.                 */
/* ------------------------------------------------------------------------ */

#define FIRST_FAIL(flag, buf, ...)                               \
  do {                                                           \
    if (flag) { (flag) = 0; snprintf(buf, sizeof buf, __VA_ARGS__); } \
  } while (0)

enum { MAP_GUARD = 8, MAP_POISON = 0x5a5a5a5a };

/* map[i*L + j] for (kind, plan); NULL (and a failed check) on error. */
static int *support_map(const combiner_config *cfg, int plan, const char *desc) {
  int L = cfg->seq_len, a;
  int *map = (int *)test_alloc(sizeof(int) * ((size_t)L * L + MAP_GUARD));
  combiner_status st;
  int guard_ok = 1;
  for (a = 0; a < L * L + MAP_GUARD; ++a) map[a] = MAP_POISON;
  st = combiner_support_map(cfg, plan, map);
  CHECK(st == COMBINER_OK, "%s plan=%d: support map: %s", desc, plan, combiner_status_string(st));
  for (a = 0; a < MAP_GUARD; ++a)
    if (map[L * L + a] != MAP_POISON) guard_ok = 0;
  CHECK(guard_ok, "%s plan=%d: support map writes past int[L][L]", desc, plan);
  if (st != COMBINER_OK) { free(map); return NULL; }
  return map;
}

static void check_support_map(combiner_kind kind, const char *name, int L, int block, int causal,
                              int plan) {
  combiner_config cfg = test_config(kind, L, 3, 2, 1, block, causal);
  int m = block ? block : 1, i, j, a, b;
  int ok_spec = 1, ok_unattended = 1, ok_direct = 1, ok_region = 1, ok_ids = 1;
  char f_spec[200] = "", f_un[200] = "", f_dir[200] = "", f_reg[240] = "", f_ids[200] = "";
  char desc[120];
  int *map, *count, *hist, hist_cap = 3 * L + 80;
  spec_query sq;
  if (!block) while (m * m < L) ++m;                       /* default: ceil(sqrt(L)) */
  snprintf(desc, sizeof desc, "%s L=%d block=%d causal=%d", name, L, block, causal);
  map = support_map(&cfg, plan, desc);
  if (!map) return;
  ++cov_maps;
  sq = spec_make(L, m, causal);
  count = (int *)test_alloc(sizeof(int) * (size_t)L);
  hist = (int *)test_alloc(sizeof(int) * (size_t)hist_cap);
  for (i = 0; i < L; ++i) {
    const int *row = map + (size_t)i * L;
    spec_build(&sq, kind, plan, i);
    ++cov_map_queries;
    if (!spec_is_partition(&sq, i, count))
      FIRST_FAIL(ok_spec, f_spec, "query %d: the test's SPEC construction is not a partition", i);
    for (a = 0; a < hist_cap; ++a) hist[a] = 0;
    for (j = 0; j < L; ++j)
      if (row[j] >= 1 && row[j] < hist_cap) ++hist[row[j]];
    for (j = 0; j < L; ++j) {
      int att = spec_attended(&sq, i, j);
      if ((row[j] == -1) != !att)
        FIRST_FAIL(ok_unattended, f_un, "i=%d j=%d: map %d, %s", i, j, row[j],
                   att ? "attended" : "not attended (want -1)");
      if ((row[j] == 0) != (sq.direct[j] != 0))
        FIRST_FAIL(ok_direct, f_dir, "i=%d j=%d: map %d, SPEC says %s", i, j, row[j],
                   sq.direct[j] ? "direct (0)" : "not direct");
    }
    /* Every SPEC region is exactly the set of positions of one id >= 1. */
    for (b = 0; b < sq.nreg; ++b) {
      int lo = sq.first[b], hi = sq.first[b + 1], id = row[sq.pos[lo]], same = 1, with_id = 0;
      ++cov_regions;
      for (a = lo; a < hi; ++a)
        if (row[sq.pos[a]] != id) same = 0;
      if (id >= 1 && id < hist_cap) with_id = hist[id];
      else if (id >= 1)
        for (j = 0; j < L; ++j) with_id += row[j] == id;
      if (!same || id < 1 || with_id != hi - lo)
        FIRST_FAIL(ok_region, f_reg,
                   "i=%d: SPEC region of %d positions [%d..%d] (id %d documented) has map ids "
                   "%d..%d (first %d); %d positions of the row carry id %d",
                   i, hi - lo, sq.pos[lo], sq.pos[hi - 1], sq.id[b], row[sq.pos[lo]],
                   row[sq.pos[hi - 1]], id, with_id, id);
      for (a = lo; a < hi; ++a)
        if (row[sq.pos[a]] != sq.id[b])
          FIRST_FAIL(ok_ids, f_ids, "i=%d j=%d: id %d, documented %d", i, sq.pos[a],
                     row[sq.pos[a]], sq.id[b]);
    }
  }
  CHECK(ok_spec, "%s plan=%d: %s", desc, plan, f_spec);
  CHECK(ok_unattended, "%s plan=%d: -1 exactly where not attended: %s", desc, plan, f_un);
  CHECK(ok_direct, "%s plan=%d: 0 exactly on SPEC's direct set: %s", desc, plan, f_dir);
  CHECK(ok_region, "%s plan=%d: each region one id: %s", desc, plan, f_reg);
  CHECK(ok_ids, "%s plan=%d: documented region numbering: %s", desc, plan, f_ids);
  spec_free(&sq);
  free(count); free(hist); free(map);
}

/* The map depends only on kind, L, block, causal and plan: not on heads,
 * widths, pool or options; kind 0 is AXIAL; plan is ignored unless MIXTURE;
 * the two MIXTURE plans cover the same positions and agree on the direct set. */
static void check_map_invariants(int L, int block, int causal) {
  static const combiner_kind kinds[] = {COMBINER_FIXED, COMBINER_AXIAL, COMBINER_MIXTURE,
                                        COMBINER_DENSE, COMBINER_LOGSPARSE};
  size_t ki;
  char desc[120];
  for (ki = 0; ki < sizeof kinds / sizeof kinds[0]; ++ki) {
    combiner_config a = test_config(kinds[ki], L, 3, 2, 1, block, causal);
    combiner_config b = test_config(kinds[ki], L, 7, 4, 4, block, causal);
    int *ma, *mb, *m1, cells = L * L;
    if (!test_kind_selected(kinds[ki])) continue;   /* the whole kind, whatever its options */
    b.pool = COMBINER_POOL_MEAN; b.axial_key = COMBINER_AXIAL_KEY_SELF;
    b.mixture_norm = COMBINER_MIXTURE_AVERAGE; b.value_dim = 2; b.scale = 3.0f;
    snprintf(desc, sizeof desc, "%s L=%d block=%d causal=%d", combiner_kind_string(kinds[ki]), L,
             block, causal);
    ma = support_map(&a, 0, desc);
    mb = support_map(&b, 0, desc);
    m1 = support_map(&a, 1, desc);
    if (ma && mb)
      CHECK(!memcmp(ma, mb, sizeof(int) * (size_t)cells), "%s: map depends on heads/widths/options", desc);
    if (ma && m1) {
      if (kinds[ki] != COMBINER_MIXTURE) {
        CHECK(!memcmp(ma, m1, sizeof(int) * (size_t)cells), "%s: plan 1 changes a non-MIXTURE map", desc);
      } else {
        int c, cover = 1, direct = 1;
        for (c = 0; c < cells; ++c) {
          if ((ma[c] >= 0) != (m1[c] >= 0)) cover = 0;
          if ((ma[c] == 0) != (m1[c] == 0)) direct = 0;
        }
        CHECK(cover, "%s: the two MIXTURE plans cover different positions", desc);
        CHECK(direct, "%s: the two MIXTURE plans disagree on the direct set", desc);
      }
    }
    if (kinds[ki] == COMBINER_AXIAL && ma) {
      combiner_config d = a;
      int *md;
      d.kind = COMBINER_KIND_DEFAULT;
      md = support_map(&d, 0, desc);
      if (md) CHECK(!memcmp(ma, md, sizeof(int) * (size_t)cells), "%s: kind 0 is not AXIAL's map", desc);
      free(md);
    }
    free(ma); free(mb); free(m1);
  }
}

/* SPEC 5b at L = 2^k + 1, spelled out: the last query reaches all of
 * [0, 2^k) through one block of level k; bidirectional, the first query
 * reaches all of [1, 2^k] through one end-aligned block of level k. */
static void check_logsparse_reaches_everything(void) {
  int k;
  if (!test_variant_selected(test_variant_named("logsparse"))) return;
  for (k = 1; k <= 6; ++k) {
    int L = (1 << k) + 1, causal, j;
    for (causal = 0; causal < 2; ++causal) {
      combiner_config cfg = test_config(COMBINER_LOGSPARSE, L, 2, 1, 1, 0, causal);
      char desc[80];
      int *map, past_ok = 1, future_ok = 1;
      snprintf(desc, sizeof desc, "logsparse L=%d causal=%d", L, causal);
      map = support_map(&cfg, 0, desc);
      if (!map) continue;
      for (j = 0; j < L - 1; ++j)
        if (map[(size_t)(L - 1) * L + j] != k) past_ok = 0;
      CHECK(past_ok && map[(size_t)L * L - 1] == 0, "%s: query %d reaches [0, %d) through one block of level %d",
            desc, L - 1, L - 1, k);
      if (!causal) {
        for (j = 1; j < L; ++j)
          if (map[j] != 32 + k) future_ok = 0;
        CHECK(future_ok && map[0] == 0, "%s: query 0 reaches [1, %d] through one end-aligned block of level %d",
              desc, L - 1, k);
      }
      free(map);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Checks 1, 2, 3, 5: the matrix.                                            */
/* ------------------------------------------------------------------------ */

enum { MATRIX_GUARD = 16 };

static void check_matrix(const test_variant *var, int L, int block, int causal, combiner_pool pool,
                         int Hkv, int layout, float scale, test_rng *rng) {
  enum { H = 4, D = 4, DV = 5 };
  combiner_config cfg = test_config(var->kind, L, D, H, Hkv, block, causal);
  combiner_config cv;
  test_tensor q = test_tensor_make(L, H, D, layout), k = test_tensor_make(L, Hkv, D, layout);
  test_tensor v = test_tensor_make(L, Hkv, DV, layout), out = test_tensor_make(L, H, DV, layout);
  size_t cells = (size_t)H * L * L, a;
  float *A = (float *)test_alloc(sizeof(float) * (cells + MATRIX_GUARD));
  double *Av, *qd, *kd, *eye, *Aref, err, mag = 0.0, worst = 0.0, worst_sum = 0.0;
  int h, i, j, x, plans, plan, group = H / Hkv, worst_at[3] = {0, 0, 0};
  int guard_ok = 1, rows_ok = 1, positive_ok = 1, zero_ok = 1, map_ok = 1, struct_ok = 1;
  char desc[200], f_pos[160] = "", f_zero[160] = "", f_map[200] = "", f_struct[240] = "";
  int *maps[2] = {NULL, NULL};
  ref_problem p;
  combiner_status st;

  cfg.axial_key = var->key; cfg.mixture_norm = var->norm; cfg.pool = pool; cfg.scale = scale;
  cfg.q_layout = q.lay; cfg.k_layout = k.lay;
  snprintf(desc, sizeof desc, "%s L=%d block=%d causal=%d pool=%s H=%d Hkv=%d %s scale=%g",
           var->name, L, block, causal, pool == COMBINER_POOL_MEAN ? "mean" : "max", H, Hkv,
           layout_names[layout], (double)scale);
  ++cov_matrix; ++cov_matrix_kind[var->kind]; ++cov_layout[layout]; ++cov_hkv[Hkv];
  test_tensor_fill(&q, rng);
  test_tensor_fill(&k, rng);
  test_tensor_fill(&v, rng);
  for (a = 0; a < cells + MATRIX_GUARD; ++a) A[a] = NAN;   /* an entry not written stays NaN */

  st = combiner_attention_matrix(&cfg, q.data, k.data, A);
  CHECK(st == COMBINER_OK, "%s: attention matrix: %s", desc, combiner_status_string(st));
  for (a = 0; a < MATRIX_GUARD; ++a)
    if (!(A[cells + a] != A[cells + a])) guard_ok = 0;
  CHECK(guard_ok, "%s: the matrix call writes past float[H][L][L]", desc);

  /* 1a. A v equals combiner_attention's output for random v. */
  cv = cfg;
  cv.value_dim = DV; cv.v_layout = v.lay; cv.out_layout = out.lay;
  st = combiner_attention(&cv, q.data, k.data, v.data, out.data, NULL, 0);
  CHECK(st == COMBINER_OK, "%s: attention: %s", desc, combiner_status_string(st));
  Av = (double *)test_alloc(sizeof(double) * (size_t)H * L * DV);
  for (h = 0; h < H; ++h)
    for (i = 0; i < L; ++i)
      for (x = 0; x < DV; ++x) {
        double acc = 0.0;
        for (j = 0; j < L; ++j)
          acc += (double)A[((size_t)h * L + i) * L + j] * test_at(&v, j, h / group)[x];
        Av[((size_t)h * L + i) * DV + x] = acc;
      }
  err = test_rel_error(&out, Av);
  CHECK(err <= TEST_TOLERANCE, "%s: A v differs from combiner_attention by %.3g", desc, err);

  /* 1b. A equals the float64 reference's effective matrix (values e_j). */
  p = test_ref_problem(&cfg);
  p.dv = L;
  qd = test_to_double(&q);
  kd = test_to_double(&k);
  eye = (double *)test_alloc(sizeof(double) * (size_t)Hkv * L * L);
  Aref = (double *)test_alloc(sizeof(double) * cells);
  for (h = 0; h < Hkv; ++h)
    for (j = 0; j < L; ++j)
      for (x = 0; x < L; ++x) eye[((size_t)h * L + j) * L + x] = (double)(x == j);
  ref_attention(&p, qd, kd, eye, Aref);
  for (a = 0; a < cells; ++a) {
    double e = fabs((double)A[a] - Aref[a]);
    if (e != e) e = INFINITY;
    if (fabs(Aref[a]) > mag) mag = fabs(Aref[a]);
    if (e > worst) {
      worst = e;
      worst_at[0] = (int)(a / ((size_t)L * L)); worst_at[1] = (int)(a / (size_t)L % (size_t)L);
      worst_at[2] = (int)(a % (size_t)L);
    }
  }
  err = mag > 0.0 ? worst / mag : worst;
  CHECK(err <= TEST_TOLERANCE,
        "%s: A differs from the float64 reference by %.3g (worst at h=%d i=%d j=%d: got %.9g, "
        "want %.9g)", desc, err, worst_at[0], worst_at[1], worst_at[2],
        (double)A[((size_t)worst_at[0] * L + worst_at[1]) * L + worst_at[2]],
        Aref[((size_t)worst_at[0] * L + worst_at[1]) * L + worst_at[2]]);

  /* 2. SPEC 6 on A. */
  for (h = 0; h < H; ++h)
    for (i = 0; i < L; ++i) {
      const float *row = A + ((size_t)h * L + i) * L;
      double sum = 0.0;
      for (j = 0; j < L; ++j) {
        sum += row[j];
        if (causal && j > i) {
          if (row[j] != 0.0f) FIRST_FAIL(zero_ok, f_zero, "h=%d i=%d j=%d: %.9g", h, i, j, (double)row[j]);
        } else if (!(row[j] > 0.0f)) {
          FIRST_FAIL(positive_ok, f_pos, "h=%d i=%d j=%d: %.9g", h, i, j, (double)row[j]);
        }
      }
      if (!(fabs(sum - 1.0) <= worst_sum)) worst_sum = fabs(sum - 1.0);
      if (!(fabs(sum - 1.0) <= TEST_TOLERANCE)) rows_ok = 0;
    }
  CHECK(rows_ok, "%s: rows of A sum to 1 (worst |sum-1| %.3g)", desc, worst_sum);
  CHECK(positive_ok, "%s: A > 0 on the attended set: %s", desc, f_pos);
  CHECK(zero_ok, "%s: A == 0 above the diagonal: %s", desc, f_zero);

  /* 3. The support map is >= 0 exactly where A > 0, for both MIXTURE plans. */
  plans = var->kind == COMBINER_MIXTURE ? 2 : 1;
  for (plan = 0; plan < plans; ++plan) {
    maps[plan] = support_map(&cfg, plan, desc);
    if (!maps[plan]) continue;
    for (h = 0; h < H; ++h)
      for (i = 0; i < L; ++i)
        for (j = 0; j < L; ++j) {
          int mv = maps[plan][(size_t)i * L + j];
          float av = A[((size_t)h * L + i) * L + j];
          if ((mv >= 0) != (av > 0.0f))
            FIRST_FAIL(map_ok, f_map, "plan %d h=%d i=%d j=%d: map %d, A %.9g", plan, h, i, j, mv,
                       (double)av);
        }
  }
  CHECK(map_ok, "%s: support map >= 0 exactly where A > 0: %s", desc, f_map);

  /* 5. Within a region reached through one shared abstraction,
   * A[i][j] / A[i][region] is p(j | region), whatever the query. */
  if (var->kind == COMBINER_FIXED || var->kind == COMBINER_AXIAL ||
      var->kind == COMBINER_LOGSPARSE) {
    int m = block ? block : 1, nkeys = (L + 2) * (L + 2) + 2 * L, b;
    int *first_query, *first_region;
    spec_query sq;
    double worst_d = 0.0;
    if (!block) while (m * m < L) ++m;
    sq = spec_make(L, m, causal);
    first_query = (int *)test_alloc(sizeof(int) * (size_t)nkeys);
    first_region = (int *)test_alloc(sizeof(int) * (size_t)nkeys);
    for (h = 0; h < H; ++h) {
      const float *Ah = A + (size_t)h * L * L;
      for (b = 0; b < nkeys; ++b) first_query[b] = -1;
      for (i = 0; i < L; ++i) {
        spec_build(&sq, var->kind, 0, i);
        for (b = 0; b < sq.nreg; ++b) {
          int key = sq.shared[b], lo = sq.first[b], hi = sq.first[b + 1], i0, c;
          double s = 0.0, s0 = 0.0;
          if (key < 0 || key >= nkeys) continue;
          if (first_query[key] < 0) {
            first_query[key] = i; first_region[key] = hi - lo;
            if (h == 0) ++cov_shared_groups;
            continue;
          }
          i0 = first_query[key];
          if (first_region[key] != hi - lo) {
            FIRST_FAIL(struct_ok, f_struct, "test bug: abstraction %d has two sizes", key);
            continue;
          }
          for (c = lo; c < hi; ++c) {
            s += Ah[(size_t)i * L + sq.pos[c]];
            s0 += Ah[(size_t)i0 * L + sq.pos[c]];
          }
          for (c = lo; c < hi; ++c) {
            double d;
            j = sq.pos[c];
            d = fabs(Ah[(size_t)i * L + j] / s - Ah[(size_t)i0 * L + j] / s0);
            if (d != d) d = INFINITY;
            if (d > worst_d) worst_d = d;
            if (!(d <= TEST_TOLERANCE))
              FIRST_FAIL(struct_ok, f_struct,
                         "h=%d region id %d [%d..%d]: p(j=%d | region) is %.9g for query %d, "
                         "%.9g for query %d", h, sq.id[b], sq.pos[lo], sq.pos[hi - 1], j,
                         Ah[(size_t)i * L + j] / s, i, Ah[(size_t)i0 * L + j] / s0, i0);
          }
          ++cov_shared_pairs;
        }
      }
    }
    CHECK(struct_ok, "%s: p(j | region) shared by the queries of one abstraction (worst %.3g): %s",
          desc, worst_d, f_struct);
    spec_free(&sq);
    free(first_query); free(first_region);
  }

  free(maps[0]); free(maps[1]);
  free(Av); free(qd); free(kd); free(eye); free(Aref); free(A);
  test_tensor_free(&q); test_tensor_free(&k); test_tensor_free(&v); test_tensor_free(&out);
}

/* The matrix is bit-identical for any thread count and ignores the config's
 * value width and v/out layouts (it has its own [H][L][L] layout). */
static void check_matrix_invariants(const test_variant *var, int L, int block, int causal, test_rng *rng) {
  enum { H = 4, HKV = 2, D = 3 };
  combiner_config cfg = test_config(var->kind, L, D, H, HKV, block, causal), c2;
  test_tensor q = test_tensor_make(L, H, D, LAYOUT_TOKEN_MAJOR);
  test_tensor k = test_tensor_make(L, HKV, D, LAYOUT_TOKEN_MAJOR);
  size_t cells = (size_t)H * L * L;
  float *A1 = (float *)test_alloc(sizeof(float) * cells), *A2 = (float *)test_alloc(sizeof(float) * cells);
  combiner_status s1, s2;
  cfg.axial_key = var->key; cfg.mixture_norm = var->norm;
  test_tensor_fill(&q, rng);
  test_tensor_fill(&k, rng);
  cfg.num_threads = 1;
  s1 = combiner_attention_matrix(&cfg, q.data, k.data, A1);
  c2 = cfg;
  c2.num_threads = 3;
  c2.value_dim = 9;
  c2.v_layout.token_stride = 9 * HKV + 2;
  c2.out_layout.head_stride = 11;
  c2.out_layout.token_stride = 11 * H + 1;
  s2 = combiner_attention_matrix(&c2, q.data, k.data, A2);
  CHECK(s1 == COMBINER_OK && s2 == COMBINER_OK, "%s L=%d: %s / %s", var->name, L,
        combiner_status_string(s1), combiner_status_string(s2));
  CHECK(!memcmp(A1, A2, sizeof(float) * cells),
        "%s L=%d block=%d causal=%d: matrix depends on threads, value_dim or v/out layouts",
        var->name, L, block, causal);
  free(A1); free(A2);
  test_tensor_free(&q); test_tensor_free(&k);
}

/* ------------------------------------------------------------------------ */
/* Check 6: errors.                                                          */
/* ------------------------------------------------------------------------ */

enum { EL = 9, EH = 4, EHKV = 2, ED = 3 };
static float eq[EL * EH * ED], ek[EL * EHKV * ED];
static float ematrix[EH * EL * EL + 8], ematrix_copy[EH * EL * EL + 8];
static int emap[EL * EL + 8], emap_copy[EL * EL + 8];

static combiner_config error_valid(void) {
  return test_config(COMBINER_MIXTURE, EL, ED, EH, EHKV, 3, 0);
}

static void expect_matrix(const combiner_config *cfg, const float *qq, const float *kk, float *mm,
                          combiner_status want, const char *what) {
  combiner_status st;
  size_t a;
  long live = malloc_live;
  for (a = 0; a < sizeof ematrix / sizeof ematrix[0]; ++a) ematrix[a] = -1234.5f;
  memcpy(ematrix_copy, ematrix, sizeof ematrix);
  st = combiner_attention_matrix(cfg, qq, kk, mm);
  ++cov_errors;
  CHECK(st == want, "attention_matrix, %s: got \"%s\", want \"%s\"", what,
        combiner_status_string(st), combiner_status_string(want));
  if (want != COMBINER_OK)
    CHECK(!memcmp(ematrix, ematrix_copy, sizeof ematrix), "attention_matrix, %s: written on failure", what);
  else
    CHECK(memcmp(ematrix, ematrix_copy, sizeof ematrix) != 0, "attention_matrix, %s: no output", what);
  CHECK(malloc_live == live, "attention_matrix, %s: %ld allocations leaked", what, malloc_live - live);
}

static void expect_map(const combiner_config *cfg, int plan, int *mm, combiner_status want,
                       const char *what) {
  combiner_status st;
  size_t a;
  for (a = 0; a < sizeof emap / sizeof emap[0]; ++a) emap[a] = MAP_POISON;
  memcpy(emap_copy, emap, sizeof emap);
  st = combiner_support_map(cfg, plan, mm);
  ++cov_errors;
  CHECK(st == want, "support_map, %s: got \"%s\", want \"%s\"", what, combiner_status_string(st),
        combiner_status_string(want));
  if (want != COMBINER_OK)
    CHECK(!memcmp(emap, emap_copy, sizeof emap), "support_map, %s: written on failure", what);
  else
    CHECK(memcmp(emap, emap_copy, sizeof emap) != 0, "support_map, %s: no output", what);
}

static void check_errors(test_rng *rng) {
  combiner_config c;
  float *big;
  size_t a, qf = sizeof eq / sizeof eq[0], mf = (size_t)EH * EL * EL;
  for (a = 0; a < qf; ++a) eq[a] = test_rng_float(rng);
  for (a = 0; a < sizeof ek / sizeof ek[0]; ++a) ek[a] = test_rng_float(rng);

  c = error_valid();
  expect_matrix(&c, eq, ek, ematrix, COMBINER_OK, "valid");
  expect_map(&c, 0, emap, COMBINER_OK, "valid plan 0");
  expect_map(&c, 1, emap, COMBINER_OK, "valid plan 1");
  expect_matrix(NULL, eq, ek, ematrix, COMBINER_ERR_INVALID_ARGUMENT, "cfg NULL");
  expect_matrix(&c, NULL, ek, ematrix, COMBINER_ERR_INVALID_ARGUMENT, "q NULL");
  expect_matrix(&c, eq, NULL, ematrix, COMBINER_ERR_INVALID_ARGUMENT, "k NULL");
  expect_matrix(&c, eq, ek, NULL, COMBINER_ERR_INVALID_ARGUMENT, "matrix NULL");
  expect_map(NULL, 0, emap, COMBINER_ERR_INVALID_ARGUMENT, "cfg NULL");
  expect_map(&c, 0, NULL, COMBINER_ERR_INVALID_ARGUMENT, "map NULL");
  expect_map(&c, 2, emap, COMBINER_ERR_INVALID_ARGUMENT, "plan 2");
  expect_map(&c, -1, emap, COMBINER_ERR_INVALID_ARGUMENT, "plan -1");
  expect_map(&c, INT_MAX, emap, COMBINER_ERR_INVALID_ARGUMENT, "plan INT_MAX");
  c.kind = COMBINER_FIXED;   /* the plan is checked for every kind */
  expect_map(&c, 2, emap, COMBINER_ERR_INVALID_ARGUMENT, "plan 2 (fixed)");
  expect_map(&c, -1, emap, COMBINER_ERR_INVALID_ARGUMENT, "plan -1 (fixed)");

#define BAD_BOTH(stmt, status)                                    \
  do {                                                            \
    c = error_valid();                                            \
    stmt;                                                         \
    expect_matrix(&c, eq, ek, ematrix, status, #stmt);            \
    expect_map(&c, 0, emap, status, #stmt);                       \
  } while (0)
  BAD_BOTH(c.kind = (combiner_kind)99, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.kind = (combiner_kind)-1, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.seq_len = 0, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.seq_len = -3, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.head_dim = 0, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.value_dim = -1, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.num_heads = 0, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.num_kv_heads = 3, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.num_kv_heads = 8, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.num_kv_heads = -1, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.block = -1, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.num_threads = -2, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.scale = NAN, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.scale = INFINITY, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.pool = (combiner_pool)2, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.axial_key = (combiner_axial_key)2, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.mixture_norm = (combiner_mixture_norm)-1, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.q_layout.token_stride = -1, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.k_layout.head_stride = -ED, COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH((c.q_layout.token_stride = 1, c.q_layout.head_stride = 1), COMBINER_ERR_INVALID_ARGUMENT);
  BAD_BOTH(c.k_layout.token_stride = ED, COMBINER_ERR_INVALID_ARGUMENT);   /* kv heads overlap rows */
#undef BAD_BOTH

  /* Sizes whose byte counts overflow: L*L (and L*L*H) cells. The inputs are
   * never read: the call must stop before. */
  if (sizeof(size_t) >= 8) {
    c = test_config(COMBINER_FIXED, INT_MAX, 1, 1, 1, 0, 1);
    expect_matrix(&c, eq, ek, ematrix, COMBINER_ERR_OVERFLOW, "L = INT_MAX");
    expect_map(&c, 0, emap, COMBINER_ERR_OVERFLOW, "L = INT_MAX");
    c = test_config(COMBINER_DENSE, 1 << 30, 1, 4, 1, 0, 0);   /* L*L*Hkv fits, L*L*H does not */
    expect_matrix(&c, eq, ek, ematrix, COMBINER_ERR_OVERFLOW, "L = 2^30, H = 4");
  }

  /* The matrix may not overlap q or k. One buffer holds q (and k) first and
   * is large enough for the matrix after them. */
  big = (float *)test_alloc(sizeof(float) * (qf + mf + 16));
  for (a = 0; a < qf + mf + 16; ++a) big[a] = -77.0f;
  memcpy(big, eq, sizeof eq);
  {
    float *copy = (float *)test_alloc(sizeof(float) * (qf + mf + 16));
    combiner_status st;
    c = error_valid();
    memcpy(copy, big, sizeof(float) * (qf + mf + 16));
    st = combiner_attention_matrix(&c, big, ek, big + qf - 1);
    ++cov_errors;
    CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "matrix overlapping q: %s", combiner_status_string(st));
    CHECK(!memcmp(big, copy, sizeof(float) * (qf + mf + 16)), "matrix overlapping q: written");
    st = combiner_attention_matrix(&c, eq, big, big + 4);
    ++cov_errors;
    CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "matrix overlapping k: %s", combiner_status_string(st));
    CHECK(!memcmp(big, copy, sizeof(float) * (qf + mf + 16)), "matrix overlapping k: written");
    st = combiner_attention_matrix(&c, big, ek, big + qf);   /* adjacent, not overlapping */
    ++cov_errors;
    CHECK(st == COMBINER_OK, "matrix right after q: %s", combiner_status_string(st));
    free(copy);
  }
  free(big);

  /* A failing allocator: the first (the unit values) or the second (the
   * attention's workspace) allocation. */
  c = error_valid();
  malloc_fail_countdown = 1;
  expect_matrix(&c, eq, ek, ematrix, COMBINER_ERR_OUT_OF_MEMORY, "first allocation fails");
  malloc_fail_countdown = 2;
  expect_matrix(&c, eq, ek, ematrix, COMBINER_ERR_OUT_OF_MEMORY, "second allocation fails");
  malloc_fail_countdown = 0;
  expect_matrix(&c, eq, ek, ematrix, COMBINER_OK, "allocator back");
}

/* The header's promise on combiner_attention_matrix's memory: at most
 * 4*L*L*(Hkv + 6*H) + 16*H*L*(d + 1) + T*(1032*d + 768*L + 35384) + 256 bytes
 * live at once (T scratch slots), and nothing left allocated. */
static void check_matrix_memory(test_rng *rng) {
  static const int Ls[] = {1, 7, 16, 61, 100}, Hkvs[] = {1, 2, 4}, ds[] = {1, 5, 16, 64};
  const int nL = test_quick() ? 4 : 5;   /* quick: without L = 100 */
  const int H = 4;
  int kind, causal, avg, li, hi, di;
  double worst = 0.0;
  for (kind = COMBINER_FIXED; kind <= COMBINER_LOGSPARSE; ++kind)
    for (causal = 0; causal < 2; ++causal)
      for (avg = 0; avg < (kind == COMBINER_MIXTURE ? 2 : 1); ++avg)
        for (li = 0; li < nL; ++li)
          for (hi = 0; hi < 3; ++hi)
            for (di = 0; di < 4; ++di) {
              const size_t L = (size_t)Ls[li], Hkv = (size_t)Hkvs[hi], d = (size_t)ds[di];
              combiner_config cfg = test_config((combiner_kind)kind, (int)L, (int)d, H, (int)Hkv, 0, causal);
              float *q, *k, *mat;
              size_t a, before, bound, T = 1;
              combiner_status st;
              long live = malloc_live;
              cfg.mixture_norm = avg ? COMBINER_MIXTURE_AVERAGE : COMBINER_MIXTURE_JOINT;
              if (!test_config_selected(&cfg)) continue;
              q = (float *)test_alloc(L * H * d * sizeof(float));
              k = (float *)test_alloc(L * Hkv * d * sizeof(float));
              mat = (float *)test_alloc((size_t)H * L * L * sizeof(float));
#if defined(_OPENMP) && !defined(COMBINER_NO_OPENMP)
              T = (size_t)omp_get_max_threads();
#endif
              for (a = 0; a < L * H * d; ++a) q[a] = test_rng_float(rng);
              for (a = 0; a < L * Hkv * d; ++a) k[a] = test_rng_float(rng);
              before = malloc_live_bytes;
              malloc_peak_bytes = before;
              st = combiner_attention_matrix(&cfg, q, k, mat);
              bound = 4 * L * L * (Hkv + 6 * (size_t)H) + 16 * (size_t)H * L * (d + 1) +
                      T * (1032 * d + 768 * L + 35384) + 256;
              CHECK(st == COMBINER_OK && malloc_peak_bytes - before <= bound && malloc_live == live &&
                        malloc_live_bytes == before,
                    "attention_matrix memory, %s causal=%d avg=%d L=%zu Hkv=%zu d=%zu: status %s, peak %zu "
                    "bytes, the header's bound %zu, %ld blocks left",
                    combiner_kind_string(cfg.kind), causal, avg, L, Hkv, d, combiner_status_string(st),
                    malloc_peak_bytes - before, bound, malloc_live - live);
              if ((double)(malloc_peak_bytes - before) / (double)bound > worst)
                worst = (double)(malloc_peak_bytes - before) / (double)bound;
              free(q); free(k); free(mat);
            }
  printf("attention_matrix memory: peak / the header's bound at most %.4f\n", worst);
}

int main(void) {
  static const int lengths[] = {1, 2, 7, 16, 31, 33, 63, 64, 65};   /* 2^k - 1, 2^k, 2^k + 1 */
  static const int hkv_options[3] = {2, 1, 4};
  static const combiner_kind map_kinds[] = {COMBINER_FIXED, COMBINER_AXIAL, COMBINER_MIXTURE,
                                            COMBINER_DENSE, COMBINER_LOGSPARSE,
                                            COMBINER_KIND_DEFAULT};
  test_rng rng = {20240611};
  const test_variant *var;
  size_t li, ki;
  int causal, pool, bi, L, plan, counter = 0;
  clock_t t0 = clock();

  /* Checks 1, 2, 3, 5 over every variant, length, block, mode and pool; GQA
   * group sizes, layouts and scales rotate so that all combinations occur
   * (a variant left out by COMBINER_TEST_KINDS still turns the rotation). */
  TEST_FOR_EACH_VARIANT(var) {
    const int on = test_variant_selected(var);
    for (li = 0; li < sizeof lengths / sizeof lengths[0]; ++li)
      for (bi = 0; bi < 6; ++bi)
        for (causal = 0; causal < 2; ++causal)
          for (pool = 0; pool < 2; ++pool, ++counter) {
            int blocks[6];
            L = lengths[li];
            blocks[0] = 1; blocks[1] = 3; blocks[2] = 5; blocks[3] = 0; blocks[4] = L;
            blocks[5] = L + 4;
            if (on && test_quick_keeps(L, (unsigned)counter))
              check_matrix(var, L, blocks[bi], causal, (combiner_pool)pool, hkv_options[counter % 3],
                           (counter / 3) % LAYOUT_COUNT, (counter / 9) % 2 ? 2.5f : 0.0f, &rng);
          }
  }
  TEST_FOR_EACH_VARIANT(var)
    if (test_variant_selected(var))
      for (causal = 0; causal < 2; ++causal) {
        check_matrix_invariants(var, 23, 5, causal, &rng);
        check_matrix_invariants(var, 40, 0, causal, &rng);
      }

  /* Check 4 (and 3 for the MIXTURE plans) on every length up to 70: the
   * map is the kind's, whatever its options. */
  for (L = 1; L <= 70; ++L) {
    int blocks[8];
    blocks[0] = 1; blocks[1] = 2; blocks[2] = 3; blocks[3] = 5; blocks[4] = 8;
    blocks[5] = 0; blocks[6] = L; blocks[7] = L + 4;
    for (bi = 0; bi < 8; ++bi)
      for (causal = 0; causal < 2; ++causal) {
        for (ki = 0; ki < sizeof map_kinds / sizeof map_kinds[0]; ++ki)
          if (test_kind_selected(map_kinds[ki]))
            for (plan = 0; plan < (map_kinds[ki] == COMBINER_MIXTURE ? 2 : 1); ++plan)
              check_support_map(map_kinds[ki], map_kinds[ki] == COMBINER_KIND_DEFAULT
                                    ? "default" : combiner_kind_string(map_kinds[ki]),
                                L, blocks[bi], causal, plan);
        check_map_invariants(L, blocks[bi], causal);
      }
  }

  check_logsparse_reaches_everything();
  if (test_unfiltered()) check_errors(&rng);   /* bad input belongs to no variant */
  check_matrix_memory(&rng);

  printf("matrix configs %d (fixed %d, axial %d, mixture %d, dense %d, logsparse %d; "
         "layouts %d/%d/%d; Hkv 1/2/4: %d/%d/%d); shared-abstraction groups %ld, pairs %ld\n",
         cov_matrix, cov_matrix_kind[COMBINER_FIXED], cov_matrix_kind[COMBINER_AXIAL],
         cov_matrix_kind[COMBINER_MIXTURE], cov_matrix_kind[COMBINER_DENSE],
         cov_matrix_kind[COMBINER_LOGSPARSE], cov_layout[0], cov_layout[1], cov_layout[2],
         cov_hkv[1], cov_hkv[2], cov_hkv[4], cov_shared_groups, cov_shared_pairs);
  printf("support maps %d (%d queries, %d SPEC regions); error cases %d; %.2f s cpu\n", cov_maps,
         cov_map_queries, cov_regions, cov_errors, (double)(clock() - t0) / CLOCKS_PER_SEC);
  return TEST_SUMMARY();
}
