/* combiner_flops counts 2*(d+dv) per attended term (summaries included).
 * Here the terms are counted independently, by enumerating SPEC's direct
 * sets and non-empty regions per query with explicit cell existence checks. */
#define COMBINER_IMPLEMENTATION
#include "test_common.h"

static int exists(int L, int m, int t, int c) { return c < m && t >= 0 && (long)t * m + c < L; }

/* cells of `region` counted by walking the grid */
static double mixture_terms(int L, int m, int causal) {
  int n = (L - 1) / m + 1, s, u, t, c;
  double terms = 0.0;
  for (s = 0; s < n; ++s)
    for (u = 0; u < m; ++u) {
      if (!exists(L, m, s, u)) continue;
      for (t = 0; t < n; ++t)                             /* 1: column direct */
        if (t != s && exists(L, m, t, u) && (!causal || t < s)) terms += 1;
      for (c = 0; c < m; ++c)                             /* 2: row direct */
        if (exists(L, m, s, c) && (!causal || c <= u)) terms += 1;
      for (c = 0; c < m; ++c) {                           /* 3: column regions */
        int above = 0, below = 0;
        if (c == u) continue;
        for (t = 0; t < n; ++t) {
          if (!exists(L, m, t, c)) continue;
          above += t < s;
          below += t > s;
        }
        terms += (above > 0) + (!causal && below > 0);
      }
      for (t = 0; t < n; ++t) {                           /* 4-5: row regions */
        int left = 0, right = 0;
        if (t == s || (causal && t > s)) continue;
        for (c = 0; c < m; ++c) {
          if (!exists(L, m, t, c)) continue;
          left += c < u;
          right += c > u;
        }
        terms += (left > 0) + (right > 0);
      }
    }
  return terms;
}

static double summary_terms(int kind, int L, int m, int causal) {
  int n = (L - 1) / m + 1, t, c, cols = m < L ? m : L;
  double terms = 0.0;
  for (t = 0; t < n; ++t) {
    int len = t == n - 1 ? L - (n - 1) * m : m;
    if (kind == COMBINER_FIXED) terms += len;
    if (kind == COMBINER_AXIAL) terms += (double)len * len + (!causal && n > 1 && t == n - 1 && len < m ? len : 0);
    if (kind == COMBINER_MIXTURE) terms += (double)len * (len + 1);   /* row prefixes + suffixes */
  }
  if (kind == COMBINER_LOGSPARSE) {      /* every whole aligned block attends to itself */
    int span;
    terms = 0.0;
    for (span = 2; span <= L; span *= 2) terms += (double)(L / span * span) * (causal ? 1 : 2);
    return terms;
  }
  if (kind == COMBINER_MIXTURE)
    for (c = 0; c < cols; ++c) {
      int rows = 0;
      for (t = 0; t < n; ++t) rows += exists(L, m, t, c);
      terms += (double)rows * (rows + 1) / 2 * (causal ? 1 : 2);
    }
  return terms;
}

/* SPEC 5b: per query, the direct positions and one region per set bit
 * l >= 1 (its aligned block is never empty); mirrored for the future. */
static double logsparse_terms(int L, int causal) {
  double terms = 0.0;
  int p, l;
  for (p = 0; p < L; ++p) {
    int rev = L - 1 - p;
    terms += 1 + (p % 2);
    for (l = 1; (1 << l) <= p; ++l) terms += (p >> l) & 1;
    if (!causal) {
      terms += rev % 2;
      for (l = 1; (1 << l) <= rev; ++l) terms += (rev >> l) & 1;
    }
  }
  return terms;
}

static double query_terms(int kind, int L, int m, int causal) {
  int n = (L - 1) / m + 1, i;
  double terms = 0.0;
  if (kind == COMBINER_MIXTURE) return mixture_terms(L, m, causal);
  if (kind == COMBINER_LOGSPARSE) return logsparse_terms(L, causal);
  for (i = 0; i < L; ++i) {
    int r = i / m, len = r == n - 1 ? L - (n - 1) * m : m;
    if (kind == COMBINER_DENSE) terms += causal ? i + 1 : L;
    else terms += causal ? (i % m + 1) + r : len + (n - 1);   /* own block/row + one region per other */
  }
  return terms;
}

int main(void) {
  static const combiner_kind kinds[] = {COMBINER_FIXED, COMBINER_AXIAL, COMBINER_MIXTURE, COMBINER_DENSE,
                                        COMBINER_LOGSPARSE};
  static const int lengths[] = {1, 2, 7, 16, 61, 64, 200}, blocks[] = {1, 3, 8, 0, 300};
  size_t ki, li, bi;
  int causal, wsum;
  /* every kind with both axial keys (only AXIAL reads it); a config runs
   * when its variant is selected */
  for (ki = 0; ki < 5; ++ki)
    for (li = 0; li < 7; ++li)
      for (bi = 0; bi < 5; ++bi)
        for (causal = 0; causal < 2; ++causal)
          for (wsum = 0; wsum < 2; ++wsum) {
            int L = lengths[li], d = 5, dv = 7, H = 3;
            combiner_config cfg = test_config(kinds[ki], L, d, H, 1, blocks[bi], causal), r;
            double want, got, sum_terms;
            cfg.value_dim = dv;
            cfg.axial_key = wsum ? COMBINER_AXIAL_KEY_WSUM : COMBINER_AXIAL_KEY_SELF;
            if (!test_config_selected(&cfg)) continue;
            if (combiner_resolve_config(&cfg, &r) != COMBINER_OK) { CHECK(0, "resolve"); continue; }
            sum_terms = kinds[ki] == COMBINER_DENSE ? 0.0 : summary_terms(kinds[ki], L, r.block, causal);
            want = H * (2.0 * (d + dv) * (query_terms(kinds[ki], L, r.block, causal) + sum_terms));
            if (kinds[ki] == COMBINER_AXIAL && wsum) {
              int n = (L - 1) / r.block + 1, t;
              for (t = 0; t < n; ++t) {
                int len = t == n - 1 ? L - (n - 1) * r.block : r.block;
                want += H * 2.0 * d * (double)len * len;
              }
            }
            got = combiner_flops(&cfg);
            CHECK(fabs(got - want) <= 1e-9 * want, "%s L=%d block=%d causal=%d wsum=%d: flops %.0f, counted %.0f",
                  combiner_kind_string(kinds[ki]), L, r.block, causal, wsum, got, want);
          }
  if (test_unfiltered()) {
    combiner_config bad = test_config(COMBINER_FIXED, 0, 4, 1, 1, 0, 1);
    CHECK(combiner_flops(&bad) == 0.0, "invalid config: 0");
  }
  return TEST_SUMMARY();
}
