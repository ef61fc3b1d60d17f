/* combiner generate: a tiny causal transformer that decodes with combiner_cache.
 *
 * A llama2.c-shaped model with random weights (fixed seed), token-major
 * buffers: token embedding; per layer RMSNorm -> q/k/v projections -> RoPE
 * on q and k -> attention through one combiner_cache per layer -> output
 * projection + residual -> RMSNorm -> SwiGLU FFN + residual; final RMSNorm ->
 * classifier to vocab logits; greedy (or seeded, --temp) sampling. 8 query
 * heads share 2 kv heads (GQA). The factorization is the compile-time
 * COMBINER_DEFAULT_KIND (cfg.kind = COMBINER_KIND_DEFAULT): CMake builds one
 * program per kind, combiner-generate-<kind>, and `make generate` runs them.
 *
 * Like llama2.c it keeps its own KV cache, key_cache and value_cache
 * [layer][seq][kv_heads][head_dim], and writes each token's k and v there.
 * By default (--mode borrowed) every layer's combiner_cache reads K/V from
 * that layer's slice and holds only what Combiner adds; all layers share one
 * scratch; each forward appends at its explicit position
 * (combiner_cache_append_at). --mode owned gives the caches copies of K/V
 * instead. --kv f16 (or bf16) keeps the engine's KV cache in half precision,
 * as llama.cpp does by default: the projections round k and v into it and
 * the caches read them there (cfg.k_type, cfg.v_type). It prints per layer
 * the engine's K/V bytes and the cache's extra bytes.
 *
 * It prefills a prompt of random tokens (layer by layer, one append of the
 * whole prompt per layer: layer l+1 needs layer l's outputs), then generates
 * tokens one at a time, and prints prefill and decode tokens/s, the cache
 * bytes and the first generated ids. Then it checks itself:
 *   - attention recomputed without the cache (combiner_attention over the
 *     whole sequence so far, with the cache's resolved config and seq_len =
 *     that length) against what the cache returned, on every layer, for the
 *     prompt, for several decode steps, and for every row at the final
 *     length: the largest relative difference must be <= 1e-4;
 *   - combiner_cache_truncate back to the prompt length, a different
 *     continuation (checked the same way), truncate again: generating from
 *     the original first token must give the same tokens as before.
 * Exit status: 0 if both hold, 1 if a check or a call fails, 2 on bad flags.
 *
 *   combiner-generate-axial [--prompt N] [--tokens N] [--threads N] [--mode borrowed|owned]
 *                           [--kv f32|f16|bf16] [--fast-chunks] [--temp T] [--seed S] [--table [--header]]
 *
 * --fast-chunks sets combiner_cache_options.fast_chunks: the prompt's append
 * runs the prefill kernels (DENSE, FIXED), the same checks apply.
 */
#define _POSIX_C_SOURCE 199309L
#define COMBINER_IMPLEMENTATION
#include "combiner.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(_OPENMP) && !defined(COMBINER_NO_OPENMP)
#  define GEN_OPENMP 1
#  include <omp.h>
#endif

/* The model: dim 256, 4 layers, 8 heads of 32 (2 kv heads), vocab 512, a
 * context of 4096 positions (as llama2.c's config.seq_len): the context fixes
 * the attention block, ceil(sqrt(4096)) = 64, whatever the caches hold. */
enum {
  DIM = 256, HIDDEN = 768, LAYERS = 4, HEADS = 8, KV_HEADS = 2,
  HEAD_DIM = DIM / HEADS, KV_DIM = KV_HEADS * HEAD_DIM, VOCAB = 512, SEQ_LEN = 4096
};
#define WEIGHT_SEED 20240601u
#define PROMPT_SEED 7u
#define CHECK_LIMIT 1e-4
#define MAX_TOKENS (1 << 20)

typedef struct options {
  int prompt;      /* prompt tokens */
  int tokens;      /* tokens to generate (the first comes from the prefill) */
  int threads;     /* 0: OpenMP's default */
  float temp;      /* 0: greedy */
  unsigned seed;   /* sampling seed */
  int owned;       /* the caches copy K/V (else they borrow the engine's) */
  int kv_type;     /* element type of the engine's KV cache (combiner_type) */
  int fast;        /* combiner_cache_options.fast_chunks for the prompt */
  int table;       /* one table row instead of the report */
  int header;      /* with table: print the column names first */
} options;

typedef struct layer_weights {
  float *attn_norm;           /* [DIM] */
  float *wq, *wk, *wv;        /* [DIM][DIM], [KV_DIM][DIM], [KV_DIM][DIM]: out x in */
  float *wo;                  /* [DIM][DIM] */
  float *ffn_norm;            /* [DIM] */
  float *w1, *w3;             /* [HIDDEN][DIM]: gate and up */
  float *w2;                  /* [DIM][HIDDEN]: down */
} layer_weights;

typedef struct model {
  float *embedding;           /* [VOCAB][DIM] */
  layer_weights layer[LAYERS];
  float *final_norm;          /* [DIM] */
  float *classifier;          /* [VOCAB][DIM] */
  float *memory;              /* all of the above */
} model;

/* Activations of up to `capacity` tokens, token-major. */
typedef struct run_state {
  float *x;                   /* [T][DIM] residual stream */
  float *xb;                  /* [T][DIM] normed input / projection output */
  float *q;                   /* [T][HEADS][HEAD_DIM] */
  float *k, *v;               /* [T][KV_DIM], then stored into the KV cache in its type */
  float *att;                 /* [T][HEADS][HEAD_DIM] attention output */
  float *hb, *hb2;            /* [T][HIDDEN] */
  float *logits;              /* [VOCAB], of the last token of a forward */
  int capacity;
  float *memory;
} run_state;

/* The engine's KV cache, as llama2.c keeps it: [layer][seq][KV_DIM], of
 * float32, binary16 or bfloat16 elements. */
typedef struct kv_cache {
  unsigned char *key, *value;
  int seq, type;
  size_t elem;                /* bytes of an element */
} kv_cache;

/* Every layer's q and cache output at every position. Only the self-check
 * reads them (with the engine's K/V). */
typedef struct record {
  float *q[LAYERS], *att[LAYERS];
  float *memory;
} record;

typedef struct generator {
  model m;
  run_state s;
  record rec;
  kv_cache kv;
  combiner_cache *cache[LAYERS];
  void *cache_memory[LAYERS];
  void *scratch;              /* shared by every layer's cache (borrowed mode) */
  size_t scratch_bytes;
  size_t cache_bytes;         /* all layers, scratch included */
  double attention_seconds;   /* time in combiner_cache_append, accumulated */
} generator;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* uniform in [0, 1) */
static float uniform(unsigned *seed) {
  *seed = *seed * 1664525u + 1013904223u;
  return (float)((*seed >> 8) * (1.0 / 16777216.0));
}

/* ---- model ---------------------------------------------------------------- */

static float *take(float **next, size_t n) {
  float *p = *next;
  *next += n;
  return p;
}

/* Uniform in [-bound, bound): with bound = sqrt(3/fan_in) a projection of a
 * unit-RMS input has unit variance, so attention logits are O(1). */
static void fill_uniform(float *p, size_t n, float bound, unsigned *seed) {
  size_t i;
  for (i = 0; i < n; ++i) p[i] = bound * (2.0f * uniform(seed) - 1.0f);
}

static void fill_ones(float *p, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) p[i] = 1.0f;
}

static int model_init(model *m) {
  const size_t per_layer = 2 * (size_t)DIM + 2 * (size_t)DIM * DIM + 2 * (size_t)KV_DIM * DIM +
                           3 * (size_t)HIDDEN * DIM;
  const size_t total = 2 * (size_t)VOCAB * DIM + (size_t)DIM + LAYERS * per_layer;
  const float in_dim = sqrtf(3.0f / DIM), in_hidden = sqrtf(3.0f / HIDDEN);
  unsigned seed = WEIGHT_SEED;
  float *next;
  int l;
  m->memory = (float *)malloc(total * sizeof(float));
  if (!m->memory) return 0;
  next = m->memory;
  m->embedding = take(&next, (size_t)VOCAB * DIM);
  fill_uniform(m->embedding, (size_t)VOCAB * DIM, 1.0f, &seed);
  for (l = 0; l < LAYERS; ++l) {
    layer_weights *w = &m->layer[l];
    w->attn_norm = take(&next, DIM);
    w->wq = take(&next, (size_t)DIM * DIM);
    w->wk = take(&next, (size_t)KV_DIM * DIM);
    w->wv = take(&next, (size_t)KV_DIM * DIM);
    w->wo = take(&next, (size_t)DIM * DIM);
    w->ffn_norm = take(&next, DIM);
    w->w1 = take(&next, (size_t)HIDDEN * DIM);
    w->w3 = take(&next, (size_t)HIDDEN * DIM);
    w->w2 = take(&next, (size_t)DIM * HIDDEN);
    fill_ones(w->attn_norm, DIM);
    fill_uniform(w->wq, (size_t)DIM * DIM, in_dim, &seed);
    fill_uniform(w->wk, (size_t)KV_DIM * DIM, in_dim, &seed);
    fill_uniform(w->wv, (size_t)KV_DIM * DIM, in_dim, &seed);
    fill_uniform(w->wo, (size_t)DIM * DIM, in_dim, &seed);
    fill_ones(w->ffn_norm, DIM);
    fill_uniform(w->w1, (size_t)HIDDEN * DIM, in_dim, &seed);
    fill_uniform(w->w3, (size_t)HIDDEN * DIM, in_dim, &seed);
    fill_uniform(w->w2, (size_t)DIM * HIDDEN, in_hidden, &seed);
  }
  m->final_norm = take(&next, DIM);
  m->classifier = take(&next, (size_t)VOCAB * DIM);
  fill_ones(m->final_norm, DIM);
  fill_uniform(m->classifier, (size_t)VOCAB * DIM, in_dim, &seed);
  return next == m->memory + total;
}

static int run_state_init(run_state *s, int capacity) {
  const size_t T = (size_t)capacity;
  const size_t total = T * (4 * (size_t)DIM + 2 * (size_t)KV_DIM + 2 * (size_t)HIDDEN) + VOCAB;
  float *next;
  s->capacity = capacity;
  s->memory = (float *)malloc(total * sizeof(float));
  if (!s->memory) return 0;
  next = s->memory;
  s->x = take(&next, T * DIM);
  s->xb = take(&next, T * DIM);
  s->q = take(&next, T * DIM);
  s->k = take(&next, T * KV_DIM);
  s->v = take(&next, T * KV_DIM);
  s->att = take(&next, T * DIM);
  s->hb = take(&next, T * HIDDEN);
  s->hb2 = take(&next, T * HIDDEN);
  s->logits = take(&next, VOCAB);
  return next == s->memory + total;
}

static int kv_cache_init(kv_cache *kv, int seq, int type) {
  const size_t n = (size_t)LAYERS * seq * KV_DIM;
  kv->seq = seq;
  kv->type = type;
  kv->elem = type == COMBINER_F32 ? sizeof(float) : sizeof(unsigned short);
  kv->key = (unsigned char *)malloc(n * kv->elem);
  kv->value = (unsigned char *)malloc(n * kv->elem);
  return kv->key && kv->value;
}

/* Layer l's K or V at position pos. */
static void *kv_at(unsigned char *base, const kv_cache *kv, int layer, int pos) {
  return base + ((size_t)layer * kv->seq + (size_t)pos) * KV_DIM * kv->elem;
}

/* float32 -> binary16 or bfloat16, rounding to nearest even (the engine's
 * store; finite values, as the projections give) */
static unsigned short to_half(float f, int type) {
  unsigned long x, a, h, rem;
  unsigned int b;
  memcpy(&b, &f, sizeof b);
  x = b;
  if (type == COMBINER_BF16) return (unsigned short)((x + 0x7fffUL + ((x >> 16) & 1UL)) >> 16);
  a = x & 0x7fffffffUL;
  if (a >= 0x477ff000UL) return (unsigned short)(((x >> 16) & 0x8000UL) | 0x7c00UL);   /* Inf */
  if (a < 0x38800000UL)                                                                /* subnormal */
    return (unsigned short)(((x >> 16) & 0x8000UL) | (unsigned long)rint(fabs((double)f) * 16777216.0));
  h = (((a >> 23) - 112UL) << 10) | ((a & 0x7fffffUL) >> 13);
  rem = a & 0x1fffUL;
  if (rem > 0x1000UL || (rem == 0x1000UL && (h & 1UL))) ++h;
  return (unsigned short)(((x >> 16) & 0x8000UL) | h);
}

/* Stores count rows of KV_DIM floats into the cache at `dst`, in its type. */
static void kv_store(const kv_cache *kv, void *dst, const float *src, int count) {
  const size_t n = (size_t)count * KV_DIM;
  size_t i;
  if (kv->type == COMBINER_F32) {
    memcpy(dst, src, n * sizeof(float));
    return;
  }
  for (i = 0; i < n; ++i) ((unsigned short *)dst)[i] = to_half(src[i], kv->type);
}

static int record_init(record *r, int max_len) {
  const size_t per_layer = (size_t)max_len * 2 * (size_t)DIM;
  float *next;
  int l;
  r->memory = (float *)malloc(LAYERS * per_layer * sizeof(float));
  if (!r->memory) return 0;
  next = r->memory;
  for (l = 0; l < LAYERS; ++l) {
    r->q[l] = take(&next, (size_t)max_len * DIM);
    r->att[l] = take(&next, (size_t)max_len * DIM);
  }
  return 1;
}

static void record_rows(record *r, int layer, int pos, int count, const run_state *s) {
  memcpy(r->q[layer] + (size_t)pos * DIM, s->q, (size_t)count * DIM * sizeof(float));
  memcpy(r->att[layer] + (size_t)pos * DIM, s->att, (size_t)count * DIM * sizeof(float));
}

/* One combiner_cache per layer, of up to max_len positions: borrowing the
 * layer's slice of the engine's KV cache (and one scratch for all), or with
 * copies of its own. rollback: how far back the run truncates. */
static combiner_status caches_init(generator *g, int max_len, int threads, int owned, int rollback, int fast) {
  combiner_config cfg;
  combiner_cache_options opt;
  int l;
  memset(&cfg, 0, sizeof cfg);
  cfg.kind = COMBINER_KIND_DEFAULT;   /* COMBINER_DEFAULT_KIND, chosen at compile time */
  cfg.seq_len = SEQ_LEN;              /* the model's context: block 0 resolves from it */
  cfg.causal = 1;
  cfg.head_dim = HEAD_DIM;
  cfg.num_heads = HEADS;
  cfg.num_kv_heads = KV_HEADS;
  cfg.num_threads = threads;
  cfg.k_type = cfg.v_type = (combiner_type)g->kv.type;   /* K/V as the engine stores them */
  memset(&opt, 0, sizeof opt);
  opt.max_len = max_len;
  opt.fast_chunks = fast;   /* the prompt's append by the prefill kernels (DENSE, FIXED) */
  if (!owned) {
    opt.rollback = rollback;
    opt.shared_scratch = 1;
    g->scratch_bytes = combiner_cache_scratch_size(&cfg, threads);
    if (g->scratch_bytes == 0) return combiner_cache_init_ex(&g->cache[0], &cfg, &opt, NULL, 0);
    g->scratch = malloc(g->scratch_bytes);
    if (!g->scratch) return COMBINER_ERR_OUT_OF_MEMORY;
    g->cache_bytes += g->scratch_bytes;
  }
  for (l = 0; l < LAYERS; ++l) {
    size_t bytes;
    combiner_status st;
    if (!owned) {   /* the layer's slice of key_cache / value_cache: [seq][KV_DIM] */
      opt.k = kv_at(g->kv.key, &g->kv, l, 0);
      opt.v = kv_at(g->kv.value, &g->kv, l, 0);
    }
    bytes = combiner_cache_size_ex(&cfg, &opt);
    if (bytes == 0) return combiner_cache_init_ex(&g->cache[l], &cfg, &opt, NULL, 0);
    g->cache_memory[l] = malloc(bytes);
    if (!g->cache_memory[l]) return COMBINER_ERR_OUT_OF_MEMORY;
    st = combiner_cache_init_ex(&g->cache[l], &cfg, &opt, g->cache_memory[l], bytes);
    if (st != COMBINER_OK) return st;
    g->cache_bytes += bytes;
  }
  return COMBINER_OK;
}

static void generator_free(generator *g) {
  int l;
  for (l = 0; l < LAYERS; ++l) free(g->cache_memory[l]);
  free(g->scratch);
  free(g->kv.key);
  free(g->kv.value);
  free(g->m.memory);
  free(g->s.memory);
  free(g->rec.memory);
  memset(g, 0, sizeof *g);
}

/* ---- forward pass ----------------------------------------------------------- */

/* Eight partial sums so that the compiler can vectorize without reassociating. */
static float dot(const float *a, const float *b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, sum;
  int i, j;
  for (i = 0; i + 8 <= n; i += 8)
    for (j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

/* out[t][i] = w[i] . x[t] for count tokens: x [count][cols], w [rows][cols],
 * out [count][rows]. Threads split the rows of w. */
static void matmul(float *out, const float *x, const float *w, int count, int rows, int cols) {
  int i;
#ifdef GEN_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (i = 0; i < rows; ++i) {
    const float *wi = w + (size_t)i * cols;
    int t;
    for (t = 0; t < count; ++t) out[(size_t)t * rows + i] = dot(wi, x + (size_t)t * cols, cols);
  }
}

static void rmsnorm(float *out, const float *x, const float *weight, int count) {
  int t, i;
  for (t = 0; t < count; ++t) {
    const float *xt = x + (size_t)t * DIM;
    float *ot = out + (size_t)t * DIM;
    float ss = 0.0f, inv;
    for (i = 0; i < DIM; ++i) ss += xt[i] * xt[i];
    inv = 1.0f / sqrtf(ss / DIM + 1e-5f);
    for (i = 0; i < DIM; ++i) ot[i] = weight[i] * (xt[i] * inv);
  }
}

/* Rotary embedding of every head of count tokens at positions pos.. */
static void rope(float *x, int count, int heads, int pos) {
  int t, i, h;
  for (t = 0; t < count; ++t)
    for (i = 0; i < HEAD_DIM; i += 2) {
      const double angle = (double)(pos + t) * pow(10000.0, -(double)i / HEAD_DIM);
      const float c = (float)cos(angle), s = (float)sin(angle);
      for (h = 0; h < heads; ++h) {
        float *p = x + ((size_t)t * heads + h) * HEAD_DIM + i;
        const float a = p[0], b = p[1];
        p[0] = a * c - b * s;
        p[1] = a * s + b * c;
      }
    }
}

static void add_rows(float *x, const float *y, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) x[i] += y[i];
}

/* Runs tokens[0..count) at positions pos.. through the model, appending them
 * to every layer's cache; the logits of the last one go to g->s.logits. */
static combiner_status forward(generator *g, const int *tokens, int count, int pos) {
  const model *m = &g->m;
  run_state *s = &g->s;
  const size_t n = (size_t)count;
  int t, l;
  size_t i;
  for (t = 0; t < count; ++t)
    memcpy(s->x + (size_t)t * DIM, m->embedding + (size_t)tokens[t] * DIM, DIM * sizeof(float));
  for (l = 0; l < LAYERS; ++l) {
    const layer_weights *w = &m->layer[l];
    void *k = kv_at(g->kv.key, &g->kv, l, pos), *v = kv_at(g->kv.value, &g->kv, l, pos);
    combiner_status st;
    double t0;
    rmsnorm(s->xb, s->x, w->attn_norm, count);
    matmul(s->q, s->xb, w->wq, count, DIM, DIM);
    matmul(s->k, s->xb, w->wk, count, KV_DIM, DIM);
    matmul(s->v, s->xb, w->wv, count, KV_DIM, DIM);
    rope(s->q, count, HEADS, pos);
    rope(s->k, count, KV_HEADS, pos);
    kv_store(&g->kv, k, s->k, count);   /* into the engine's KV cache, in its type */
    kv_store(&g->kv, v, s->v, count);
    t0 = now_seconds();
    if (g->scratch)   /* borrowed: the cache reads k, v where they are */
      st = combiner_cache_append_at(g->cache[l], pos, count, s->q, NULL, NULL, s->att, g->scratch, g->scratch_bytes);
    else
      st = combiner_cache_append_at(g->cache[l], pos, count, s->q, k, v, s->att, NULL, 0);
    g->attention_seconds += now_seconds() - t0;
    if (st != COMBINER_OK) return st;
    record_rows(&g->rec, l, pos, count, s);
    matmul(s->xb, s->att, w->wo, count, DIM, DIM);
    add_rows(s->x, s->xb, n * DIM);
    rmsnorm(s->xb, s->x, w->ffn_norm, count);
    matmul(s->hb, s->xb, w->w1, count, HIDDEN, DIM);
    matmul(s->hb2, s->xb, w->w3, count, HIDDEN, DIM);
    for (i = 0; i < n * HIDDEN; ++i) s->hb[i] = s->hb[i] / (1.0f + expf(-s->hb[i])) * s->hb2[i];  /* SwiGLU */
    matmul(s->xb, s->hb, w->w2, count, DIM, HIDDEN);
    add_rows(s->x, s->xb, n * DIM);
  }
  rmsnorm(s->xb, s->x + (n - 1) * DIM, m->final_norm, 1);
  matmul(s->logits, s->xb, m->classifier, 1, VOCAB, DIM);
  return COMBINER_OK;
}

/* Greedy when temp is 0, else a draw from softmax(logits / temp). */
static int sample(const float *logits, float temp, unsigned *seed) {
  int i, best = 0;
  double sum = 0.0, r;
  for (i = 1; i < VOCAB; ++i)
    if (logits[i] > logits[best]) best = i;
  if (temp <= 0.0f) return best;
  for (i = 0; i < VOCAB; ++i) sum += exp((double)(logits[i] - logits[best]) / temp);
  r = uniform(seed) * sum;
  for (i = 0; i < VOCAB; ++i) {
    r -= exp((double)(logits[i] - logits[best]) / temp);
    if (r < 0.0) return i;
  }
  return best;
}

/* out[0] = first; out[1..count) generated one at a time, first fed at pos. */
static combiner_status decode(generator *g, int first, int pos, int count, float temp, unsigned *seed,
                              int *out) {
  int i;
  out[0] = first;
  for (i = 1; i < count; ++i) {
    combiner_status st = forward(g, &out[i - 1], 1, pos + i - 1);
    if (st != COMBINER_OK) return st;
    out[i] = sample(g->s.logits, temp, seed);
  }
  return COMBINER_OK;
}

/* ---- self-check ------------------------------------------------------------- */

/* max |a - b| / max |b| over n floats; infinite if either holds a NaN */
static double relative_difference(const float *a, const float *b, size_t n) {
  double diff = 0.0, mag = 0.0;
  size_t i;
  for (i = 0; i < n; ++i) {
    const double d = fabs((double)a[i] - (double)b[i]);
    if (d != d) return INFINITY;
    if (d > diff) diff = d;
    if (fabs((double)b[i]) > mag) mag = fabs((double)b[i]);
  }
  return mag > 0.0 ? diff / mag : diff;
}

/* The largest difference found and where. */
typedef struct check_result {
  double worst;               /* max relative difference against combiner_attention */
  int layer, len, first;      /* where: rows [first, len) at length len */
  int checks;                 /* lengths (and row ranges) compared */
} check_result;

/* Recomputes every layer's attention over positions [0, len) without the
 * cache and compares rows [first, len) with what the cache returned. */
static combiner_status check_length(const generator *g, int len, int first, float *full, check_result *c) {
  int l;
  for (l = 0; l < LAYERS; ++l) {
    combiner_config cfg;
    combiner_status st = combiner_cache_config(g->cache[l], &cfg);
    double diff;
    if (st != COMBINER_OK) return st;
    cfg.seq_len = len;
    st = combiner_attention(&cfg, g->rec.q[l], kv_at(g->kv.key, &g->kv, l, 0), kv_at(g->kv.value, &g->kv, l, 0),
                            full, NULL, 0);
    if (st != COMBINER_OK) return st;
    diff = relative_difference(g->rec.att[l] + (size_t)first * DIM, full + (size_t)first * DIM,
                               (size_t)(len - first) * DIM);
    if (!(diff <= c->worst)) {
      c->worst = diff;
      c->layer = l;
      c->len = len;
      c->first = first;
    }
  }
  ++c->checks;
  return COMBINER_OK;
}

/* The prompt's rows, decode steps 1, 2, every ~1/8 of the run and the last,
 * then every row at the final length; folded into c. */
static combiner_status check_against_attention(const generator *g, int prompt, int tokens, check_result *c) {
  const int steps = tokens - 1, stride = steps / 8 > 0 ? steps / 8 : 1;
  float *full = (float *)malloc((size_t)(prompt + steps) * DIM * sizeof(float));
  combiner_status st;
  int i;
  if (!full) return COMBINER_ERR_OUT_OF_MEMORY;
  st = check_length(g, prompt, 0, full, c);
  for (i = 1; i <= steps && st == COMBINER_OK; ++i)
    if (i <= 2 || i % stride == 0 || i == steps) st = check_length(g, prompt + i, prompt + i - 1, full, c);
  if (st == COMBINER_OK && steps > 0) st = check_length(g, prompt + steps, 0, full, c);
  free(full);
  return st;
}

/* ---- driver ----------------------------------------------------------------- */

static void usage(const char *prog) {
  fprintf(stderr,
          "usage: %s [--prompt N] [--tokens N] [--threads N] [--mode M] [--temp T] [--seed S] [--table [--header]]\n"
          "  --prompt N   random prompt tokens, prefilled in one append per layer (2048)\n"
          "  --tokens N   tokens to generate (256)\n"
          "  --threads N  threads for the projections and the attention (0: OpenMP's default)\n"
          "  --mode M     borrowed: the caches read K/V in the engine's KV cache (default);\n"
          "               owned: they keep copies\n"
          "  --kv T       the engine's KV cache in f32 (default), f16 or bf16\n"
          "  --fast-chunks  the prompt's append by the prefill kernels (combiner_cache_options.fast_chunks)\n"
          "  --temp T     sampling temperature, 0 for greedy (0)\n"
          "  --seed S     sampling seed (1)\n"
          "  --table      print one table row instead of the report; --header: the column names too\n",
          prog);
}

static int parse_int(const char *s, long lo, long hi, long *value) {
  char *end;
  errno = 0;
  *value = strtol(s, &end, 10);
  return errno == 0 && end != s && *end == '\0' && *value >= lo && *value <= hi;
}

static int parse_options(int argc, char **argv, options *o) {
  int i;
  memset(o, 0, sizeof *o);
  o->prompt = 2048;
  o->tokens = 256;
  o->seed = 1;
  for (i = 1; i < argc; ++i) {
    const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    long x;
    if (strcmp(a, "--table") == 0) { o->table = 1; continue; }
    if (strcmp(a, "--header") == 0) { o->header = 1; continue; }
    if (strcmp(a, "--fast-chunks") == 0) { o->fast = 1; continue; }
    if (!val) return 0;
    ++i;
    if (strcmp(a, "--mode") == 0 && (strcmp(val, "borrowed") == 0 || strcmp(val, "owned") == 0))
      o->owned = strcmp(val, "owned") == 0;
    else if (strcmp(a, "--kv") == 0 && (strcmp(val, "f32") == 0 || strcmp(val, "f16") == 0 || strcmp(val, "bf16") == 0))
      o->kv_type = strcmp(val, "f16") == 0 ? COMBINER_F16 : strcmp(val, "bf16") == 0 ? COMBINER_BF16 : COMBINER_F32;
    else if (strcmp(a, "--prompt") == 0 && parse_int(val, 1, MAX_TOKENS, &x)) o->prompt = (int)x;
    else if (strcmp(a, "--tokens") == 0 && parse_int(val, 1, MAX_TOKENS, &x)) o->tokens = (int)x;
    else if (strcmp(a, "--threads") == 0 && parse_int(val, 0, 1024, &x)) o->threads = (int)x;
    else if (strcmp(a, "--seed") == 0 && parse_int(val, 0, 0x7fffffffL, &x)) o->seed = (unsigned)x;
    else if (strcmp(a, "--temp") == 0) {
      char *end;
      double t = strtod(val, &end);
      if (end == val || *end != '\0' || !(t >= 0.0 && t <= 100.0)) return 0;
      o->temp = (float)t;
    } else return 0;
  }
  return 1;
}

static int fail(const char *what, combiner_status st) {
  fprintf(stderr, "generate: %s: %s\n", what, combiner_status_string(st));
  return 1;
}

static void print_ids(const int *ids, int n, int shown) {
  int i;
  for (i = 0; i < n && i < shown; ++i) printf("%s%d", i ? " " : "", ids[i]);
  if (n > shown) printf(" ...");
  printf("\n");
}

typedef struct results {
  double prefill_seconds, prefill_attention, decode_seconds, decode_attention, replay_seconds;
  check_result check;
  int same_after_truncate;
} results;

static int truncate_all(generator *g, int length) {
  int l;
  for (l = 0; l < LAYERS; ++l) {
    combiner_status st = combiner_cache_truncate(g->cache[l], length);
    if (st != COMBINER_OK) return fail("combiner_cache_truncate", st);
    if (combiner_cache_length(g->cache[l]) != length) {
      fprintf(stderr, "generate: after truncate, layer %d holds %d positions, expected %d\n", l,
              combiner_cache_length(g->cache[l]), length);
      return 1;
    }
  }
  return 0;
}

/* Prefill, decode (timed), then the checks:
 *   1. the cache against combiner_attention on what was generated;
 *   2. truncate to the prompt, generate a different continuation (another
 *      first token), check it the same way: stale state past the prompt
 *      would show here;
 *   3. truncate to the prompt again and generate from the same token and
 *      sampler state as in the timed run: the tokens must be the same. */
static int run(const options *o, generator *g, int *ids, int *other, results *r) {
  const int max_len = o->prompt + o->tokens - 1;
  int *prompt = (int *)malloc((size_t)o->prompt * sizeof(int));
  unsigned seed = PROMPT_SEED, sampling = o->seed, after_first;
  combiner_status st;
  double t0;
  int i, rc;
  if (!prompt) return fail("prompt", COMBINER_ERR_OUT_OF_MEMORY);
  for (i = 0; i < o->prompt; ++i) prompt[i] = (int)(uniform(&seed) * VOCAB);
  if (!model_init(&g->m) || !run_state_init(&g->s, o->prompt) || !record_init(&g->rec, max_len) ||
      !kv_cache_init(&g->kv, max_len, o->kv_type)) {
    free(prompt);
    return fail("model and activations", COMBINER_ERR_OUT_OF_MEMORY);
  }
  st = caches_init(g, max_len, o->threads, o->owned, o->tokens, o->fast);   /* the checks go back to the prompt */
  if (st != COMBINER_OK) { free(prompt); return fail("combiner_cache_init", st); }

  t0 = now_seconds();
  st = forward(g, prompt, o->prompt, 0);
  free(prompt);
  if (st != COMBINER_OK) return fail("prefill: combiner_cache_append", st);
  ids[0] = sample(g->s.logits, o->temp, &sampling);
  r->prefill_seconds = now_seconds() - t0;
  r->prefill_attention = g->attention_seconds;
  after_first = sampling;

  g->attention_seconds = 0.0;
  t0 = now_seconds();
  st = decode(g, ids[0], o->prompt, o->tokens, o->temp, &sampling, ids);
  r->decode_seconds = now_seconds() - t0;
  r->decode_attention = g->attention_seconds;
  if (st != COMBINER_OK) return fail("decode: combiner_cache_append", st);
  for (i = 0; i < LAYERS; ++i)
    if (combiner_cache_length(g->cache[i]) != max_len) {
      fprintf(stderr, "generate: layer %d cache holds %d positions, expected %d\n", i,
              combiner_cache_length(g->cache[i]), max_len);
      return 1;
    }
  st = check_against_attention(g, o->prompt, o->tokens, &r->check);
  if (st != COMBINER_OK) return fail("check: combiner_attention", st);

  if ((rc = truncate_all(g, o->prompt)) != 0) return rc;
  st = decode(g, (ids[0] + 1) % VOCAB, o->prompt, o->tokens, o->temp, &sampling, other);
  if (st != COMBINER_OK) return fail("detour: combiner_cache_append", st);
  st = check_against_attention(g, o->prompt, o->tokens, &r->check);
  if (st != COMBINER_OK) return fail("check: combiner_attention", st);

  if ((rc = truncate_all(g, o->prompt)) != 0) return rc;
  sampling = after_first;
  t0 = now_seconds();
  st = decode(g, ids[0], o->prompt, o->tokens, o->temp, &sampling, other);
  r->replay_seconds = now_seconds() - t0;
  if (st != COMBINER_OK) return fail("replay: combiner_cache_append", st);
  r->same_after_truncate = memcmp(ids, other, (size_t)o->tokens * sizeof(int)) == 0;
  return 0;
}

static double per_second(int n, double seconds) { return seconds > 0.0 ? n / seconds : 0.0; }

/* Per layer: the engine's K/V bytes, and what the combiner cache adds
 * (the shared scratch counted once, apart). */
static double kv_kib(const generator *g) { return 2.0 * g->kv.seq * KV_DIM * (double)g->kv.elem / 1024.0; }
static const char *kv_name(int type) { return type == COMBINER_F16 ? "f16" : type == COMBINER_BF16 ? "bf16" : "f32"; }
static double extra_kib(const generator *g) { return (double)(g->cache_bytes - g->scratch_bytes) / LAYERS / 1024.0; }
static double percent(double part, double whole) { return whole > 0.0 ? 100.0 * part / whole : 0.0; }

/* One row of the table `make generate` prints, one program per kind. */
static void print_row(const options *o, const generator *g, const results *r, const combiner_config *cfg,
                      const char *block, const int *ids) {
  if (o->header) {
    printf("combiner.h %d.%d.%d generate: %d layers, dim %d, %d heads (%d kv) of %d, vocab %d; prompt %d, "
           "%d generated, %d thread(s)\n", COMBINER_VERSION_MAJOR, COMBINER_VERSION_MINOR,
           COMBINER_VERSION_PATCH, LAYERS, DIM, HEADS, KV_HEADS, HEAD_DIM, VOCAB, o->prompt, o->tokens,
           cfg->num_threads);
    printf("attn: share of the time in combiner_cache_append. max rel diff: cache vs combiner_attention.\n"
           "truncate: same tokens again after combiner_cache_truncate to the prompt.\n\n");
    printf("K/V KiB: the engine's K and V per layer; extra KiB: what the combiner cache adds per layer "
           "(shared scratch apart).\n\n");
    printf("%-9s %5s %8s %4s %8s %9s %8s %13s %5s %12s %5s %12s %8s  %s\n", "kind", "block", "mode", "K/V", "K/V KiB",
           "extra KiB", "extra %", "prefill tok/s", "attn", "decode tok/s", "attn", "max rel diff", "truncate",
           "first tokens");
  }
  printf("%-9s %5s %8s %4s %8.0f %9.1f %7.1f%% %13.0f %4.0f%% %12.1f %4.0f%% %12.2e %8s  ",
         combiner_kind_string(cfg->kind), block, o->owned ? "owned" : "borrowed", kv_name(g->kv.type), kv_kib(g), extra_kib(g), 100.0 * extra_kib(g) / kv_kib(g),
         per_second(o->prompt, r->prefill_seconds),
         percent(r->prefill_attention, r->prefill_seconds), per_second(o->tokens - 1, r->decode_seconds),
         percent(r->decode_attention, r->decode_seconds), r->check.worst,
         r->same_after_truncate ? "same" : "DIFFER");
  print_ids(ids, o->tokens, 8);
}

static void print_report(const options *o, const generator *g, const results *r, const combiner_config *cfg,
                         const char *block, const int *ids) {
  const int steps = o->tokens - 1;
  printf("combiner.h %d.%d.%d generate: %s (block %s), %d layers, dim %d, %d heads (%d kv) of %d, "
         "vocab %d, %d thread(s)\n", COMBINER_VERSION_MAJOR, COMBINER_VERSION_MINOR, COMBINER_VERSION_PATCH,
         combiner_kind_string(cfg->kind), block, LAYERS, DIM, HEADS, KV_HEADS, HEAD_DIM, VOCAB,
         cfg->num_threads);
  printf("memory:  per layer the engine's K/V (%s) %.1f KiB; the combiner cache (%s) adds %.1f KiB = %.1f%% of "
         "it (%d positions)%s", kv_name(g->kv.type), kv_kib(g), o->owned ? "owned: copies of K/V" : "borrowed K/V", extra_kib(g),
         100.0 * extra_kib(g) / kv_kib(g), cfg->seq_len, g->scratch_bytes ? "" : "\n");
  if (g->scratch_bytes) printf("; one scratch of %.1f KiB for all layers\n", g->scratch_bytes / 1024.0);
  printf("prefill: %d tokens in %.3f s = %.0f tokens/s (attention %.0f%%)\n", o->prompt, r->prefill_seconds,
         per_second(o->prompt, r->prefill_seconds), percent(r->prefill_attention, r->prefill_seconds));
  printf("decode:  %d tokens in %.3f s = %.1f tokens/s (attention %.0f%%, %.1f us per token)\n", steps,
         r->decode_seconds, per_second(steps, r->decode_seconds),
         percent(r->decode_attention, r->decode_seconds), steps > 0 ? 1e6 * r->decode_attention / steps : 0.0);
  printf("tokens:  %s: ", o->temp > 0.0f ? "sampled" : "greedy");
  print_ids(ids, o->tokens, 16);
  printf("check:   cache vs combiner_attention without it, %d layers x %d checks: max rel diff %.2e "
         "(limit %.0e): %s\n", LAYERS, r->check.checks, r->check.worst, CHECK_LIMIT,
         r->check.worst <= CHECK_LIMIT ? "ok" : "FAILED");
  printf("check:   truncate to %d, generate from another token, truncate, generate again (%.1f tokens/s): "
         "%s\n", o->prompt,
         per_second(steps, r->replay_seconds), r->same_after_truncate ? "same tokens, ok" : "FAILED");
}

/* The report of a finished run, from the config the caches ran. */
static int report(const options *o, const generator *g, const results *r, const int *ids, const int *replay) {
  combiner_config cfg;
  char block[16];
  int i;
  const combiner_status st = combiner_cache_config(g->cache[0], &cfg);
  if (st != COMBINER_OK) return fail("combiner_cache_config", st);
  if (cfg.kind == COMBINER_DENSE || cfg.kind == COMBINER_LOGSPARSE) strcpy(block, "-");  /* no blocks */
  else snprintf(block, sizeof block, "%d", cfg.block);
  if (o->table) print_row(o, g, r, &cfg, block, ids);
  else print_report(o, g, r, &cfg, block, ids);

  if (!r->same_after_truncate) {
    for (i = 0; i < o->tokens && ids[i] == replay[i]; ++i) {}
    fprintf(stderr, "generate: after truncate, token %d is %d, was %d\n", i, replay[i], ids[i]);
  }
  if (!(r->check.worst <= CHECK_LIMIT))
    fprintf(stderr, "generate: layer %d, rows [%d, %d) at length %d: cache outputs differ from "
            "combiner_attention by %.3e > %.0e\n", r->check.layer, r->check.first, r->check.len, r->check.len,
            r->check.worst, CHECK_LIMIT);
  return r->check.worst <= CHECK_LIMIT && r->same_after_truncate ? 0 : 1;
}

int main(int argc, char **argv) {
  options o;
  generator g;
  results r;
  int *ids, *replay, rc;
  if (!parse_options(argc, argv, &o)) {
    usage(argv[0]);
    return 2;
  }
#ifdef GEN_OPENMP
  if (o.threads > 0) omp_set_num_threads(o.threads);
#endif
  memset(&g, 0, sizeof g);
  memset(&r, 0, sizeof r);
  ids = (int *)malloc((size_t)o.tokens * sizeof(int));
  replay = (int *)malloc((size_t)o.tokens * sizeof(int));
  rc = ids && replay ? run(&o, &g, ids, replay, &r) : fail("ids", COMBINER_ERR_OUT_OF_MEMORY);
  if (rc == 0) rc = report(&o, &g, &r, ids, replay);
  free(ids); free(replay); generator_free(&g);
  return rc;
}
