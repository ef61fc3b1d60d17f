/* tests/test_reference.c -- self-check of the float64 reference
   (tests/reference.c) against the properties of SPEC.md section 6 and a few
   hand-computed tiny cases. Prints "N passed, M failed" as its last line and
   returns nonzero on failure. COMBINER_TEST_KINDS selects variants by the
   names of test_common.h (the caller-keys variant is "axial-caller": the
   kind name "axial" selects it). */
#include "reference.h"
#include "test_common.h"   /* the variant names and their filter; no kernel is called */

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int n_pass = 0, n_fail = 0;

static void check(int ok, const char *fmt, ...) {
  if (ok) {
    n_pass++;
    return;
  }
  n_fail++;
  if (n_fail <= 60) {
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
  }
}

/* ---- fixed-seed LCG, values in [-1, 1] ---- */
static unsigned long long rng_state = 0x243F6A8885A308D3ULL;
static double urand(void) {
  rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0;
}
static void fill(double *x, size_t n) {
  size_t a;
  for (a = 0; a < n; ++a) x[a] = urand();
}

static double *dalloc(size_t n) {
  double *p = (double *)malloc(sizeof(double) * (n ? n : 1));
  if (!p) abort();
  return p;
}

/* max |a-b| / max(1, |b|) */
static double max_rel_err(const double *a, const double *b, size_t n) {
  double worst = 0.0;
  size_t x;
  for (x = 0; x < n; ++x) {
    double den = fabs(b[x]) > 1.0 ? fabs(b[x]) : 1.0;
    double e = fabs(a[x] - b[x]) / den;
    if (!(e <= worst)) worst = e; /* also catches NaN */
  }
  return worst;
}

/* The reference's variants: test_variants' (under their names there) and
 * Axial with caller keys, which only the reference takes. */
typedef struct variant {
  int kind, key, norm;
  const char *name;
  const char *filter_name;   /* for COMBINER_TEST_KINDS */
} variant;

static const variant variants[] = {
    {REF_FIXED, 0, 0, "FIXED", "fixed"},
    {REF_AXIAL, REF_KEY_WSUM, 0, "AXIAL/WSUM", "axial-wsum"},
    {REF_AXIAL, REF_KEY_SELF, 0, "AXIAL/SELF", "axial-self"},
    {REF_AXIAL, REF_KEY_CALLER, 0, "AXIAL/CALLER", "axial-caller"},
    {REF_MIXTURE, 0, REF_MIX_JOINT, "MIXTURE/JOINT", "mixture-joint"},
    {REF_MIXTURE, 0, REF_MIX_AVERAGE, "MIXTURE/AVERAGE", "mixture-average"},
    {REF_DENSE, 0, 0, "DENSE", "dense"},
};
enum { N_VARIANTS = (int)(sizeof(variants) / sizeof(variants[0])) };

static ref_problem make_problem(const variant *var, int L, int d, int dv, int H, int Hkv, int m, int causal,
                                int pool, const double *ck) {
  ref_problem p;
  memset(&p, 0, sizeof(p));
  p.kind = var->kind;
  p.L = L;
  p.d = d;
  p.dv = dv;
  p.H = H;
  p.Hkv = Hkv;
  p.m = m;
  p.causal = causal;
  p.scale = 1.0 / sqrt((double)d);
  p.pool = pool;
  p.axial_key = var->key;
  p.caller_keys = ck;
  p.mixture_norm = var->norm;
  return p;
}

/* ------------------------------------------------------------------------ */
/* Property tests on random inputs.                                          */
/* ------------------------------------------------------------------------ */
#define CFG_FMT "%s L=%d m=%d d=%d dv=%d H=%d/%d %s pool=%s"
#define CFG_ARGS(var, p) \
  (var)->name, (p).L, (p).m, (p).d, (p).dv, (p).H, (p).Hkv, (p).causal ? "causal" : "bidir", \
      (p).pool == REF_POOL_MEAN ? "mean" : "max"

/* Effective matrix: dv = L, v_j = e_j for every kv head, so out[h][i][j] = A_h[i][j]. */
static void test_effective_matrix(const variant *var, int L, int m, int d, int H, int Hkv, int causal, int pool) {
  double *q = dalloc((size_t)H * L * d), *k = dalloc((size_t)Hkv * L * d);
  double *v = dalloc((size_t)Hkv * L * L), *ck = dalloc((size_t)H * L * d);
  double *out = dalloc((size_t)H * L * L);
  ref_problem p;
  int g, j, h, i, ok = 1;
  double worst_sum = 0.0;
  fill(q, (size_t)H * L * d);
  fill(k, (size_t)Hkv * L * d);
  fill(ck, (size_t)H * L * d);
  for (g = 0; g < Hkv; ++g)
    for (j = 0; j < L; ++j)
      for (i = 0; i < L; ++i) v[((size_t)g * L + j) * L + i] = (i == j) ? 1.0 : 0.0;
  p = make_problem(var, L, d, L, H, Hkv, m, causal, pool, ck);
  ref_attention(&p, q, k, v, out);
  for (h = 0; h < H; ++h)
    for (i = 0; i < L; ++i) {
      const double *A = out + ((size_t)h * L + i) * L;
      double sum = 0.0;
      for (j = 0; j < L; ++j) {
        sum += A[j];
        if (causal && j > i) {
          if (A[j] != 0.0) ok = 0;
        } else {
          if (!(A[j] > 0.0) || !(A[j] <= 1.0)) ok = 0;
        }
      }
      if (!(fabs(sum - 1.0) <= 1e-12)) ok = 0;
      if (!(fabs(sum - 1.0) <= worst_sum)) worst_sum = fabs(sum - 1.0);
    }
  check(ok, "effective matrix " CFG_FMT " (worst |rowsum-1| = %g)", CFG_ARGS(var, p), worst_sum);
  free(q);
  free(k);
  free(v);
  free(ck);
  free(out);
}

static void test_random(const variant *var, int L, int m, int d, int dv, int H, int Hkv, int causal, int pool) {
  size_t nq = (size_t)H * L * d, nk = (size_t)Hkv * L * d, nv = (size_t)Hkv * L * dv, no = (size_t)H * L * dv;
  double *q = dalloc(nq), *k = dalloc(nk), *v = dalloc(nv), *ck = dalloc(nq);
  double *out = dalloc(no), *out2 = dalloc(no);
  ref_problem p;
  fill(q, nq);
  fill(k, nk);
  fill(v, nv);
  fill(ck, nq);
  p = make_problem(var, L, d, dv, H, Hkv, m, causal, pool, ck);
  ref_attention(&p, q, k, v, out);

  /* Causality: perturb q, k, v (and caller keys) at positions > i. */
  /* LOGSPARSE (m unused, cheap): every query i < L-1; others: a few. */
  if (causal) {
    int *cand = (int *)malloc(sizeof(int) * (size_t)(L + 4)), nc = 0, a, b, nraw = 4;
    int *raw = (int *)malloc(sizeof(int) * (size_t)(L + 4));
    if (!cand || !raw) abort();
    raw[0] = 0;
    raw[1] = L / 2;
    raw[2] = L - 2;
    raw[3] = L - 1;
    if (var->kind == REF_LOGSPARSE)
      for (a = 1; a < L; ++a) raw[nraw++] = a;
    for (a = 0; a < nraw; ++a) {
      int dup = 0;
      if (raw[a] < 0 || raw[a] >= L - 1) continue; /* i = L-1 has no later positions */
      for (b = 0; b < nc; ++b)
        if (cand[b] == raw[a]) dup = 1;
      if (!dup) cand[nc++] = raw[a];
    }
    for (a = 0; a < nc; ++a) {
      int i = cand[a], h, g, j, x, same = 1;
      double *q2 = dalloc(nq), *k2 = dalloc(nk), *v2 = dalloc(nv), *ck2 = dalloc(nq);
      ref_problem p2 = p;
      memcpy(q2, q, sizeof(double) * nq);
      memcpy(k2, k, sizeof(double) * nk);
      memcpy(v2, v, sizeof(double) * nv);
      memcpy(ck2, ck, sizeof(double) * nq);
      for (j = i + 1; j < L; ++j) {
        for (h = 0; h < H; ++h)
          for (x = 0; x < d; ++x) {
            q2[((size_t)h * L + j) * d + x] = urand();
            ck2[((size_t)h * L + j) * d + x] = urand();
          }
        for (g = 0; g < Hkv; ++g) {
          for (x = 0; x < d; ++x) k2[((size_t)g * L + j) * d + x] = urand();
          for (x = 0; x < dv; ++x) v2[((size_t)g * L + j) * dv + x] = urand();
        }
      }
      p2.caller_keys = ck2;
      ref_attention(&p2, q2, k2, v2, out2);
      for (h = 0; h < H; ++h)
        for (x = 0; x < dv; ++x)
          if (out2[((size_t)h * L + i) * dv + x] != out[((size_t)h * L + i) * dv + x]) same = 0;
      check(same, "causality at i=%d " CFG_FMT, i, CFG_ARGS(var, p));
      free(q2);
      free(k2);
      free(v2);
      free(ck2);
    }
    free(cand);
    free(raw);
  }

  /* Degenerate blocks: m >= L (all kinds), m == 1 (all but CALLER keys). */
  if (var->kind != REF_DENSE && var->kind != REF_LOGSPARSE && (m >= L || (m == 1 && var->key != REF_KEY_CALLER))) {
    ref_problem pd = p;
    double err;
    pd.kind = REF_DENSE;
    ref_attention(&pd, q, k, v, out2);
    err = max_rel_err(out, out2, no);
    check(err <= 1e-12, "%s equals DENSE " CFG_FMT " (rel err %g)", m >= L ? "m>=L" : "m=1", CFG_ARGS(var, p),
          err);
  }

  /* Caller keys equal to k reproduce SELF; equal to WSUM keys reproduce WSUM. */
  if (var->kind == REF_AXIAL && var->key == REF_KEY_CALLER) {
    int h, i, t, c, cc, x, grp = H / Hkv;
    double *ckk = dalloc(nq);
    ref_problem ps = p, pc = p;
    double err;
    /* (a) SELF */
    for (h = 0; h < H; ++h)
      memcpy(ckk + (size_t)h * L * d, k + (size_t)(h / grp) * L * d, sizeof(double) * (size_t)L * d);
    ps.axial_key = REF_KEY_SELF;
    ps.caller_keys = NULL;
    pc.caller_keys = ckk;
    ref_attention(&ps, q, k, v, out);
    ref_attention(&pc, q, k, v, out2);
    err = max_rel_err(out2, out, no);
    check(err <= 1e-14, "CALLER(k) equals SELF " CFG_FMT " (rel err %g)", CFG_ARGS(var, p), err);
    /* (b) WSUM, keys computed here independently */
    for (h = 0; h < H; ++h) {
      const double *qh = q + (size_t)h * L * d, *kg = k + (size_t)(h / grp) * L * d;
      for (i = 0; i < L; ++i) {
        double w[256], mx = -HUGE_VAL, den = 0.0;
        int lo, hi;
        t = i / m;
        c = i % m;
        (void)c;
        lo = t * m;
        hi = (t + 1) * m < L ? (t + 1) * m : L;
        for (cc = lo; cc < hi; ++cc) {
          double lg = 0.0;
          for (x = 0; x < d; ++x) lg += qh[(size_t)i * d + x] * kg[(size_t)cc * d + x];
          w[cc - lo] = lg * p.scale;
          if (w[cc - lo] > mx) mx = w[cc - lo];
        }
        for (cc = lo; cc < hi; ++cc) {
          w[cc - lo] = exp(w[cc - lo] - mx);
          den += w[cc - lo];
        }
        for (x = 0; x < d; ++x) {
          double acc = 0.0;
          for (cc = lo; cc < hi; ++cc) acc += w[cc - lo] * kg[(size_t)cc * d + x];
          ckk[((size_t)h * L + i) * d + x] = acc / den;
        }
      }
    }
    ps.axial_key = REF_KEY_WSUM;
    ref_attention(&ps, q, k, v, out);
    ref_attention(&pc, q, k, v, out2);
    err = max_rel_err(out2, out, no);
    check(err <= 1e-12, "CALLER(wsum keys) equals WSUM " CFG_FMT " (rel err %g)", CFG_ARGS(var, p), err);
    free(ckk);
  }

  /* Grouped heads: query head h equals a single-head call on (q_h, k_g, v_g). */
  if (H > 1 && L <= 17) {
    int h, grp = H / Hkv, same = 1;
    double *o1 = dalloc((size_t)L * dv);
    ref_problem p1 = p;
    p1.H = 1;
    p1.Hkv = 1;
    ref_attention(&p, q, k, v, out); /* out may have been overwritten above */
    for (h = 0; h < H; ++h) {
      int g = h / grp;
      p1.caller_keys = ck + (size_t)h * L * d;
      ref_attention(&p1, q + (size_t)h * L * d, k + (size_t)g * L * d, v + (size_t)g * L * dv, o1);
      if (memcmp(o1, out + (size_t)h * L * dv, sizeof(double) * (size_t)L * dv) != 0) same = 0;
    }
    check(same, "head grouping " CFG_FMT, CFG_ARGS(var, p));
    free(o1);
  }

  free(q);
  free(k);
  free(v);
  free(ck);
  free(out);
  free(out2);
}

/* ------------------------------------------------------------------------ */
/* Hand-computed tiny cases (d = 1, dv = 1, H = Hkv = 1, scale 0.7).         */
/* Expected values are written from the SPEC formulas with exp() directly.   */
/* ------------------------------------------------------------------------ */
/* sum_t e^{l_t} x_t / sum_t e^{l_t} for an explicit short list */
static double wavg(int n, const double *l, const double *x) {
  double num = 0.0, den = 0.0;
  int t;
  for (t = 0; t < n; ++t) {
    num += exp(l[t]) * x[t];
    den += exp(l[t]);
  }
  return num / den;
}
static double wavg2(double l0, double x0, double l1, double x1) {
  return (exp(l0) * x0 + exp(l1) * x1) / (exp(l0) + exp(l1));
}
static double wavg3(double l0, double x0, double l1, double x1, double l2, double x2) {
  return (exp(l0) * x0 + exp(l1) * x1 + exp(l2) * x2) / (exp(l0) + exp(l1) + exp(l2));
}

static double run1(int kind, int L, int m, int causal, int pool, int key, int norm, const double *q,
                   const double *k, const double *v, const double *ck, int i) {
  ref_problem p;
  double out[16];
  memset(&p, 0, sizeof(p));
  p.kind = kind;
  p.L = L;
  p.d = 1;
  p.dv = 1;
  p.H = 1;
  p.Hkv = 1;
  p.m = m;
  p.causal = causal;
  p.scale = 0.7;
  p.pool = pool;
  p.axial_key = key;
  p.caller_keys = ck;
  p.mixture_norm = norm;
  ref_attention(&p, q, k, v, out);
  return out[i];
}

/* The variant a hand case's name ("axial L5 causal wsum q3") is of. */
static const char *hand_variant(const char *name) {
  static const char *const options[][2] = {{" wsum ", "axial-wsum"}, {" self ", "axial-self"},
                                           {" caller ", "axial-caller"}, {" joint ", "mixture-joint"},
                                           {" average ", "mixture-average"}};
  size_t o;
  for (o = 0; o < sizeof options / sizeof options[0]; ++o)
    if (strstr(name, options[o][0])) return options[o][1];
  return !strncmp(name, "fixed ", 6) ? "fixed" : !strncmp(name, "dense ", 6) ? "dense" : "logsparse";
}

static void hand_check(const char *name, double got, double want) {
  double err = fabs(got - want) / (fabs(want) > 1.0 ? fabs(want) : 1.0);
  if (!test_name_selected(hand_variant(name))) return;
  check(err <= 1e-14, "hand case %s: got %.17g want %.17g", name, got, want);
}

static void hand_cases(void) {
  const double s = 0.7;
  /* 5 positions: blocks/rows of m=2 are [0,1] [2,3] [4] */
  static const double q[5] = {0.3, -0.5, 0.8, -0.9, 0.1};
  static const double k[5] = {0.9, -0.2, 0.4, 0.6, -0.7};
  static const double v[5] = {1.0, -2.0, 0.5, 3.0, -1.5};
  static const double ck[5] = {0.25, -0.35, 0.45, -0.55, 0.65};
  /* 8 positions: rows of m=3 are [0,1,2] [3,4,5] [6,7] */
  static const double q8[8] = {0.3, -0.5, 0.8, -0.9, 0.1, 0.6, -0.4, 0.7};
  static const double k8[8] = {0.9, -0.2, 0.4, 0.6, -0.7, -0.3, 0.5, 0.2};
  static const double v8[8] = {1.0, -2.0, 0.5, 3.0, -1.5, 2.5, -0.5, 1.5};
  static const double ck8[8] = {0.25, -0.35, 0.45, -0.55, 0.65, -0.75, 0.85, -0.95};
  /* 9 positions: rows of m=3 are [0,1,2] [3,4,5] [6,7,8] */
  static const double q9[9] = {0.3, -0.5, 0.8, -0.9, 0.1, 0.6, -0.4, 0.7, 0.2};
  static const double k9[9] = {0.9, -0.2, 0.4, 0.6, -0.7, -0.3, 0.5, 0.2, -0.8};
  static const double v9[9] = {1.0, -2.0, 0.5, 3.0, -1.5, 2.5, -0.5, 1.5, 2.0};

  /* ---------------- FIXED ---------------- */
  {
    /* L=3, m=2, causal, max. Query 0: only itself. */
    hand_check("fixed L3 causal q0", run1(REF_FIXED, 3, 2, 1, REF_POOL_MAX, 0, 0, q, k, v, NULL, 0), v[0]);
    /* Query 1: direct {0,1}. */
    hand_check("fixed L3 causal q1", run1(REF_FIXED, 3, 2, 1, REF_POOL_MAX, 0, 0, q, k, v, NULL, 1),
               wavg2(s * q[1] * k[0], v[0], s * q[1] * k[1], v[1]));
    /* Query 2: direct {2}; block 0: K = max(k0,k1) = 0.9, V = att(max(q0,q1) = 0.3, {0,1}). */
    {
      double Vb0 = wavg2(s * 0.3 * k[0], v[0], s * 0.3 * k[1], v[1]);
      double want = wavg2(s * q[2] * k[2], v[2], s * q[2] * 0.9, Vb0);
      hand_check("fixed L3 causal q2 max",
                 run1(REF_FIXED, 3, 2, 1, REF_POOL_MAX, 0, 0, q, k, v, NULL, 2), want);
      /* bidirectional: block 1 = {2} only, so query 2 is the same */
      hand_check("fixed L3 bidir q2 max", run1(REF_FIXED, 3, 2, 0, REF_POOL_MAX, 0, 0, q, k, v, NULL, 2),
                 want);
    }
    /* Mean pool: K = (0.9 - 0.2)/2 = 0.35, pooled query (0.3 - 0.5)/2 = -0.1. */
    {
      double Vb0 = wavg2(s * -0.1 * k[0], v[0], s * -0.1 * k[1], v[1]);
      hand_check("fixed L3 causal q2 mean",
                 run1(REF_FIXED, 3, 2, 1, REF_POOL_MEAN, 0, 0, q, k, v, NULL, 2),
                 wavg2(s * q[2] * k[2], v[2], s * q[2] * 0.35, Vb0));
    }
    /* L=5, m=2, causal, query 4: direct {4}; block 0 (K 0.9, V att(0.3,{0,1}));
       block 1: K = max(0.4, 0.6) = 0.6, pooled q = max(0.8, -0.9) = 0.8. */
    {
      double V0 = wavg2(s * 0.3 * k[0], v[0], s * 0.3 * k[1], v[1]);
      double V1 = wavg2(s * 0.8 * k[2], v[2], s * 0.8 * k[3], v[3]);
      hand_check("fixed L5 causal q4", run1(REF_FIXED, 5, 2, 1, REF_POOL_MAX, 0, 0, q, k, v, NULL, 4),
                 wavg3(s * q[4] * k[4], v[4], s * q[4] * 0.9, V0, s * q[4] * 0.6, V1));
      /* bidirectional query 2: direct {2,3}; block 0 as above; block 2 = {4}: K k4, V v4. */
      {
        double l[4], x[4];
        l[0] = s * q[2] * k[2]; x[0] = v[2];
        l[1] = s * q[2] * k[3]; x[1] = v[3];
        l[2] = s * q[2] * 0.9;  x[2] = V0;
        l[3] = s * q[2] * k[4]; x[3] = v[4];
        hand_check("fixed L5 bidir q2", run1(REF_FIXED, 5, 2, 0, REF_POOL_MAX, 0, 0, q, k, v, NULL, 2),
                   wavg(4, l, x));
      }
      /* bidirectional query 0: direct {0,1}; block 1 (K 0.6, V1); block 2 (k4, v4). */
      {
        double l[4], x[4];
        l[0] = s * q[0] * k[0]; x[0] = v[0];
        l[1] = s * q[0] * k[1]; x[1] = v[1];
        l[2] = s * q[0] * 0.6;  x[2] = V1;
        l[3] = s * q[0] * k[4]; x[3] = v[4];
        hand_check("fixed L5 bidir q0", run1(REF_FIXED, 5, 2, 0, REF_POOL_MAX, 0, 0, q, k, v, NULL, 0),
                   wavg(4, l, x));
      }
    }
  }

  /* ---------------- AXIAL ---------------- */
  {
    /* L=5, m=2 causal. Row summaries needed:
       cell (0,0): q0 over row {0,1};  cell (0,1): q1 over row {0,1};  cell (1,0): q2 over row {2,3}. */
    double R00 = wavg2(s * q[0] * k[0], v[0], s * q[0] * k[1], v[1]);
    double K00 = wavg2(s * q[0] * k[0], k[0], s * q[0] * k[1], k[1]);
    double R01 = wavg2(s * q[1] * k[0], v[0], s * q[1] * k[1], v[1]);
    double K01 = wavg2(s * q[1] * k[0], k[0], s * q[1] * k[1], k[1]);
    double R10 = wavg2(s * q[2] * k[2], v[2], s * q[2] * k[3], v[3]);
    double K10 = wavg2(s * q[2] * k[2], k[2], s * q[2] * k[3], k[3]);
    double R11 = wavg2(s * q[3] * k[2], v[2], s * q[3] * k[3], v[3]);
    double K11 = wavg2(s * q[3] * k[2], k[2], s * q[3] * k[3], k[3]);
    /* causal query 3 = (1,1): direct {2,3}; row 0 through cell (0,1). */
    hand_check("axial L5 causal wsum q3", run1(REF_AXIAL, 5, 2, 1, REF_POOL_MAX, REF_KEY_WSUM, 0, q, k, v, NULL, 3),
               wavg3(s * q[3] * k[2], v[2], s * q[3] * k[3], v[3], s * q[3] * K01, R01));
    hand_check("axial L5 causal self q3", run1(REF_AXIAL, 5, 2, 1, REF_POOL_MAX, REF_KEY_SELF, 0, q, k, v, NULL, 3),
               wavg3(s * q[3] * k[2], v[2], s * q[3] * k[3], v[3], s * q[3] * k[1], R01));
    hand_check("axial L5 causal caller q3",
               run1(REF_AXIAL, 5, 2, 1, REF_POOL_MAX, REF_KEY_CALLER, 0, q, k, v, ck, 3),
               wavg3(s * q[3] * k[2], v[2], s * q[3] * k[3], v[3], s * q[3] * ck[1], R01));
    /* causal query 4 = (2,0): direct {4}; row 0 through (0,0); row 1 through (1,0). */
    hand_check("axial L5 causal wsum q4", run1(REF_AXIAL, 5, 2, 1, REF_POOL_MAX, REF_KEY_WSUM, 0, q, k, v, NULL, 4),
               wavg3(s * q[4] * k[4], v[4], s * q[4] * K00, R00, s * q[4] * K10, R10));
    hand_check("axial L5 causal caller q4",
               run1(REF_AXIAL, 5, 2, 1, REF_POOL_MAX, REF_KEY_CALLER, 0, q, k, v, ck, 4),
               wavg3(s * q[4] * k[4], v[4], s * q[4] * ck[0], R00, s * q[4] * ck[2], R10));
    /* bidirectional query 1 = (0,1): direct {0,1}; row 1 through (1,1);
       row 2 has no cell (2,1): fixed-style abstraction of row 2 = {4}: K = k4, V = att(q4,{4}) = v4. */
    {
      double l[4], x[4];
      l[0] = s * q[1] * k[0]; x[0] = v[0];
      l[1] = s * q[1] * k[1]; x[1] = v[1];
      l[2] = s * q[1] * K11;  x[2] = R11;
      l[3] = s * q[1] * k[4]; x[3] = v[4];
      hand_check("axial L5 bidir wsum q1",
                 run1(REF_AXIAL, 5, 2, 0, REF_POOL_MAX, REF_KEY_WSUM, 0, q, k, v, NULL, 1), wavg(4, l, x));
      l[2] = s * q[1] * ck[3];
      hand_check("axial L5 bidir caller q1",
                 run1(REF_AXIAL, 5, 2, 0, REF_POOL_MAX, REF_KEY_CALLER, 0, q, k, v, ck, 1), wavg(4, l, x));
    }
    /* bidirectional query 4 = (2,0): direct {4}; rows 0 and 1 through (0,0), (1,0). */
    hand_check("axial L5 bidir wsum q4", run1(REF_AXIAL, 5, 2, 0, REF_POOL_MAX, REF_KEY_WSUM, 0, q, k, v, NULL, 4),
               wavg3(s * q[4] * k[4], v[4], s * q[4] * K00, R00, s * q[4] * K10, R10));
    /* L=8, m=3, bidirectional, caller keys, both pools. Query 2 = (0,2): direct {0,1,2};
       row 1 through (1,2) = pos 5: R = att(q5, {3,4,5}), key ck[5];
       row 2 = {6,7} lacks (2,2): K = pool(k6,k7), V = att(pool(q6,q7), {6,7}). */
    {
      double l3[3], x3[3], l[5], x[5], R12, Kp, Qp, Vp;
      l3[0] = s * q8[5] * k8[3]; x3[0] = v8[3];
      l3[1] = s * q8[5] * k8[4]; x3[1] = v8[4];
      l3[2] = s * q8[5] * k8[5]; x3[2] = v8[5];
      R12 = wavg(3, l3, x3);
      /* max pool: max(0.5, 0.2) = 0.5, max(-0.4, 0.7) = 0.7 */
      Kp = 0.5;
      Qp = 0.7;
      Vp = wavg2(s * Qp * k8[6], v8[6], s * Qp * k8[7], v8[7]);
      l[0] = s * q8[2] * k8[0]; x[0] = v8[0];
      l[1] = s * q8[2] * k8[1]; x[1] = v8[1];
      l[2] = s * q8[2] * k8[2]; x[2] = v8[2];
      l[3] = s * q8[2] * ck8[5]; x[3] = R12;
      l[4] = s * q8[2] * Kp;    x[4] = Vp;
      hand_check("axial L8 m3 bidir caller max q2",
                 run1(REF_AXIAL, 8, 3, 0, REF_POOL_MAX, REF_KEY_CALLER, 0, q8, k8, v8, ck8, 2), wavg(5, l, x));
      /* mean pool: (0.5 + 0.2)/2 = 0.35, (-0.4 + 0.7)/2 = 0.15 */
      Kp = 0.35;
      Qp = 0.15;
      Vp = wavg2(s * Qp * k8[6], v8[6], s * Qp * k8[7], v8[7]);
      l[4] = s * q8[2] * Kp; x[4] = Vp;
      hand_check("axial L8 m3 bidir caller mean q2",
                 run1(REF_AXIAL, 8, 3, 0, REF_POOL_MEAN, REF_KEY_CALLER, 0, q8, k8, v8, ck8, 2), wavg(5, l, x));
    }
  }

  /* ---------------- MIXTURE ---------------- */
  {
    /* Causal, L=9, m=3, query 7 = (s=2, u=1).
       1. column direct (0,1)=1, (1,1)=4;  2. row direct (2,0)=6, (2,1)=7;
       3. column abstractions: c=0 rows 0..1 = {0,3}; c=2 rows 0..1 = {2,5};
       4. left rows t=0: {0}; t=1: {3};   5. right rows t=0: {2}; t=1: {5}. */
    double qi = q9[7];
    /* max pool: K_c0 = max(0.9,0.6)=0.9, Q_c0 = max(0.3,-0.9)=0.3; K_c2 = max(0.4,-0.3)=0.4, Q_c2 = max(0.8,0.6)=0.8 */
    double Vc0 = wavg2(s * 0.3 * k9[0], v9[0], s * 0.3 * k9[3], v9[3]);
    double Vc2 = wavg2(s * 0.8 * k9[2], v9[2], s * 0.8 * k9[5], v9[5]);
    double l[10], x[10], vert, horiz;
    int n = 0;
    l[n] = s * qi * k9[1]; x[n++] = v9[1];
    l[n] = s * qi * k9[4]; x[n++] = v9[4];
    l[n] = s * qi * k9[6]; x[n++] = v9[6];
    l[n] = s * qi * k9[7]; x[n++] = v9[7];
    l[n] = s * qi * 0.9;   x[n++] = Vc0;
    l[n] = s * qi * 0.4;   x[n++] = Vc2;
    vert = wavg(n, l, x);
    l[n] = s * qi * k9[0]; x[n++] = v9[0];
    l[n] = s * qi * k9[3]; x[n++] = v9[3];
    l[n] = s * qi * k9[2]; x[n++] = v9[2];
    l[n] = s * qi * k9[5]; x[n++] = v9[5];
    hand_check("mixture L9 m3 causal joint max q7",
               run1(REF_MIXTURE, 9, 3, 1, REF_POOL_MAX, 0, REF_MIX_JOINT, q9, k9, v9, NULL, 7), wavg(n, l, x));
    /* horizontal plan: direct + left/right singletons (columns-direct order irrelevant) */
    {
      double lh[8], xh[8];
      int a;
      for (a = 0; a < 4; ++a) {
        lh[a] = l[a];
        xh[a] = x[a];
      }
      for (a = 0; a < 4; ++a) {
        lh[4 + a] = l[6 + a];
        xh[4 + a] = x[6 + a];
      }
      horiz = wavg(8, lh, xh);
    }
    hand_check("mixture L9 m3 causal average max q7",
               run1(REF_MIXTURE, 9, 3, 1, REF_POOL_MAX, 0, REF_MIX_AVERAGE, q9, k9, v9, NULL, 7),
               0.5 * vert + 0.5 * horiz);
    /* mean pool: K_c0 = (0.9+0.6)/2 = 0.75, Q_c0 = (0.3-0.9)/2 = -0.3; K_c2 = (0.4-0.3)/2 = 0.05, Q_c2 = 0.7 */
    {
      double Vm0 = wavg2(s * -0.3 * k9[0], v9[0], s * -0.3 * k9[3], v9[3]);
      double Vm2 = wavg2(s * 0.7 * k9[2], v9[2], s * 0.7 * k9[5], v9[5]);
      l[4] = s * qi * 0.75; x[4] = Vm0;
      l[5] = s * qi * 0.05; x[5] = Vm2;
      hand_check("mixture L9 m3 causal joint mean q7",
                 run1(REF_MIXTURE, 9, 3, 1, REF_POOL_MEAN, 0, REF_MIX_JOINT, q9, k9, v9, NULL, 7), wavg(10, l, x));
      hand_check("mixture L9 m3 causal average mean q7",
                 run1(REF_MIXTURE, 9, 3, 1, REF_POOL_MEAN, 0, REF_MIX_AVERAGE, q9, k9, v9, NULL, 7),
                 0.5 * wavg(6, l, x) + 0.5 * horiz);
    }
  }
  {
    /* Causal, L=9, m=3, query 4 = (1,1): col direct {1}; row direct {3,4};
       columns c=0 {0}, c=2 {2}; left t=0 {0}; right t=0 {2}. */
    double qi = q9[4], l[7], x[7];
    int n = 0;
    l[n] = s * qi * k9[1]; x[n++] = v9[1];
    l[n] = s * qi * k9[3]; x[n++] = v9[3];
    l[n] = s * qi * k9[4]; x[n++] = v9[4];
    l[n] = s * qi * k9[0]; x[n++] = v9[0];
    l[n] = s * qi * k9[2]; x[n++] = v9[2];
    l[n] = s * qi * k9[0]; x[n++] = v9[0];
    l[n] = s * qi * k9[2]; x[n++] = v9[2];
    hand_check("mixture L9 m3 causal joint q4",
               run1(REF_MIXTURE, 9, 3, 1, REF_POOL_MAX, 0, REF_MIX_JOINT, q9, k9, v9, NULL, 4), wavg(n, l, x));
  }
  {
    /* Bidirectional, L=8, m=3 (rows [0,1,2] [3,4,5] [6,7]), query 5 = (s=1, u=2).
       1. column direct: (0,2)=2 ((2,2) missing);  2. row direct {3,4,5};
       3. columns c=0: above {0}, below {6};  c=1: above {1}, below {7};
       4. left: t=0 cols 0..1 = {0,1}; t=2 cols 0..min(1,1) = {6,7};  5. right: none (u = m-1). */
    double qi = q8[5];
    /* max pool: left t=0: K = max(0.9,-0.2) = 0.9, Q = max(0.3,-0.5) = 0.3;
                 left t=2: K = max(0.5,0.2) = 0.5, Q = max(-0.4,0.7) = 0.7 */
    double VL0 = wavg2(s * 0.3 * k8[0], v8[0], s * 0.3 * k8[1], v8[1]);
    double VL2 = wavg2(s * 0.7 * k8[6], v8[6], s * 0.7 * k8[7], v8[7]);
    double l[10], x[10], vert, horiz, lh[6], xh[6];
    int n = 0, a;
    l[n] = s * qi * k8[2]; x[n++] = v8[2];
    l[n] = s * qi * k8[3]; x[n++] = v8[3];
    l[n] = s * qi * k8[4]; x[n++] = v8[4];
    l[n] = s * qi * k8[5]; x[n++] = v8[5];
    l[n] = s * qi * k8[0]; x[n++] = v8[0];
    l[n] = s * qi * k8[6]; x[n++] = v8[6];
    l[n] = s * qi * k8[1]; x[n++] = v8[1];
    l[n] = s * qi * k8[7]; x[n++] = v8[7];
    vert = wavg(n, l, x);
    l[n] = s * qi * 0.9; x[n++] = VL0;
    l[n] = s * qi * 0.5; x[n++] = VL2;
    hand_check("mixture L8 m3 bidir joint q5",
               run1(REF_MIXTURE, 8, 3, 0, REF_POOL_MAX, 0, REF_MIX_JOINT, q8, k8, v8, NULL, 5), wavg(n, l, x));
    for (a = 0; a < 4; ++a) {
      lh[a] = l[a];
      xh[a] = x[a];
    }
    lh[4] = l[8]; xh[4] = x[8];
    lh[5] = l[9]; xh[5] = x[9];
    horiz = wavg(6, lh, xh);
    hand_check("mixture L8 m3 bidir average q5",
               run1(REF_MIXTURE, 8, 3, 0, REF_POOL_MAX, 0, REF_MIX_AVERAGE, q8, k8, v8, NULL, 5),
               0.5 * vert + 0.5 * horiz);
  }
  {
    /* Bidirectional, L=8, m=3, query 1 = (0,1).
       1. column direct (1,1)=4, (2,1)=7;  2. row direct {0,1,2};
       3. c=0: above none, below {3,6}; c=2: above none, below {5} ((2,2) missing);
       4. left: t=1 {3}; t=2 {6};  5. right: t=1 {5}; t=2 none (cols >= 2 missing). */
    double qi = q8[1];
    /* c=0 below: K = max(0.6,0.5) = 0.6, Q = max(-0.9,-0.4) = -0.4 */
    double Vc0 = wavg2(s * -0.4 * k8[3], v8[3], s * -0.4 * k8[6], v8[6]);
    double l[10], x[10];
    int n = 0;
    l[n] = s * qi * k8[4]; x[n++] = v8[4];
    l[n] = s * qi * k8[7]; x[n++] = v8[7];
    l[n] = s * qi * k8[0]; x[n++] = v8[0];
    l[n] = s * qi * k8[1]; x[n++] = v8[1];
    l[n] = s * qi * k8[2]; x[n++] = v8[2];
    l[n] = s * qi * 0.6;   x[n++] = Vc0;
    l[n] = s * qi * k8[5]; x[n++] = v8[5];
    l[n] = s * qi * k8[3]; x[n++] = v8[3];
    l[n] = s * qi * k8[6]; x[n++] = v8[6];
    l[n] = s * qi * k8[5]; x[n++] = v8[5];
    hand_check("mixture L8 m3 bidir joint q1",
               run1(REF_MIXTURE, 8, 3, 0, REF_POOL_MAX, 0, REF_MIX_JOINT, q8, k8, v8, NULL, 1), wavg(n, l, x));
  }
  {
    /* Bidirectional, L=8, m=3, query 6 = (2,0), mean pool.
       1. column direct {0,3};  2. row direct {6,7};
       3. c=1: above {1,4}; c=2: above {2,5}; below: none;
       4. left: none (u=0);  5. right: t=0 {1,2}; t=1 {4,5}. */
    double qi = q8[6];
    double Kc1 = (k8[1] + k8[4]) / 2, Qc1 = (q8[1] + q8[4]) / 2;
    double Kc2 = (k8[2] + k8[5]) / 2, Qc2 = (q8[2] + q8[5]) / 2;
    double Kr0 = (k8[1] + k8[2]) / 2, Qr0 = (q8[1] + q8[2]) / 2;
    double Kr1 = (k8[4] + k8[5]) / 2, Qr1 = (q8[4] + q8[5]) / 2;
    double Vc1 = wavg2(s * Qc1 * k8[1], v8[1], s * Qc1 * k8[4], v8[4]);
    double Vc2 = wavg2(s * Qc2 * k8[2], v8[2], s * Qc2 * k8[5], v8[5]);
    double Vr0 = wavg2(s * Qr0 * k8[1], v8[1], s * Qr0 * k8[2], v8[2]);
    double Vr1 = wavg2(s * Qr1 * k8[4], v8[4], s * Qr1 * k8[5], v8[5]);
    double l[8], x[8], lh[6], xh[6], vert, horiz;
    int n = 0, a;
    l[n] = s * qi * k8[0]; x[n++] = v8[0];
    l[n] = s * qi * k8[3]; x[n++] = v8[3];
    l[n] = s * qi * k8[6]; x[n++] = v8[6];
    l[n] = s * qi * k8[7]; x[n++] = v8[7];
    l[n] = s * qi * Kc1;   x[n++] = Vc1;
    l[n] = s * qi * Kc2;   x[n++] = Vc2;
    vert = wavg(n, l, x);
    l[n] = s * qi * Kr0;   x[n++] = Vr0;
    l[n] = s * qi * Kr1;   x[n++] = Vr1;
    hand_check("mixture L8 m3 bidir joint mean q6",
               run1(REF_MIXTURE, 8, 3, 0, REF_POOL_MEAN, 0, REF_MIX_JOINT, q8, k8, v8, NULL, 6), wavg(n, l, x));
    for (a = 0; a < 4; ++a) {
      lh[a] = l[a];
      xh[a] = x[a];
    }
    lh[4] = l[6]; xh[4] = x[6];
    lh[5] = l[7]; xh[5] = x[7];
    horiz = wavg(6, lh, xh);
    hand_check("mixture L8 m3 bidir average mean q6",
               run1(REF_MIXTURE, 8, 3, 0, REF_POOL_MEAN, 0, REF_MIX_AVERAGE, q8, k8, v8, NULL, 6),
               0.5 * vert + 0.5 * horiz);
  }
  {
    /* Bidirectional, L=7, m=3 (rows [0,1,2] [3,4,5] [6]), query 2 = (0,2), max pool.
       Clamping of the short last row: its left region for column u=2 is
       columns 0..min(1, 0) = {6} (cell (2,1) does not exist).
       1. column direct (1,2)=5 ((2,2) missing);  2. row direct {0,1,2};
       3. c=0: above none, below {3,6}: K = max(0.6,0.5) = 0.6, Q = max(-0.9,-0.4) = -0.4;
          c=1: above none, below {4} ((2,1) missing);
       4. left: t=1 cols 0..1 = {3,4}: K = max(0.6,-0.7) = 0.6, Q = max(-0.9,0.1) = 0.1;
                t=2 = {6};
       5. right: none (u = m-1). */
    double qi = q8[2];
    double Vc0 = wavg2(s * -0.4 * k8[3], v8[3], s * -0.4 * k8[6], v8[6]);
    double VL1 = wavg2(s * 0.1 * k8[3], v8[3], s * 0.1 * k8[4], v8[4]);
    double l[8], x[8], lh[6], xh[6], vert, horiz;
    int n = 0, a;
    l[n] = s * qi * k8[5]; x[n++] = v8[5];
    l[n] = s * qi * k8[0]; x[n++] = v8[0];
    l[n] = s * qi * k8[1]; x[n++] = v8[1];
    l[n] = s * qi * k8[2]; x[n++] = v8[2];
    l[n] = s * qi * 0.6;   x[n++] = Vc0;
    l[n] = s * qi * k8[4]; x[n++] = v8[4];
    vert = wavg(n, l, x);
    l[n] = s * qi * 0.6;   x[n++] = VL1;
    l[n] = s * qi * k8[6]; x[n++] = v8[6];
    hand_check("mixture L7 m3 bidir joint q2",
               run1(REF_MIXTURE, 7, 3, 0, REF_POOL_MAX, 0, REF_MIX_JOINT, q8, k8, v8, NULL, 2), wavg(n, l, x));
    for (a = 0; a < 4; ++a) {
      lh[a] = l[a];
      xh[a] = x[a];
    }
    lh[4] = l[6]; xh[4] = x[6];
    lh[5] = l[7]; xh[5] = x[7];
    horiz = wavg(6, lh, xh);
    hand_check("mixture L7 m3 bidir average q2",
               run1(REF_MIXTURE, 7, 3, 0, REF_POOL_MAX, 0, REF_MIX_AVERAGE, q8, k8, v8, NULL, 2),
               0.5 * vert + 0.5 * horiz);
  }
  {
    /* Bidirectional, L=5, m=2 (rows [0,1] [2,3] [4]), query 1 = (0,1), max pool.
       1. column direct (1,1)=3;  2. row direct {0,1};
       3. c=0: below {2,4}: K = max(0.4,-0.7) = 0.4, Q = max(0.8,0.1) = 0.8;
       4. left: t=1 {2}; t=2 cols 0..min(0,0) = {4};  5. right: none. */
    double qi = q[1];
    double Vc0 = wavg2(s * 0.8 * k[2], v[2], s * 0.8 * k[4], v[4]);
    double l[7], x[7];
    int n = 0;
    l[n] = s * qi * k[3]; x[n++] = v[3];
    l[n] = s * qi * k[0]; x[n++] = v[0];
    l[n] = s * qi * k[1]; x[n++] = v[1];
    l[n] = s * qi * 0.4;  x[n++] = Vc0;
    l[n] = s * qi * k[2]; x[n++] = v[2];
    l[n] = s * qi * k[4]; x[n++] = v[4];
    hand_check("mixture L5 m2 bidir joint q1",
               run1(REF_MIXTURE, 5, 2, 0, REF_POOL_MAX, 0, REF_MIX_JOINT, q, k, v, NULL, 1), wavg(n, l, x));
  }
  {
    /* DENSE sanity: L=3 causal query 2 and bidirectional query 0. */
    double l[3], x[3];
    l[0] = s * q[2] * k[0]; x[0] = v[0];
    l[1] = s * q[2] * k[1]; x[1] = v[1];
    l[2] = s * q[2] * k[2]; x[2] = v[2];
    hand_check("dense L3 causal q2", run1(REF_DENSE, 3, 2, 1, REF_POOL_MAX, 0, 0, q, k, v, NULL, 2), wavg(3, l, x));
    l[0] = s * q[0] * k[0];
    l[1] = s * q[0] * k[1];
    l[2] = s * q[0] * k[2];
    hand_check("dense L3 bidir q0", run1(REF_DENSE, 3, 2, 0, REF_POOL_MAX, 0, 0, q, k, v, NULL, 0), wavg(3, l, x));
  }
}

/* ------------------------------------------------------------------------ */
/* LOGSPARSE (SPEC section 5b).                                              */
/* ------------------------------------------------------------------------ */
static const variant logsparse_var = {REF_LOGSPARSE, 0, 0, "LOGSPARSE", "logsparse"};

/* Independent description of the partition, not a copy of the reference's
   construction. For a query at index pp and an earlier index jj < pp (in the
   causal direction), let l be the highest bit where pp and jj differ (pp has
   a 1 there, jj a 0). Then jj lies in the aligned block of bit l,
   [(floor(pp/2^l) - 1)*2^l, floor(pp/2^l)*2^l), of size 2^l; l = 0 is the
   direct position pp-1 (pp odd), "size" 1. Number of softmax terms of one
   side: (pp odd) + popcount(pp >> 1). */
static int ls_region_size(int pp, int jj) {
  int x = pp ^ jj, sz = 1;
  while (x > 1) {
    x >>= 1;
    sz <<= 1;
  }
  return sz;
}
static int ls_side_terms(int pp) {
  int n = pp & 1, x = pp >> 1;
  while (x) {
    n += x & 1;
    x >>= 1;
  }
  return n;
}

/* With all keys zero every logit is exactly 0, so every softmax term has the
   same weight and every att() is a plain average: with one-hot values,
   A[i][j] = 1 / (T_i * size of the term containing j), T_i = number of terms.
   This checks the exact partition (no position missing or counted twice). */
static void test_logsparse_structure(int L, int d, int H, int Hkv, int causal, int pool) {
  double *q = dalloc((size_t)H * L * d), *k = dalloc((size_t)Hkv * L * d);
  double *v = dalloc((size_t)Hkv * L * L), *out = dalloc((size_t)H * L * L), *out3 = dalloc((size_t)H * L * L);
  ref_problem p;
  int g, j, h, i, ok = 1, same;
  double worst = 0.0;
  fill(q, (size_t)H * L * d);
  memset(k, 0, sizeof(double) * (size_t)Hkv * L * d);
  for (g = 0; g < Hkv; ++g)
    for (j = 0; j < L; ++j)
      for (i = 0; i < L; ++i) v[((size_t)g * L + j) * L + i] = (i == j) ? 1.0 : 0.0;
  p = make_problem(&logsparse_var, L, d, L, H, Hkv, 0, causal, pool, NULL);
  ref_attention(&p, q, k, v, out);
  for (h = 0; h < H; ++h)
    for (i = 0; i < L; ++i) {
      const double *A = out + ((size_t)h * L + i) * L;
      int T = 1 + ls_side_terms(i) + (causal ? 0 : ls_side_terms(L - 1 - i));
      for (j = 0; j < L; ++j) {
        double want, e;
        if (j == i) want = 1.0 / T;
        else if (j < i) want = 1.0 / ((double)T * ls_region_size(i, j));
        else if (causal) want = 0.0;
        else want = 1.0 / ((double)T * ls_region_size(L - 1 - i, L - 1 - j));
        e = fabs(A[j] - want) / (want > 0.0 ? want : 1.0);
        if (want == 0.0 && A[j] != 0.0) ok = 0;
        if (!(e <= 1e-14)) ok = 0;
        if (!(e <= worst)) worst = e;
      }
    }
  check(ok, "logsparse partition (k=0) L=%d d=%d H=%d/%d %s pool=%s (worst rel err %g)", L, d, H, Hkv,
        causal ? "causal" : "bidir", pool == REF_POOL_MEAN ? "mean" : "max", worst);
  /* m is unused: any m gives bit-identical output */
  fill(k, (size_t)Hkv * L * d);
  ref_attention(&p, q, k, v, out);
  p.m = 3;
  ref_attention(&p, q, k, v, out3);
  same = memcmp(out, out3, sizeof(double) * (size_t)H * L * L) == 0;
  check(same, "logsparse ignores m, L=%d %s", L, causal ? "causal" : "bidir");
  free(q);
  free(k);
  free(v);
  free(out);
  free(out3);
}

/* Bidirectional mirror symmetry: reversing the sequence reverses the output
   (the future side is the causal construction on the reversed sequence). */
static void test_logsparse_mirror(int L, int d, int dv, int H, int Hkv, int pool) {
  size_t nq = (size_t)H * L * d, nk = (size_t)Hkv * L * d, nv = (size_t)Hkv * L * dv, no = (size_t)H * L * dv;
  double *q = dalloc(nq), *k = dalloc(nk), *v = dalloc(nv), *out = dalloc(no);
  double *qr = dalloc(nq), *kr = dalloc(nk), *vr = dalloc(nv), *outr = dalloc(no), *back = dalloc(no);
  ref_problem p = make_problem(&logsparse_var, L, d, dv, H, Hkv, 0, 0, pool, NULL);
  int h, g, i;
  double err;
  fill(q, nq);
  fill(k, nk);
  fill(v, nv);
  for (h = 0; h < H; ++h)
    for (i = 0; i < L; ++i)
      memcpy(qr + ((size_t)h * L + (L - 1 - i)) * d, q + ((size_t)h * L + i) * d, sizeof(double) * (size_t)d);
  for (g = 0; g < Hkv; ++g)
    for (i = 0; i < L; ++i) {
      memcpy(kr + ((size_t)g * L + (L - 1 - i)) * d, k + ((size_t)g * L + i) * d, sizeof(double) * (size_t)d);
      memcpy(vr + ((size_t)g * L + (L - 1 - i)) * dv, v + ((size_t)g * L + i) * dv, sizeof(double) * (size_t)dv);
    }
  ref_attention(&p, q, k, v, out);
  ref_attention(&p, qr, kr, vr, outr);
  for (h = 0; h < H; ++h)
    for (i = 0; i < L; ++i)
      memcpy(back + ((size_t)h * L + i) * dv, outr + ((size_t)h * L + (L - 1 - i)) * dv, sizeof(double) * (size_t)dv);
  err = max_rel_err(back, out, no);
  check(err <= 1e-12, "logsparse bidir mirror symmetry L=%d d=%d dv=%d H=%d/%d pool=%s (rel err %g)", L, d, dv, H,
        Hkv, pool == REF_POOL_MEAN ? "mean" : "max", err);
  free(q);
  free(k);
  free(v);
  free(out);
  free(qr);
  free(kr);
  free(vr);
  free(outr);
  free(back);
}

/* L = 2^k + 1: the last query p = 2^k has only bit k set; its one region is
   the top-level block [0, 2^k), i.e. every earlier position (the authors'
   code misses this top level). Random q, k; one-hot values. In bidirectional
   mode the first query is the mirror case (region = everything after it). */
static void test_logsparse_pow2_plus_one(void) {
  static const int Ls[] = {2, 3, 5, 9, 17, 33, 65, 129};
  int li, pool, causal;
  for (li = 0; li < (int)(sizeof(Ls) / sizeof(Ls[0])); ++li)
    for (causal = 0; causal < 2; ++causal)
      for (pool = 0; pool < 2; ++pool) {
        int L = Ls[li], d = 3, j, ok = 1, i = causal ? L - 1 : 0;
        double *q = dalloc((size_t)L * d), *k = dalloc((size_t)L * d), *v = dalloc((size_t)L * L);
        double *out = dalloc((size_t)L * L), sum = 0.0;
        ref_problem p = make_problem(&logsparse_var, L, d, L, 1, 1, 0, causal, pool, NULL);
        const double *A;
        fill(q, (size_t)L * d);
        fill(k, (size_t)L * d);
        for (j = 0; j < L * L; ++j) v[j] = (j / L == j % L) ? 1.0 : 0.0;
        ref_attention(&p, q, k, v, out);
        A = out + (size_t)i * L;
        for (j = 0; j < L; ++j) {
          sum += A[j];
          if (!(A[j] > 0.0)) ok = 0;
        }
        if (!(fabs(sum - 1.0) <= 1e-12)) ok = 0;
        check(ok, "logsparse L=2^k+1=%d %s query %d attends every position (pool=%s)", L,
              causal ? "causal" : "bidir", i, pool == REF_POOL_MEAN ? "mean" : "max");
        free(q);
        free(k);
        free(v);
        free(out);
      }
}

static void hand_cases_logsparse(void) {
  const double s = 0.7;
  static const double q[5] = {0.3, -0.5, 0.8, -0.9, 0.1};
  static const double k[5] = {0.9, -0.2, 0.4, 0.6, -0.7};
  static const double v[5] = {1.0, -2.0, 0.5, 3.0, -1.5};
  static const double q8[8] = {0.3, -0.5, 0.8, -0.9, 0.1, 0.6, -0.4, 0.7};
  static const double k8[8] = {0.9, -0.2, 0.4, 0.6, -0.7, -0.3, 0.5, 0.2};
  static const double v8[8] = {1.0, -2.0, 0.5, 3.0, -1.5, 2.5, -0.5, 1.5};
  const int LS = REF_LOGSPARSE, MX = REF_POOL_MAX, MN = REF_POOL_MEAN;
  /* att over {0,1} with pooled query 0.3 (max) or -0.1 (mean) */
  double V01max = wavg2(s * 0.3 * k[0], v[0], s * 0.3 * k[1], v[1]);
  double V01mean = wavg2(s * -0.1 * k[0], v[0], s * -0.1 * k[1], v[1]);
  /* att over {0,1,2,3}: max pooled query 0.8, key 0.9; mean pooled query -0.075, key 0.425 */
  double l4[4], x4[4], V03max, V03mean;
  int a;
  for (a = 0; a < 4; ++a) {
    l4[a] = s * 0.8 * k[a];
    x4[a] = v[a];
  }
  V03max = wavg(4, l4, x4);
  for (a = 0; a < 4; ++a) l4[a] = s * -0.075 * k[a];
  V03mean = wavg(4, l4, x4);

  /* L=1: the query alone. L=2 causal query 1: direct {1, 0} (p odd). */
  hand_check("logsparse L1 q0", run1(LS, 1, 0, 1, MX, 0, 0, q, k, v, NULL, 0), v[0]);
  hand_check("logsparse L2 causal q1", run1(LS, 2, 0, 1, MX, 0, 0, q, k, v, NULL, 1),
             wavg2(s * q[1] * k[1], v[1], s * q[1] * k[0], v[0]));
  /* L=2 bidir query 0: p' = 1 is odd, so p+1 = 1 is direct. */
  hand_check("logsparse L2 bidir q0", run1(LS, 2, 0, 0, MX, 0, 0, q, k, v, NULL, 0),
             wavg2(s * q[0] * k[0], v[0], s * q[0] * k[1], v[1]));
  /* L=3 causal query 2 = 0b10: direct {2}; bit 1: block [0,2). */
  hand_check("logsparse L3 causal q2 max", run1(LS, 3, 0, 1, MX, 0, 0, q, k, v, NULL, 2),
             wavg2(s * q[2] * k[2], v[2], s * q[2] * 0.9, V01max));
  /* L=4 causal query 3 = 0b11: direct {3, 2}; bit 1: block [0,2): K = max(0.9,-0.2) = 0.9, Q = 0.3. */
  hand_check("logsparse L4 causal q3 max", run1(LS, 4, 0, 1, MX, 0, 0, q, k, v, NULL, 3),
             wavg3(s * q[3] * k[3], v[3], s * q[3] * k[2], v[2], s * q[3] * 0.9, V01max));
  /* mean: K = (0.9 - 0.2)/2 = 0.35, Q = (0.3 - 0.5)/2 = -0.1 */
  hand_check("logsparse L4 causal q3 mean", run1(LS, 4, 0, 1, MN, 0, 0, q, k, v, NULL, 3),
             wavg3(s * q[3] * k[3], v[3], s * q[3] * k[2], v[2], s * q[3] * 0.35, V01mean));
  /* L=5 causal query 4 = 0b100: direct {4}; bit 2: the top-level block [0,4):
     max K = max(0.9,-0.2,0.4,0.6) = 0.9, Q = max(0.3,-0.5,0.8,-0.9) = 0.8;
     mean K = 1.7/4 = 0.425, Q = -0.3/4 = -0.075. */
  hand_check("logsparse L5 causal q4 max", run1(LS, 5, 0, 1, MX, 0, 0, q, k, v, NULL, 4),
             wavg2(s * q[4] * k[4], v[4], s * q[4] * 0.9, V03max));
  hand_check("logsparse L5 causal q4 mean", run1(LS, 5, 0, 1, MN, 0, 0, q, k, v, NULL, 4),
             wavg2(s * q[4] * k[4], v[4], s * q[4] * 0.425, V03mean));
  /* L=7 causal query 6 = 0b110: direct {6}; bit 1: block [4,6); bit 2: block [0,4).
     max:  [4,6) K = max(-0.7,-0.3) = -0.3, Q = max(0.1,0.6) = 0.6;  [0,4) K 0.9, Q 0.8.
     mean: [4,6) K = -0.5, Q = 0.35;                                  [0,4) K 0.425, Q -0.075. */
  {
    double V45max = wavg2(s * 0.6 * k8[4], v8[4], s * 0.6 * k8[5], v8[5]);
    double V45mean = wavg2(s * 0.35 * k8[4], v8[4], s * 0.35 * k8[5], v8[5]);
    hand_check("logsparse L7 causal q6 max", run1(LS, 7, 0, 1, MX, 0, 0, q8, k8, v8, NULL, 6),
               wavg3(s * q8[6] * k8[6], v8[6], s * q8[6] * -0.3, V45max, s * q8[6] * 0.9, V03max));
    hand_check("logsparse L7 causal q6 mean", run1(LS, 7, 0, 1, MN, 0, 0, q8, k8, v8, NULL, 6),
               wavg3(s * q8[6] * k8[6], v8[6], s * q8[6] * -0.5, V45mean, s * q8[6] * 0.425, V03mean));
    /* L=7 causal query 5 = 0b101: direct {5, 4}; bit 2: block [0,4). */
    hand_check("logsparse L7 causal q5 max", run1(LS, 7, 0, 1, MX, 0, 0, q8, k8, v8, NULL, 5),
               wavg3(s * q8[5] * k8[5], v8[5], s * q8[5] * k8[4], v8[4], s * q8[5] * 0.9, V03max));
  }
  /* Bidirectional L=5 query 1: past p = 1 (odd): direct {1, 0}. Future p' = 3 = 0b11:
     odd -> direct p+1 = 2; bit 1: reversed block [0,2) = original {4, 3}:
     max K = max(0.6,-0.7) = 0.6, Q = max(-0.9,0.1) = 0.1. */
  {
    double V34 = wavg2(s * 0.1 * k[3], v[3], s * 0.1 * k[4], v[4]);
    double l[4], x[4];
    l[0] = s * q[1] * k[1]; x[0] = v[1];
    l[1] = s * q[1] * k[0]; x[1] = v[0];
    l[2] = s * q[1] * k[2]; x[2] = v[2];
    l[3] = s * q[1] * 0.6;  x[3] = V34;
    hand_check("logsparse L5 bidir q1 max", run1(LS, 5, 0, 0, MX, 0, 0, q, k, v, NULL, 1), wavg(4, l, x));
  }
  /* Bidirectional L=5 query 0: past empty; future p' = 4 = 0b100: bit 2:
     reversed block [0,4) = original {1,2,3,4}: max K = max(-0.2,0.4,0.6,-0.7) = 0.6,
     Q = max(-0.5,0.8,-0.9,0.1) = 0.8. */
  {
    double l[4], x[4], V14;
    for (a = 0; a < 4; ++a) {
      l[a] = s * 0.8 * k[a + 1];
      x[a] = v[a + 1];
    }
    V14 = wavg(4, l, x);
    hand_check("logsparse L5 bidir q0 max", run1(LS, 5, 0, 0, MX, 0, 0, q, k, v, NULL, 0),
               wavg2(s * q[0] * k[0], v[0], s * q[0] * 0.6, V14));
  }
  /* Bidirectional L=8 query 2: past p = 2 = 0b10: direct {2}; bit 1: block [0,2).
     Future p' = 5 = 0b101: odd -> direct 3; bit 2: reversed block [0,4) = original {4,5,6,7}:
     max K = max(-0.7,-0.3,0.5,0.2) = 0.5, Q = max(0.1,0.6,-0.4,0.7) = 0.7. */
  {
    double l[4], x[4], V47;
    for (a = 0; a < 4; ++a) {
      l[a] = s * 0.7 * k8[a + 4];
      x[a] = v8[a + 4];
    }
    V47 = wavg(4, l, x);
    l[0] = s * q8[2] * k8[2]; x[0] = v8[2];
    l[1] = s * q8[2] * k8[3]; x[1] = v8[3];
    l[2] = s * q8[2] * 0.9;   x[2] = V01max;
    l[3] = s * q8[2] * 0.5;   x[3] = V47;
    hand_check("logsparse L8 bidir q2 max", run1(LS, 8, 0, 0, MX, 0, 0, q8, k8, v8, NULL, 2), wavg(4, l, x));
  }
  /* Bidirectional L=8 query 5, mean: past p = 5 = 0b101: direct {5, 4}; bit 2: block [0,4)
     (K 0.425, Q -0.075). Future p' = 2 = 0b10: bit 1: reversed block [0,2) = original {7, 6}:
     K = (0.5 + 0.2)/2 = 0.35, Q = (-0.4 + 0.7)/2 = 0.15. */
  {
    double V67 = wavg2(s * 0.15 * k8[6], v8[6], s * 0.15 * k8[7], v8[7]);
    double l[4], x[4];
    l[0] = s * q8[5] * k8[5]; x[0] = v8[5];
    l[1] = s * q8[5] * k8[4]; x[1] = v8[4];
    l[2] = s * q8[5] * 0.425; x[2] = V03mean;
    l[3] = s * q8[5] * 0.35;  x[3] = V67;
    hand_check("logsparse L8 bidir q5 mean", run1(LS, 8, 0, 0, MN, 0, 0, q8, k8, v8, NULL, 5), wavg(4, l, x));
  }
  /* Bidirectional L=7 query 3 (the middle): past p = 3: direct {3, 2}, block [0,2).
     Future p' = 3: odd -> direct 4; bit 1: reversed block [0,2) = original {6, 5}:
     max K = max(-0.3,0.5) = 0.5, Q = max(0.6,-0.4) = 0.6. */
  {
    double V56 = wavg2(s * 0.6 * k8[5], v8[5], s * 0.6 * k8[6], v8[6]);
    double l[5], x[5];
    l[0] = s * q8[3] * k8[3]; x[0] = v8[3];
    l[1] = s * q8[3] * k8[2]; x[1] = v8[2];
    l[2] = s * q8[3] * k8[4]; x[2] = v8[4];
    l[3] = s * q8[3] * 0.9;   x[3] = V01max;
    l[4] = s * q8[3] * 0.5;   x[4] = V56;
    hand_check("logsparse L7 bidir q3 max", run1(LS, 7, 0, 0, MX, 0, 0, q8, k8, v8, NULL, 3), wavg(5, l, x));
  }
}

int main(void) {
  static const int Ls[] = {1, 2, 3, 7, 16, 17, 61};
  static const int ds[] = {1, 5};
  static const int dvs[] = {1, 3};
  static const int Hs[][2] = {{1, 1}, {4, 2}};
  int li, mi, di, dvi, hi, vi, causal, pool;

  hand_cases();

  for (li = 0; li < (int)(sizeof(Ls) / sizeof(Ls[0])); ++li) {
    int L = Ls[li];
    int ms[7];
    ms[0] = 1; ms[1] = 2; ms[2] = 3; ms[3] = 5; ms[4] = 8; ms[5] = L; ms[6] = L + 3;
    for (mi = 0; mi < 7; ++mi) {
      int m = ms[mi], dup = 0, a;
      for (a = 0; a < mi; ++a)
        if (ms[a] == m) dup = 1;
      if (dup) continue;
      for (di = 0; di < 2; ++di)
        for (hi = 0; hi < 2; ++hi)
          for (vi = 0; vi < N_VARIANTS; ++vi)
            for (causal = 0; causal < 2; ++causal)
              for (pool = 0; pool < 2; ++pool) {
                const variant *var = &variants[vi];
                if (!test_name_selected(var->filter_name)) continue;
                test_effective_matrix(var, L, m, ds[di], Hs[hi][0], Hs[hi][1], causal, pool);
                for (dvi = 0; dvi < 2; ++dvi)
                  test_random(var, L, m, ds[di], dvs[dvi], Hs[hi][0], Hs[hi][1], causal, pool);
              }
    }
  }
  /* LOGSPARSE (m unused). */
  hand_cases_logsparse();
  if (test_name_selected(logsparse_var.filter_name)) {
    static const int Lls[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65};
    test_logsparse_pow2_plus_one();
    for (li = 0; li < (int)(sizeof(Lls) / sizeof(Lls[0])); ++li)
      for (di = 0; di < 2; ++di)
        for (hi = 0; hi < 2; ++hi)
          for (causal = 0; causal < 2; ++causal)
            for (pool = 0; pool < 2; ++pool) {
              int L = Lls[li];
              test_effective_matrix(&logsparse_var, L, 0, ds[di], Hs[hi][0], Hs[hi][1], causal, pool);
              test_logsparse_structure(L, ds[di], Hs[hi][0], Hs[hi][1], causal, pool);
              for (dvi = 0; dvi < 2; ++dvi) {
                test_random(&logsparse_var, L, 0, ds[di], dvs[dvi], Hs[hi][0], Hs[hi][1], causal, pool);
                if (!causal) test_logsparse_mirror(L, ds[di], dvs[dvi], Hs[hi][0], Hs[hi][1], pool);
              }
            }
  }
  printf("kernels: none (this program checks the float64 reference itself)\n");
  return test_summary_end(n_pass, n_fail);
}
