/* tests/reference.c -- independent float64 reference of Combiner attention.
 *
 * Written directly from docs/SPEC.md, as plainly as possible.
 * For every head h and query position i we build the explicit list of terms
 * that enter the output softmax (SPEC section 2):
 *   - direct positions j:   logit s*q_i.k_j,     value v_j
 *   - abstractions r:       logit s*q_i.Khat_r,  value Vhat_r
 * where every abstraction is recomputed right there from its definition, over
 * the explicit list of positions of its region. Then
 *   out_i = sum_t e^{logit_t} value_t / sum_t e^{logit_t}
 * evaluated stably (max logit subtracted). Speed is irrelevant here.
 */
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Per-head view of the inputs.                                              */
/* ------------------------------------------------------------------------ */
typedef struct head_view {
  const ref_problem *p;
  const double *q;  /* q of query head h:   [L][d]  */
  const double *k;  /* k of kv head g:      [L][d]  */
  const double *v;  /* v of kv head g:      [L][dv] */
  const double *ck; /* caller keys of head h [L][d], or NULL */
} head_view;

static void *xmalloc(size_t n) {
  void *ptr = malloc(n ? n : 1);
  if (!ptr) abort();
  return ptr;
}

static double dot(const double *a, const double *b, int d) {
  double acc = 0.0;
  int x;
  for (x = 0; x < d; ++x) acc += a[x] * b[x];
  return acc;
}

/* pool_S(x): element-wise max (or mean) of the rows x_j, j in S (n >= 1). */
static void pool_set(const double *x, int width, const int *S, int n, int pool, double *out) {
  int a, x_;
  for (x_ = 0; x_ < width; ++x_) out[x_] = x[(size_t)S[0] * width + x_];
  for (a = 1; a < n; ++a) {
    const double *row = x + (size_t)S[a] * width;
    for (x_ = 0; x_ < width; ++x_) {
      if (pool == REF_POOL_MEAN) out[x_] += row[x_];
      else if (row[x_] > out[x_]) out[x_] = row[x_];
    }
  }
  if (pool == REF_POOL_MEAN)
    for (x_ = 0; x_ < width; ++x_) out[x_] /= (double)n;
}

/* sum_{j in S} softmax_j(s * qt.k_j) * x_j  for rows x_j of width `width`.
   With x = v this is att(qt, S) of SPEC section 2; with x = k it is the
   WSUM summary key of SPEC section 4. n >= 1. */
static void softmax_combine(const head_view *hv, const double *qt, const int *S, int n,
                            const double *x, int width, double *out) {
  const ref_problem *p = hv->p;
  double *lg = (double *)xmalloc(sizeof(double) * (size_t)n);
  double mx, den = 0.0;
  int a, x_;
  for (a = 0; a < n; ++a) lg[a] = p->scale * dot(qt, hv->k + (size_t)S[a] * p->d, p->d);
  mx = lg[0];
  for (a = 1; a < n; ++a)
    if (lg[a] > mx) mx = lg[a];
  for (x_ = 0; x_ < width; ++x_) out[x_] = 0.0;
  for (a = 0; a < n; ++a) {
    double w = exp(lg[a] - mx);
    const double *row = x + (size_t)S[a] * width;
    den += w;
    for (x_ = 0; x_ < width; ++x_) out[x_] += w * row[x_];
  }
  for (x_ = 0; x_ < width; ++x_) out[x_] /= den;
  free(lg);
}

/* att(qt, S) */
static void att(const head_view *hv, const double *qt, const int *S, int n, double *out) {
  softmax_combine(hv, qt, S, n, hv->v, hv->p->dv, out);
}

/* ------------------------------------------------------------------------ */
/* Term list: the (logit, value) pairs of one softmax.                       */
/* ------------------------------------------------------------------------ */
typedef struct terms {
  int n, cap, dv;
  double *logit;
  double *val; /* [cap][dv] */
} terms;

static void terms_init(terms *T, int dv) {
  T->n = 0;
  T->cap = 16;
  T->dv = dv;
  T->logit = (double *)xmalloc(sizeof(double) * (size_t)T->cap);
  T->val = (double *)xmalloc(sizeof(double) * (size_t)T->cap * (size_t)dv);
}

static void terms_free(terms *T) {
  free(T->logit);
  free(T->val);
  T->logit = NULL;
  T->val = NULL;
  T->n = T->cap = 0;
}

static void terms_add(terms *T, double logit, const double *val) {
  if (T->n == T->cap) {
    double *nl, *nv;
    T->cap *= 2;
    nl = (double *)realloc(T->logit, sizeof(double) * (size_t)T->cap);
    if (!nl) abort();
    T->logit = nl;
    nv = (double *)realloc(T->val, sizeof(double) * (size_t)T->cap * (size_t)T->dv);
    if (!nv) abort();
    T->val = nv;
  }
  T->logit[T->n] = logit;
  memcpy(T->val + (size_t)T->n * T->dv, val, sizeof(double) * (size_t)T->dv);
  T->n++;
}

/* out = sum_t e^{logit_t} val_t / sum_t e^{logit_t}, max logit subtracted. */
static void terms_eval(const terms *T, double *out) {
  double mx, den = 0.0;
  int t, x;
  for (x = 0; x < T->dv; ++x) out[x] = 0.0;
  if (T->n == 0) return; /* cannot happen: the query itself is always direct */
  mx = T->logit[0];
  for (t = 1; t < T->n; ++t)
    if (T->logit[t] > mx) mx = T->logit[t];
  for (t = 0; t < T->n; ++t) {
    double w = exp(T->logit[t] - mx);
    const double *val = T->val + (size_t)t * T->dv;
    den += w;
    for (x = 0; x < T->dv; ++x) out[x] += w * val[x];
  }
  for (x = 0; x < T->dv; ++x) out[x] /= den;
}

/* Direct position j for query vector qi: logit s*qi.k_j, value v_j. */
static void add_direct(terms *T, const head_view *hv, const double *qi, int j) {
  const ref_problem *p = hv->p;
  terms_add(T, p->scale * dot(qi, hv->k + (size_t)j * p->d, p->d), hv->v + (size_t)j * p->dv);
}

/* Region abstraction over the explicit position set S (n cells):
   Khat = pool_S(k), Vhat = att(pool_S(q), S); logit s*qi.Khat.
   An empty region contributes nothing. */
static void add_region(terms *T, const head_view *hv, const double *qi, const int *S, int n) {
  const ref_problem *p = hv->p;
  double *key, *qp, *val;
  if (n <= 0) return;
  key = (double *)xmalloc(sizeof(double) * (size_t)p->d);
  qp = (double *)xmalloc(sizeof(double) * (size_t)p->d);
  val = (double *)xmalloc(sizeof(double) * (size_t)p->dv);
  pool_set(hv->k, p->d, S, n, p->pool, key);
  pool_set(hv->q, p->d, S, n, p->pool, qp);
  att(hv, qp, S, n, val);
  terms_add(T, p->scale * dot(qi, key, p->d), val);
  free(key);
  free(qp);
  free(val);
}

/* ------------------------------------------------------------------------ */
/* 2-D view: position i <-> (row i/m, column i%m); cell exists iff c < m and  */
/* t*m + c < L.                                                              */
/* ------------------------------------------------------------------------ */
static int cell_exists(const ref_problem *p, int t, int c) {
  return t >= 0 && c >= 0 && c < p->m && (long)t * p->m + c < (long)p->L;
}
static int cell_pos(const ref_problem *p, int t, int c) { return t * p->m + c; }
static int n_rows(const ref_problem *p) { return (p->L + p->m - 1) / p->m; }

/* ------------------------------------------------------------------------ */
/* DENSE: plain softmax over j <= i (causal) or all j.                       */
/* ------------------------------------------------------------------------ */
static void build_dense(const head_view *hv, int i, terms *T) {
  const ref_problem *p = hv->p;
  const double *qi = hv->q + (size_t)i * p->d;
  int j;
  for (j = 0; j < p->L; ++j)
    if (!p->causal || j <= i) add_direct(T, hv, qi, j);
}

/* ------------------------------------------------------------------------ */
/* FIXED (SPEC section 3).                                                   */
/* ------------------------------------------------------------------------ */
static void build_fixed(const head_view *hv, int i, terms *T, int *S) {
  const ref_problem *p = hv->p;
  const double *qi = hv->q + (size_t)i * p->d;
  int nb = n_rows(p), b = i / p->m, t, j, n;
  /* Direct: own block b, causal j <= i. */
  for (j = b * p->m; j < (b + 1) * p->m && j < p->L; ++j)
    if (!p->causal || j <= i) add_direct(T, hv, qi, j);
  /* Regions: blocks t < b (causal) or t != b (bidirectional). */
  for (t = 0; t < nb; ++t) {
    if (t == b) continue;
    if (p->causal && t > b) continue;
    n = 0;
    for (j = t * p->m; j < (t + 1) * p->m && j < p->L; ++j) S[n++] = j;
    add_region(T, hv, qi, S, n);
  }
}

/* ------------------------------------------------------------------------ */
/* AXIAL (SPEC section 4).                                                   */
/* ------------------------------------------------------------------------ */
static void build_axial(const head_view *hv, int i, terms *T, int *S) {
  const ref_problem *p = hv->p;
  const double *qi = hv->q + (size_t)i * p->d;
  int nr = n_rows(p), r = i / p->m, c = i % p->m, t, cc, n;
  double *key = (double *)xmalloc(sizeof(double) * (size_t)p->d);
  double *R = (double *)xmalloc(sizeof(double) * (size_t)p->dv);
  /* Direct: row r, causal c' <= c. */
  for (cc = 0; cc < p->m; ++cc) {
    if (!cell_exists(p, r, cc)) continue;
    if (p->causal && cc > c) continue;
    add_direct(T, hv, qi, cell_pos(p, r, cc));
  }
  /* Regions: every other row t (causal t < r), through column c. */
  for (t = 0; t < nr; ++t) {
    if (t == r) continue;
    if (p->causal && t > r) continue;
    /* S = whole row t (existing cells) */
    n = 0;
    for (cc = 0; cc < p->m; ++cc)
      if (cell_exists(p, t, cc)) S[n++] = cell_pos(p, t, cc);
    if (cell_exists(p, t, c)) {
      int pos = cell_pos(p, t, c);
      const double *qtc = hv->q + (size_t)pos * p->d;
      /* R_{t,c} = att(q_{t,c}, row t), unmasked */
      att(hv, qtc, S, n, R);
      if (p->axial_key == REF_KEY_SELF) {
        memcpy(key, hv->k + (size_t)pos * p->d, sizeof(double) * (size_t)p->d);
      } else if (p->axial_key == REF_KEY_CALLER) {
        memcpy(key, hv->ck + (size_t)pos * p->d, sizeof(double) * (size_t)p->d);
      } else { /* WSUM: expected key under the same distribution as R */
        softmax_combine(hv, qtc, S, n, hv->k, p->d, key);
      }
      terms_add(T, p->scale * dot(qi, key, p->d), R);
    } else {
      /* Cell (t,c) missing: t is the short last row (bidirectional only).
         Fixed-style abstraction of row t, whatever the key option. */
      add_region(T, hv, qi, S, n);
    }
  }
  free(key);
  free(R);
}

/* ------------------------------------------------------------------------ */
/* MIXTURE (SPEC section 5).                                                 */
/* Tv receives the vertical plan (groups 1,2,3), Th the horizontal plan      */
/* (groups 1,2,4,5). For JOINT, Tv == Th and direct terms are added once.    */
/* ------------------------------------------------------------------------ */
static void mix_direct(terms *Tv, terms *Th, const head_view *hv, const double *qi, int j) {
  add_direct(Tv, hv, qi, j);
  if (Th != Tv) add_direct(Th, hv, qi, j);
}

/* Column region: column c, rows t0..t1 (inclusive), existing cells. */
static int col_region(const ref_problem *p, int c, int t0, int t1, int *S) {
  int t, n = 0;
  for (t = t0; t <= t1; ++t)
    if (cell_exists(p, t, c)) S[n++] = cell_pos(p, t, c);
  return n;
}
/* Row region: row t, columns c0..c1 (inclusive), existing cells. */
static int row_region(const ref_problem *p, int t, int c0, int c1, int *S) {
  int c, n = 0;
  for (c = c0; c <= c1; ++c)
    if (cell_exists(p, t, c)) S[n++] = cell_pos(p, t, c);
  return n;
}

static void build_mixture(const head_view *hv, int i, terms *Tv, terms *Th, int *S) {
  const ref_problem *p = hv->p;
  const double *qi = hv->q + (size_t)i * p->d;
  int nr = n_rows(p), s = i / p->m, u = i % p->m, t, c, n;
  if (p->causal) {
    /* 1. Column direct: (t,u), t < s. */
    for (t = 0; t < s; ++t)
      if (cell_exists(p, t, u)) mix_direct(Tv, Th, hv, qi, cell_pos(p, t, u));
    /* 2. Row direct: (s,c), c <= u. */
    for (c = 0; c <= u; ++c)
      if (cell_exists(p, s, c)) mix_direct(Tv, Th, hv, qi, cell_pos(p, s, c));
    /* 3. Column abstractions, c != u, rows 0..s-1 (only if s >= 1). */
    if (s >= 1)
      for (c = 0; c < p->m; ++c) {
        if (c == u) continue;
        n = col_region(p, c, 0, s - 1, S);
        add_region(Tv, hv, qi, S, n);
      }
    /* 4. Left-row abstractions, rows t < s, columns 0..u-1 (only if u >= 1). */
    if (u >= 1)
      for (t = 0; t < s; ++t) {
        n = row_region(p, t, 0, u - 1, S);
        add_region(Th, hv, qi, S, n);
      }
    /* 5. Right-row abstractions, rows t < s, columns u+1.. (if any exist). */
    for (t = 0; t < s; ++t) {
      n = row_region(p, t, u + 1, p->m - 1, S);
      add_region(Th, hv, qi, S, n);
    }
  } else {
    /* 1. Column direct: (t,u), all t != s (existing). */
    for (t = 0; t < nr; ++t)
      if (t != s && cell_exists(p, t, u)) mix_direct(Tv, Th, hv, qi, cell_pos(p, t, u));
    /* 2. Row direct: whole row s. */
    for (c = 0; c < p->m; ++c)
      if (cell_exists(p, s, c)) mix_direct(Tv, Th, hv, qi, cell_pos(p, s, c));
    /* 3. Column abstractions, c != u: rows above s and rows below s. */
    for (c = 0; c < p->m; ++c) {
      if (c == u) continue;
      n = col_region(p, c, 0, s - 1, S);
      add_region(Tv, hv, qi, S, n);
      n = col_region(p, c, s + 1, nr - 1, S);
      add_region(Tv, hv, qi, S, n);
    }
    /* 4-5. Left and right row abstractions for every row t != s. */
    for (t = 0; t < nr; ++t) {
      if (t == s) continue;
      n = row_region(p, t, 0, u - 1, S);
      add_region(Th, hv, qi, S, n);
      n = row_region(p, t, u + 1, p->m - 1, S);
      add_region(Th, hv, qi, S, n);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* LOGSPARSE (SPEC section 5b). m is not used.                              */
/* ------------------------------------------------------------------------ */
/* One side of the construction, for a query at index pp of a sequence
   indexed 0..L-1, where index x stands for original position pos(x):
     causal side (rev = 0): pos(x) = x, pp = i;
     future side (rev = 1): the reversed sequence, pos(x) = L-1-x, pp = L-1-i,
                            so its "past" [0, pp) is the original future
                            (i, L-1] and its blocks are aligned to the end.
   Direct: index pp-1 when pp is odd (the query itself is added by the caller,
   once). Regions: for every bit l >= 1 set in pp, the aligned block of indices
   [(floor(pp/2^l) - 1)*2^l, floor(pp/2^l)*2^l), abstracted as in Fixed over
   the original positions of its indices. The blocks partition [0, pp). */
static int logsparse_pos(const ref_problem *p, int rev, int x) { return rev ? p->L - 1 - x : x; }

static void logsparse_side(const head_view *hv, const double *qi, int pp, int rev, terms *T, int *S) {
  const ref_problem *p = hv->p;
  int l, x, n;
  if (pp % 2 == 1) add_direct(T, hv, qi, logsparse_pos(p, rev, pp - 1));
  for (l = 1; l < 31 && (1L << l) <= (long)pp; ++l) {
    long w = 1L << l, hi, lo;
    if (!((pp >> l) & 1)) continue;
    hi = ((long)pp / w) * w;
    lo = hi - w;
    n = 0;
    for (x = (int)lo; x < (int)hi; ++x) S[n++] = logsparse_pos(p, rev, x);
    add_region(T, hv, qi, S, n);
  }
}

static void build_logsparse(const head_view *hv, int i, terms *T, int *S) {
  const ref_problem *p = hv->p;
  const double *qi = hv->q + (size_t)i * p->d;
  add_direct(T, hv, qi, i);                                      /* the query itself, once */
  logsparse_side(hv, qi, i, 0, T, S);                            /* past:   [0, i)         */
  if (!p->causal) logsparse_side(hv, qi, p->L - 1 - i, 1, T, S); /* future: (i, L-1]       */
}

/* ------------------------------------------------------------------------ */
void ref_attention(const ref_problem *p, const double *q, const double *k, const double *v, double *out) {
  int h, i, x, group;
  int *S;
  double *tmp;
  if (p->L < 1 || p->d < 1 || p->dv < 1 || p->H < 1 || p->Hkv < 1 || p->H % p->Hkv != 0) abort();
  if (p->kind != REF_LOGSPARSE && p->m < 1) abort(); /* m is unused by LOGSPARSE */
  if (p->kind == REF_AXIAL && p->axial_key == REF_KEY_CALLER && !p->caller_keys) abort();
  group = p->H / p->Hkv;
  S = (int *)xmalloc(sizeof(int) * (size_t)p->L);
  tmp = (double *)xmalloc(sizeof(double) * (size_t)p->dv);
  for (h = 0; h < p->H; ++h) {
    int g = h / group;
    head_view hv;
    hv.p = p;
    hv.q = q + (size_t)h * p->L * p->d;
    hv.k = k + (size_t)g * p->L * p->d;
    hv.v = v + (size_t)g * p->L * p->dv;
    hv.ck = p->caller_keys ? p->caller_keys + (size_t)h * p->L * p->d : NULL;
    for (i = 0; i < p->L; ++i) {
      double *o = out + ((size_t)h * p->L + i) * p->dv;
      terms T, T2;
      terms_init(&T, p->dv);
      switch (p->kind) {
        case REF_FIXED:
          build_fixed(&hv, i, &T, S);
          terms_eval(&T, o);
          break;
        case REF_AXIAL:
          build_axial(&hv, i, &T, S);
          terms_eval(&T, o);
          break;
        case REF_MIXTURE:
          if (p->mixture_norm == REF_MIX_AVERAGE) {
            terms_init(&T2, p->dv);
            build_mixture(&hv, i, &T, &T2, S);
            terms_eval(&T, o);    /* vertical plan   (groups 1,2,3)   */
            terms_eval(&T2, tmp); /* horizontal plan (groups 1,2,4,5) */
            for (x = 0; x < p->dv; ++x) o[x] = 0.5 * o[x] + 0.5 * tmp[x];
            terms_free(&T2);
          } else {
            build_mixture(&hv, i, &T, &T, S);
            terms_eval(&T, o);
          }
          break;
        case REF_DENSE:
          build_dense(&hv, i, &T);
          terms_eval(&T, o);
          break;
        case REF_LOGSPARSE:
          build_logsparse(&hv, i, &T, S);
          terms_eval(&T, o);
          break;
        default:
          abort(); /* unknown kind */
      }
      terms_free(&T);
    }
  }
  free(S);
  free(tmp);
}
