/* tests/reference.h -- independent float64 reference of Combiner attention,
   written directly from docs/SPEC.md (sections 2-5b). Shares nothing
   with include/combiner.h. Plain C99 (also compiles as C++). Slow on purpose:
   every abstraction is recomputed per query from its definition. */
#ifndef COMBINER_TEST_REFERENCE_H
#define COMBINER_TEST_REFERENCE_H
#ifdef __cplusplus
extern "C" {
#endif
enum { REF_FIXED = 1, REF_AXIAL = 2, REF_MIXTURE = 3, REF_DENSE = 4, REF_LOGSPARSE = 5 };
enum { REF_POOL_MAX = 0, REF_POOL_MEAN = 1 };
enum { REF_KEY_WSUM = 0, REF_KEY_SELF = 1, REF_KEY_CALLER = 2 };
enum { REF_MIX_JOINT = 0, REF_MIX_AVERAGE = 1 };
typedef struct ref_problem {
  int kind;            /* REF_FIXED .. REF_LOGSPARSE */
  int L, d, dv;        /* sequence length >=1, query/key width >=1, value width >=1 */
  int H, Hkv;          /* query heads, kv heads; Hkv divides H; query head h uses kv head h / (H/Hkv) */
  int m;               /* block length >= 1 (already resolved, may be >= L); unused (any value) for REF_LOGSPARSE */
  int causal;          /* nonzero = causal */
  double scale;        /* logit scale s */
  int pool;            /* REF_POOL_MAX or REF_POOL_MEAN (FIXED, AXIAL short row, MIXTURE, LOGSPARSE) */
  int axial_key;       /* REF_KEY_*; only for REF_AXIAL */
  const double *caller_keys; /* REF_KEY_CALLER: [H][L][d], caller_keys[(h*L + i)*d + x] is Khat_{t,c} of query head h for the cell at position i = t*m + c */
  int mixture_norm;    /* REF_MIX_*; only for REF_MIXTURE */
} ref_problem;
/* q: [H][L][d], k: [Hkv][L][d], v: [Hkv][L][dv], out: [H][L][dv]; all contiguous, head-major.
   q[(h*L + i)*d + x]. Computes SPEC.md's output for every head and query. */
void ref_attention(const ref_problem *p, const double *q, const double *k, const double *v, double *out);
#ifdef __cplusplus
}
#endif
#endif
