/* combiner.h — Combiner attention (full attention at sub-quadratic cost) for C/C++.
 *
 * A single-header C99 library that computes the attention of "Combiner: Full
 * Attention Transformer with Sparse Computation Cost" (Ren et al., NeurIPS
 * 2021) on buffers you own. Every query reaches every (causal: every earlier)
 * position, either directly or through a shared summary ("abstraction") of
 * the region the position belongs to, at O(L*sqrt(L)) cost instead of the
 * O(L^2) of dense attention. The exact math is in SPEC.md; this file computes
 * it in float32.
 *
 * DO THIS
 *   In exactly one C or C++ file:
 *       #define COMBINER_IMPLEMENTATION
 *       #include "combiner.h"
 *   Everywhere else just #include "combiner.h".
 *
 *       combiner_config cfg = {0};          // zero means default everywhere
 *       cfg.seq_len = L; cfg.head_dim = 64; cfg.num_heads = 8;
 *       cfg.causal = 1;                     // kind: COMBINER_DEFAULT_KIND
 *       combiner_status st = combiner_attention(&cfg, q, k, v, out, NULL, 0);
 *       if (st != COMBINER_OK) fprintf(stderr, "%s\n", combiner_status_string(st));
 *
 *   q, k, v, out are float32 [L][H][D] (token-major, as llama2.c/llama.cpp);
 *   any other layout is one pair of strides away (see LAYOUT).
 *
 * COMPILE-TIME OPTIONS (define before the include that has the implementation)
 *   COMBINER_IMPLEMENTATION   emit the definitions in this translation unit
 *   COMBINER_STATIC           make every public function static
 *   COMBINER_API              decoration of public functions (default extern)
 *   COMBINER_ASSERT(x)        internal invariant check (default assert(x));
 *                             never used for user input
 *   COMBINER_MALLOC(n) / COMBINER_FREE(p)
 *                             allocator of the convenience path (workspace
 *                             NULL); define both or neither
 *   COMBINER_NO_OPENMP        ignore OpenMP even when compiled with -fopenmp
 *   COMBINER_KEEP_DENORMALS   do not flush denormals during a call (see NUMERICS)
 *   COMBINER_NO_SIMD          no intrinsics: run the portable C kernels even
 *                             when the compiler targets AVX-512 or AVX2 (see
 *                             KERNELS; combiner_kernel_name() tells which run)
 *   COMBINER_DEFAULT_KIND     what COMBINER_KIND_DEFAULT means; one of
 *                             COMBINER_FIXED, COMBINER_AXIAL (the default when
 *                             undefined: the paper's strongest model),
 *                             COMBINER_MIXTURE, COMBINER_DENSE, COMBINER_LOGSPARSE
 *   COMBINER_NO_FIXED, COMBINER_NO_AXIAL, COMBINER_NO_MIXTURE, COMBINER_NO_DENSE,
 *   COMBINER_NO_LOGSPARSE
 *                             leave that factorization's code out; asking for
 *                             it at run time returns COMBINER_ERR_UNSUPPORTED
 *
 * FACTORIZATIONS (per head; L positions, block m, n = ceil(L/m) blocks)
 *   FIXED    direct: own block (causal: up to the query); every other (causal:
 *            earlier) block through one abstraction: pooled key, value =
 *            attention of the block's pooled query over the block.
 *            Cost O(L*(m + L/m)*d).
 *   AXIAL    2-D view, rows of length m. Direct: own row (causal: up to the
 *            query). Every other (causal: earlier) row t through the cell in
 *            the query's column: key Khat[t][c], value R[t][c] = attention of
 *            q[t][c] over its whole row. Keys: WSUM (expected key, default),
 *            SELF (k[t][c]) or your own between the two phases.
 *            Cost O(L*(m + L/m)*d).
 *   MIXTURE  axial mixture: column and row direct sets, plus column-region and
 *            row-region abstractions of two plans that share one softmax
 *            (JOINT, default) or are averaged (AVERAGE). Cost O(L*(m+L/m)*d)
 *            with a constant about 3x that of AXIAL.
 *   DENSE    exact softmax attention. Cost O(L^2*d). The baseline.
 *   LOGSPARSE query p attends itself (and p-1 when p is odd) and, for every
 *            set bit l >= 1 of p, the aligned block of 2^l positions just
 *            below floor(p/2^l)*2^l through its fixed-style abstraction;
 *            bidirectional mirrors this for the future. Ignores `block`.
 *            Cost O(L*log(L)*d).
 *
 * LAYOUT
 *   A tensor is a base pointer plus two strides in elements: element x of head
 *   h at position i is base[i*token_stride + h*head_stride + x]; the last
 *   dimension is contiguous. token_stride 0 means heads*width, head_stride 0
 *   means width: the token-major [L][H][W] layout. Head-major [H][L][W] is
 *   {token_stride = W, head_stride = L*W}. The rows of one tensor must form
 *   a grid that neither overlaps nor interleaves (the larger stride spans all
 *   rows of the smaller), and out may not overlap any input. q is [L][H][head_dim], k [L][Hkv]
 *   [head_dim], v [L][Hkv][value_dim], out [L][H][value_dim]. GQA/MQA: query
 *   head h reads kv head h / (H/Hkv); K/V are never copied.
 *
 * HALF-PRECISION K/V
 *   cfg.k_type / cfg.v_type = COMBINER_F16 (IEEE binary16) or COMBINER_BF16
 *   (bfloat16): K / V are read as stored (k and v are const void *) and
 *   widened exactly to float32 in registers as they are read (the tile
 *   kernels: a 64-key chunk at a time into per-thread scratch); everything
 *   after is the float32 math on the widened
 *   values (SPEC 7), so a call is bit-identical to the float32 call on
 *   those values. Every kind, the split and two-phase calls and both cache
 *   modes take them; an owned cache stores them in their type. Q, out and
 *   the abstractions stay float32. NaN and Inf widen to NaN and Inf.
 *
 * MEMORY
 *   combiner_workspace_size(cfg) bytes: the abstractions of every head, the
 *   per-query softmax states that Axial and Mixture carry between their two
 *   passes (Logsparse: the pooled queries of its 128-position blocks), and 256*d + 192*dv + 16*ceil(d/8) + 8832 floats of scratch per
 *   thread (37,632 at d = dv = 64; one slot without OpenMP, nth slots for
 *   split calls); O(L*(d+dv)*H), never O(L^2) (whole formula in the README).
 *   Pass a buffer of that size, or NULL to let the call allocate and free it
 *   once.
 *
 * KERNELS
 *   Two primitives do all the work: a tile of up to 64 queries (transposed
 *   once) against 64 keys at a time read in place from any sequence (a row, a
 *   column, the summaries): scores, online softmax, P*V; and its one-query
 *   form for decode steps and pooled-query block summaries. Their hot loops
 *   are written once on a small vector layer that each instruction set
 *   defines in its own section (>>isa): AVX-512 (e.g. -march=native on such
 *   a CPU), AVX2 + FMA (e.g. -march=haswell) and NEON (aarch64). The
 *   compiler's target flags choose; the portable C path is always there and
 *   is what COMBINER_NO_SIMD selects; combiner_kernel_name() says which runs.
 *   combiner_flops(cfg) gives the work of a call for throughput figures.
 *
 * TWO PHASES
 *   combiner_summarize() writes every region's abstraction (keys and values)
 *   into your buffers, combiner_combine() mixes direct and abstraction logits
 *   into the output. combiner_attention() is exactly summarize + combine.
 *   Between the two you may replace summary keys: that is how a trained
 *   Combiner-Axial model (learned keys W2*LN(x + W1*R)) runs on this library.
 *   See combiner_summary_info for where each abstraction lives.
 *
 * DECODE
 *   combiner_cache_*: a caller-owned cache per layer (causal kinds and
 *   DENSE): combiner_cache_size(cfg, max_len) bytes, init on your buffer,
 *   then append T tokens at a time (T = 1: decode; T > 1: chunked prefill)
 *   and get their outputs; truncate to roll back. Every abstraction is
 *   computed once, when the first token that needs it arrives, so a token
 *   costs O((m + L/m)*d) per head instead of DENSE's O(L*d). Same outputs
 *   as one combiner_attention over the whole sequence with the same block.
 *   Inside an engine (combiner_cache_init_ex): K/V borrowed from the
 *   engine's own KV cache (the combiner cache keeps only its abstractions,
 *   recent queries and running pools), appends at explicit positions
 *   (combiner_cache_append_at), one scratch shared by every layer.
 *
 * RANGES OF ONE SEQUENCE (sequence parallelism, e.g. over MPI)
 *   combiner_range_*: nranks processes each own a contiguous range of one
 *   sequence and hold only its Q, K, V (K/V plus a halo of less than one
 *   block). They exchange abstractions, never K/V: partial query pools of
 *   the regions that straddle ranges (round 1), then partial softmax states
 *   (max, sum, weighted values) and key pools of every region another range
 *   reads (round 2), each as one all-gather; then each combines its rows.
 *   FIXED and LOGSPARSE (AXIAL and MIXTURE read per-cell abstractions of
 *   every earlier row: refused). Rows equal combiner_attention's, bit for
 *   bit when no region straddles (FIXED on block-aligned ranges).
 *   examples/mpi_attention.c runs it on Open MPI.
 *
 * THE BLOCK IS THE MODEL'S
 *   A trained model fixes its block m. Every entry point (one call, cache,
 *   range) resolves block 0 the same way, from the model's context length:
 *   m = ceil(sqrt(seq_len)).
 *   A cache's capacity (max_len) never decides it, so the same model and
 *   tokens give the same outputs in caches of any size; a cache of a kind
 *   with blocks (FIXED, AXIAL, MIXTURE) given neither seq_len nor block is
 *   refused with COMBINER_ERR_NO_BLOCK.
 *
 * INTROSPECTION
 *   combiner_attention_matrix() gives the effective matrix A (out = A v) that
 *   the kernels compute for your q and k, combiner_support_map() how each
 *   query reaches each position (directly, through which region, or not):
 *   O(L^2), for debugging, pictures and checking a port.
 *
 * combiner.h does NOT
 *   - start threads of its own (it uses OpenMP when you compile with it);
 *   - allocate when you pass a workspace;
 *   - keep any global state (concurrent calls on different buffers are safe);
 *   - do projections, RoPE, masking other than causal, or dropout.
 *
 * NUMERICS
 *   Softmax is online and max-subtracted: finite logits of any size (1e30)
 *   give finite outputs. NaN/Inf in a position reaches only the outputs that
 *   attend it (causal: later queries); memory outside the tensors' rows is
 *   never read. On x86 each call flushes denormals (FTZ and DAZ, restored on
 *   return): values below FLT_MIN (1.2e-38) in magnitude count as zero, so an
 *   output whose exact value is that small may come out as 0. This keeps a
 *   call on tiny inputs from running ~30x slower; COMBINER_KEEP_DENORMALS
 *   keeps full gradual underflow instead.
 *
 * DETERMINISM
 *   Work is split into units fixed by the problem (head x block or row), each
 *   computed by one thread in a fixed order, so results are bit-identical for
 *   any thread count. They can differ across compilers and flags.
 *
 * VERSION HISTORY
 *   0.2.0  Decode cache (combiner_cache_*), COMBINER_ERR_CACHE_FULL; AVX2
 *          micro-kernels; faster prefill (AXIAL runs 2 steps); the block is
 *          the model's (COMBINER_ERR_NO_BLOCK); one vector layer per ISA and
 *          NEON kernels; combiner_kernel_name(); caches on borrowed K/V
 *          (combiner_cache_init_ex, COMBINER_ERR_ROLLBACK), append_at,
 *          shared scratch, combiner_cache_kv; f16 and bf16 K/V
 *          (combiner_type k_type, v_type; k and v as const void *);
 *          ranges of one sequence (combiner_range_plan, _pools, _states,
 *          _combine: sequence parallelism exchanging abstractions only).
 *   0.1.0  Fixed, Axial, Mixture, Logsparse and Dense; causal and
 *          bidirectional; two-phase API; split calls; tiled kernels with
 *          AVX-512 micro-kernels; combiner_flops; float64-reference test
 *          suite, sanitizers, fuzzing.
 *
 * LICENSE: MIT, see the end of this file.
 */
#ifndef COMBINER_H
#define COMBINER_H

#include <stddef.h>

#define COMBINER_VERSION_MAJOR 0
#define COMBINER_VERSION_MINOR 2
#define COMBINER_VERSION_PATCH 0

#ifndef COMBINER_API
#  ifdef COMBINER_STATIC
#    if defined(__GNUC__) || defined(__clang__)
#      define COMBINER_API static __attribute__((unused))
#    else
#      define COMBINER_API static
#    endif
#  else
#    define COMBINER_API extern
#  endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum combiner_status {
  COMBINER_OK = 0,
  COMBINER_ERR_INVALID_ARGUMENT,     /* bad sizes, NULL pointers, bad enum, overlap */
  COMBINER_ERR_WORKSPACE_TOO_SMALL,
  COMBINER_ERR_OUT_OF_MEMORY,
  COMBINER_ERR_OVERFLOW,             /* sizes whose byte counts overflow    */
  COMBINER_ERR_UNSUPPORTED,          /* kind compiled out (COMBINER_NO_*), or a call it has not (ranges) */
  COMBINER_ERR_CACHE_FULL,           /* append would pass the cache's max_len */
  COMBINER_ERR_NO_BLOCK,             /* block 0 and no seq_len: the block is the model's */
  COMBINER_ERR_ROLLBACK              /* a borrowed cache asked to go back past its rollback window */
} combiner_status;

typedef enum combiner_kind {
  COMBINER_KIND_DEFAULT = 0,  /* the compile-time choice, COMBINER_DEFAULT_KIND */
  COMBINER_FIXED, COMBINER_AXIAL, COMBINER_MIXTURE, COMBINER_DENSE,
  COMBINER_LOGSPARSE          /* O(L log L): SPEC 5b */
} combiner_kind;

typedef enum combiner_pool { COMBINER_POOL_MAX = 0, COMBINER_POOL_MEAN } combiner_pool;
typedef enum combiner_axial_key { COMBINER_AXIAL_KEY_WSUM = 0, COMBINER_AXIAL_KEY_SELF } combiner_axial_key;
typedef enum combiner_mixture_norm { COMBINER_MIXTURE_JOINT = 0, COMBINER_MIXTURE_AVERAGE } combiner_mixture_norm;

/* Element type of K and V (Q and out are always float32): IEEE binary16 and
 * bfloat16 are read as stored and converted exactly to float32 in registers
 * (SPEC 7); the math is the float32 math on the converted values. */
typedef enum combiner_type { COMBINER_F32 = 0, COMBINER_F16, COMBINER_BF16 } combiner_type;

typedef struct combiner_layout {  /* strides in elements of the tensor's type; the last dim is contiguous */
  ptrdiff_t token_stride;         /* 0 => heads of this tensor x its width  */
  ptrdiff_t head_stride;          /* 0 => its width (token-major [L][H][W]) */
} combiner_layout;

typedef struct combiner_config {
  combiner_kind kind;
  int seq_len;          /* L >= 1 */
  int head_dim;         /* d >= 1, query/key width */
  int value_dim;        /* 0 => head_dim; value/output width may differ */
  int num_heads;        /* query heads >= 1 */
  int num_kv_heads;     /* 0 => num_heads; must divide num_heads (GQA/MQA);
                           query head h reads kv head h / (num_heads/num_kv_heads) */
  int block;            /* 0 => ceil(sqrt(L)); any value >= 1 is valid     */
  int causal;           /* nonzero => autoregressive                      */
  float scale;          /* 0 => 1/sqrt(head_dim)                          */
  combiner_pool pool;
  combiner_axial_key axial_key;
  combiner_mixture_norm mixture_norm;
  int num_threads;      /* 0 => OpenMP default (1 without OpenMP)         */
  combiner_layout q_layout, k_layout, v_layout, out_layout;  /* per-tensor strides */
  combiner_type k_type, v_type;  /* 0 => float32; K and V of every call and cache */
} combiner_config;

/* Where the abstractions of the two-phase API live. Summary keys are
 * float[num_heads][count][head_dim], values float[num_heads][count][value_dim]
 * (per query head, because every abstraction value attends with that head's
 * pooled query). Entry e of head h starts at keys + (h*count + e)*head_dim.
 *   FIXED     count = n: entry t is block t.
 *   AXIAL     count = L (+1): entry i is the cell at position i = t*m + c:
 *             key Khat[t][c], value R[t][c]. Bidirectional with a short last
 *             row (L % m != 0, n > 1) adds entry L: that row's fixed-style
 *             abstraction (pooled key), used by columns the short row lacks.
 *   MIXTURE   count = sections*L, section s at entries [s*L, (s+1)*L), entry
 *             s*L + i for the cell at position i = (t, c):
 *               0 column prefix: rows 0..t of column c
 *               1 row prefix:    columns 0..c of row t
 *               2 row suffix:    columns c..end of row t
 *               3 column suffix: rows t..end of column c (bidirectional only)
 *   DENSE     count = 0 (no abstractions; the buffers may be NULL).
 *   LOGSPARSE count = S (causal) or 2*S, S = floor(L/2) + floor(L/4) + ...:
 *             entry off(l) + b is the start-aligned block [b*2^l, (b+1)*2^l)
 *             of level l >= 1, off(l) = sum of floor(L/2^l') for l' < l;
 *             bidirectional adds entry S + off(l) + b, the end-aligned block
 *             [L-(b+1)*2^l, L-b*2^l). */
typedef struct combiner_summary_info {
  size_t count;         /* abstractions per query head */
  size_t key_floats;    /* num_heads * count * head_dim  */
  size_t value_floats;  /* num_heads * count * value_dim */
  int sections;         /* MIXTURE: 3 causal, 4 bidirectional; LOGSPARSE: 1 causal,
                           2 bidirectional; else 1 (0 dense) */
} combiner_summary_info;

/* Bytes of workspace combiner_attention needs; 0 for an invalid config (then
 * combiner_attention reports why). Depends on num_threads. */
COMBINER_API size_t combiner_workspace_size(const combiner_config *cfg);

/* out = Combiner attention of q, k, v as cfg says. workspace NULL => the
 * library allocates (COMBINER_MALLOC) and frees it; otherwise it must hold
 * workspace_size >= combiner_workspace_size(cfg) bytes (any alignment).
 * Nothing is written to out unless the call returns COMBINER_OK. */
COMBINER_API combiner_status combiner_attention(const combiner_config *cfg,
    const float *q, const void *k, const void *v, float *out,
    void *workspace, size_t workspace_size);

COMBINER_API const char *combiner_status_string(combiner_status s);
COMBINER_API const char *combiner_kind_string(combiner_kind k);
/* The kernels this translation unit was compiled to run: "AVX-512",
 * "AVX2+FMA", "NEON" or "portable C" (see KERNELS); for logs and benchmarks. */
COMBINER_API const char *combiner_kernel_name(void);

/* Validates cfg and writes it with every default made explicit (kind, value_dim,
 * num_kv_heads, block, scale, num_threads, strides): what will run. */
COMBINER_API combiner_status combiner_resolve_config(const combiner_config *cfg,
    combiner_config *resolved);

/* Floating-point operations of one call, counted from the factorization's
 * own partition (SPEC 3-5): every attended term costs 2*head_dim (its logit)
 * + 2*value_dim (its share of the output), summaries included (Axial WSUM
 * adds 2*head_dim per summary term for the expected key); pooling, softmax
 * and exp are not counted. 0 for an invalid config. */
COMBINER_API double combiner_flops(const combiner_config *cfg);

/* ---- split calls, for engines that own their thread pool ----
 * A call is combiner_step_count(cfg) steps (1 to 3); step s may start once
 * step s-1 has finished in every part. combiner_attention_part runs part
 * `ith` of `nth` of one step: a fixed, disjoint share of that step's work
 * units (ith, ith+nth, ...), which writes only its own entries of the
 * summaries, saved states and out, and only scratch slot `ith` of the
 * workspace. All parts of all steps take the same workspace, of
 * combiner_part_workspace_size(cfg, nth) bytes (never NULL here). The result
 * is bit-identical to combiner_attention for any nth. out is written only by
 * the last step. Returns 0 / 0 for an invalid config. */
COMBINER_API int combiner_step_count(const combiner_config *cfg);
COMBINER_API size_t combiner_part_workspace_size(const combiner_config *cfg, int nth);
COMBINER_API combiner_status combiner_attention_part(const combiner_config *cfg,
    const float *q, const void *k, const void *v, float *out,
    void *workspace, size_t workspace_size, int step, int ith, int nth);

/* ---- two-phase API ---- */
COMBINER_API combiner_status combiner_query_summaries(const combiner_config *cfg,
    combiner_summary_info *info);
/* Bytes of workspace for combiner_summarize / combiner_combine (scratch only;
 * 0 for an invalid config). NULL workspace => allocated per call. */
COMBINER_API size_t combiner_phase_workspace_size(const combiner_config *cfg);
/* Phase 1: every abstraction of every head into keys/values (see above). */
COMBINER_API combiner_status combiner_summarize(const combiner_config *cfg,
    const float *q, const void *k, const void *v,
    float *summary_keys, float *summary_values,
    void *workspace, size_t workspace_size);
/* Phase 2: direct logits plus abstraction logits, one softmax, into out. */
COMBINER_API combiner_status combiner_combine(const combiner_config *cfg,
    const float *q, const void *k, const void *v,
    const float *summary_keys, const float *summary_values, float *out,
    void *workspace, size_t workspace_size);

/* ---- introspection (small L: debugging, pictures, checking a port) ----
 * The effective attention matrix of SPEC 6: matrix[h][i][j] (float[H][L][L])
 * with out_i = sum_j A[h][i][j] * v_j, for the given q and k (the output is
 * linear in v). Computed by the kernels themselves (value j = the j-th unit
 * vector), so A times v equals combiner_attention's output. Allocates with
 * COMBINER_MALLOC, live together, 4*Hkv*L*L + 1 bytes of unit vectors and
 * the workspace of combiner_attention with value_dim = L: at most
 *   4*L*L*(Hkv + 6*H) + 16*H*L*(d + 1) + T*(1032*d + 768*L + 35384) + 256
 * bytes, T = scratch slots (num_threads with OpenMP, else 1); e.g. 6.0 MB at
 * L = 256, H = 4, Hkv = 1, d = 16 (bidirectional MIXTURE). Not for hot paths. */
COMBINER_API combiner_status combiner_attention_matrix(const combiner_config *cfg,
    const float *q, const void *k, float *matrix);
/* How query i reaches position j (SPEC 3-5b; the same for every head):
 * map[i*L + j] = -1 not attended (causal, j > i), 0 directly, r >= 1 through
 * the abstraction of region r:
 *   FIXED      r = 1 + the block of j
 *   AXIAL      r = 1 + the row of j (through the cell in i's column, or the
 *              short last row's fixed-style abstraction)
 *   MIXTURE    plan 0 (vertical): r = 1 + c above i's row, 1 + m + c below it
 *              (j in column c); plan 1 (horizontal): r = 1 + 2t left of i's
 *              column, 2 + 2t right of it (j in row t). Both plans cover the
 *              same positions; JOINT puts both in one softmax.
 *   LOGSPARSE  r = l for the aligned block of level l before i, 32 + l for
 *              the end-aligned block of level l after it (bidirectional)
 *   DENSE      0 for every attended j.
 * plan must be 0 or 1; it matters only for MIXTURE. map: int[L][L]. */
COMBINER_API combiner_status combiner_support_map(const combiner_config *cfg, int plan, int *map);

/* ---- decode cache: incremental causal attention ----
 * A caller-owned cache of one attention layer: K/V (and Q, which the
 * summaries pool) of every position so far, plus the abstractions of every
 * completed region. Appending T >= 1 tokens at positions [P, P+T) computes
 * their outputs as the one-call causal attention over [0, P+T) would
 * (queries aligned bottom-right): T = 1 is a decode step, T > 1 chunked
 * prefill. Each abstraction is computed once, when the first token that
 * needs it arrives, so a token costs O((m + L/m)*d) per head (Logsparse
 * O(log L * d), DENSE O(L*d)); nothing is allocated after init.
 *
 * cfg as for combiner_attention, with causal != 0 (a cache is causal);
 * seq_len is the model's context length, which only resolves block 0 to
 * ceil(sqrt(seq_len)) exactly as combiner_attention does (max_len may be
 * smaller or larger). FIXED, AXIAL and MIXTURE need seq_len >= 1 or a
 * block >= 1 (else COMBINER_ERR_NO_BLOCK); DENSE and LOGSPARSE have no
 * block and may leave both 0. q, k, v and out of an append use cfg's
 * layouts for T tokens.
 * The outputs equal combiner_attention on the whole sequence with
 * seq_len = combiner_cache_length() and the cache's block
 * (combiner_cache_config()), within float32 rounding; they do not depend on
 * how the tokens were split into appends (bit-identical) nor on num_threads
 * (with combiner_cache_options.fast_chunks, an append of >= 64 tokens gets
 * combiner_attention's bits instead: see there).
 * Different caches may be used concurrently; one cache by one thread at a
 * time. */
typedef struct combiner_cache combiner_cache;

/* Bytes of buffer a cache of up to max_len tokens needs (scratch for
 * cfg's num_threads included); 0 if cfg or max_len is invalid (then
 * combiner_cache_init says why). */
COMBINER_API size_t combiner_cache_size(const combiner_config *cfg, int max_len);
/* Lays the cache out in buffer (any alignment, buffer_size bytes) and sets
 * *cache; the cache is empty. */
COMBINER_API combiner_status combiner_cache_init(combiner_cache **cache, const combiner_config *cfg,
    int max_len, void *buffer, size_t buffer_size);
/* Appends count >= 1 tokens: q [count][H][d], k and v [count][Hkv][.] in
 * cfg's layouts; writes their outputs to out (NULL: only fill the cache,
 * e.g. a prompt whose outputs are not needed). COMBINER_ERR_CACHE_FULL if
 * length + count > max_len; on any error nothing changes. */
COMBINER_API combiner_status combiner_cache_append(combiner_cache *cache, int count,
    const float *q, const void *k, const void *v, float *out);
/* Forgets every position >= length (0 <= length <= current length), e.g.
 * a rejected speculative draft. O(1) for an owned cache: later appends
 * recompute what they need; a borrowed one also replays its query pools
 * from a snapshot (at most 64 positions, a block for MIXTURE), and refuses
 * to go back more than its rollback (COMBINER_ERR_ROLLBACK). */
COMBINER_API combiner_status combiner_cache_truncate(combiner_cache *cache, int length);
/* Positions held; -1 for NULL or a buffer that is not an initialized cache. */
COMBINER_API int combiner_cache_length(const combiner_cache *cache);
/* The resolved config the cache runs: seq_len = max_len, the block explicit
 * (the model's: see THE BLOCK IS THE MODEL'S). */
COMBINER_API combiner_status combiner_cache_config(const combiner_cache *cache, combiner_config *resolved);

/* ---- a cache inside an engine: borrowed K/V, shared scratch, positions ----
 * An engine keeps its own KV cache; a borrowed cache reads K and V there
 * and holds only what Combiner adds: the abstractions of completed regions,
 * the queries of the last few positions (the open regions' and the rollback
 * window's), and running pools of the queries of regions still open
 * (MIXTURE's columns, LOGSPARSE's levels). Its outputs are bit-identical to
 * an owned cache's fed the same tokens. Sizes (max_len 16384, d 64, 8 heads,
 * 2 kv heads): see the README's memory table. */
typedef struct combiner_cache_options {
  int max_len;          /* positions the cache can hold, >= 1 */
  /* Borrowed K/V: the engine's K and V of this layer (both, or neither for
   * an owned cache): position i, kv head g at k + i * token_stride +
   * g * head_stride of cfg's k_layout (v: v_layout), for max_len positions;
   * e.g. layer l's slice of a [layer][seq][kv_heads][head_dim] cache. The
   * engine writes positions [P, P+T) there before appending them, and the
   * append passes k = v = NULL. The cache never writes them. Elements of
   * cfg's k_type / v_type. */
  const void *k, *v;
  /* Borrowed: how far a truncate may go back (a speculative draft's
   * tokens, say), measured from the furthest length the cache has held: to
   * any length >= that - rollback; beyond: COMBINER_ERR_ROLLBACK. Owned
   * caches go back any distance and ignore it. */
  int rollback;
  /* Nonzero: the cache has no scratch; every append passes one (see
   * combiner_cache_scratch_size), which the caches of all layers may share
   * when they append one after another. Zero: scratch for cfg's num_threads
   * inside the cache, as combiner_cache_init does. */
  int shared_scratch;
  /* Nonzero: an append of 64 tokens or more with outputs (chunked prefill)
   * computes them with combiner_attention's prefill kernels (DENSE and
   * FIXED; the other kinds ignore it): the one call's arithmetic, within
   * float32 rounding of one-token appends but not their bits. Zero: every
   * append does a decode step's arithmetic per query, so the outputs are
   * the same bits however the tokens are split into appends. A borrowed
   * FIXED cache then keeps the queries of at least 256 + m positions
   * (m the block) instead of 2m, so that its runs are long enough. */
  int fast_chunks;
} combiner_cache_options;

/* combiner_cache_size / combiner_cache_init with options (those two are
 * these with {max_len}: owned, no rollback limit, scratch inside). */
COMBINER_API size_t combiner_cache_size_ex(const combiner_config *cfg, const combiner_cache_options *opt);
COMBINER_API combiner_status combiner_cache_init_ex(combiner_cache **cache, const combiner_config *cfg,
    const combiner_cache_options *opt, void *buffer, size_t buffer_size);
/* Bytes of scratch for appends running on up to `threads` threads (0:
 * cfg's num_threads, resolved now); depends on cfg's widths only, so one
 * scratch serves every layer of a model. */
COMBINER_API size_t combiner_cache_scratch_size(const combiner_config *cfg, int threads);
/* Appends count tokens at `position`: equal to the length, an append;
 * smaller, a truncate to it first (within the rollback window of a borrowed
 * cache); larger: COMBINER_ERR_INVALID_ARGUMENT. scratch: NULL uses the
 * cache's own; else scratch_size bytes of it (any alignment), threads
 * limited to the slots it holds. Borrowed: k = v = NULL. */
COMBINER_API combiner_status combiner_cache_append_at(combiner_cache *cache, int position, int count,
    const float *q, const void *k, const void *v, float *out, void *scratch, size_t scratch_size);
/* Where the cache's K and V are: position i, kv head g of K at element
 * i * k_layout->token_stride + g * k_layout->head_stride from *k, elements
 * of cfg's k_type (V likewise) (the engine's buffers for a borrowed cache,
 * the cache's own arrays for an owned one: head-major, DENSE token-major).
 * Rows at positions >= the length are unspecified. */
COMBINER_API combiner_status combiner_cache_kv(const combiner_cache *cache, const void **k, const void **v,
    combiner_layout *k_layout, combiner_layout *v_layout);

/* ---- ranges of one sequence: sequence parallelism (SPEC 7) ----
 * FIXED and LOGSPARSE, causal and bidirectional, computed by nranks
 * processes (MPI ranks, say) that each own a contiguous range of one
 * sequence of length cfg->seq_len: rank r owns positions [bounds[r],
 * bounds[r+1]), 0 = bounds[0] < bounds[1] < ... < bounds[nranks] = seq_len,
 * the same bounds on every rank. A rank passes q (and gets out) for its
 * own positions only, and k, v for [kv_begin, kv_end): its positions and
 * the halo its direct terms reach (FIXED: the rest of its first and, when
 * bidirectional, last block, fewer than `block` positions on each side,
 * none when its bounds are multiples of the block; LOGSPARSE: at most one
 * position on each side). Abstractions cross ranks, K and V never do:
 *   1. combiner_range_pools: the rank's round-1 message, the partial pools
 *      of the queries of regions that straddle its edges (pooled queries
 *      must be whole before a region's value can be computed); often empty;
 *   2. every rank receives every rank's round-1 message, back to back in
 *      rank order (MPI_Allgatherv, displacements = prefix sums of sizes);
 *   3. combiner_range_states: the round-2 message, the partial softmax
 *      states (max, sum, weighted values) and partial key pools of every
 *      region the rank holds part of and another rank reads;
 *   4. every rank receives every rank's round-2 message the same way;
 *   5. combiner_range_combine: merges the partial states of the regions it
 *      reads (in rank order), summarizes the regions it reads that lie
 *      within its range, and writes out for its positions.
 * Messages are float arrays whose order every rank derives from bounds;
 * pass them through unchanged. AXIAL and MIXTURE are refused with
 * COMBINER_ERR_UNSUPPORTED (a query reads a per-cell abstraction of every
 * earlier row: O(L*d) per rank, no less than gathering K/V), DENSE too.
 * Outputs are rows [begin, end) of combiner_attention on the whole
 * sequence with the same config: bit for bit when no region straddles two
 * ranges (FIXED with block-aligned bounds), else within float32 rounding
 * of it (partial states merge exactly in real arithmetic). The block is
 * the model's: block 0 resolves from seq_len (the whole sequence's
 * length), as everywhere. Layouts: q and out have end - begin rows, k and
 * v kv_end - kv_begin rows, in cfg's layouts (a head-major head_stride
 * counts these rows). Threads: cfg->num_threads, as combiner_attention. */
typedef struct combiner_range_info {
  int begin, end;           /* this rank's positions: q and out have end - begin rows */
  int kv_begin, kv_end;     /* the rows of K and V it passes: its range and the halo */
  size_t pool_floats;       /* its round-1 message, in floats (often 0) */
  size_t state_floats;      /* its round-2 message, in floats */
  size_t received_entries;  /* abstractions (per query head) it assembles from other ranks' states */
  size_t workspace_size;    /* bytes of workspace for combiner_range_states / _combine */
} combiner_range_info;

/* Validates cfg, nranks >= 1 and bounds, and describes rank `rank`'s part.
 * Any rank may ask about every other (the sizes of their messages): the
 * layouts are not looked at here (they count the caller's own rows) but by
 * the calls that take tensors. */
COMBINER_API combiner_status combiner_range_plan(const combiner_config *cfg, int nranks, const int *bounds,
    int rank, combiner_range_info *info);
/* Round 1: writes info.pool_floats floats to message (may be NULL when 0). */
COMBINER_API combiner_status combiner_range_pools(const combiner_config *cfg, int nranks, const int *bounds,
    int rank, const float *q, float *message);
/* Round 2: pools = every rank's round-1 message back to back (NULL when all
 * are empty); writes info.state_floats floats to message. workspace as for
 * combiner_attention (NULL: allocated and freed in the call). */
COMBINER_API combiner_status combiner_range_states(const combiner_config *cfg, int nranks, const int *bounds,
    int rank, const float *q, const void *k, const void *v, const float *pools, float *message,
    void *workspace, size_t workspace_size);
/* The outputs: states = every rank's round-2 message back to back; writes
 * out's end - begin rows. */
COMBINER_API combiner_status combiner_range_combine(const combiner_config *cfg, int nranks, const int *bounds,
    int rank, const float *q, const void *k, const void *v, const float *states,
    float *out, void *workspace, size_t workspace_size);

#ifdef __cplusplus
}
#endif

#endif /* COMBINER_H */

/* ======================================================================== */
/*                             IMPLEMENTATION                               */
/* ======================================================================== */
#ifdef COMBINER_IMPLEMENTATION
#ifndef COMBINER_IMPLEMENTATION_INCLUDED
#define COMBINER_IMPLEMENTATION_INCLUDED

/* MAP OF THE IMPLEMENTATION (grep the markers; each section may call the ones
 * above it, never below, except the few per-kind questions that >>config and
 * >>workspace declare ahead and >>kinds answers)
 *   >>config        validation, defaults resolved in one place (combiner__resolve),
 *                   the model's block
 *   >>workspace     one layout function for the size queries and the kernels
 *   >>isa           the vector layer: >>isa-avx512, >>isa-avx2, >>isa-neon define
 *                   the same operations; the only intrinsics in the file
 *   >>primitives    pooling, exp, softmax states, the attention tile (scores,
 *                   softmax of a chunk, P.V) on the vector layer or portable C
 *   >>single-query  one query against a sequence; region summaries
 *   >>units         the context of a call, threads, denormals, rows of tensors,
 *                   the decode job, and combiner__kind_ops: what a kind is
 *   >>dense >>fixed >>axial >>mixture >>logsparse
 *                   one section per factorization, all of it: the partition
 *                   (entries per head, support map, terms per query for the
 *                   FLOP count), the prefill units and steps, the decode
 *                   cache's triggers and per-query terms, its cache layout;
 *                   one combiner__kind_ops at the end
 *   >>kinds         the table: kind -> its ops (the only switch on the kind)
 *   >>dispatch      runs a call's steps; buffer checks, workspace
 *   >>cache         the decode cache, kind-blind: storage, appends, threads
 *   >>ranges        one range of a sequence: regions shared with other ranges,
 *                   the two rounds of partials, merging, the range's queries
 *   >>introspection support map and the effective matrix
 *   >>api           the public functions
 * ADDING A KIND: a section like >>fixed and one row in >>kinds (and its enum
 * value, name and COMBINER_NO_ switch in the declarations).
 *
 * GLOSSARY: the units of work
 *   call      one public entry (combiner_attention, an append, ...)
 *   step      a phase of a call that must finish, in every thread, before the
 *             next starts (combiner_step_count); e.g. summaries, then combine
 *   unit      a piece of a step fixed by the problem (head x block, head x row
 *             tile, head x column tile); computed by one thread in a fixed
 *             order, so results never depend on the thread count
 *   part      a split call's fixed share of a step's units (ith of nth)
 *   slice     the units one thread runs: ith, ith + nth, ... (run_slice)
 *   slot      a thread's (or part's) scratch in the workspace
 *   tile      up to 64 queries packed together; chunk: up to 64 keys at once
 *   pass      one walk over the rows (or the columns) of the 2-D view
 *   phase     the two-phase API: summarize, then combine
 *   state     a query's online softmax: running max, sum, unnormalized output
 */

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(COMBINER_MALLOC) != defined(COMBINER_FREE)
#  error "combiner.h: define both COMBINER_MALLOC and COMBINER_FREE, or neither"
#endif
#ifndef COMBINER_MALLOC
#  include <stdlib.h>
#  define COMBINER_MALLOC(n) malloc(n)
#  define COMBINER_FREE(p) free(p)
#endif
#ifndef COMBINER_ASSERT
#  include <assert.h>
#  define COMBINER_ASSERT(x) assert(x)
#endif
#if defined(_OPENMP) && !defined(COMBINER_NO_OPENMP)
#  define COMBINER__OPENMP 1
#  include <omp.h>
#endif
#ifndef COMBINER_DEFAULT_KIND
#  define COMBINER_DEFAULT_KIND COMBINER_AXIAL
#endif
/* The instruction set, chosen here once (see >>isa). */
#if !defined(COMBINER_NO_SIMD) && defined(__AVX512F__)
#  include <immintrin.h>
#  define COMBINER__AVX512 1
#elif !defined(COMBINER_NO_SIMD) && defined(__AVX2__) && defined(__FMA__)
#  include <immintrin.h>
#  define COMBINER__AVX2 1
#elif !defined(COMBINER_NO_SIMD) && defined(__ARM_NEON) && defined(__aarch64__)
#  include <arm_neon.h>
#  define COMBINER__NEON 1
#endif

#define COMBINER__HAS_FIXED 1
#define COMBINER__HAS_AXIAL 1
#define COMBINER__HAS_MIXTURE 1
#define COMBINER__HAS_DENSE 1
#define COMBINER__HAS_LOGSPARSE 1
#ifdef COMBINER_NO_LOGSPARSE
#  undef COMBINER__HAS_LOGSPARSE
#  define COMBINER__HAS_LOGSPARSE 0
#endif
#ifdef COMBINER_NO_FIXED
#  undef COMBINER__HAS_FIXED
#  define COMBINER__HAS_FIXED 0
#endif
#ifdef COMBINER_NO_AXIAL
#  undef COMBINER__HAS_AXIAL
#  define COMBINER__HAS_AXIAL 0
#endif
#ifdef COMBINER_NO_MIXTURE
#  undef COMBINER__HAS_MIXTURE
#  define COMBINER__HAS_MIXTURE 0
#endif
#ifdef COMBINER_NO_DENSE
#  undef COMBINER__HAS_DENSE
#  define COMBINER__HAS_DENSE 0
#endif

/* The compile-time default must name a kind that is compiled in (C99 static
 * assertion: a negative array size is a compile error). */
typedef char combiner__default_kind_is_compiled_in[
    ((COMBINER_DEFAULT_KIND) == COMBINER_FIXED && COMBINER__HAS_FIXED) ||
    ((COMBINER_DEFAULT_KIND) == COMBINER_AXIAL && COMBINER__HAS_AXIAL) || /* NOLINT(misc-redundant-expression): macro constants */
    ((COMBINER_DEFAULT_KIND) == COMBINER_MIXTURE && COMBINER__HAS_MIXTURE) ||
    ((COMBINER_DEFAULT_KIND) == COMBINER_DENSE && COMBINER__HAS_DENSE) ||
    ((COMBINER_DEFAULT_KIND) == COMBINER_LOGSPARSE && COMBINER__HAS_LOGSPARSE) ? 1 : -1];

#if defined(__GNUC__) || defined(__clang__)
#  define COMBINER__SHARED static __attribute__((unused))  /* some kinds may be compiled out */
#  define COMBINER__INLINE static __inline__ __attribute__((always_inline, unused))   /* per-row hot loops */
#else
#  define COMBINER__SHARED static
#  define COMBINER__INLINE static
#endif

#define COMBINER__ALIGN 64
#define COMBINER__CHUNK 64   /* logits per online-softmax step */

/* ------------------------------------------------------------------------ */
/* >>config: validation and config resolution                              */
/* ------------------------------------------------------------------------ */

typedef struct combiner__tensor {
  ptrdiff_t ts, hs;    /* token and head stride, in elements */
  size_t extent;       /* elements spanned from the base pointer */
  int type;            /* combiner_type of the elements */
  ptrdiff_t org;       /* position of the base's row 0 (a range of a sequence, >>ranges; else 0) */
} combiner__tensor;

/* Bytes of an element; a tensor's extent in floats (rounded up), for the
 * overlap checks. */
static size_t combiner__type_size(int type) { return type == COMBINER_F32 ? sizeof(float) : sizeof(uint16_t); }
static size_t combiner__tfloats(const combiner__tensor *t) {
  return (t->extent * combiner__type_size(t->type) + sizeof(float) - 1) / sizeof(float);
}

typedef struct combiner__problem {
  int kind, L, d, dv, H, Hkv, group;
  int m, n, last;      /* block, number of blocks/rows, length of the last one */
  int causal, pool, axial_key, mixture_norm, threads;
  float scale;
  combiner__tensor q, k, v, o;
  size_t count;        /* abstractions per query head */
  int sections;
  int slots;           /* scratch slots: OpenMP threads, or parts of a split call */
  ptrdiff_t qring;     /* a borrowed cache's queries: position i in slot i % qring (0: all kept) */
} combiner__problem;

static int combiner__mul(size_t a, size_t b, size_t *r) {
  if (a != 0 && b > (size_t)-1 / a) return 0;
  *r = a * b;
  return 1;
}

static int combiner__add(size_t a, size_t b, size_t *r) {
  if (b > (size_t)-1 - a) return 0;
  *r = a + b;
  return 1;
}

static size_t combiner__round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* Resolves one tensor's strides and checks that its rows (L tokens x heads,
 * each `width` floats) neither overlap each other nor overflow. */
static combiner_status combiner__resolve_tensor(const combiner_layout *lay,
    int L, int heads, int width, combiner__tensor *t) {
  size_t hs, ts, a, b, extent;
  size_t ns, nl, ss, sl;
  if (lay->token_stride < 0 || lay->head_stride < 0)
    return COMBINER_ERR_INVALID_ARGUMENT;
  hs = lay->head_stride ? (size_t)lay->head_stride : (size_t)width;
  if (lay->token_stride) {
    ts = (size_t)lay->token_stride;
  } else if (!combiner__mul((size_t)heads, (size_t)width, &ts)) {
    return COMBINER_ERR_OVERFLOW;
  }
  if (!combiner__mul((size_t)(L - 1), ts, &a) ||
      !combiner__mul((size_t)(heads - 1), hs, &b) ||
      !combiner__add(a, b, &extent) || !combiner__add(extent, (size_t)width, &extent) ||
      extent > (size_t)PTRDIFF_MAX / sizeof(float) || ts > (size_t)PTRDIFF_MAX ||
      hs > (size_t)PTRDIFF_MAX)
    return COMBINER_ERR_OVERFLOW;
  /* Rows must not overlap: with the smaller stride ss over ns rows and the
   * larger sl over nl, need ss >= width and sl >= (ns-1)*ss + width. A
   * dimension of one row imposes nothing. */
  if (ts <= hs) { ss = ts; ns = (size_t)L; sl = hs; nl = (size_t)heads; }
  else          { ss = hs; ns = (size_t)heads; sl = ts; nl = (size_t)L; }
  if (ns == 1) { ss = sl; ns = nl; nl = 1; }
  if (ns > 1 && ss < (size_t)width) return COMBINER_ERR_INVALID_ARGUMENT;
  if (nl > 1 && sl < (ns - 1) * ss + (size_t)width) return COMBINER_ERR_INVALID_ARGUMENT;
  t->ts = (ptrdiff_t)ts;
  t->hs = (ptrdiff_t)hs;
  t->extent = extent;
  t->type = COMBINER_F32;
  t->org = 0;
  return COMBINER_OK;
}

static int combiner__ceil_sqrt(int L) {
  int r = (int)sqrt((double)L);
  while ((long long)r * r < L) ++r;
  while (r > 1 && (long long)(r - 1) * (r - 1) >= L) --r;
  return r;
}

/* The block belongs to the model (SPEC 7): an explicit block, else
 * ceil(sqrt(seq_len)) of the model's context length; 0 when neither is
 * given. Every entry point (one call, cache) resolves it here. */
static int combiner__model_block(const combiner_config *cfg) {
  if (cfg->block) return cfg->block;
  return cfg->seq_len >= 1 ? combiner__ceil_sqrt(cfg->seq_len) : 0;
}


/* What depends on the kind lives in its section (>>dense .. >>logsparse),
 * reached through the table in >>kinds; the calls that come before it: */
static int combiner__kind_has_blocks(int kind);
static int combiner__kind_compiled(int kind);
static int combiner__summary_count(combiner__problem *p);   /* 0: overflow */
static int combiner__state_sets(const combiner__problem *p);
static size_t combiner__kind_extra(const combiner__problem *p);   /* floats a kind keeps between its steps */
static double combiner__kind_terms(const combiner__problem *p, double len);

/* The one place where defaults are resolved and the config is validated. */
static combiner_status combiner__resolve(const combiner_config *cfg, combiner__problem *p) {
  combiner_status st;
  size_t kf, vf;
  if (!cfg) return COMBINER_ERR_INVALID_ARGUMENT;
  memset(p, 0, sizeof *p);
  p->kind = cfg->kind == COMBINER_KIND_DEFAULT ? (int)(COMBINER_DEFAULT_KIND) : (int)cfg->kind;
  if (p->kind < COMBINER_FIXED || p->kind > COMBINER_LOGSPARSE) return COMBINER_ERR_INVALID_ARGUMENT;
  if (cfg->seq_len < 1 || cfg->head_dim < 1 || cfg->value_dim < 0 || cfg->num_heads < 1 ||
      cfg->num_kv_heads < 0 || cfg->block < 0 || cfg->num_threads < 0)
    return COMBINER_ERR_INVALID_ARGUMENT;
  if ((int)cfg->pool < 0 || (int)cfg->pool > COMBINER_POOL_MEAN ||
      (int)cfg->axial_key < 0 || (int)cfg->axial_key > COMBINER_AXIAL_KEY_SELF ||
      (int)cfg->mixture_norm < 0 || (int)cfg->mixture_norm > COMBINER_MIXTURE_AVERAGE)
    return COMBINER_ERR_INVALID_ARGUMENT;
  if (!(fabsf(cfg->scale) <= FLT_MAX)) return COMBINER_ERR_INVALID_ARGUMENT;  /* NaN or infinite */
  p->L = cfg->seq_len;
  p->d = cfg->head_dim;
  p->dv = cfg->value_dim ? cfg->value_dim : cfg->head_dim;
  p->H = cfg->num_heads;
  p->Hkv = cfg->num_kv_heads ? cfg->num_kv_heads : cfg->num_heads;
  if (p->Hkv > p->H || p->H % p->Hkv != 0) return COMBINER_ERR_INVALID_ARGUMENT;
  p->group = p->H / p->Hkv;
  p->m = combiner__model_block(cfg);
  p->n = (p->L - 1) / p->m + 1;
  p->last = p->L - (p->n - 1) * p->m;
  p->causal = cfg->causal != 0;
  p->scale = cfg->scale != 0.0f ? cfg->scale : (float)(1.0 / sqrt((double)p->d));
  p->pool = (int)cfg->pool;
  p->axial_key = (int)cfg->axial_key;
  p->mixture_norm = (int)cfg->mixture_norm;
#ifdef COMBINER__OPENMP
  p->threads = cfg->num_threads ? cfg->num_threads : omp_get_max_threads();
  if (p->threads < 1) p->threads = 1;
#else
  p->threads = cfg->num_threads ? cfg->num_threads : 1;
#endif
  if ((st = combiner__resolve_tensor(&cfg->q_layout, p->L, p->H, p->d, &p->q)) != COMBINER_OK) return st;
  if ((int)cfg->k_type < COMBINER_F32 || (int)cfg->k_type > COMBINER_BF16 ||
      (int)cfg->v_type < COMBINER_F32 || (int)cfg->v_type > COMBINER_BF16)
    return COMBINER_ERR_INVALID_ARGUMENT;
  if ((st = combiner__resolve_tensor(&cfg->k_layout, p->L, p->Hkv, p->d, &p->k)) != COMBINER_OK) return st;
  if ((st = combiner__resolve_tensor(&cfg->v_layout, p->L, p->Hkv, p->dv, &p->v)) != COMBINER_OK) return st;
  if ((st = combiner__resolve_tensor(&cfg->out_layout, p->L, p->H, p->dv, &p->o)) != COMBINER_OK) return st;
  p->k.type = (int)cfg->k_type;
  p->v.type = (int)cfg->v_type;
  if (!combiner__summary_count(p) ||
      !combiner__mul((size_t)p->H, p->count, &kf) || !combiner__mul(kf, (size_t)p->d, &kf) ||
      !combiner__mul((size_t)p->H, p->count, &vf) || !combiner__mul(vf, (size_t)p->dv, &vf) ||
      kf > (size_t)PTRDIFF_MAX / sizeof(float) || vf > (size_t)PTRDIFF_MAX / sizeof(float))
    return COMBINER_ERR_OVERFLOW;
  /* Compiled-out kinds are reported after the generic checks so that a bad
   * config is called bad whatever was compiled. */
  if (!combiner__kind_compiled(p->kind)) return COMBINER_ERR_UNSUPPORTED;
  return COMBINER_OK;
}

/* Byte ranges [lo, hi) of two buffers intersect? (Compared as integers:
 * relational operators on unrelated pointers are undefined in C.) */
static int combiner__overlap(const void *a, size_t a_floats, const void *b, size_t b_floats) {
  uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
  if (!a || !b || !a_floats || !b_floats) return 0;
  return a0 < b0 + b_floats * sizeof(float) && b0 < a0 + a_floats * sizeof(float);
}

/* ------------------------------------------------------------------------ */
/* >>workspace: the layout both the size queries and the kernels use       */
/* ------------------------------------------------------------------------ */

#define COMBINER__BQ 64   /* queries per tile */
#define COMBINER__BK 64   /* keys per chunk: scores are a BQ x BK tile */

/* Per-thread scratch. */
typedef struct combiner__scratch {
  float *qt;        /* d x BQ: the query tile, transposed and scaled */
  float *s;         /* BK x BQ: scores (transposed), then probabilities */
  float *s2;        /* BK x BQ: the same scores for a second softmax state */
  float *vpack;     /* BK x dv: a chunk's values, contiguous. Rows 2^k bytes
                       apart (token-major, e.g. 8 heads x 64 floats = 2 KiB)
                       fall into a few L1 sets: a 64-row chunk cannot stay
                       in L1 while P.V reads it once per 6 query rows.
                       Also a chunk of half-precision values, converted. */
  float *kpack;     /* BK x d: a chunk of half-precision keys, converted */
  float *loc;       /* 6 x BQ: running max, sum and rescale of two states */
  float *qbuf;      /* BQ x d: pooled queries of a tile */
  float *run;       /* 2 x d: running pools of q and k */
  float *acc2;      /* BQ x d: expected keys (Axial WSUM) */
  float *tile[2];   /* softmax states of a query tile: BQ max, BQ sum, BQ x dv */
} combiner__scratch;

/* Lays out (base != NULL) or sizes the scratch; returns its floats, 0 on overflow. */
static size_t combiner__scratch_parts(const combiner__problem *p, combiner__scratch *sc, float *base) {
  size_t d = (size_t)p->d, dv = (size_t)p->dv, parts[11], off = 0;
  int i;
  float **dst[11];
  dst[0] = &sc->qt; dst[1] = &sc->s; dst[2] = &sc->qbuf; dst[3] = &sc->run; dst[4] = &sc->acc2;
  dst[5] = &sc->tile[0]; dst[6] = &sc->tile[1]; dst[7] = &sc->loc; dst[8] = &sc->s2; dst[9] = &sc->vpack;
  dst[10] = &sc->kpack;
  if (base) memset(sc, 0, sizeof *sc);
  if (!combiner__mul(d, COMBINER__BQ, &parts[0]) || !combiner__mul(d, COMBINER__BQ, &parts[2]) ||
      !combiner__mul(dv, COMBINER__BQ, &parts[5]) || !combiner__add(parts[5], (size_t)2 * COMBINER__BQ, &parts[5]))
    return 0;
  parts[1] = (size_t)COMBINER__BQ * COMBINER__BK;
  parts[3] = 2 * d;
  parts[4] = parts[2];
  parts[6] = parts[5];
  parts[7] = (size_t)6 * COMBINER__BQ;
  parts[8] = parts[1];
  parts[9] = parts[5] - (size_t)2 * COMBINER__BQ;   /* BK x dv (BK == BQ) */
  parts[10] = parts[0];                              /* BK x d */
  for (i = 0; i < 11; ++i) {
    size_t n = combiner__round_up(parts[i], COMBINER__ALIGN / sizeof(float));
    if (base) *dst[i] = base + off;
    if (n < parts[i] || !combiner__add(off, n, &off)) return 0;
  }
  return off;
}

typedef struct combiner__workspace {
  size_t keys, values;   /* byte offsets of the summaries (one-call only) */
  size_t states;         /* byte offset of the state sets (combine only) */
  size_t extra;          /* byte offset of the kind's own floats (combiner__kind_extra) */
  size_t state_floats;   /* floats of one state set: H*L*(dv + 2) */
  size_t scratch;        /* byte offset of thread 0's scratch */
  size_t scratch_stride; /* bytes of scratch per thread */
  size_t total;          /* bytes to ask for, alignment slack included */
} combiner__workspace;

static int combiner__scratch_threads(const combiner__problem *p) {
  if (p->slots > 0) return p->slots;
#ifdef COMBINER__OPENMP
  return p->threads;
#else
  return 1;
#endif
}

/* with_summaries: the one-call path keeps the abstractions in the workspace;
 * with_states: combine needs the state sets of multi-pass kinds. */
static combiner_status combiner__layout(const combiner__problem *p, int with_summaries,
                                        int with_states, combiner__workspace *w) {
  size_t kb = 0, vb = 0, stb = 0, eb, sb, all;
  combiner__scratch sc;
  if (with_summaries) {
    kb = (size_t)p->H * p->count * (size_t)p->d * sizeof(float);  /* checked in resolve */
    vb = (size_t)p->H * p->count * (size_t)p->dv * sizeof(float);
    kb = combiner__round_up(kb, COMBINER__ALIGN);
    vb = combiner__round_up(vb, COMBINER__ALIGN);
  }
  if (!combiner__mul((size_t)p->H, (size_t)p->L, &w->state_floats) ||
      !combiner__mul(w->state_floats, (size_t)p->dv + 2, &w->state_floats) ||
      !combiner__mul(w->state_floats, sizeof(float) * (size_t)(with_states ? combiner__state_sets(p) : 0), &stb))
    return COMBINER_ERR_OVERFLOW;
  stb = combiner__round_up(stb, COMBINER__ALIGN);
  if (!combiner__mul(combiner__kind_extra(p), sizeof(float), &eb) || eb > (size_t)PTRDIFF_MAX)
    return COMBINER_ERR_OVERFLOW;
  eb = combiner__round_up(eb, COMBINER__ALIGN);
  sb = combiner__scratch_parts(p, &sc, NULL);
  if (!sb || !combiner__mul(sb, sizeof(float), &sb)) return COMBINER_ERR_OVERFLOW;
  w->keys = 0;
  w->values = kb;
  if (!combiner__add(kb, vb, &w->states) || !combiner__add(w->states, stb, &w->extra) ||
      !combiner__add(w->extra, eb, &w->scratch))
    return COMBINER_ERR_OVERFLOW;
  w->scratch_stride = sb;
  if (!combiner__mul(sb, (size_t)combiner__scratch_threads(p), &all) ||
      !combiner__add(w->scratch, all, &all) ||
      !combiner__add(all, COMBINER__ALIGN, &w->total) ||
      w->total > (size_t)PTRDIFF_MAX)
    return COMBINER_ERR_OVERFLOW;
  return COMBINER_OK;
}

/* ======================================================================== */
/* >>isa: the vector layer                                                  */
/* ======================================================================== */
/* Each instruction set is one section below that defines the same few
 * operations on combiner__vf (COMBINER__VL float lanes) and combiner__vm (a
 * lane predicate); the kernels in >>primitives are written once on top of
 * them and contain no intrinsics. Without a section (COMBINER_NO_SIMD, or a
 * CPU we have none for) they take their portable C loops, which the same
 * tests cover. The choice is made once, at the top of the implementation
 * (COMBINER__AVX512 / COMBINER__AVX2 / COMBINER__NEON, then COMBINER__VEC).
 *
 * ADDING AN ISA: one section here, guarded by its macro, defining
 *   COMBINER__VL, COMBINER__NV (vectors per row of the 6-row register
 *   tiles: 6*NV accumulators + NV + 1 must fit the register file),
 *   combiner__vf, combiner__vm and the operations of the AVX2 section, with
 *   the same semantics: vmax(a, b) = a > b ? a : b per lane (so a NaN in
 *   either gives b), vround to nearest (ties to even), vscale2n(y, n) =
 *   y * 2^n for integral n, vloadn / vstoren touch only lanes < n. vexp and
 *   vhsum are built on them, once. Then add its detection at the top of
 *   the implementation, a name in combiner_kernel_name, and a build of the
 *   suite on it to `make test`. Optional extras (a register transpose for
 *   the query pack, a 16-key score reduction) are ISA-specific speedups
 *   with a portable fallback: COMBINER__TRANSPOSE16, COMBINER__HSUM16.
 *   vload_half(p, type) widens VL binary16 (COMBINER_F16) or bfloat16
 *   elements exactly, as combiner__half_to_float does one. */

/* One binary16 or bfloat16 element as float32 (exact: both are subsets). */
static float combiner__half_to_float(uint16_t h, int type) {
  uint32_t bits;
  float f;
  if (type == COMBINER_BF16) {
    bits = (uint32_t)h << 16;
  } else {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) {
      bits = sign | 0x7f800000u | (m << 13);           /* Inf, NaN */
    } else if (e) {
      bits = sign | ((e + 112u) << 23) | (m << 13);    /* normal: rebias 15 -> 127 */
    } else {                                           /* zero, subnormal: m * 2^-24 */
      f = (float)m * 5.9604644775390625e-8f;
      memcpy(&bits, &f, sizeof bits);
      bits |= sign;
    }
  }
  memcpy(&f, &bits, sizeof f);
  return f;
}

#if defined(COMBINER__AVX512)
/* ---- >>isa-avx512: 16 lanes, tiles of 6 x 4 vectors (32 zmm registers) ---- */
#define COMBINER__VL 16
#define COMBINER__NV 4
typedef __m512 combiner__vf;
typedef __mmask16 combiner__vm;
static combiner__vf combiner__vzero(void) { return _mm512_setzero_ps(); }
static combiner__vf combiner__vset1(float f) { return _mm512_set1_ps(f); }
static combiner__vf combiner__vload(const float *p) { return _mm512_loadu_ps(p); }
static combiner__vf combiner__vload_half(const uint16_t *p, int type) {
  const __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)p);
  if (type == COMBINER_F16) return _mm512_maskz_cvtph_ps(0xFFFF, h);   /* (maskz: g++ 12 warns on the plain forms) */
  return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xFFFF, _mm512_maskz_cvtepu16_epi32(0xFFFF, h), 16));
}
static void combiner__vstore(float *p, combiner__vf a) { _mm512_storeu_ps(p, a); }
static combiner__vm combiner__vm_first(int n) {       /* lanes < n */
  return n >= 16 ? (combiner__vm)0xFFFF : n <= 0 ? (combiner__vm)0 : (combiner__vm)((1u << n) - 1u);
}
static combiner__vf combiner__vloadn(const float *p, int n) { return _mm512_maskz_loadu_ps(combiner__vm_first(n), p); }
static void combiner__vstoren(float *p, combiner__vf a, int n) { _mm512_mask_storeu_ps(p, combiner__vm_first(n), a); }
static combiner__vf combiner__vadd(combiner__vf a, combiner__vf b) { return _mm512_add_ps(a, b); }
static combiner__vf combiner__vsub(combiner__vf a, combiner__vf b) { return _mm512_sub_ps(a, b); }
static combiner__vf combiner__vmul(combiner__vf a, combiner__vf b) { return _mm512_mul_ps(a, b); }
static combiner__vf combiner__vfma(combiner__vf a, combiner__vf b, combiner__vf c) { return _mm512_fmadd_ps(a, b, c); }
static combiner__vf combiner__vmax(combiner__vf a, combiner__vf b) { return _mm512_mask_max_ps(b, 0xFFFF, a, b); }
static combiner__vm combiner__vm_lane(ptrdiff_t i) {   /* lane i alone (none if outside) */
  return i >= 0 && i < 16 ? (combiner__vm)(1u << i) : (combiner__vm)0;
}
static combiner__vm combiner__vm_isnan(combiner__vf a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
static combiner__vm combiner__vm_eq(combiner__vf a, combiner__vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
static combiner__vm combiner__vm_or(combiner__vm a, combiner__vm b) { return (combiner__vm)(a | b); }
static int combiner__vm_any(combiner__vm a) { return a != 0; }
static combiner__vf combiner__vblend(combiner__vm m, combiner__vf a, combiner__vf b) { return _mm512_mask_blend_ps(m, a, b); }

static combiner__vm combiner__vm_lt(combiner__vf a, combiner__vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
static combiner__vf combiner__vround(combiner__vf a) {   /* to nearest, ties to even */
  return _mm512_mask_roundscale_ps(a, 0xFFFF, a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static combiner__vf combiner__vscale2n(combiner__vf y, combiner__vf n) {   /* y * 2^n, n integral */
  return _mm512_mask_scalef_ps(y, 0xFFFF, y, n);
}

/* dst[r][c] = scale * src[c][r] for a 16 x 16 block (rows `ss` / `ds` floats
 * apart): unpack, unpack, two 128-bit lane shuffles. */
#define COMBINER__TRANSPOSE16 1
static void combiner__transpose16(const float *src, ptrdiff_t ss, float *dst, ptrdiff_t ds, float scale) {
  const __m512 sv = _mm512_set1_ps(scale);
  __m512 r[16], t[16];
  int i;
  for (i = 0; i < 16; ++i) r[i] = _mm512_mul_ps(_mm512_loadu_ps(src + i * ss), sv);
  for (i = 0; i < 16; i += 2) {
    t[i] = _mm512_mask_unpacklo_ps(r[i], 0xFFFF, r[i], r[i + 1]);
    t[i + 1] = _mm512_mask_unpackhi_ps(r[i], 0xFFFF, r[i], r[i + 1]);
  }
  for (i = 0; i < 16; i += 4) {
    r[i] = _mm512_castpd_ps(_mm512_mask_unpacklo_pd(_mm512_castps_pd(t[i]), 0xFF, _mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 1] = _mm512_castpd_ps(_mm512_mask_unpackhi_pd(_mm512_castps_pd(t[i]), 0xFF, _mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 2] = _mm512_castpd_ps(_mm512_mask_unpacklo_pd(_mm512_castps_pd(t[i + 1]), 0xFF, _mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    r[i + 3] = _mm512_castpd_ps(_mm512_mask_unpackhi_pd(_mm512_castps_pd(t[i + 1]), 0xFF, _mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  for (i = 0; i < 4; ++i) {
    t[i] = _mm512_mask_shuffle_f32x4(r[i], 0xFFFF, r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_mask_shuffle_f32x4(r[i], 0xFFFF, r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_mask_shuffle_f32x4(r[i + 8], 0xFFFF, r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_mask_shuffle_f32x4(r[i + 8], 0xFFFF, r[i + 8], r[i + 12], 0xdd);
  }
  for (i = 0; i < 8; ++i) {
    r[i] = _mm512_mask_shuffle_f32x4(t[i], 0xFFFF, t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_mask_shuffle_f32x4(t[i], 0xFFFF, t[i], t[i + 8], 0xdd);
  }
  for (i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * ds, r[i]);
}

/* The sums of 16 vectors, vector r's in lane r: a transposing reduction
 * tree (unpack ps, unpack pd, two lane shuffles). */
static __m512 combiner__tree16(const __m512 *a) {
  __m512 t[8], u[4], v[2];
  int r;
  for (r = 0; r < 8; ++r)
    t[r] = _mm512_add_ps(_mm512_mask_unpacklo_ps(a[2 * r], 0xFFFF, a[2 * r], a[2 * r + 1]),
                         _mm512_mask_unpackhi_ps(a[2 * r], 0xFFFF, a[2 * r], a[2 * r + 1]));
  for (r = 0; r < 4; ++r) {
    const __m512d lo = _mm512_castps_pd(t[2 * r]), hi = _mm512_castps_pd(t[2 * r + 1]);
    u[r] = _mm512_add_ps(_mm512_castpd_ps(_mm512_mask_unpacklo_pd(lo, 0xFF, lo, hi)),
                         _mm512_castpd_ps(_mm512_mask_unpackhi_pd(lo, 0xFF, lo, hi)));
  }
  for (r = 0; r < 2; ++r)
    v[r] = _mm512_add_ps(_mm512_mask_shuffle_f32x4(u[2 * r], 0xFFFF, u[2 * r], u[2 * r + 1], 0x88),
                         _mm512_mask_shuffle_f32x4(u[2 * r], 0xFFFF, u[2 * r], u[2 * r + 1], 0xdd));
  return _mm512_add_ps(_mm512_mask_shuffle_f32x4(v[0], 0xFFFF, v[0], v[1], 0x88),
                       _mm512_mask_shuffle_f32x4(v[0], 0xFFFF, v[0], v[1], 0xdd));
}

/* s[r] = the sum of the lanes of vector r of t (16 x 16 floats), r < n */
#define COMBINER__HSUM16 1
static void combiner__hsum16(const float *t, int n, float *s) {
  __m512 a[16];
  int r;
  for (r = 0; r < 16; ++r) a[r] = _mm512_loadu_ps(t + (ptrdiff_t)(r < n ? r : 0) * 16);
  _mm512_mask_storeu_ps(s, combiner__vm_first(n), combiner__tree16(a));
}


#elif defined(COMBINER__AVX2)
/* ---- >>isa-avx2: 8 lanes, tiles of 6 x 2 vectors (16 ymm registers) ------- */
#define COMBINER__VL 8
#define COMBINER__NV 2
typedef __m256 combiner__vf;
typedef __m256 combiner__vm;           /* all-ones lanes */
static combiner__vf combiner__vzero(void) { return _mm256_setzero_ps(); }
static combiner__vf combiner__vset1(float f) { return _mm256_set1_ps(f); }
static combiner__vf combiner__vload(const float *p) { return _mm256_loadu_ps(p); }
static combiner__vf combiner__vload_half(const uint16_t *p, int type) {
  const __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
  if (type == COMBINER_F16) {
#if defined(__F16C__)
    return _mm256_cvtph_ps(h);
#else                    /* AVX2 without F16C (-mno-f16c): one lane at a time */
    uint16_t b[8];
    float f[8];
    int i;
    memcpy(b, p, sizeof b);
    for (i = 0; i < 8; ++i) f[i] = combiner__half_to_float(b[i], type);
    return _mm256_loadu_ps(f);
#endif
  }
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
static void combiner__vstore(float *p, combiner__vf a) { _mm256_storeu_ps(p, a); }
static combiner__vm combiner__vm_first(int n) {       /* lanes < n */
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}
static combiner__vf combiner__vloadn(const float *p, int n) {
  return _mm256_maskload_ps(p, _mm256_castps_si256(combiner__vm_first(n)));
}
static void combiner__vstoren(float *p, combiner__vf a, int n) {
  _mm256_maskstore_ps(p, _mm256_castps_si256(combiner__vm_first(n)), a);
}
static combiner__vf combiner__vadd(combiner__vf a, combiner__vf b) { return _mm256_add_ps(a, b); }
static combiner__vf combiner__vsub(combiner__vf a, combiner__vf b) { return _mm256_sub_ps(a, b); }
static combiner__vf combiner__vmul(combiner__vf a, combiner__vf b) { return _mm256_mul_ps(a, b); }
static combiner__vf combiner__vfma(combiner__vf a, combiner__vf b, combiner__vf c) { return _mm256_fmadd_ps(a, b, c); }
static combiner__vf combiner__vmax(combiner__vf a, combiner__vf b) { return _mm256_max_ps(a, b); }
static combiner__vm combiner__vm_lane(ptrdiff_t i) {
  const int li = i >= 0 && i < 8 ? (int)i : -1;
  return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_set1_epi32(li), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}
static combiner__vm combiner__vm_isnan(combiner__vf a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
static combiner__vm combiner__vm_eq(combiner__vf a, combiner__vf b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
static combiner__vm combiner__vm_or(combiner__vm a, combiner__vm b) { return _mm256_or_ps(a, b); }
static int combiner__vm_any(combiner__vm a) { return _mm256_movemask_ps(a) != 0; }
static combiner__vf combiner__vblend(combiner__vm m, combiner__vf a, combiner__vf b) { return _mm256_blendv_ps(a, b, m); }

static combiner__vm combiner__vm_lt(combiner__vf a, combiner__vf b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
static combiner__vf combiner__vround(combiner__vf a) {   /* to nearest, ties to even */
  return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* y * 2^n for integral n in [-126, 127] (vexp's range): 2^n built in the
 * exponent bits */
static combiner__vf combiner__vscale2n(combiner__vf y, combiner__vf n) {
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(_mm256_min_ps(n, _mm256_set1_ps(127.0f))),
                                                       _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

#elif defined(COMBINER__NEON)
/* ---- >>isa-neon: 4 lanes, tiles of 6 x 4 vectors (32 v registers) ------- */
#define COMBINER__VL 4
#define COMBINER__NV 4
typedef float32x4_t combiner__vf;
typedef uint32x4_t combiner__vm;       /* all-ones lanes */
static combiner__vf combiner__vzero(void) { return vdupq_n_f32(0.0f); }
static combiner__vf combiner__vset1(float f) { return vdupq_n_f32(f); }
static combiner__vf combiner__vload(const float *p) { return vld1q_f32(p); }
static combiner__vf combiner__vload_half(const uint16_t *p, int type) {
  const uint16x4_t h = vld1_u16(p);
  if (type == COMBINER_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
  return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}
static void combiner__vstore(float *p, combiner__vf a) { vst1q_f32(p, a); }
static combiner__vm combiner__vm_first(int n) {       /* lanes < n */
  static const int32_t lane[4] = {0, 1, 2, 3};
  return vcltq_s32(vld1q_s32(lane), vdupq_n_s32(n));
}
static combiner__vf combiner__vloadn(const float *p, int n) {
  float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  int i;
  if (n >= 4) return vld1q_f32(p);
  for (i = 0; i < n; ++i) t[i] = p[i];
  return vld1q_f32(t);
}
static void combiner__vstoren(float *p, combiner__vf a, int n) {
  float t[4];
  int i;
  if (n >= 4) { vst1q_f32(p, a); return; }
  vst1q_f32(t, a);
  for (i = 0; i < n; ++i) p[i] = t[i];
}
static combiner__vf combiner__vadd(combiner__vf a, combiner__vf b) { return vaddq_f32(a, b); }
static combiner__vf combiner__vsub(combiner__vf a, combiner__vf b) { return vsubq_f32(a, b); }
static combiner__vf combiner__vmul(combiner__vf a, combiner__vf b) { return vmulq_f32(a, b); }
static combiner__vf combiner__vfma(combiner__vf a, combiner__vf b, combiner__vf c) { return vfmaq_f32(c, a, b); }
static combiner__vf combiner__vmax(combiner__vf a, combiner__vf b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
static combiner__vm combiner__vm_lane(ptrdiff_t i) {
  static const int32_t lane[4] = {0, 1, 2, 3};
  return vceqq_s32(vld1q_s32(lane), vdupq_n_s32(i >= 0 && i < 4 ? (int32_t)i : -1));
}
static combiner__vm combiner__vm_isnan(combiner__vf a) { return vmvnq_u32(vceqq_f32(a, a)); }
static combiner__vm combiner__vm_eq(combiner__vf a, combiner__vf b) { return vceqq_f32(a, b); }
static combiner__vm combiner__vm_or(combiner__vm a, combiner__vm b) { return vorrq_u32(a, b); }
static int combiner__vm_any(combiner__vm a) { return vmaxvq_u32(a) != 0; }
static combiner__vf combiner__vblend(combiner__vm m, combiner__vf a, combiner__vf b) { return vbslq_f32(m, b, a); }

static combiner__vm combiner__vm_lt(combiner__vf a, combiner__vf b) { return vcltq_f32(a, b); }
static combiner__vf combiner__vround(combiner__vf a) { return vrndnq_f32(a); }   /* to nearest, ties to even */
/* y * 2^n for integral n in [-126, 127] (vexp's range): 2^n built in the
 * exponent bits */
static combiner__vf combiner__vscale2n(combiner__vf y, combiner__vf n) {
  const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(vminq_f32(n, vdupq_n_f32(127.0f))), vdupq_n_s32(127)), 23);
  return vmulq_f32(y, vreinterpretq_f32_s32(e));
}
#endif

#if defined(COMBINER__AVX512) || defined(COMBINER__AVX2) || defined(COMBINER__NEON)
#  define COMBINER__VEC 1
/* e^x as combiner__exp, VL lanes: the same Cody-Waite reduction and Cephes
 * polynomial; 0 below -87 (a masked -inf gives 0), NaN stays NaN (vmax
 * keeps it, and every later step carries it). */
static combiner__vf combiner__vexp(combiner__vf x) {
  const combiner__vf lo = combiner__vset1(-87.0f);
  const combiner__vf xc = combiner__vmax(lo, x);
  const combiner__vf n = combiner__vround(combiner__vmul(xc, combiner__vset1(1.44269504088896341f)));
  combiner__vf r = combiner__vfma(n, combiner__vset1(-0.693359375f), xc);
  combiner__vf y = combiner__vset1(1.9875691500e-4f);
  r = combiner__vfma(n, combiner__vset1(2.12194440e-4f), r);
  y = combiner__vfma(y, r, combiner__vset1(1.3981999507e-3f));
  y = combiner__vfma(y, r, combiner__vset1(8.3334519073e-3f));
  y = combiner__vfma(y, r, combiner__vset1(4.1665795894e-2f));
  y = combiner__vfma(y, r, combiner__vset1(1.6666665459e-1f));
  y = combiner__vfma(y, r, combiner__vset1(5.0000001201e-1f));
  y = combiner__vfma(y, combiner__vmul(r, r), combiner__vadd(r, combiner__vset1(1.0f)));
  y = combiner__vscale2n(y, n);
  return combiner__vblend(combiner__vm_lt(x, lo), y, combiner__vzero());   /* 0 below -87 */
}

/* Horizontal sum, lanes 0..VL-1 in order (through memory: gcc 12's own
 * reduce intrinsics trip its -Wmaybe-uninitialized in C++). */
static float combiner__vhsum(combiner__vf a) {
  float lanes[COMBINER__VL], s = 0.0f;
  int i;
  combiner__vstore(lanes, a);
  for (i = 0; i < COMBINER__VL; ++i) s += lanes[i];
  return s;
}
#endif

/* ======================================================================== */
/* >>primitives: pooling, exp, the attention tile (no intrinsics: >>isa)    */
/* ======================================================================== */

/* Running pool (SPEC 2: element-wise max, or mean): start with one row, add
 * rows, then read the pool of the `count` rows added so far. */
COMBINER__SHARED void combiner__pool_start(float *acc, const float *row, int w) {
  memcpy(acc, row, (size_t)w * sizeof(float));
}

COMBINER__SHARED void combiner__pool_add(float *acc, const float *row, int w, int pool) {
  int x = 0;
#if defined(COMBINER__VEC)
  for (; x + COMBINER__VL <= w; x += COMBINER__VL) {   /* same results: max and add are exact per element */
    const combiner__vf a = combiner__vload(acc + x), r = combiner__vload(row + x);
    combiner__vstore(acc + x, pool == COMBINER_POOL_MAX ? combiner__vmax(r, a) : combiner__vadd(a, r));
  }
#endif
  if (pool == COMBINER_POOL_MAX) {
    for (; x < w; ++x) acc[x] = row[x] > acc[x] ? row[x] : acc[x];
  } else {
    for (; x < w; ++x) acc[x] += row[x];
  }
}

COMBINER__SHARED void combiner__pool_read(float *out, const float *acc, int w, int pool, int count) {
  if (pool == COMBINER_POOL_MAX) {
    if (out != acc) memcpy(out, acc, (size_t)w * sizeof(float));
  } else {
    int x;
    for (x = 0; x < w; ++x) out[x] = acc[x] / (float)count;
  }
}

/* Pool of `count` rows starting at `row`, `stride` floats apart. */
COMBINER__SHARED void combiner__pool_rows(float *out, const float *row, ptrdiff_t stride, int count,
                                          int w, int pool) {
  int j;
#if defined(COMBINER__VEC)
  int x, u;   /* the same element-wise max / in-order sum as pool_add, in registers */
  for (x = 0; x < w; x += COMBINER__NV * COMBINER__VL) {
    combiner__vf a[COMBINER__NV];
    int n[COMBINER__NV];
    for (u = 0; u < COMBINER__NV; ++u) {
      n[u] = w - x - u * COMBINER__VL;
      a[u] = combiner__vloadn(row + x + u * COMBINER__VL, n[u]);
    }
    for (j = 1; j < count; ++j) {
      const float *r = row + (ptrdiff_t)j * stride + x;
      for (u = 0; u < COMBINER__NV; ++u) {
        const combiner__vf b = combiner__vloadn(r + u * COMBINER__VL, n[u]);
        a[u] = pool == COMBINER_POOL_MAX ? combiner__vmax(b, a[u]) : combiner__vadd(a[u], b);
      }
    }
    for (u = 0; u < COMBINER__NV; ++u) combiner__vstoren(out + x + u * COMBINER__VL, a[u], n[u]);
  }
  combiner__pool_read(out, out, w, pool, count);
  return;
#endif
  combiner__pool_start(out, row, w);
  for (j = 1; j < count; ++j) combiner__pool_add(out, row + j * stride, w, pool);
  combiner__pool_read(out, out, w, pool, count);
}

/* e^x for x <= 0, the only arguments a max-subtracted softmax produces:
 * Cody-Waite reduction and the Cephes minimax polynomial (about 1 ulp),
 * exactly 0 below -87.3 (so a masked -inf gives 0), NaN stays NaN. Branch
 * free, so the loops that call it vectorize. */
static float combiner__exp(float x) {
  float xc = x < -87.0f ? -87.0f : x;
  float t = xc * 1.44269504088896341f;
  float n = (t + 12582912.0f) - 12582912.0f;             /* round to nearest */
  float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
  float r2 = r * r, y, scale;
  float nc = n != n ? 0.0f : n > 127.0f ? 127.0f : n;   /* NaN (y is NaN anyway) must not reach the int */
  int32_t bits = ((int32_t)nc + 127) << 23;
  memcpy(&scale, &bits, sizeof scale);
  y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = (y * r2 + r + 1.0f) * scale;
  return x < -87.0f ? 0.0f : y;
}

/* A sequence of vectors: row j at base + j*stride (float32), or at
 * half + j*stride (binary16 / bfloat16 K or V: base is NULL, and the
 * primitives convert them; see combiner__chunk). */
typedef struct combiner__seq {
  const float *base;
  const uint16_t *half;
  const float *const *rows;   /* or float32 rows anywhere (single-query primitive only) */
  ptrdiff_t stride;
  int count, type;
} combiner__seq;

static combiner__seq combiner__seq_of(const float *base, ptrdiff_t stride, int count) {
  combiner__seq s;
  s.base = base;
  s.half = NULL;
  s.rows = NULL;
  s.stride = stride;
  s.count = count;
  s.type = COMBINER_F32;
  return s;
}

/* A sequence of elements of `type` from the row at `row`. */
static combiner__seq combiner__seq_typed(const void *row, int type, ptrdiff_t stride, int count) {
  combiner__seq s = combiner__seq_of(type == COMBINER_F32 ? (const float *)row : NULL, stride, count);
  if (type != COMBINER_F32) s.half = (const uint16_t *)row;
  s.type = type;
  return s;
}

/* count float32 rows at the given addresses (read by the single-query primitive) */
COMBINER__SHARED combiner__seq combiner__seq_rows(const float *const *rows, int count) {
  combiner__seq s = combiner__seq_of(NULL, 0, count);
  s.rows = rows;
  return s;
}

static const void *combiner__seq_row(const combiner__seq *s, ptrdiff_t j) {
  if (s->rows) return s->rows[j];
  if (s->type == COMBINER_F32) return s->base + j * s->stride;
  return s->half + j * s->stride;
}

/* dst[0..n) = the row at src, n elements of `type`, as float32 (exact). */
static void combiner__row_copy(float *dst, const void *src, int type, int n) {
  const uint16_t *h = (const uint16_t *)src;
  int x = 0;
  if (type == COMBINER_F32) {
    memcpy(dst, src, (size_t)n * sizeof(float));
    return;
  }
#if defined(COMBINER__VEC)
  for (; x + COMBINER__VL <= n; x += COMBINER__VL) combiner__vstore(dst + x, combiner__vload_half(h + x, type));
#endif
  for (; x < n; ++x) {
    uint16_t b;
    memcpy(&b, h + x, sizeof b);
    dst[x] = combiner__half_to_float(b, type);
  }
}

/* The row at src as float32: src itself if float32, else converted into tmp. */
COMBINER__SHARED const float *combiner__row_f32(const void *src, int type, int n, float *tmp) {
  if (type == COMBINER_F32) return (const float *)src;
  combiner__row_copy(tmp, src, type, n);
  return tmp;
}

#if defined(COMBINER__VEC)
/* Elements [x, x + n) (n <= VL) of a row of `type`, widened into a vector
 * (lanes past n zero). */
COMBINER__INLINE combiner__vf combiner__vload_typed(const void *row, int type, int x, int n) {
  if (type == COMBINER_F32) {
    const float *f = (const float *)row + x;
    return n == COMBINER__VL ? combiner__vload(f) : combiner__vloadn(f, n);
  } else {
    const uint16_t *h = (const uint16_t *)row + x;
    uint16_t b[COMBINER__VL];
    if (n == COMBINER__VL) return combiner__vload_half(h, type);
    memset(b, 0, sizeof b);
    memcpy(b, h, (size_t)n * sizeof *h);
    return combiner__vload_half(b, type);
  }
}

/* The lanes of q . row (d elements of `type`), as a vector to be summed:
 * the type is tested once, the loop is float32 or half loads. */
COMBINER__INLINE combiner__vf combiner__vdot_row(const float *q, const void *row, int type, int d) {
  combiner__vf a0 = combiner__vzero(), a1 = combiner__vzero();
  int x = 0;
  if (type == COMBINER_F32) {
    const float *r = (const float *)row;
    for (; x + 2 * COMBINER__VL <= d; x += 2 * COMBINER__VL) {
      a0 = combiner__vfma(combiner__vload(q + x), combiner__vload(r + x), a0);
      a1 = combiner__vfma(combiner__vload(q + x + COMBINER__VL), combiner__vload(r + x + COMBINER__VL), a1);
    }
  } else {
    const uint16_t *h = (const uint16_t *)row;
    for (; x + 2 * COMBINER__VL <= d; x += 2 * COMBINER__VL) {
      a0 = combiner__vfma(combiner__vload(q + x), combiner__vload_half(h + x, type), a0);
      a1 = combiner__vfma(combiner__vload(q + x + COMBINER__VL), combiner__vload_half(h + x + COMBINER__VL, type), a1);
    }
  }
  for (; x < d; x += COMBINER__VL) {
    const int n = d - x < COMBINER__VL ? d - x : COMBINER__VL;
    a0 = combiner__vfma(combiner__vloadn(q + x, n), combiner__vload_typed(row, type, x, n), a0);
  }
  return combiner__vadd(a0, a1);
}

/* s[r] = the sum of the lanes of vector r of t (VL floats each), r < n <= 16 */
COMBINER__SHARED void combiner__hsums(const float *t, int n, float *s) {
#if defined(COMBINER__HSUM16)
  combiner__hsum16(t, n, s);
#else
  int r;
  for (r = 0; r < n; ++r) s[r] = combiner__vhsum(combiner__vload(t + (ptrdiff_t)r * COMBINER__VL));
#endif
}
#endif

/* Rows [*j0, *j0 + nk) of s, `w` wide, as float32: s itself, or converted
 * into buf (then *tmp, rows from 0: *j0 = 0). The chunk's arithmetic is
 * then the float32 kernels' on the converted values. */
static const combiner__seq *combiner__chunk(const combiner__seq *s, int *j0, int nk, int w, float *buf,
                                            combiner__seq *tmp) {
  int j;
  if (s->type == COMBINER_F32) return s;
  for (j = 0; j < nk; ++j) combiner__row_copy(buf + (ptrdiff_t)j * w, combiner__seq_row(s, *j0 + j), s->type, w);
  *tmp = combiner__seq_of(buf, w, nk);
  *j0 = 0;
  return tmp;
}

/* Softmax states of a tile of queries (SPEC 2's one joint softmax, online):
 * query i has running max mx[i*ms], sum sum[i*ms], unnormalized output
 * acc + i*as and, for Axial WSUM, expected key acc2 + i*a2s. */
typedef struct combiner__states {
  float *mx, *sum, *acc, *acc2;
  ptrdiff_t ms, as, a2s;
} combiner__states;

/* States in a scratch tile (contiguous). */
COMBINER__SHARED combiner__states combiner__tile_states(float *tile, int dv, float *acc2, int d) {
  combiner__states st;
  st.mx = tile;
  st.sum = tile + COMBINER__BQ;
  st.acc = tile + (ptrdiff_t)2 * COMBINER__BQ;
  st.ms = 1;
  st.as = dv;
  st.acc2 = acc2;
  st.a2s = d;
  return st;
}

/* dst[0..n) = src[0..n) * f (dst == src allowed) */
static void combiner__mul_row(float *dst, const float *src, float f, int n) {
  int y = 0;
#if defined(COMBINER__VEC)
  const combiner__vf fv = combiner__vset1(f);
  for (; y + COMBINER__VL <= n; y += COMBINER__VL)
    combiner__vstore(dst + y, combiner__vmul(combiner__vload(src + y), fv));
#endif
  for (; y < n; ++y) dst[y] = src[y] * f;
}

/* a[0..n) *= f */
static void combiner__scale_row(float *a, float f, int n) { combiner__mul_row(a, a, f, n); }

static void combiner__states_begin(const combiner__states *st, int nq, int dv, int d) {
  int i;
  for (i = 0; i < nq; ++i) {
    st->mx[i * st->ms] = -INFINITY;
    st->sum[i * st->ms] = 0.0f;
    memset(st->acc + i * st->as, 0, (size_t)dv * sizeof(float));
    if (st->acc2) memset(st->acc2 + i * st->a2s, 0, (size_t)d * sizeof(float));
  }
}

/* out row i (at out + i*os) = acc_i / sum_i */
static void combiner__states_finish(const combiner__states *st, int nq, int dv, float *out, ptrdiff_t os) {
  int i;
  for (i = 0; i < nq; ++i)   /* one division per row; at most 1 ulp from acc / sum */
    combiner__mul_row(out + i * os, st->acc + i * st->as, 1.0f / st->sum[i * st->ms], dv);
}

COMBINER__SHARED void combiner__states_copy(const combiner__states *dst, const combiner__states *src, int nq, int dv) {
  int i;
  for (i = 0; i < nq; ++i) {
    dst->mx[i * dst->ms] = src->mx[i * src->ms];
    dst->sum[i * dst->ms] = src->sum[i * src->ms];
    memcpy(dst->acc + i * dst->as, src->acc + i * src->as, (size_t)dv * sizeof(float));
  }
}

/* (*mx, *sum, a) = the joint softmax of its terms and those of (m2, s2, b) */
COMBINER__SHARED void combiner__merge_state(float *mx, float *sum, float *a, float m2, float s2, const float *b, int dv) {
  const float m1 = *mx;
  float m, f1, f2;
  int y;
  if (m2 == -INFINITY) return;                      /* src has no terms */
  m = m1 > m2 ? m1 : m2;
  if (m2 != m2) m = m2;
  f1 = combiner__exp(m1 - m);
  f2 = combiner__exp(m2 - m);
  if (m1 == -INFINITY) f1 = 0.0f;
  *sum = *sum * f1 + s2 * f2;
  for (y = 0; y < dv; ++y) a[y] = a[y] * f1 + b[y] * f2;
  *mx = m;
}

/* dst = the joint softmax of dst's terms and src's terms */
COMBINER__SHARED void combiner__states_merge(const combiner__states *dst, const combiner__states *src, int nq, int dv) {
  int i;
  for (i = 0; i < nq; ++i)
    combiner__merge_state(&dst->mx[i * dst->ms], &dst->sum[i * dst->ms], dst->acc + i * dst->as,
                          src->mx[i * src->ms], src->sum[i * src->ms], src->acc + i * src->as, dv);
}

enum { COMBINER__ALL = 0, COMBINER__CAUSAL, COMBINER__SKIP };

/* Query lanes the kernels compute: nq rounded up to 16. */
static int combiner__lanes(int nq) { return (nq + 15) / 16 * 16; }

/* The query tile, transposed and scaled once per work unit: qt[x][i] =
 * scale * q_i[x], lanes nq..BQ-1 zero. Scores then vectorize over queries
 * and read every key row in place, whatever sequence it comes from. */
static void combiner__pack_queries(const combiner__problem *p, const combiner__scratch *sc,
                                   const combiner__seq *q, int nq) {
  const float scale = p->scale;
  const int d = p->d;
  const ptrdiff_t qs = q->stride;
  const float *q0 = q->base;
  float *qt = sc->qt;
  int i, x;
  COMBINER_ASSERT(nq >= 1 && nq <= COMBINER__BQ);
  int i16 = 0, x16 = 0;
#if defined(COMBINER__TRANSPOSE16)
  /* whole 16 x 16 blocks through registers */
  i16 = nq / 16 * 16;
  x16 = d / 16 * 16;
  for (i = 0; i < i16; i += 16)
    for (x = 0; x < x16; x += 16)
      combiner__transpose16(q0 + (ptrdiff_t)i * qs + x, qs, qt + (ptrdiff_t)x * COMBINER__BQ + i,
                            COMBINER__BQ, scale);
#endif
  /* the rest, x outer: the stores are contiguous, the strided loads hit L1
   * after the first pass (a scatter per row was 10x slower: each one waits
   * for the previous through its mask register) */
  for (x = 0; x < x16; ++x) {                 /* rows past the last whole block */
    float *row = qt + (ptrdiff_t)x * COMBINER__BQ;
    for (i = i16; i < nq; ++i) row[i] = q0[(ptrdiff_t)i * qs + x] * scale;
  }
  for (x = x16; x < d; ++x) {                  /* dimensions past the last whole block */
    float *row = qt + (ptrdiff_t)x * COMBINER__BQ;
    for (i = 0; i < nq; ++i) row[i] = q0[(ptrdiff_t)i * qs + x] * scale;
  }
  if (nq < combiner__lanes(nq))            /* the kernels read lanes up to nq rounded to 16 */
    for (x = 0; x < p->d; ++x)
      memset(sc->qt + (ptrdiff_t)x * COMBINER__BQ + nq, 0, (size_t)(combiner__lanes(nq) - nq) * sizeof(float));
}


/* ---- the tile's hot loops on the vector layer -----------------------------
 * The portable functions below them are the reference path, always
 * compiled; with a vector layer (COMBINER__VEC) these replace their loops.
 * Same math, different summation order. */
#if defined(COMBINER__VEC)
#define COMBINER__VW (COMBINER__NV * COMBINER__VL)   /* floats per register-tile row */

COMBINER__SHARED ptrdiff_t combiner__clampk(ptrdiff_t j, int nk) { return j < 0 ? 0 : j > nk ? nk : j; }

/* Lanes of a vector starting at lane v0 that lie below lane t (0..VL). */
static int combiner__lanes_below(ptrdiff_t t, int v0) {
  const ptrdiff_t n = t - v0;
  return n <= 0 ? 0 : n >= COMBINER__VL ? COMBINER__VL : (int)n;
}

/* The keys of a block of R query rows from row i0 under the mask: [ca, cb)
 * may be masked for some of the rows (the careful loop checks each row's
 * probability), the rest is seen by every row, and no key from `end` on is
 * seen by any (causal). Untouched when ALL: everything is seen. */
COMBINER__SHARED void combiner__pv_ranges(int mask, ptrdiff_t rel, int i0, int R, int nk,
                                          ptrdiff_t *ca, ptrdiff_t *cb, ptrdiff_t *end) {
  if (mask == COMBINER__CAUSAL) {                 /* row i sees j <= i + rel */
    *ca = combiner__clampk(i0 + rel + 1, nk);
    *cb = *end = combiner__clampk(i0 + R + rel, nk);
  } else if (mask == COMBINER__SKIP) {            /* row i skips j == i + rel */
    *ca = combiner__clampk(i0 + rel, nk);
    *cb = combiner__clampk(i0 + R + rel, nk);
  }
}

/* sT[j][lanes] = k_j . qt[.][lanes]: six keys x NV vectors of query lanes
 * per register tile (6*NV accumulators; per key dimension NV loads of qt,
 * six broadcasts from the key rows, 6*NV FMAs); lane groups narrower than a
 * tile row go one vector at a time. Lanes below j - masked_below see none
 * of keys j.. (causal): their 16-lane groups are skipped, the softmax masks
 * them to -inf anyway. Keys past nk repeat key 0 and are not stored. */
static void combiner__scores_vec(const combiner__seq *k, int j0, int nk, const float *qt, int d,
                                 int nl, float *s, ptrdiff_t masked_below) {
  int j, x, r, u, v;
  for (j = 0; j < nk; j += 6) {
    const int R = nk - j < 6 ? nk - j : 6;
    const ptrdiff_t blind = j - masked_below;
    const int vfirst = blind <= 0 ? 0 : blind >= nl ? nl : (int)(blind / 16) * 16;
    const float *kr[6];
    for (r = 0; r < 6; ++r) kr[r] = k->base + (ptrdiff_t)(j0 + j + (r < R ? r : 0)) * k->stride;
    for (v = vfirst; v + COMBINER__VW <= nl; v += COMBINER__VW) {
      combiner__vf a[6][COMBINER__NV];
      for (r = 0; r < 6; ++r)
        for (u = 0; u < COMBINER__NV; ++u) a[r][u] = combiner__vzero();
      for (x = 0; x < d; ++x) {
        const float *qx = qt + (ptrdiff_t)x * COMBINER__BQ + v;
        combiner__vf q[COMBINER__NV];
        for (u = 0; u < COMBINER__NV; ++u) q[u] = combiner__vload(qx + u * COMBINER__VL);
        for (r = 0; r < 6; ++r) {
          const combiner__vf b = combiner__vset1(kr[r][x]);
          for (u = 0; u < COMBINER__NV; ++u) a[r][u] = combiner__vfma(b, q[u], a[r][u]);
        }
      }
      for (r = 0; r < 6; ++r)      /* constant indices: the tile stays in registers */
        if (r < R)
          for (u = 0; u < COMBINER__NV; ++u)
            combiner__vstore(s + (ptrdiff_t)(j + r) * COMBINER__BQ + v + u * COMBINER__VL, a[r][u]);
    }
    for (; v < nl; v += COMBINER__VL) {
      combiner__vf a[6];
      for (r = 0; r < 6; ++r) a[r] = combiner__vzero();
      for (x = 0; x < d; ++x) {
        const combiner__vf qv = combiner__vload(qt + (ptrdiff_t)x * COMBINER__BQ + v);
        for (r = 0; r < 6; ++r) a[r] = combiner__vfma(combiner__vset1(kr[r][x]), qv, a[r]);
      }
      for (r = 0; r < 6; ++r)
        if (r < R) combiner__vstore(s + (ptrdiff_t)(j + r) * COMBINER__BQ + v, a[r]);
    }
  }
}

/* The softmax of one chunk, VL query lanes at a time: mask, running max
 * (NaN wins), probabilities in place, f = rescale of the old state, sums. */
static void combiner__softmax_chunk_vec(float *s, int nk, int nl, int mask, ptrdiff_t rel,
                                        float *mloc, float *sloc, float *f) {
  const combiner__vf ninf = combiner__vset1(-INFINITY);
  int v, j;
  for (v = 0; v < nl; v += COMBINER__VL) {
    combiner__vf cm = ninf, mold = combiner__vload(mloc + v), mnew, msub, fv, psum = combiner__vzero();
    combiner__vm nan = combiner__vm_first(0);
    for (j = 0; j < nk; ++j) {
      float *row = s + (ptrdiff_t)j * COMBINER__BQ + v;
      combiner__vf x = combiner__vload(row);
      if (mask == COMBINER__CAUSAL) {         /* lane i sees key j iff i >= j - rel */
        x = combiner__vblend(combiner__vm_first(combiner__lanes_below(j - rel, v)), x, ninf);
        combiner__vstore(row, x);
      } else if (mask == COMBINER__SKIP) {
        x = combiner__vblend(combiner__vm_lane(j - rel - v), x, ninf);
        combiner__vstore(row, x);
      }
      nan = combiner__vm_or(nan, combiner__vm_isnan(x));
      cm = combiner__vmax(cm, x);
    }
    cm = combiner__vblend(nan, cm, combiner__vset1(NAN));
    /* (a NaN in cm gives mold here, unlike the portable path; the lane's NaN
     * probabilities still carry it into the sum and the output) */
    mnew = combiner__vmax(cm, mold);
    mnew = combiner__vblend(combiner__vm_isnan(mold), mnew, mold);
    fv = combiner__vblend(combiner__vm_eq(mnew, mold), combiner__vexp(combiner__vsub(mold, mnew)),
                          combiner__vset1(1.0f));
    combiner__vstore(f, fv);
    msub = combiner__vblend(combiner__vm_eq(mnew, ninf), mnew, combiner__vzero());
    for (j = 0; j < nk; ++j) {
      float *row = s + (ptrdiff_t)j * COMBINER__BQ + v;
      const combiner__vf pv = combiner__vexp(combiner__vsub(combiner__vload(row), msub));
      combiner__vstore(row, pv);
      psum = combiner__vadd(psum, pv);
    }
    combiner__vstore(sloc + v, combiner__vfma(combiner__vload(sloc + v), fv, psum));
    combiner__vstore(mloc + v, mnew);
    f += COMBINER__VL;
  }
}

/* Keys [ja, jb) into the 6 x NV accumulators a of rows i0.. of a value
 * slice from y0: per key NV value loads, six broadcasts, 6*NV FMAs.
 * CAREFUL skips rows past R and zero probabilities row by row (a value a
 * query may not see never meets it: 0 * NaN); otherwise no checks. */
#define COMBINER__PV_KEYS(ja, jb, careful)                                           \
  for (j = (ja); j < (jb); ++j) {                                                    \
    const float *pj = s + (ptrdiff_t)j * COMBINER__BQ + i0;                          \
    const float *vj = v->base + (ptrdiff_t)(j0 + j) * v->stride + y0;                \
    combiner__vf vv[COMBINER__NV];                                                    \
    float p[6];                                                                      \
    int r_, u_, any_ = !(careful);                                                   \
    for (r_ = 0; r_ < 6; ++r_) { p[r_] = !(careful) || r_ < R ? pj[r_] : 0.0f; any_ |= p[r_] != 0.0f; } \
    if (!any_) continue;                                                             \
    for (u_ = 0; u_ < COMBINER__NV; ++u_) vv[u_] = combiner__vload(vj + u_ * COMBINER__VL); \
    for (r_ = 0; r_ < 6; ++r_)                                                       \
      if (!(careful) || p[r_] != 0.0f) {                                             \
        const combiner__vf b_ = combiner__vset1(p[r_]);                               \
        for (u_ = 0; u_ < COMBINER__NV; ++u_) a[r_][u_] = combiner__vfma(b_, vv[u_], a[r_][u_]); \
      }                                                                              \
  }

/* acc rows += P v, six query rows x a VW-wide slice of the value width at a
 * time. The mask says which keys each block of rows may have masked: those
 * go through the careful loop; keys every row of the block sees take the
 * branch-free loop; causal keys no row sees are not touched. The last
 * < VW floats of each row go VL at a time, zero probabilities skipped. */
static void combiner__accumulate_vec(const float *s, int nq, int nk, const combiner__seq *v, int j0,
                                     int w, float *acc, ptrdiff_t as, int mask, ptrdiff_t rel) {
  int y0, i0, j, r, u;
  for (y0 = 0; y0 + COMBINER__VW <= w; y0 += COMBINER__VW) {
    for (i0 = 0; i0 < nq; i0 += 6) {
      const int R = nq - i0 < 6 ? nq - i0 : 6;
      ptrdiff_t ca = nk, cb = nk, end = nk;          /* careful keys [ca, cb), none past end */
      combiner__vf a[6][COMBINER__NV];
      for (r = 0; r < 6; ++r)
        for (u = 0; u < COMBINER__NV; ++u)
          a[r][u] = r < R ? combiner__vload(acc + (ptrdiff_t)(i0 + r) * as + y0 + u * COMBINER__VL)
                          : combiner__vzero();
      combiner__pv_ranges(mask, rel, i0, R, nk, &ca, &cb, &end);
      if (R == 6) {
        COMBINER__PV_KEYS(0, ca, 0)
        COMBINER__PV_KEYS(ca, cb, 1)
        COMBINER__PV_KEYS(cb, end, 0)
      } else {
        COMBINER__PV_KEYS(0, end, 1)
      }
      for (r = 0; r < 6; ++r)      /* constant indices: the tile stays in registers */
        if (r < R)
          for (u = 0; u < COMBINER__NV; ++u)
            combiner__vstore(acc + (ptrdiff_t)(i0 + r) * as + y0 + u * COMBINER__VL, a[r][u]);
    }
  }
  for (; y0 < w; y0 += COMBINER__VL) {
    const int n = w - y0;
    int i;
    for (i = 0; i < nq; ++i) {
      float *o = acc + (ptrdiff_t)i * as + y0;
      combiner__vf a0 = combiner__vloadn(o, n);
      for (j = 0; j < nk; ++j) {
        const float pij = s[(ptrdiff_t)j * COMBINER__BQ + i];
        if (pij != 0.0f)
          a0 = combiner__vfma(combiner__vset1(pij), combiner__vloadn(v->base + (ptrdiff_t)(j0 + j) * v->stride + y0, n), a0);
      }
      combiner__vstoren(o, a0, n);
    }
  }
}
#undef COMBINER__PV_KEYS
#endif /* COMBINER__VEC */

/* sT[j][i] = k_{j0+j} . qt[.][i] (the transposed QK^T tile) for i < nl;
 * lanes i < j - masked_below may be left stale (the softmax masks them). */
static void combiner__scores(const combiner__seq *k, int j0, int nk, const float *qt, int d, int nl,
                             float *s, ptrdiff_t masked_below) {
  int i, j, x;
#if defined(COMBINER__VEC)
  combiner__scores_vec(k, j0, nk, qt, d, nl, s, masked_below);
  return;
#endif
  (void)masked_below;
  for (j = 0; j < nk; ++j) {
    const float *kj = k->base + (ptrdiff_t)(j0 + j) * k->stride;
    float *row = s + (ptrdiff_t)j * COMBINER__BQ;
    for (i = 0; i < nl; ++i) row[i] = 0.0f;
    for (x = 0; x < d; ++x) {
      const float a = kj[x], *qx = qt + (ptrdiff_t)x * COMBINER__BQ;
      for (i = 0; i < nl; ++i) row[i] += a * qx[i];
    }
  }
}

/* The softmax of one chunk (query lane i sees chunk key j iff ALL; CAUSAL
 * j <= i + rel; SKIP j != i + rel): masked scores become -inf, each lane's
 * running max mloc is updated (NaN wins), s turns into probabilities (0
 * where masked), f[i] is the factor that rescales lane i's old state, and
 * sloc[i] = sloc[i]*f[i] + the lane's new probabilities. */
static void combiner__softmax_chunk(float *s, int nk, int nl, int mask, ptrdiff_t rel, float *mloc,
                                    float *sloc, float *f) {
  float cm[COMBINER__BQ], msub[COMBINER__BQ];
  int i, j;
#if defined(COMBINER__VEC)
  combiner__softmax_chunk_vec(s, nk, nl, mask, rel, mloc, sloc, f);
  return;
#endif
  for (i = 0; i < nl; ++i) cm[i] = -INFINITY;
  for (j = 0; j < nk; ++j) {
    float *row = s + (ptrdiff_t)j * COMBINER__BQ;
    if (mask == COMBINER__CAUSAL) {
      ptrdiff_t first = j - rel;                 /* lanes below see nothing of key j */
      for (i = 0; i < nl && i < first; ++i) row[i] = -INFINITY;
    } else if (mask == COMBINER__SKIP && j - rel >= 0 && j - rel < nl) {
      row[j - rel] = -INFINITY;
    }
    for (i = 0; i < nl; ++i) cm[i] = (row[i] > cm[i] || row[i] != row[i]) ? row[i] : cm[i];
  }
  for (i = 0; i < nl; ++i) {
    float mold = mloc[i], mnew = (mold > cm[i] || mold != mold) ? mold : cm[i];
    f[i] = mnew == mold ? 1.0f : combiner__exp(mold - mnew);   /* 0 when mold is -inf */
    msub[i] = mnew == -INFINITY ? 0.0f : mnew;
    mloc[i] = mnew;
    sloc[i] *= f[i];
  }
  for (j = 0; j < nk; ++j) {
    float *row = s + (ptrdiff_t)j * COMBINER__BQ;
    for (i = 0; i < nl; ++i) row[i] = combiner__exp(row[i] - msub[i]);
    for (i = 0; i < nl; ++i) sloc[i] += row[i];
  }
}

/* acc_i += sum_j p_ji * v_{j0+j} (the PV tile). Zero-probability terms are
 * skipped, so a NaN in a value a query may not see never reaches its output
 * (the SIMD path skips them only where the mask can put them). */
static void combiner__accumulate(const float *s, int nq, int nk, const combiner__seq *v, int j0,
                                 int w, float *acc, ptrdiff_t as, int mask, ptrdiff_t rel) {
  int i, j, y;
#if defined(COMBINER__VEC)
  combiner__accumulate_vec(s, nq, nk, v, j0, w, acc, as, mask, rel);
  return;
#endif
  (void)mask; (void)rel;
  for (i = 0; i < nq; ++i) {
    float *a = acc + i * as;
    for (j = 0; j < nk; ++j) {
      const float pj = s[(ptrdiff_t)j * COMBINER__BQ + i], *vj = v->base + (ptrdiff_t)(j0 + j) * v->stride;
      if (pj == 0.0f) continue;
      for (y = 0; y < w; ++y) a[y] += pj * vj[y];
    }
  }
}

/* Folds one chunk's scores (s: nk keys x the tile's lanes) into st under
 * (mask, rel): softmax, rescale of the old terms, values (and expected
 * keys). loc: the state's running max, sum and rescale lanes. */
static void combiner__fold(const combiner__problem *p, float *s, float *loc, int nq, int nk,
                           const combiner__seq *k, const combiner__seq *v, int j0, int vj0, int mask,
                           ptrdiff_t rel, const combiner__states *st) {
  float *mloc = loc, *sloc = loc + COMBINER__BQ, *f = loc + (ptrdiff_t)2 * COMBINER__BQ;
  int i;
  combiner__softmax_chunk(s, nk, combiner__lanes(nq), mask, rel, mloc, sloc, f);
  for (i = 0; i < nq; ++i) {
    if (f[i] != 1.0f) {
      combiner__scale_row(st->acc + i * st->as, f[i], p->dv);
      if (st->acc2) combiner__scale_row(st->acc2 + i * st->a2s, f[i], p->d);
    }
  }
  combiner__accumulate(s, nq, nk, v, vj0, p->dv, st->acc, st->as, mask, rel);
  if (st->acc2) combiner__accumulate(s, nq, nk, k, j0, p->d, st->acc2, st->a2s, mask, rel);
}

/* The running max and sum lanes of a state, in (out = 0) or out (1). */
static void combiner__loc_move(float *loc, const combiner__states *st, int nq, int out) {
  int i;
  for (i = 0; i < combiner__lanes(nq); ++i) {
    if (out) {
      if (i < nq) { st->mx[i * st->ms] = loc[i]; st->sum[i * st->ms] = loc[COMBINER__BQ + i]; }
    } else {
      loc[i] = i < nq ? st->mx[i * st->ms] : 0.0f;
      loc[COMBINER__BQ + i] = i < nq ? st->sum[i * st->ms] : 0.0f;
    }
  }
}

/* The attention primitive: the nq queries packed in sc->qt (see
 * combiner__pack_queries) attend every key of k with value v, under `mask`
 * with offset `diag` (query i sees key j iff ALL; CAUSAL j <= i + diag; SKIP
 * j != i + diag), folding the terms into st; and, when st2 is given, into a
 * second state under (mask2, diag2) from the same scores (Axial: a row's
 * abstraction and its causal direct terms). A BK-key chunk at a time:
 * scores, then per state softmax, rescale, values. */
static void combiner__attend_two(const combiner__problem *p, const combiner__scratch *sc, int nq,
                              const combiner__seq *k, const combiner__seq *v, int mask, ptrdiff_t diag,
                              const combiner__states *st, int mask2, ptrdiff_t diag2,
                              const combiner__states *st2) {
  float *loc2 = sc->loc + (ptrdiff_t)3 * COMBINER__BQ;
  combiner__seq kc, vc;
  int j0;
  COMBINER_ASSERT(nq >= 1 && nq <= COMBINER__BQ);
  if (k->count <= 0) return;
  combiner__loc_move(sc->loc, st, nq, 0);
  if (st2) combiner__loc_move(loc2, st2, nq, 0);
  for (j0 = 0; j0 < k->count; j0 += COMBINER__BK) {
    int nk = k->count - j0 < COMBINER__BK ? k->count - j0 : COMBINER__BK;
    ptrdiff_t rel = diag - j0, rel2 = diag2 - j0, below = PTRDIFF_MAX;
    const int use1 = !(mask == COMBINER__CAUSAL && nq - 1 + rel < 0);    /* some query sees this far */
    const int use2 = st2 && !(mask2 == COMBINER__CAUSAL && nq - 1 + rel2 < 0);
    if (!use1 && !use2) break;
    if ((!use1 || mask == COMBINER__CAUSAL) && (!use2 || mask2 == COMBINER__CAUSAL))
      below = !use1 ? rel2 : !use2 ? rel : rel > rel2 ? rel : rel2;   /* lanes no state needs */
    int kj0 = j0, vj0 = j0;
    const combiner__seq *kp = combiner__chunk(k, &kj0, nk, p->d, sc->kpack, &kc), *vp;
    combiner__scores(kp, kj0, nk, sc->qt, p->d, combiner__lanes(nq), sc->s, below);
    if (v->type != COMBINER_F32) {
      vp = combiner__chunk(v, &vj0, nk, p->dv, sc->vpack, &vc);
    } else if (v->stride != p->dv && nq > 6 && k->count >= 4 * COMBINER__BK) {   /* see combiner__scratch */
      int j;
      for (j = 0; j < nk; ++j)
        memcpy(sc->vpack + (ptrdiff_t)j * p->dv, v->base + (ptrdiff_t)(j0 + j) * v->stride, (size_t)p->dv * sizeof(float));
      vc = combiner__seq_of(sc->vpack, p->dv, nk);
      vp = &vc;
      vj0 = 0;
    } else {
      vp = v;
    }
    if (use2) {
      if (use1) memcpy(sc->s2, sc->s, (size_t)nk * COMBINER__BQ * sizeof(float));
      combiner__fold(p, use1 ? sc->s2 : sc->s, loc2, nq, nk, kp, vp, kj0, vj0, mask2, rel2, st2);
    }
    if (use1) combiner__fold(p, sc->s, sc->loc, nq, nk, kp, vp, kj0, vj0, mask, rel, st);
  }
  combiner__loc_move(sc->loc, st, nq, 1);
  if (st2) combiner__loc_move(loc2, st2, nq, 1);
}

static void combiner__attend(const combiner__problem *p, const combiner__scratch *sc, int nq,
                             const combiner__seq *k, const combiner__seq *v, int mask,
                             ptrdiff_t diag, const combiner__states *st) {
  combiner__attend_two(p, sc, nq, k, v, mask, diag, st, COMBINER__ALL, 0, NULL);
}

/* ------------------------------------------------------------------------ */
/* >>single-query: one query against a sequence (decode steps, the pooled    */
/* query of a region summary, Logsparse's per-query terms)                  */
/* ------------------------------------------------------------------------ */

COMBINER__SHARED float combiner__dot(const float *a, const float *b, int n) {
  float s = 0.0f;
  int x = 0;
#if defined(COMBINER__VEC)
  combiner__vf acc = combiner__vzero();
  for (; x + COMBINER__VL <= n; x += COMBINER__VL)
    acc = combiner__vfma(combiner__vload(a + x), combiner__vload(b + x), acc);
  s = combiner__vhsum(acc);
#endif
  for (; x < n; ++x) s += a[x] * b[x];
  return s;
}

COMBINER__SHARED void combiner__axpy(float *y, float a, const float *x, int n) {
  int i = 0;
#if defined(COMBINER__VEC)
  const combiner__vf av = combiner__vset1(a);
  for (; i + COMBINER__VL <= n; i += COMBINER__VL)
    combiner__vstore(y + i, combiner__vfma(av, combiner__vload(x + i), combiner__vload(y + i)));
#endif
  for (; i < n; ++i) y[i] += a * x[i];
}

/* One query against a sequence, for decode: the tile primitive wastes 15 of
 * its 16 query lanes on a single query, so decode has its own. The query is
 * pre-scaled; the state is SPEC 2's joint softmax, online. */
typedef struct combiner__single_state {
  float mx, sum;
  float *acc;      /* dv: unnormalized output */
  float *acc2;     /* d: unnormalized expected key (Axial WSUM), or NULL */
} combiner__single_state;

static void combiner__single_state_begin(combiner__single_state *st, float *acc, float *acc2, int dv, int d) {
  st->mx = -INFINITY;
  st->sum = 0.0f;
  st->acc = acc;
  st->acc2 = acc2;
  memset(acc, 0, (size_t)dv * sizeof(float));
  if (acc2) memset(acc2, 0, (size_t)d * sizeof(float));
}

/* s[j] = q . k_{j0+j}, j < nk <= 64, the rows read in place in any element
 * type, one after the other: 16 rows' lane partials (in sc->s from 64 on),
 * then their lane sums. */
static void combiner__single_query_scores(const float *q, const combiner__seq *k, int j0, int nk, int d, float *s,
                                          const combiner__scratch *sc) {
  int j;
#if defined(COMBINER__VEC)
  float *t = sc->s + COMBINER__CHUNK;
  int r;
  for (j = 0; j < nk; j += 16) {
    const int n = nk - j < 16 ? nk - j : 16;
    for (r = 0; r < n; ++r)
      combiner__vstore(t + (ptrdiff_t)r * COMBINER__VL, combiner__vdot_row(q, combiner__seq_row(k, j0 + j + r), k->type, d));
    combiner__hsums(t, n, s + j);
  }
#else
  for (j = 0; j < nk; ++j) s[j] = combiner__dot(q, combiner__row_f32(combiner__seq_row(k, j0 + j), k->type, d, sc->kpack), d);
#endif
}

/* acc += sum_j w[j] * x_{j0+j} (rows of width n, any element type, read in place) */
static void combiner__single_query_pv(float *acc, const float *w, const combiner__seq *xs, int j0, int nk, int n,
                                      const combiner__scratch *sc) {
  int j, y = 0;
#if defined(COMBINER__VEC)
  int u;
  (void)sc;
  for (; y + COMBINER__NV * COMBINER__VL <= n; y += COMBINER__NV * COMBINER__VL) {   /* accumulators in registers */
    combiner__vf a[COMBINER__NV];
    for (u = 0; u < COMBINER__NV; ++u) a[u] = combiner__vload(acc + y + u * COMBINER__VL);
    for (j = 0; j < nk; ++j) {
      const void *row = combiner__seq_row(xs, j0 + j);
      const combiner__vf b = combiner__vset1(w[j]);
      if (xs->type == COMBINER_F32) {
        const float *xj = (const float *)row + y;
        for (u = 0; u < COMBINER__NV; ++u) a[u] = combiner__vfma(b, combiner__vload(xj + u * COMBINER__VL), a[u]);
      } else {
        const uint16_t *hj = (const uint16_t *)row + y;
        for (u = 0; u < COMBINER__NV; ++u)
          a[u] = combiner__vfma(b, combiner__vload_half(hj + u * COMBINER__VL, xs->type), a[u]);
      }
    }
    for (u = 0; u < COMBINER__NV; ++u) combiner__vstore(acc + y + u * COMBINER__VL, a[u]);
  }
  for (; y < n; y += COMBINER__VL) {
    const int m = n - y < COMBINER__VL ? n - y : COMBINER__VL;
    combiner__vf a0 = combiner__vloadn(acc + y, m);
    for (j = 0; j < nk; ++j)
      a0 = combiner__vfma(combiner__vset1(w[j]), combiner__vload_typed(combiner__seq_row(xs, j0 + j), xs->type, y, m), a0);
    combiner__vstoren(acc + y, a0, m);
  }
#else
  for (j = 0; j < nk; ++j)           /* zero weights skipped, as in the tile path */
    if (w[j] != 0.0f) combiner__axpy(acc, w[j], combiner__row_f32(combiner__seq_row(xs, j0 + j), xs->type, n, sc->vpack), n);
  (void)y;
#endif
}

/* The online-softmax step of a chunk of nk <= 64 logits s: st's max,
 * rescaled state and sum absorb them; s becomes their probabilities. */
static void combiner__single_softmax(const combiner__problem *p, combiner__single_state *st, float *s, int nk) {
  float cm = st->mx, sub, add = 0.0f;
  int j;
#if defined(COMBINER__VEC)
  {
    combiner__vf vm = combiner__vset1(cm);
    combiner__vm nan = combiner__vm_first(0);
    float lanes[COMBINER__VL];
    for (j = 0; j < nk; j += COMBINER__VL) {   /* lanes past nk keep the max so far */
      const combiner__vf x = combiner__vblend(combiner__vm_first(nk - j), vm, combiner__vloadn(s + j, nk - j));
      nan = combiner__vm_or(nan, combiner__vm_isnan(x));
      vm = combiner__vmax(vm, x);
    }
    combiner__vstore(lanes, vm);
    for (j = 0; j < COMBINER__VL; ++j) cm = lanes[j] > cm ? lanes[j] : cm;
    if (combiner__vm_any(nan)) cm = NAN;
  }
#else
  for (j = 0; j < nk; ++j) cm = (s[j] > cm || s[j] != s[j]) ? s[j] : cm;
#endif
  if (cm != st->mx) {
    const float f = combiner__exp(st->mx - cm);          /* 0 when the old max is -inf */
    if (st->sum != 0.0f) {
      st->sum *= f;
      combiner__scale_row(st->acc, f, p->dv);
      if (st->acc2) combiner__scale_row(st->acc2, f, p->d);
    }
    st->mx = cm;
  }
  sub = cm == -INFINITY ? 0.0f : cm;
#if defined(COMBINER__VEC)
  {
    const combiner__vf vs = combiner__vset1(sub);
    combiner__vf va = combiner__vzero();
    for (j = 0; j < nk; j += COMBINER__VL) {   /* lanes past nk add 0 */
      const combiner__vf e = combiner__vblend(combiner__vm_first(nk - j), combiner__vzero(),
          combiner__vexp(combiner__vsub(combiner__vloadn(s + j, nk - j), vs)));
      combiner__vstoren(s + j, e, nk - j);
      va = combiner__vadd(va, e);
    }
    add = combiner__vhsum(va);
  }
#else
  for (j = 0; j < nk; ++j) s[j] = combiner__exp(s[j] - sub);
  for (j = 0; j < nk; ++j) add += s[j];
#endif
  st->sum += add;
}

/* st += the terms (k_j, v_j) of one pre-scaled query q, 64 keys at a time
 * (half-precision rows widened in registers as they are read). */
static void combiner__single_query_attend(const combiner__problem *p, const float *q, const combiner__seq *k,
                              const combiner__seq *v, combiner__single_state *st, const combiner__scratch *sc) {
  float *const s = sc->s;
  int j0;
  for (j0 = 0; j0 < k->count; j0 += COMBINER__CHUNK) {
    const int nk = k->count - j0 < COMBINER__CHUNK ? k->count - j0 : COMBINER__CHUNK;
    combiner__single_query_scores(q, k, j0, nk, p->d, s, sc);
    combiner__single_softmax(p, st, s, nk);
    combiner__single_query_pv(st->acc, s, v, j0, nk, p->dv, sc);
    if (st->acc2) combiner__single_query_pv(st->acc2, s, k, j0, nk, p->d, sc);
  }
}

/* ---- several queries over one sequence ---------------------------------- */

/* Queries per batch: a chunked append reads a block's rows once for this
 * many of its queries (each query's accumulators stay in registers). */
#define COMBINER__MQ 4

#if defined(COMBINER__VEC)
/* t[b] + r*VL = the lanes of q[b] . row for b < nq: vdot_row's operations
 * for each query, in its order, the row's vectors loaded once for all. */
COMBINER__INLINE void combiner__vdot_rows(const float *const *q, int nq, const void *row, int type, int d,
                                          float *const *t, int r) {
  combiner__vf a0[COMBINER__MQ], a1[COMBINER__MQ];
  int b, x = 0;
  for (b = 0; b < nq; ++b) a0[b] = a1[b] = combiner__vzero();
  if (type == COMBINER_F32) {
    const float *rf = (const float *)row;
    for (; x + 2 * COMBINER__VL <= d; x += 2 * COMBINER__VL) {
      const combiner__vf r0 = combiner__vload(rf + x), r1 = combiner__vload(rf + x + COMBINER__VL);
      for (b = 0; b < nq; ++b) {
        a0[b] = combiner__vfma(combiner__vload(q[b] + x), r0, a0[b]);
        a1[b] = combiner__vfma(combiner__vload(q[b] + x + COMBINER__VL), r1, a1[b]);
      }
    }
  } else {
    const uint16_t *hr = (const uint16_t *)row;
    for (; x + 2 * COMBINER__VL <= d; x += 2 * COMBINER__VL) {
      const combiner__vf r0 = combiner__vload_half(hr + x, type), r1 = combiner__vload_half(hr + x + COMBINER__VL, type);
      for (b = 0; b < nq; ++b) {
        a0[b] = combiner__vfma(combiner__vload(q[b] + x), r0, a0[b]);
        a1[b] = combiner__vfma(combiner__vload(q[b] + x + COMBINER__VL), r1, a1[b]);
      }
    }
  }
  for (; x < d; x += COMBINER__VL) {
    const int n = d - x < COMBINER__VL ? d - x : COMBINER__VL;
    const combiner__vf rv = combiner__vload_typed(row, type, x, n);
    for (b = 0; b < nq; ++b) a0[b] = combiner__vfma(combiner__vloadn(q[b] + x, n), rv, a0[b]);
  }
  for (b = 0; b < nq; ++b) combiner__vstore(t[b] + (ptrdiff_t)r * COMBINER__VL, combiner__vadd(a0[b], a1[b]));
}

/* s[b][j] = q[b] . k_{j0+j} for j < nk[b] (every b: rows up to the largest
 * nk; a query's extra logits are not read), as single_query_scores. */
COMBINER__INLINE void combiner__multi_scores(const float *const *q, int nq, const combiner__seq *k, int j0, const int *nk,
                                             int d, float *const *s, float *const *t) {
  int j, r, b, most = 0;
  for (b = 0; b < nq; ++b) most = nk[b] > most ? nk[b] : most;
  for (j = 0; j < most; j += 16) {
    const int n = most - j < 16 ? most - j : 16;
    for (r = 0; r < n; ++r) combiner__vdot_rows(q, nq, combiner__seq_row(k, j0 + j + r), k->type, d, t, r);
    for (b = 0; b < nq; ++b)
      if (nk[b] > j) combiner__hsums(t[b], nk[b] - j < n ? nk[b] - j : n, s[b] + j);
  }
}

/* acc[b] += sum_{j < nk[b]} w[b][j] * x_{j0+j}: single_query_pv's
 * operations for each query in its order, the rows' vectors loaded once
 * for the queries that read them. */
COMBINER__INLINE void combiner__multi_pv(float *const *acc, const float *const *w, const int *nk, int nq,
                                         const combiner__seq *xs, int j0, int n) {
  int j, y = 0, u, b, lo = nk[0];
  for (b = 1; b < nq; ++b) lo = nk[b] < lo ? nk[b] : lo;
  for (; y + COMBINER__NV * COMBINER__VL <= n; y += COMBINER__NV * COMBINER__VL) {
    combiner__vf a[COMBINER__MQ][COMBINER__NV];
    for (b = 0; b < nq; ++b)
      for (u = 0; u < COMBINER__NV; ++u) a[b][u] = combiner__vload(acc[b] + y + u * COMBINER__VL);
    for (j = 0; j < lo; ++j) {
      const void *row = combiner__seq_row(xs, j0 + j);
      combiner__vf rv[COMBINER__NV];
      if (xs->type == COMBINER_F32)
        for (u = 0; u < COMBINER__NV; ++u) rv[u] = combiner__vload((const float *)row + y + u * COMBINER__VL);
      else
        for (u = 0; u < COMBINER__NV; ++u) rv[u] = combiner__vload_half((const uint16_t *)row + y + u * COMBINER__VL, xs->type);
      for (b = 0; b < nq; ++b) {
        const combiner__vf wb = combiner__vset1(w[b][j]);
        for (u = 0; u < COMBINER__NV; ++u) a[b][u] = combiner__vfma(wb, rv[u], a[b][u]);
      }
    }
    for (b = 0; b < nq; ++b) {
      for (j = lo; j < nk[b]; ++j) {   /* the rows only some queries read */
        const combiner__vf wb = combiner__vset1(w[b][j]);
        for (u = 0; u < COMBINER__NV; ++u)
          a[b][u] = combiner__vfma(wb, combiner__vload_typed(combiner__seq_row(xs, j0 + j), xs->type, y + u * COMBINER__VL,
                                                             COMBINER__VL), a[b][u]);
      }
      for (u = 0; u < COMBINER__NV; ++u) combiner__vstore(acc[b] + y + u * COMBINER__VL, a[b][u]);
    }
  }
  for (; y < n; y += COMBINER__VL) {
    const int m = n - y < COMBINER__VL ? n - y : COMBINER__VL;
    for (b = 0; b < nq; ++b) {
      combiner__vf a0 = combiner__vloadn(acc[b] + y, m);
      for (j = 0; j < nk[b]; ++j)
        a0 = combiner__vfma(combiner__vset1(w[b][j]), combiner__vload_typed(combiner__seq_row(xs, j0 + j), xs->type, y, m), a0);
      combiner__vstoren(acc[b] + y, a0, m);
    }
  }
}

/* One chunk [j0, j0 + 64) of nq queries, nk[b] keys each (>= 1). */
static void combiner__multi_chunk(const combiner__problem *p, int nq, const float *const *q, const int *nk,
    const combiner__seq *k, const combiner__seq *v, combiner__single_state *const *st, int j0,
    const combiner__scratch *sc) {
  float *s[COMBINER__MQ], *t[COMBINER__MQ];
  const float *w[COMBINER__MQ];
  float *acc[COMBINER__MQ];
  int b;
  for (b = 0; b < nq; ++b) {
    s[b] = sc->s + (ptrdiff_t)b * COMBINER__CHUNK;
    t[b] = sc->s + (ptrdiff_t)COMBINER__MQ * COMBINER__CHUNK + (ptrdiff_t)b * 16 * COMBINER__VL;
  }
  switch (nq) {   /* a constant count: the accumulators stay in registers */
    case 4: combiner__multi_scores(q, 4, k, j0, nk, p->d, s, t); break;
    case 3: combiner__multi_scores(q, 3, k, j0, nk, p->d, s, t); break;
    case 2: combiner__multi_scores(q, 2, k, j0, nk, p->d, s, t); break;
    default: combiner__multi_scores(q, 1, k, j0, nk, p->d, s, t); break;
  }
  for (b = 0; b < nq; ++b) {
    combiner__single_softmax(p, st[b], s[b], nk[b]);
    w[b] = s[b];
    acc[b] = st[b]->acc;
  }
  switch (nq) {
    case 4: combiner__multi_pv(acc, w, nk, 4, v, j0, p->dv); break;
    case 3: combiner__multi_pv(acc, w, nk, 3, v, j0, p->dv); break;
    case 2: combiner__multi_pv(acc, w, nk, 2, v, j0, p->dv); break;
    default: combiner__multi_pv(acc, w, nk, 1, v, j0, p->dv); break;
  }
  for (b = 0; b < nq; ++b)
    if (st[b]->acc2) combiner__single_query_pv(st[b]->acc2, s[b], k, j0, nk[b], p->d, sc);
}
#endif

/* st[b] += the terms of the first cnt[b] (<= k->count) keys of the
 * pre-scaled query q[b], b < nq <= COMBINER__MQ: for each query the
 * operations of single_query_attend over its keys, in the same order (the
 * same bits), the rows read once for the queries of a chunk. */
COMBINER__SHARED void combiner__multi_query_attend(const combiner__problem *p, int nq, const float *const *q,
    const int *cnt, const combiner__seq *k, const combiner__seq *v, combiner__single_state *st,
    const combiner__scratch *sc) {
#if defined(COMBINER__VEC)
  int j0, b, most = 0;
  for (b = 0; b < nq; ++b) most = cnt[b] > most ? cnt[b] : most;
  for (j0 = 0; j0 < most; j0 += COMBINER__CHUNK) {
    const float *qa[COMBINER__MQ] = {NULL};
    combiner__single_state *sa[COMBINER__MQ] = {NULL};
    int nk[COMBINER__MQ] = {0}, na = 0;
    for (b = 0; b < nq; ++b)   /* the queries with keys in this chunk */
      if (cnt[b] > j0) {
        qa[na] = q[b];
        sa[na] = &st[b];
        nk[na++] = cnt[b] - j0 < COMBINER__CHUNK ? cnt[b] - j0 : COMBINER__CHUNK;
      }
    combiner__multi_chunk(p, na, qa, nk, k, v, sa, j0, sc);
  }
#else
  int b;
  for (b = 0; b < nq; ++b) {   /* the portable build: one query at a time */
    combiner__seq kb = *k, vb = *v;
    kb.count = vb.count = cnt[b];
    combiner__single_query_attend(p, q[b], &kb, &vb, &st[b], sc);
  }
#endif
}

/* out[y] = acc[y] / sum */
static void combiner__single_state_finish(const combiner__single_state *st, float *out, int dv) {
  combiner__states s;
  float mx = st->mx, sum = st->sum;
  s.mx = &mx; s.sum = &sum; s.acc = st->acc; s.ms = 1; s.as = dv; s.acc2 = NULL; s.a2s = 0;
  combiner__states_finish(&s, 1, dv, out, dv);
}

/* dst = scale * src */
static void combiner__scaled_copy(float *dst, const float *src, float scale, int n) {
  int x;
  for (x = 0; x < n; ++x) dst[x] = scale * src[x];
}

/* Fixed-style abstraction of a region (SPEC 3, and SPEC 5's regions with max
 * or mean): key = pool of its keys, value = att(pool of its queries, region).
 * Queries at q0, q0 + qs, ...; keys and values as given. */
static void combiner__region_value(const combiner__problem *p, const combiner__scratch *sc, float *qp,
    const combiner__seq *ks, const combiner__seq *vs, float *val) {
  combiner__single_state st;
  combiner__scale_row(qp, p->scale, p->d);
  combiner__single_state_begin(&st, sc->tile[1], NULL, p->dv, p->d);
  combiner__single_query_attend(p, qp, ks, vs, &st, sc);
  combiner__single_state_finish(&st, val, p->dv);
}

/* out = the pool of the keys ks (any element type; tmp: d floats). */
static void combiner__pool_keys(const combiner__problem *p, float *out, const combiner__seq *ks, float *tmp) {
  int j;
  if (ks->type == COMBINER_F32) {
    combiner__pool_rows(out, ks->base, ks->stride, ks->count, p->d, p->pool);
    return;
  }
  combiner__row_copy(out, combiner__seq_row(ks, 0), ks->type, p->d);
  for (j = 1; j < ks->count; ++j)
    combiner__pool_add(out, combiner__row_f32(combiner__seq_row(ks, j), ks->type, p->d, tmp), p->d, p->pool);
  combiner__pool_read(out, out, p->d, p->pool, ks->count);
}

static void combiner__region_summary(const combiner__problem *p, const combiner__scratch *sc, const float *q0,
    ptrdiff_t qs, const combiner__seq *ks, const combiner__seq *vs, float *key, float *val) {
  float *qp = sc->qbuf + p->d;
  combiner__pool_keys(p, key, ks, sc->kpack);
  combiner__pool_rows(qp, q0, qs, ks->count, p->d, p->pool);
  combiner__region_value(p, sc, qp, ks, vs, val);
}

/* The same with the queries' pool given: acc = pool_start and pool_add
 * over the region's queries in order (the same bits as pooling the rows). */
COMBINER__SHARED void combiner__region_summary_pooled(const combiner__problem *p, const combiner__scratch *sc,
    const float *acc, const combiner__seq *ks, const combiner__seq *vs, float *key, float *val) {
  float *qp = sc->qbuf + p->d;
  combiner__pool_keys(p, key, ks, sc->kpack);
  combiner__pool_read(qp, acc, p->d, p->pool, ks->count);
  combiner__region_value(p, sc, qp, ks, vs, val);
}

/* ------------------------------------------------------------------------ */
/* >>units: work units, threads, the rows of the tensors                   */
/* ------------------------------------------------------------------------ */

typedef struct combiner__ctx {
  const combiner__problem *p;
  const float *q;
  const void *k, *v;             /* elements of p->k.type, p->v.type */
  float *out;
  const float *skeys, *svals;    /* summaries, read by combine */
  float *wkeys, *wvals;          /* the same, written by summarize (NULL in combine) */
  float *states;                 /* state sets of multi-pass kinds (combine) */
  size_t state_floats;
  float *extra;                  /* a kind's own workspace (combiner__kind_extra floats) */
  unsigned char *scratch;
  size_t scratch_stride;
  int one_call;                  /* combiner_attention (not the two phases): steps may fuse */
  ptrdiff_t qbegin, qend;        /* the queries to compute: [0, L), or a range's (>>ranges) */
  const struct combiner__rmap *rmap;   /* a range's summary slots (>>ranges), else NULL */
  const struct combiner__rjob *rjob;   /* a range call's job (>>ranges), else NULL */
} combiner__ctx;

typedef void (*combiner__unit_fn)(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc);

/* Starting a thread team costs microseconds, and far more when cores are
 * oversubscribed; below ~1e5 multiply-adds (L * H * terms per query * d)
 * one thread is faster. The result does not depend on this choice. */
COMBINER__SHARED int combiner__worth_threads(const combiner__problem *p) {
  return (double)p->L * p->H * combiner__kind_terms(p, p->L) * ((double)p->d + p->dv) >= 1e5;
}

/* Denormals: on x86 a float below FLT_MIN costs a microcode assist per
 * operation (a call on inputs near 1e-39, or near 1e-20 whose products
 * are, runs an order of magnitude slower), and many Arm cores trap them to slow paths too. Each
 * thread flushes them while it runs our units (x86: MXCSR FTZ|DAZ; aarch64:
 * FPCR.FZ) and restores the caller's control register after;
 * COMBINER_KEEP_DENORMALS opts out. */
#if !defined(COMBINER_KEEP_DENORMALS) && (defined(__SSE__) || defined(_M_X64) || defined(_M_AMD64))
#  include <xmmintrin.h>
#  define COMBINER__FLUSH_X86 1
#elif !defined(COMBINER_KEEP_DENORMALS) && defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#  define COMBINER__FLUSH_AARCH64 1
#endif

static uint64_t combiner__denormals_off(void) {
#if defined(COMBINER__FLUSH_X86)
  unsigned csr = _mm_getcsr();
  _mm_setcsr(csr | 0x8040u);   /* FTZ (bit 15) | DAZ (bit 6) */
  return csr;
#elif defined(COMBINER__FLUSH_AARCH64)
  uint64_t fpcr;
  __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
  __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr | ((uint64_t)1 << 24)));   /* FZ (bit 24) */
  return fpcr;
#else
  return 0;
#endif
}

static void combiner__denormals_restore(uint64_t csr) {
#if defined(COMBINER__FLUSH_X86)
  _mm_setcsr((unsigned)csr);
#elif defined(COMBINER__FLUSH_AARCH64)
  __asm__ __volatile__("msr fpcr, %0" : : "r"(csr));
#else
  (void)csr;
#endif
}

/* Units first, first+step, ... (< units) on the calling thread, with
 * scratch slot `slot`: the serial path and one part of a split call. */
static void combiner__run_slice(const combiner__ctx *c, combiner__unit_fn fn, ptrdiff_t units,
                                ptrdiff_t first, ptrdiff_t step, int slot) {
  combiner__scratch sc;
  const uint64_t csr = combiner__denormals_off();
  ptrdiff_t u;
  combiner__scratch_parts(c->p, &sc, (float *)(void *)(c->scratch + (size_t)slot * c->scratch_stride));
  for (u = first; u < units; u += step) fn(c, u, &sc);
  combiner__denormals_restore(csr);
}

/* Threads a call runs its units on. */
COMBINER__SHARED int combiner__run_threads(const combiner__problem *p) {
#ifdef COMBINER__OPENMP
  if (p->threads > 1 && combiner__worth_threads(p)) return p->threads;
#endif
  (void)p;
  return 1;
}

/* Units are fixed by the problem and independent, so any schedule gives the
 * same bits. */
static void combiner__run(const combiner__ctx *c, ptrdiff_t units, combiner__unit_fn fn) {
#ifdef COMBINER__OPENMP
  if (combiner__run_threads(c->p) > 1 && units > 1) {
#pragma omp parallel num_threads(c->p->threads)
    {
      const uint64_t csr = combiner__denormals_off();
      combiner__scratch sc;
      ptrdiff_t u;
      combiner__scratch_parts(c->p, &sc, (float *)(void *)(c->scratch +
          (size_t)omp_get_thread_num() * c->scratch_stride));
#pragma omp for schedule(dynamic, 1)
      for (u = 0; u < units; ++u) fn(c, u, &sc);
      combiner__denormals_restore(csr);
    }
    return;
  }
#endif
  combiner__run_slice(c, fn, units, 0, 1, 0);
}

/* Rows of the inputs: position i, head h. */
COMBINER__SHARED const float *combiner__q(const combiner__ctx *c, ptrdiff_t i, int h) {
  if (c->p->qring) i %= c->p->qring;   /* runs read through it never wrap (see combiner__cache_plan) */
  return c->q + (i - c->p->q.org) * c->p->q.ts + (ptrdiff_t)h * c->p->q.hs;
}
static const void *combiner__elem(const void *base, const combiner__tensor *t, ptrdiff_t i, int g) {
  return (const unsigned char *)base + ((i - t->org) * t->ts + (ptrdiff_t)g * t->hs) * (ptrdiff_t)combiner__type_size(t->type);
}
COMBINER__SHARED const void *combiner__k(const combiner__ctx *c, ptrdiff_t i, int g) {
  return combiner__elem(c->k, &c->p->k, i, g);
}
COMBINER__SHARED const void *combiner__v(const combiner__ctx *c, ptrdiff_t i, int g) {
  return combiner__elem(c->v, &c->p->v, i, g);
}
/* Key row (i, g) as float32: in place, or converted into tmp (d floats). */
COMBINER__SHARED const float *combiner__krow(const combiner__ctx *c, ptrdiff_t i, int g, float *tmp) {
  return combiner__row_f32(combiner__k(c, i, g), c->p->k.type, c->p->d, tmp);
}
COMBINER__SHARED float *combiner__out(const combiner__ctx *c, ptrdiff_t i, int h) {
  return c->out + (i - c->p->o.org) * c->p->o.ts + (ptrdiff_t)h * c->p->o.hs;
}
COMBINER__SHARED const float *combiner__skey(const combiner__ctx *c, int h, ptrdiff_t e) {
  return c->skeys + ((ptrdiff_t)h * (ptrdiff_t)c->p->count + e) * c->p->d;
}
COMBINER__SHARED const float *combiner__sval(const combiner__ctx *c, int h, ptrdiff_t e) {
  return c->svals + ((ptrdiff_t)h * (ptrdiff_t)c->p->count + e) * c->p->dv;
}
COMBINER__SHARED float *combiner__wkey(const combiner__ctx *c, int h, ptrdiff_t e) {
  return c->wkeys + ((ptrdiff_t)h * (ptrdiff_t)c->p->count + e) * c->p->d;
}
COMBINER__SHARED float *combiner__wval(const combiner__ctx *c, int h, ptrdiff_t e) {
  return c->wvals + ((ptrdiff_t)h * (ptrdiff_t)c->p->count + e) * c->p->dv;
}

/* Positions first, first+step, ... of k / v (kv head g) and q (head h). */
COMBINER__SHARED combiner__seq combiner__keys(const combiner__ctx *c, int g, ptrdiff_t first,
                                              ptrdiff_t step, int count) {
  return combiner__seq_typed(combiner__k(c, first, g), c->p->k.type, step * c->p->k.ts, count);
}
COMBINER__SHARED combiner__seq combiner__values(const combiner__ctx *c, int g, ptrdiff_t first,
                                                ptrdiff_t step, int count) {
  return combiner__seq_typed(combiner__v(c, first, g), c->p->v.type, step * c->p->v.ts, count);
}
COMBINER__SHARED combiner__seq combiner__queries(const combiner__ctx *c, int h, ptrdiff_t first,
                                                 ptrdiff_t step, int count) {
  return combiner__seq_of(combiner__q(c, first, h), step * c->p->q.ts, count);
}

/* Abstractions: summary entries first, first+step, ... of head h. */
COMBINER__SHARED void combiner__attend_summaries(const combiner__ctx *c, const combiner__scratch *sc,
    int nq, int h, ptrdiff_t first, ptrdiff_t step, int count, int mask,
    ptrdiff_t diag, const combiner__states *st) {
  combiner__seq ks, vs;
  if (count <= 0) return;
  ks = combiner__seq_of(combiner__skey(c, h, first), step * c->p->d, count);
  vs = combiner__seq_of(combiner__sval(c, h, first), step * c->p->dv, count);
  combiner__attend(c->p, sc, nq, &ks, &vs, mask, diag, st);
}

/* State set `set` of head h, for the queries at positions first, first+step, ... */
COMBINER__SHARED combiner__states combiner__saved_states(const combiner__ctx *c, int set, int h,
                                                         ptrdiff_t first, ptrdiff_t step) {
  const combiner__problem *p = c->p;
  float *base = c->states + (size_t)set * c->state_floats;
  ptrdiff_t hl = (ptrdiff_t)h * p->L + first, L = (ptrdiff_t)p->H * p->L;
  combiner__states st;
  st.mx = base + hl;
  st.sum = base + L + hl;
  st.acc = base + 2 * L + hl * p->dv;
  st.ms = step;
  st.as = step * p->dv;
  st.acc2 = NULL;
  st.a2s = 0;
  return st;
}

/* The same for `len` consecutive positions from `first` (a block). */
COMBINER__SHARED void combiner__block_summary(const combiner__ctx *c, const combiner__scratch *sc, int h, ptrdiff_t first,
                             int len, float *key, float *val) {
  const int g = h / c->p->group;
  combiner__seq ks = combiner__keys(c, g, first, 1, len), vs = combiner__values(c, g, first, 1, len);
  combiner__region_summary(c->p, sc, combiner__q(c, first, h), c->p->q.ts, &ks, &vs, key, val);
}

COMBINER__SHARED int combiner__row_len(const combiner__problem *p, int t) {
  return t == p->n - 1 ? p->last : p->m;
}

/* Cells in column col: every row but the short last one, which may lack it. */
COMBINER__SHARED int combiner__col_len(const combiner__problem *p, int col) {
  return p->n - 1 + (col < p->last ? 1 : 0);
}

COMBINER__SHARED int combiner__tiles(int count) { return (count - 1) / COMBINER__BQ + 1; }

/* Columns that exist (the first row's length). */
COMBINER__SHARED int combiner__cols(const combiner__problem *p) { return p->m < p->L ? p->m : p->L; }

/* A range's summary slots (>>ranges): the regions of section s, level l
 * that its queries read are B in [lo, lo + n), at slot off + B - lo (FIXED:
 * one level, every block). */
#define COMBINER__MAX_LEVELS 32
typedef struct combiner__rmap {
  ptrdiff_t lo[2][COMBINER__MAX_LEVELS], n[2][COMBINER__MAX_LEVELS], off[2][COMBINER__MAX_LEVELS];
  ptrdiff_t slots;
} combiner__rmap;

/* A (head, row, tile) work unit: query tile [q0, q0+nq) of row r of head h
 * (kv head g); rows are Fixed's blocks and the 2-D view's rows. */
typedef struct combiner__rowtile {
  int h, g, r, len, q0, nq;
  ptrdiff_t first;       /* position of the row's first cell */
} combiner__rowtile;

/* Decodes unit = (h * n + r) * tiles + tile; 0 when the tile is past the
 * row's end (the short last row has fewer tiles). */
COMBINER__SHARED int combiner__row_unit(const combiner__problem *p, ptrdiff_t unit, combiner__rowtile *t) {
  int tiles = combiner__tiles(combiner__cols(p));
  t->h = (int)(unit % p->H);
  unit /= p->H;
  t->r = (int)(unit / tiles);
  t->g = t->h / p->group;
  t->len = combiner__row_len(p, t->r);
  t->q0 = (int)(unit % tiles) * COMBINER__BQ;
  t->first = (ptrdiff_t)t->r * p->m;
  if (t->q0 >= t->len) return 0;
  t->nq = t->len - t->q0 < COMBINER__BQ ? t->len - t->q0 : COMBINER__BQ;
  return 1;
}

/* Packs the tile's queries and folds the direct terms of its own row into st
 * (begun here): the whole row, or causal up to each query. */
COMBINER__SHARED void combiner__attend_own_row(const combiner__ctx *c, const combiner__scratch *sc,
    const combiner__rowtile *t, const combiner__states *st) {
  const combiner__problem *p = c->p;
  combiner__seq qs = combiner__queries(c, t->h, t->first + t->q0, 1, t->nq);
  combiner__seq ks = combiner__keys(c, t->g, t->first, 1, p->causal ? t->q0 + t->nq : t->len);
  combiner__seq vs = combiner__values(c, t->g, t->first, 1, ks.count);
  combiner__states_begin(st, t->nq, p->dv, p->d);
  combiner__pack_queries(p, sc, &qs, t->nq);
  combiner__attend(p, sc, t->nq, &ks, &vs, p->causal ? COMBINER__CAUSAL : COMBINER__ALL, t->q0, st);
}

/* The steps of a call. Each is a set of independent units (any thread, any
 * order, same bits); a step needs the previous one complete. A kind with
 * abstractions computes them in step 0. */
typedef struct combiner__step {
  combiner__unit_fn fn;
  ptrdiff_t units;
  int summary;          /* computes abstractions (the two-phase API's summarize runs these) */
} combiner__step;

#define COMBINER__MAX_STEPS 3

/* Prefill steps by shape: (head, row, tile of its cells) and (head,
 * column, tile of its rows). */
COMBINER__SHARED ptrdiff_t combiner__row_tiles(const combiner__problem *p) {
  return (ptrdiff_t)p->H * p->n * combiner__tiles(combiner__cols(p));
}
COMBINER__SHARED ptrdiff_t combiner__col_tiles(const combiner__problem *p) {
  return (ptrdiff_t)p->H * combiner__cols(p) * combiner__tiles(p->n);
}

/* The block partition Fixed and Axial share (Axial's rows are Fixed's
 * blocks): the own block direct, every other (causal: earlier) block t
 * through one summary, region 1 + t. */
COMBINER__SHARED int combiner__blocks_support(const combiner__problem *p, int plan, ptrdiff_t i, ptrdiff_t j) {
  const ptrdiff_t s = i / p->m, t = j / p->m;
  (void)plan;
  return s == t ? 0 : 1 + (int)t;
}

COMBINER__SHARED double combiner__blocks_query_terms(const combiner__problem *p, int r, int u) {
  return p->causal ? (double)(u + 1) + r : (double)combiner__row_len(p, r) + (p->n - 1);
}

COMBINER__SHARED int combiner__no_summaries(combiner__problem *p) {
  p->sections = 0;
  p->count = 0;
  return 1;
}

/* Asks for rows [0, n) of `width` floats, stride apart, to be brought into
 * cache (a hint). Before each tile of the one-pass Fixed: its output rows
 * (for writing: the last stores then do not wait for their lines) and the
 * next tile's queries (a few per cent at long L: see the CHANGELOG). */
COMBINER__SHARED void combiner__prefetch_rows(const float *base, ptrdiff_t stride, int n, int width, int write) {
#if defined(__GNUC__)
  int i, x;
  for (i = 0; i < n; ++i)
    for (x = 0; x < width; x += 16) {
      if (write) __builtin_prefetch(base + i * stride + x, 1, 3);
      else __builtin_prefetch(base + i * stride + x, 0, 3);
    }
#else
  (void)base; (void)stride; (void)n; (void)width; (void)write;
#endif
}

/* ---- several queries against the same positions, position by position --
 * Each query b (head h0 + b) against positions c0 .. c0+nk-1 of its kv
 * head, the positions read in address order with every kv head of a
 * position in turn: DENSE decode (the heads' own queries) and Logsparse's
 * large blocks (the heads' pooled queries). */
/* The query heads [*b0, *b1) of kv head g among heads h0 .. h0+n-1. */
COMBINER__SHARED void combiner__dense_heads(const combiner__problem *p, int h0, int n, int g, int *b0, int *b1) {
  *b0 = g * p->group > h0 ? g * p->group : h0;
  *b1 = (g + 1) * p->group < h0 + n ? (g + 1) * p->group : h0 + n;
}

/* Asks for the `bytes` (> 0) bytes at row to be brought into the caches (a
 * hint): every 64-byte line they touch, the last one too when row is not
 * aligned. */
COMBINER__INLINE void combiner__prefetch_bytes(const void *row, size_t bytes) {
#if defined(__GNUC__)
  size_t x;
  for (x = 0; x < bytes; x += 64) __builtin_prefetch((const char *)row + x, 0, 2);
  if ((uintptr_t)row & 63) __builtin_prefetch((const char *)row + bytes - 1, 0, 2);
#else
  (void)row; (void)bytes;
#endif
}

#if defined(COMBINER__VEC)
/* Rows of positions c0, c0 + 1, ... of tensor t (base `base`): the first
 * one's address, the bytes from a position to the next, and per query head
 * h0 + b (b < nb) the bytes from a position's start to its kv head's row. */
typedef struct combiner__rows {
  const unsigned char *p0;
  ptrdiff_t ts;
  ptrdiff_t off[COMBINER__BQ];
} combiner__rows;

static void combiner__rows_of(const combiner__ctx *c, const void *base, const combiner__tensor *t, int h0, int nb, ptrdiff_t c0,
                              combiner__rows *r) {
  const ptrdiff_t es = (ptrdiff_t)combiner__type_size(t->type);
  int b;
  r->p0 = (const unsigned char *)combiner__elem(base, t, c0, 0);
  r->ts = t->ts * es;
  for (b = 0; b < nb; ++b) r->off[b] = (ptrdiff_t)((h0 + b) / c->p->group) * t->hs * es;
}
#endif

/* sc->s[b*64 + j] = q_b . k(c0 + j), b < nb (queries of heads h0 + b, rows of sc->qbuf), j < nk;
 * the rows of v(c0 + j) asked for meanwhile (combiner__dense_values reads them next). */
COMBINER__SHARED void combiner__dense_logits(const combiner__ctx *c, const combiner__scratch *sc, int h0, int nb, ptrdiff_t c0,
                                   int nk, ptrdiff_t next) {
  const combiner__problem *p = c->p;
  const int d = p->d;
  int j, b;
#if defined(COMBINER__VEC)
  const size_t vbytes = (size_t)p->dv * combiner__type_size(p->v.type), kbytes = (size_t)p->d * combiner__type_size(p->k.type);
  const int ahead = next - c0 - COMBINER__CHUNK < nk ? (int)(next - c0 - COMBINER__CHUNK) : nk;
  combiner__rows kr, vr;
  int hb, j16, f, nf = 0, first[COMBINER__BQ];   /* each kv head's first query head among the nb */
  combiner__rows_of(c, c->k, &p->k, h0, nb, c0, &kr);
  combiner__rows_of(c, c->v, &p->v, h0, nb, c0, &vr);
  for (b = 0; b < nb; ++b)
    if (b == 0 || (h0 + b) % p->group == 0) first[nf++] = b;
  for (hb = 0; hb < nb; hb += 16)   /* 16 heads x 16 positions of partial sums in s2, then their lane sums */
    for (j16 = 0; j16 < nk; j16 += 16) {
      const int nh = nb - hb < 16 ? nb - hb : 16, n16 = nk - j16 < 16 ? nk - j16 : 16;
      for (j = 0; j < n16; ++j) {
        const unsigned char *row = kr.p0 + (ptrdiff_t)(j16 + j) * kr.ts;
        if (hb == 0)   /* each kv head's rows once */
          for (f = 0; f < nf; ++f) {
            combiner__prefetch_bytes(vr.p0 + (ptrdiff_t)(j16 + j) * vr.ts + vr.off[first[f]], vbytes);
            if (j16 + j < ahead) combiner__prefetch_bytes(row + COMBINER__CHUNK * kr.ts + kr.off[first[f]], kbytes);
          }
        for (b = hb; b < hb + nh; ++b)
          combiner__vstore(sc->s2 + ((ptrdiff_t)(b - hb) * 16 + j) * COMBINER__VL,
                           combiner__vdot_row(sc->qbuf + (ptrdiff_t)b * d, row + kr.off[b], p->k.type, d));
      }
      for (b = hb; b < hb + nh; ++b)
        combiner__hsums(sc->s2 + (ptrdiff_t)(b - hb) * 16 * COMBINER__VL, n16, sc->s + (ptrdiff_t)b * COMBINER__CHUNK + j16);
    }
#else
  int g, b0, b1;
  (void)next;
  for (j = 0; j < nk; ++j)
    for (g = h0 / p->group; g <= (h0 + nb - 1) / p->group; ++g) {
      const float *kr = combiner__krow(c, c0 + j, g, sc->kpack);
      combiner__dense_heads(p, h0, nb, g, &b0, &b1);
      for (b = b0 - h0; b < b1 - h0; ++b)
        sc->s[(ptrdiff_t)b * COMBINER__CHUNK + j] = combiner__dot(sc->qbuf + (ptrdiff_t)b * d, kr, d);
    }
#endif
}

#if defined(COMBINER__VEC)
/* Heads per pass of combiner__values_pass: 4 x COMBINER__NV accumulators. */
#define COMBINER__VH 4

/* acc[x][y .. y + NV*VL) += sum_j w[x][j] * v(c0 + j) there, x < nh <= VH,
 * position by position (address order), the accumulators in registers;
 * then the columns past the last whole slice the same way in memory. Per
 * lane the terms of single_query_pv, in its order (the same bits). */
COMBINER__INLINE void combiner__values_pass(const combiner__rows *vr, int type, const ptrdiff_t *off, const float *const *w,
                                            float *const *acc, int nh, int nk, int dv) {
  int j, x, u, y = 0;
  for (; y + COMBINER__NV * COMBINER__VL <= dv; y += COMBINER__NV * COMBINER__VL) {
    combiner__vf a[COMBINER__VH][COMBINER__NV];
    for (x = 0; x < nh; ++x)
      for (u = 0; u < COMBINER__NV; ++u) a[x][u] = combiner__vload(acc[x] + y + u * COMBINER__VL);
    if (type == COMBINER_F32)
      for (j = 0; j < nk; ++j) {
        const unsigned char *pos = vr->p0 + (ptrdiff_t)j * vr->ts;
        for (x = 0; x < nh; ++x) {
          const float *row = (const float *)(const void *)(pos + off[x]) + y;
          const combiner__vf wb = combiner__vset1(w[x][j]);
          for (u = 0; u < COMBINER__NV; ++u) a[x][u] = combiner__vfma(wb, combiner__vload(row + u * COMBINER__VL), a[x][u]);
        }
      }
    else
      for (j = 0; j < nk; ++j) {
        const unsigned char *pos = vr->p0 + (ptrdiff_t)j * vr->ts;
        for (x = 0; x < nh; ++x) {
          const uint16_t *row = (const uint16_t *)(const void *)(pos + off[x]) + y;
          const combiner__vf wb = combiner__vset1(w[x][j]);
          for (u = 0; u < COMBINER__NV; ++u)
            a[x][u] = combiner__vfma(wb, combiner__vload_half(row + u * COMBINER__VL, type), a[x][u]);
        }
      }
    for (x = 0; x < nh; ++x)
      for (u = 0; u < COMBINER__NV; ++u) combiner__vstore(acc[x] + y + u * COMBINER__VL, a[x][u]);
  }
  for (; y < dv; y += COMBINER__VL) {
    const int m = dv - y < COMBINER__VL ? dv - y : COMBINER__VL;
    for (x = 0; x < nh; ++x) {
      combiner__vf a0 = combiner__vloadn(acc[x] + y, m);
      for (j = 0; j < nk; ++j)
        a0 = combiner__vfma(combiner__vset1(w[x][j]), combiner__vload_typed(vr->p0 + (ptrdiff_t)j * vr->ts + off[x], type, y, m), a0);
      combiner__vstoren(acc[x] + y, a0, m);
    }
  }
}
#endif

/* st[b].acc += sum_j sc->s[b*64 + j] * v(c0 + j), b < nb, j < nk: heads
 * VH at a time, their accumulators in registers, the positions in address
 * order (four positions per kv head at a time instead ran 1.2x faster from
 * the caches but 1.4x slower from memory). */
COMBINER__SHARED void combiner__dense_values(const combiner__ctx *c, const combiner__scratch *sc, int h0, int nb, ptrdiff_t c0,
                                   int nk, const combiner__single_state *st) {
  const combiner__problem *p = c->p;
  const int dv = p->dv;
  int b;
#if defined(COMBINER__VEC)
  const float *w[COMBINER__BQ];
  float *acc[COMBINER__BQ];
  combiner__rows vr;
  int n;
  combiner__rows_of(c, c->v, &p->v, h0, nb, c0, &vr);
  for (b = 0; b < nb; ++b) {
    w[b] = sc->s + (ptrdiff_t)b * COMBINER__CHUNK;
    acc[b] = st[b].acc;
  }
  for (b = 0; b < nb; b += n) {
    n = nb - b < COMBINER__VH ? nb - b : COMBINER__VH;
    switch (n) {   /* a constant count: the accumulators stay in registers */
      case 4: combiner__values_pass(&vr, p->v.type, vr.off + b, w + b, acc + b, 4, nk, dv); break;
      case 3: combiner__values_pass(&vr, p->v.type, vr.off + b, w + b, acc + b, 3, nk, dv); break;
      case 2: combiner__values_pass(&vr, p->v.type, vr.off + b, w + b, acc + b, 2, nk, dv); break;
      default: combiner__values_pass(&vr, p->v.type, vr.off + b, w + b, acc + b, 1, nk, dv); break;
    }
  }
#else
  int j, g, b0, b1;
  for (j = 0; j < nk; ++j)
    for (g = h0 / p->group; g <= (h0 + nb - 1) / p->group; ++g) {
      const float *vr = combiner__row_f32(combiner__v(c, c0 + j, g), p->v.type, dv, sc->vpack);
      combiner__dense_heads(p, h0, nb, g, &b0, &b1);
      for (b = b0 - h0; b < b1 - h0; ++b) {
        const float w = sc->s[(ptrdiff_t)b * COMBINER__CHUNK + j];
        if (w != 0.0f) combiner__axpy(st[b].acc, w, vr, dv);
      }
    }
#endif
}

/* st[b] += the terms of positions [j0, j1) for the pre-scaled queries b < nb
 * (rows of sc->qbuf, heads h0 + b), a chunk of 64 positions at a time. */
COMBINER__SHARED void combiner__heads_attend(const combiner__ctx *c, const combiner__scratch *sc, int h0, int nb,
                                             ptrdiff_t j0, ptrdiff_t j1, combiner__single_state *st) {
  ptrdiff_t c0;
  int b;
  for (c0 = j0; c0 < j1; c0 += COMBINER__CHUNK) {
    const int nk = j1 - c0 < COMBINER__CHUNK ? (int)(j1 - c0) : COMBINER__CHUNK;
    combiner__dense_logits(c, sc, h0, nb, c0, nk, j1);
    for (b = 0; b < nb; ++b) combiner__single_softmax(c->p, &st[b], sc->s + (ptrdiff_t)b * COMBINER__CHUNK, nk);
    combiner__dense_values(c, sc, h0, nb, c0, nk, st);
  }
}

/* ---- the decode job: what a kind's cache functions see ------------------ */

/* Storage of a cache (see combiner__cache_plan): K, V, Q head-major
 * [head][position][width], so a head's row or block is contiguous (DENSE's
 * K/V token-major: its decode reads a position's kv heads in turn). Axial's
 * entries and Mixture's row regions are column-major (entry of cell (t, u)
 * at u*n + t: the entries a query reads are contiguous), and Mixture keeps
 * column-major copies of K, V and Q ([head][column][row][width]) for its
 * column terms. */
typedef struct combiner__cache_job {
  combiner__ctx c;         /* p, q, k, v, keys and values of the cache */
  float *kc, *vc, *qc;     /* Mixture's column-major copies (owned caches; NULL borrowed) */
  float *tracks;           /* borrowed: running pools of open regions' queries, [H][tracks][d] */
  float *snapshots;        /* their copies at positions that are multiples of snap, a ring of snaps */
  int ntracks, snap, snaps;
  const ptrdiff_t *level_off;  /* borrowed LOGSPARSE: level l's entries are a ring of */
  const int *level_keep;       /* level_keep[l] blocks from level_off[l] (NULL: all kept) */
  float *part;             /* cache_range kinds: partial states, [position][head][range][part_stride] */
  int ranges;              /* ranges per position in part */
  ptrdiff_t section;       /* entries per head and section */
  ptrdiff_t first, count;  /* the appended positions */
  ptrdiff_t triggered;     /* positions below this skip their triggers */
  float *out;
  combiner__tensor o;
  const float *q;          /* the caller's queries (DENSE reads them there) */
  const combiner__ctx *tiles;   /* fast chunks: the context of the kind's tile_unit (else NULL) */
  combiner__tensor tq;
} combiner__cache_job;

/* A partial state in a cache's part: acc (dv floats) first, its rows 64
 * bytes apart and aligned (decode adds a value term into it per position:
 * split vectors ran ~2x slower), then max and sum at dvp = dv rounded up. */
COMBINER__SHARED ptrdiff_t combiner__part_dvp(const combiner__problem *p) {
  return (ptrdiff_t)combiner__round_up((size_t)p->dv, COMBINER__ALIGN / sizeof(float));
}
COMBINER__SHARED ptrdiff_t combiner__part_stride(const combiner__problem *p) {
  return combiner__part_dvp(p) + (ptrdiff_t)(COMBINER__ALIGN / sizeof(float));
}

static float *combiner__cache_out(const combiner__cache_job *jb, ptrdiff_t i, int h) {
  return jb->out + (i - jb->first) * jb->o.ts + (ptrdiff_t)h * jb->o.hs;
}

/* Row t of column u of head `head` in a column-major copy of width w. */
COMBINER__SHARED float *combiner__colrow(const combiner__cache_job *jb, float *base, int head, ptrdiff_t u, ptrdiff_t t, int w) {
  const combiner__problem *p = jb->c.p;
  return base + (((ptrdiff_t)head * combiner__cols(p) + u) * p->n + t) * w;
}

/* st += summary entries first, first+step, ... (count of them) of head h */
COMBINER__SHARED void combiner__dsummaries(const combiner__ctx *c, const combiner__scratch *sc, const float *q, int h,
                                 ptrdiff_t first, ptrdiff_t step, ptrdiff_t count, combiner__single_state *st) {
  combiner__seq ks, vs;
  if (count <= 0) return;
  ks = combiner__seq_of(combiner__skey(c, h, first), step * c->p->d, (int)count);
  vs = combiner__seq_of(combiner__sval(c, h, first), step * c->p->dv, (int)count);
  combiner__single_query_attend(c->p, q, &ks, &vs, st, sc);
}

/* st += the keys of kv head g at positions first .. first+count-1 */
COMBINER__SHARED void combiner__ddirect(const combiner__ctx *c, const combiner__scratch *sc, const float *q, int g,
                              ptrdiff_t first, ptrdiff_t count, combiner__single_state *st) {
  combiner__seq ks, vs;
  if (count <= 0) return;
  ks = combiner__keys(c, g, first, 1, (int)count);
  vs = combiner__values(c, g, first, 1, (int)count);
  combiner__single_query_attend(c->p, q, &ks, &vs, st, sc);
}

/* Fixed and Axial decode query (i, h) alike: its own block (row) up to
 * itself directly, then one entry per earlier block, entries first,
 * first + 1, ... (Fixed: block t's; Axial: the cells above in its column). */
COMBINER__SHARED void combiner__blocks_cache_query(const combiner__cache_job *jb, const combiner__scratch *sc, int h,
    ptrdiff_t i, const float *q, combiner__single_state *st, ptrdiff_t first) {
  const combiner__ctx *c = &jb->c;
  const ptrdiff_t m = c->p->m, r = i / m, u = i % m;
  combiner__ddirect(c, sc, q, h / c->p->group, r * m, u + 1, st);
  combiner__dsummaries(c, sc, q, h, first, 1, r, st);
}

/* The same for the queries of positions i0 .. i0+nq-1 of one block (row),
 * pre-scaled in q[b]: the block's rows read once for all of them, then
 * the entries (shared: every query reads entries [0, r), Fixed; else
 * entries (i % m)*n + ..., Axial's column). The same bits as one by one. */
COMBINER__SHARED void combiner__blocks_cache_queries(const combiner__cache_job *jb, const combiner__scratch *sc, int h,
    ptrdiff_t i0, int nq, const float *const *q, combiner__single_state *st, int shared) {
  const combiner__ctx *c = &jb->c;
  const ptrdiff_t m = c->p->m, r = i0 / m, u0 = i0 % m;
  const combiner__seq ks = combiner__keys(c, h / c->p->group, r * m, 1, (int)(u0 + nq)),
                      vs = combiner__values(c, h / c->p->group, r * m, 1, (int)(u0 + nq));
  int cnt[COMBINER__MQ] = {0}, b;
  for (b = 0; b < nq; ++b) cnt[b] = (int)u0 + b + 1;
  combiner__multi_query_attend(c->p, nq, q, cnt, &ks, &vs, st, sc);
  if (r <= 0) return;
  if (shared) {
    const combiner__seq es = combiner__seq_of(combiner__skey(c, h, 0), c->p->d, (int)r),
                        fs = combiner__seq_of(combiner__sval(c, h, 0), c->p->dv, (int)r);
    for (b = 0; b < nq; ++b) cnt[b] = (int)r;
    combiner__multi_query_attend(c->p, nq, q, cnt, &es, &fs, st, sc);
  } else {
    for (b = 0; b < nq; ++b) combiner__dsummaries(c, sc, q[b], h, (u0 + b) * c->p->n, 1, r, &st[b]);
  }
}

/* ---- a factorization, as the rest of the library sees it ---------------- */

/* A kind: its partition (SPEC 3-5b: sizes, support map, FLOP counts) and
 * its kernels. */
typedef struct combiner__kind_ops {
  int has_blocks;                 /* the math depends on the block m */
  int (*count)(combiner__problem *p);   /* p->sections, p->count; 0 on overflow */
  /* region of key j for query i (j <= i when causal): 0 direct, else a summary */
  int (*support)(const combiner__problem *p, int plan, ptrdiff_t i, ptrdiff_t j);
  /* terms query (row r, column u) attends */
  double (*query_terms)(const combiner__problem *p, int r, int u);
  /* terms of the summaries, and extra multiply-adds (NULL: none) */
  double (*summary_terms)(const combiner__problem *p, double *extra);
  /* terms a token touches per head at length len, roughly: thread choice */
  double (*terms)(const combiner__problem *p, double len);
  int (*state_sets)(const combiner__problem *p);   /* across passes (NULL: none) */
  /* the decode cache: entries indexed by cell (u*n + t), sections of them,
   * whether past queries and column-major copies of Q, K, V are kept, and
   * whether a position's triggers read the position itself */
  int cache_by_cell, cache_sections, cache_queries, cache_columns, trigger_reads_self;
  /* a borrowed cache keeps the queries of the last positions only: in
   * block-aligned rings (1; runs of a block never wrap) or any ring (2);
   * regions that outlive the ring keep running pools of their queries
   * (tracks per head, cache_fold adds position i's query); entries a
   * borrowed cache need not keep (cache_window: the count for a rollback
   * span, NULL: as owned) */
  int cache_ring;
  int (*cache_tracks)(const combiner__problem *p);
  void (*cache_fold)(const combiner__cache_job *jb, float *tracks, int h, ptrdiff_t i);
  size_t (*cache_window)(const combiner__problem *p, int span, ptrdiff_t *off, int *keep);
  /* the kernels: the steps of a call (one_call: combiner_attention, which
   * may fuse), and optionally a whole one-call run in another shape (0 when
   * it declines) */
  int (*steps)(const combiner__problem *p, int one_call, combiner__step *s);
  int (*whole)(const combiner__ctx *c);
  /* decode: the abstractions position i is the first to need, from
   * positions <= i only, so a truncated cache recomputes exactly those whose
   * trigger comes again and the split into appends changes nothing (NULL:
   * none); query (i, h)'s terms folded into st, q scaled (1: it wrote the
   * output itself); or instead, every head of query i over the keys of
   * range r (positions r*cache_split ..) into partial states `part`
   * ([head][range][2 + dv]: max, sum, output), which the cache merges in
   * range order */
  void (*cache_trigger)(const combiner__cache_job *jb, const combiner__scratch *sc, int h, ptrdiff_t i);
  int (*cache_query)(const combiner__cache_job *jb, const combiner__scratch *sc, int h, ptrdiff_t i,
                     const float *q, combiner__single_state *st);
  int cache_split;
  void (*cache_range)(const combiner__cache_job *jb, const combiner__scratch *sc, ptrdiff_t i, int r, float *part);
  /* optionally (kinds without tracks), the queries of positions i0 ..
   * i0+nq-1 (nq <= COMBINER__MQ, one block, their triggers run) at once,
   * as cache_query one by one; a trigger must then not write what the
   * queries of earlier positions of its block read */
  void (*cache_batch)(const combiner__cache_job *jb, const combiner__scratch *sc, int h, ptrdiff_t i0, int nq,
                      const float *const *q, combiner__single_state *st);
  /* and the triggers of positions i0 .. i0+n-1 (one block) at once (NULL:
   * one by one), as cache_trigger one by one */
  void (*cache_triggers)(const combiner__cache_job *jb, const combiner__scratch *sc, int h, ptrdiff_t i0, int n);
  /* cache_range kinds: head h of every position of a run over range r at
   * once (runs of more than one position; NULL: cache_range) */
  void (*cache_ranges)(const combiner__cache_job *jb, const combiner__scratch *sc, int h, int r);
  /* the prefill kernels on the causal queries [c->qbegin, c->qend) only,
   * as tile_units(p, qbegin, qend) units (a cache's fast chunks; NULL: none) */
  combiner__unit_fn tile_unit;
  ptrdiff_t (*tile_units)(const combiner__problem *p, ptrdiff_t b, ptrdiff_t e);
} combiner__kind_ops;

/* ------------------------------------------------------------------------ */
/* >>dense: exact softmax attention                                        */
/* ------------------------------------------------------------------------ */
#if COMBINER__HAS_DENSE

/* The partition: every key direct, no summaries. */
static int combiner__dense_support(const combiner__problem *p, int plan, ptrdiff_t i, ptrdiff_t j) {
  (void)p; (void)plan; (void)i; (void)j;
  return 0;
}

static double combiner__dense_query_terms(const combiner__problem *p, int r, int u) {
  const double i = (double)r * p->m + u;
  return p->causal ? i + 1 : (double)p->L;
}

static double combiner__dense_terms(const combiner__problem *p, double len) { (void)p; return len; }


/* Unit (head h, tile of BQ queries): flash-style over all keys, causal tiles
 * past the diagonal never touched. */
/* The tile of queries [q0, q0 + nq) of head h against every key (causal:
 * up to each query), keys from position 0. */
static void combiner__dense_tile(const combiner__ctx *c, const combiner__scratch *sc, int h, ptrdiff_t q0, int nq) {
  const combiner__problem *p = c->p;
  const int g = h / p->group, nk = p->causal ? (int)q0 + nq : p->L;
  combiner__seq qs = combiner__queries(c, h, q0, 1, nq);
  combiner__seq ks = combiner__keys(c, g, 0, 1, nk), vs = combiner__values(c, g, 0, 1, nk);
  combiner__states st = combiner__tile_states(sc->tile[0], p->dv, NULL, p->d);
  combiner__states_begin(&st, nq, p->dv, p->d);
  combiner__pack_queries(p, sc, &qs, nq);
  combiner__attend(p, sc, nq, &ks, &vs, p->causal ? COMBINER__CAUSAL : COMBINER__ALL, q0, &st);
  combiner__states_finish(&st, nq, p->dv, combiner__out(c, q0, h), p->o.ts);
}

static void combiner__dense_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__problem *p = c->p;
  const int tiles = combiner__tiles(p->L), q0 = (int)(unit % tiles) * COMBINER__BQ;
  combiner__dense_tile(c, sc, (int)(unit / tiles), q0, p->L - q0 < COMBINER__BQ ? p->L - q0 : COMBINER__BQ);
}

/* Unit (head, tile of the causal queries [qbegin, qend)), keys from 0: a
 * chunk appended to a cache. */
static void combiner__dense_range_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  const ptrdiff_t q0 = c->qbegin + unit / c->p->H * COMBINER__BQ;
  COMBINER_ASSERT(c->p->causal);   /* a cache's */
  combiner__dense_tile(c, sc, (int)(unit % c->p->H), q0, c->qend - q0 < COMBINER__BQ ? (int)(c->qend - q0) : COMBINER__BQ);
}

static ptrdiff_t combiner__dense_range_units(const combiner__problem *p, ptrdiff_t b, ptrdiff_t e) {
  return (ptrdiff_t)p->H * ((e - b + COMBINER__BQ - 1) / COMBINER__BQ);
}

static int combiner__dense_steps(const combiner__problem *p, int one_call, combiner__step *s) {
  (void)one_call;
  s[0].fn = combiner__dense_unit;
  s[0].units = (ptrdiff_t)p->H * combiner__tiles(p->L);
  return 1;
}

/* Decode: query i's keys in ranges of COMBINER__SPLIT positions, every
 * head at once, a chunk of 64 positions at a time (combiner__heads_attend):
 * their logits, position by position and a position's kv heads one after
 * the other (the address order of a token-major K: the engine's layout,
 * and an owned DENSE cache's), widened in registers when half precision;
 * every head's online softmax step; then the values the same way, four
 * heads' accumulators in registers. Reading head by head instead (64 rows
 * of 256 bytes, 2 KiB apart, per head) streamed at ~60% of the read
 * bandwidth, and since the register accumulators it is no faster from the
 * caches either. The arithmetic of a logit or a value term depends on
 * neither the layout nor the thread count; the cache merges the ranges'
 * partial states in order. */
#define COMBINER__SPLIT 1024

static void combiner__dense_cache_range(const combiner__cache_job *jb, const combiner__scratch *sc, ptrdiff_t i,
                                        int r, float *part) {
  const combiner__ctx *c = &jb->c;
  const combiner__problem *p = c->p;
  const ptrdiff_t j0 = (ptrdiff_t)r * COMBINER__SPLIT, j1 = i + 1 < j0 + COMBINER__SPLIT ? i + 1 : j0 + COMBINER__SPLIT;
  const ptrdiff_t w = combiner__part_stride(p), dvp = combiner__part_dvp(p);
  combiner__single_state st[COMBINER__BQ];
  int h0, b, nb;
  for (h0 = 0; h0 < p->H; h0 += nb) {
    nb = p->H - h0 < COMBINER__BQ ? p->H - h0 : COMBINER__BQ;
    for (b = 0; b < nb; ++b) {
      combiner__scaled_copy(sc->qbuf + (ptrdiff_t)b * p->d,
                            jb->q + (i - jb->first) * jb->tq.ts + (ptrdiff_t)(h0 + b) * jb->tq.hs, p->scale, p->d);
      combiner__single_state_begin(&st[b], part + ((ptrdiff_t)(h0 + b) * jb->ranges + r) * w, NULL, p->dv, p->d);
    }
    combiner__heads_attend(c, sc, h0, nb, j0, j1, st);
    for (b = 0; b < nb; ++b) {
      float *ps = part + ((ptrdiff_t)(h0 + b) * jb->ranges + r) * w;
      ps[dvp] = st[b].mx;
      ps[dvp + 1] = st[b].sum;
    }
  }
}

/* The same for head h of every position of a run (count <= COMBINER__MQ)
 * over range r: the range's rows of h's kv head read once for all of them
 * (the arithmetic of each query as ddirect's, so the same bits as one
 * position at a time). A chunked prefill reads K/V once per run instead of
 * once per position. */
static void combiner__dense_cache_ranges(const combiner__cache_job *jb, const combiner__scratch *sc, int h, int r) {
  const combiner__ctx *c = &jb->c;
  const combiner__problem *p = c->p;
  const ptrdiff_t j0 = (ptrdiff_t)r * COMBINER__SPLIT, w = combiner__part_stride(p), dvp = combiner__part_dvp(p);
  combiner__single_state st[COMBINER__MQ];
  const float *q[COMBINER__MQ] = {NULL};
  float *ps[COMBINER__MQ] = {NULL};
  int cnt[COMBINER__MQ] = {0}, b, n = 0, most = 0;
  combiner__seq ks, vs;
  COMBINER_ASSERT(jb->count <= COMBINER__MQ);   /* runs of COMBINER__RANGE_BATCH positions */
  for (b = 0; b < (int)jb->count && n < COMBINER__MQ; ++b) {
    const ptrdiff_t i = jb->first + b, j1 = i + 1 < j0 + COMBINER__SPLIT ? i + 1 : j0 + COMBINER__SPLIT;
    float *qb = sc->qbuf + (ptrdiff_t)n * p->d;
    if (j1 <= j0) continue;   /* the range starts after position i */
    combiner__scaled_copy(qb, jb->q + (i - jb->first) * jb->tq.ts + (ptrdiff_t)h * jb->tq.hs, p->scale, p->d);
    q[n] = qb;
    ps[n] = jb->part + (((ptrdiff_t)b * p->H + h) * jb->ranges + r) * w;
    cnt[n] = (int)(j1 - j0);
    most = cnt[n] > most ? cnt[n] : most;
    combiner__single_state_begin(&st[n], ps[n], NULL, p->dv, p->d);
    ++n;
  }
  if (!n) return;
  ks = combiner__keys(c, h / p->group, j0, 1, most);
  vs = combiner__values(c, h / p->group, j0, 1, most);
  combiner__multi_query_attend(p, n, q, cnt, &ks, &vs, st, sc);
  for (b = 0; b < n; ++b) {
    ps[b][dvp] = st[b].mx;
    ps[b][dvp + 1] = st[b].sum;
  }
}

static const combiner__kind_ops combiner__dense_ops = {
  0, combiner__no_summaries, combiner__dense_support, combiner__dense_query_terms,   /* partition */
  NULL, combiner__dense_terms, NULL,
  0, 1, 0, 0, 0,   /* cache layout */
  0, NULL, NULL, NULL,   /* borrowed cache */
  combiner__dense_steps, NULL,   /* prefill */
  NULL, NULL, COMBINER__SPLIT, combiner__dense_cache_range, NULL, NULL,
  combiner__dense_cache_ranges,   /* decode */
  combiner__dense_range_unit, combiner__dense_range_units   /* fast chunks */
};

#endif

/* ------------------------------------------------------------------------ */
/* >>fixed: Combiner-Fixed (SPEC 3)                                        */
/* ------------------------------------------------------------------------ */
#if COMBINER__HAS_FIXED

/* The partition: blocks of m positions; a query attends its own block
 * (causal: up to itself) and one abstraction per other (causal: earlier)
 * block, entry t for block t. */
static int combiner__fixed_count(combiner__problem *p) {
  p->sections = 1;
  p->count = (size_t)p->n;
  return 1;
}

static double combiner__fixed_summary_terms(const combiner__problem *p, double *extra) {
  *extra = 0.0;
  return (double)p->L;          /* each block's pooled query attends the block */
}

static double combiner__fixed_terms(const combiner__problem *p, double len) { (void)len; return (double)p->m + p->n; }


/* Unit (block t), every head: K̂_t = pool(k over t), V̂_t = att(pool(q over
 * t), t). The pools walk the block token by token across all heads (up to
 * 64 at a time), so a token-major tensor is read as one contiguous stream
 * rather than one strided stream per head. */
static void combiner__fixed_summary_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__problem *p = c->p;
  int t = (int)unit, len = combiner__row_len(p, t), h0, hh, j;
  ptrdiff_t first = (ptrdiff_t)t * p->m;
  for (h0 = 0; h0 < p->H; h0 += COMBINER__BQ) {
    int hn = p->H - h0 < COMBINER__BQ ? p->H - h0 : COMBINER__BQ;
    for (j = 0; j < len; ++j)
      for (hh = 0; hh < hn; ++hh) {
        int h = h0 + hh, g = h / p->group;
        float *qp = sc->qbuf + (ptrdiff_t)hh * p->d, *kp = combiner__wkey(c, h, t);
        if (j == 0) {
          combiner__pool_start(qp, combiner__q(c, first, h), p->d);
          combiner__pool_start(kp, combiner__krow(c, first, g, sc->kpack), p->d);
        } else {
          combiner__pool_add(qp, combiner__q(c, first + j, h), p->d, p->pool);
          combiner__pool_add(kp, combiner__krow(c, first + j, g, sc->kpack), p->d, p->pool);
        }
      }
    for (hh = 0; hh < hn; ++hh) {
      int h = h0 + hh, g = h / p->group;
      float *qp = sc->qbuf + (ptrdiff_t)hh * p->d;
      combiner__seq ks = combiner__keys(c, g, first, 1, len), vs = combiner__values(c, g, first, 1, len);
      combiner__single_state st;
      combiner__pool_read(qp, qp, p->d, p->pool, len);
      combiner__pool_read(combiner__wkey(c, h, t), combiner__wkey(c, h, t), p->d, p->pool, len);
      combiner__scale_row(qp, p->scale, p->d);
      combiner__single_state_begin(&st, sc->tile[1], NULL, p->dv, p->d);
      combiner__single_query_attend(p, qp, &ks, &vs, &st, sc);
      combiner__single_state_finish(&st, combiner__wval(c, h, t), p->dv);
    }
  }
}

/* A tile of block t.r's queries (head t.h): direct = own block (causal: up
 * to the query), regions = every other (causal: earlier) block, entry r for
 * block r. */
COMBINER__SHARED void combiner__fixed_combine_tile(const combiner__ctx *c, const combiner__scratch *sc,
                                                   const combiner__rowtile *t) {
  const combiner__problem *p = c->p;
  combiner__states st = combiner__tile_states(sc->tile[0], p->dv, NULL, p->d);
  combiner__attend_own_row(c, sc, t, &st);
  combiner__attend_summaries(c, sc, t->nq, t->h, 0, 1, t->r, COMBINER__ALL, 0, &st);
  if (!p->causal)
    combiner__attend_summaries(c, sc, t->nq, t->h, t->r + 1, 1, p->n - t->r - 1, COMBINER__ALL, 0, &st);
  combiner__states_finish(&st, t->nq, p->dv, combiner__out(c, t->first + t->q0, t->h), p->o.ts);
}

/* Unit (head h, block b, tile of its queries). */
static void combiner__fixed_combine_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  combiner__rowtile t;
  if (combiner__row_unit(c->p, unit, &t)) combiner__fixed_combine_tile(c, sc, &t);
}

/* Unit (head h, block, tile of the queries [qbegin, qend) in it): a range
 * of a sequence (>>ranges) or a chunk appended to a cache. */
static void combiner__fixed_range_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__problem *p = c->p;
  const ptrdiff_t b = c->qbegin, e = c->qend, per = e - b < p->m ? e - b : p->m;
  const int tiles = combiner__tiles((int)per);
  combiner__rowtile t;
  ptrdiff_t a, z;
  t.h = (int)(unit % p->H);
  unit /= p->H;
  t.r = (int)(b / p->m + unit / tiles);
  t.g = t.h / p->group;
  t.len = combiner__row_len(p, t.r);
  t.first = (ptrdiff_t)t.r * p->m;
  a = (b > t.first ? b : t.first) + (unit % tiles) * COMBINER__BQ;
  z = e < t.first + t.len ? e : t.first + t.len;
  if (a >= z) return;
  t.q0 = (int)(a - t.first);
  t.nq = z - a < COMBINER__BQ ? (int)(z - a) : COMBINER__BQ;
  combiner__fixed_combine_tile(c, sc, &t);
}

/* Units of combiner__fixed_range_unit for the queries [b, e). */
static ptrdiff_t combiner__fixed_range_units(const combiner__problem *p, ptrdiff_t b, ptrdiff_t e) {
  const ptrdiff_t blocks = (e - 1) / p->m - b / p->m + 1, per = e - b < p->m ? e - b : p->m;
  return (ptrdiff_t)p->H * blocks * combiner__tiles((int)per);
}

/* Causal Fixed in one pass, as `units` units (one per thread) of
 * consecutive heads: block by block, the block's query tiles of every head
 * of the unit (own block + the abstractions of earlier blocks, which this
 * unit has computed already), then the block's abstractions while its rows
 * are in cache. q, k and v are read once instead of twice, and the heads of
 * a token are read together (token-major rows are contiguous across heads).
 * The same functions as the two steps on the same data, so the same bits
 * whatever the unit count. */
static void combiner__fixed_causal_heads(const combiner__ctx *c, ptrdiff_t unit, ptrdiff_t units,
                                         const combiner__scratch *sc) {
  const combiner__problem *p = c->p;
  const int tiles = combiner__tiles(combiner__cols(p));
  const int h0 = (int)(unit * p->H / units), h1 = (int)((unit + 1) * p->H / units);
  int r, tile, h;
  for (r = 0; r < p->n; ++r) {
    for (tile = 0; tile < tiles; ++tile)
      for (h = h0; h < h1; ++h) {
        const int q0 = tile * COMBINER__BQ, len = combiner__row_len(p, r);
        const ptrdiff_t at = (ptrdiff_t)r * p->m + q0;                 /* this tile's first position */
        const ptrdiff_t next = h + 1 < h1 ? at : q0 + COMBINER__BQ < len ? at + COMBINER__BQ : (ptrdiff_t)(r + 1) * p->m;
        const int hn = h + 1 < h1 ? h + 1 : h0;
        if (q0 >= len) continue;
        combiner__prefetch_rows(combiner__out(c, at, h), p->o.ts, len - q0 < COMBINER__BQ ? len - q0 : COMBINER__BQ,
                                p->dv, 1);
        if (next < p->L)
          combiner__prefetch_rows(combiner__q(c, next, hn), p->q.ts,
                                  p->L - next < COMBINER__BQ ? (int)(p->L - next) : COMBINER__BQ, p->d, 0);
        combiner__fixed_combine_unit(c, ((ptrdiff_t)r * tiles + tile) * p->H + h, sc);
      }
    if (r + 1 < p->n)
      for (h = h0; h < h1; ++h)
        combiner__block_summary(c, sc, h, (ptrdiff_t)r * p->m, p->m, combiner__wkey(c, h, r), combiner__wval(c, h, r));
  }
}

static void combiner__fixed_causal_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  combiner__fixed_causal_heads(c, unit, combiner__run_threads(c->p), sc);
}

/* A whole causal call in one pass, a share of the heads per thread, when
 * there are heads for every thread (same bits as the two steps). */
static int combiner__fixed_whole(const combiner__ctx *c) {
  if (!c->p->causal || c->p->H < combiner__run_threads(c->p)) return 0;
  combiner__run(c, combiner__run_threads(c->p), combiner__fixed_causal_unit);
  return 1;
}

static int combiner__fixed_steps(const combiner__problem *p, int one_call, combiner__step *s) {
  (void)one_call;
  s[0].fn = combiner__fixed_summary_unit; s[0].units = p->n; s[0].summary = 1;
  s[1].fn = combiner__fixed_combine_unit; s[1].units = combiner__row_tiles(p);
  return 2;
}

/* Decode: block r-1's abstraction, at the first position of block r. */
static void combiner__fixed_cache_trigger(const combiner__cache_job *jb, const combiner__scratch *sc, int h, ptrdiff_t i) {
  const combiner__ctx *c = &jb->c;
  const ptrdiff_t m = c->p->m, r = i / m;
  if (i % m == 0 && r > 0)
    combiner__block_summary(c, sc, h, (r - 1) * m, (int)m, combiner__wkey(c, h, r - 1), combiner__wval(c, h, r - 1));
}

static int combiner__fixed_cache_query(const combiner__cache_job *jb, const combiner__scratch *sc, int h, ptrdiff_t i,
                                       const float *q, combiner__single_state *st) {
  combiner__blocks_cache_query(jb, sc, h, i, q, st, 0);   /* block t's abstraction is entry t */
  return 0;
}

static void combiner__fixed_cache_queries(const combiner__cache_job *jb, const combiner__scratch *sc, int h, ptrdiff_t i0,
                                          int nq, const float *const *q, combiner__single_state *st) {
  combiner__blocks_cache_queries(jb, sc, h, i0, nq, q, st, 1);
}

static const combiner__kind_ops combiner__fixed_ops = {
  1, combiner__fixed_count, combiner__blocks_support, combiner__blocks_query_terms,   /* partition */
  combiner__fixed_summary_terms, combiner__fixed_terms, NULL,
  0, 1, 1, 0, 0,   /* cache layout */
  1, NULL, NULL, NULL,   /* borrowed cache */
  combiner__fixed_steps, combiner__fixed_whole,   /* prefill */
  combiner__fixed_cache_trigger, combiner__fixed_cache_query, 0, NULL, combiner__fixed_cache_queries, NULL, NULL,   /* decode */
  combiner__fixed_range_unit, combiner__fixed_range_units   /* fast chunks */
};

#endif

/* ------------------------------------------------------------------------ */
/* >>axial: Combiner-Axial (SPEC 4)                                        */
/* ------------------------------------------------------------------------ */
#if COMBINER__HAS_AXIAL

/* The partition: rows of m cells are Fixed's blocks (same support map);
 * the abstraction of row t reaching query (r, u) is cell (t, u)'s entry,
 * R[t][u] = att(q[t][u], row t); a bidirectional short last row adds the
 * row's Fixed-style abstraction at entry L for the columns it lacks. */
static int combiner__axial_count(combiner__problem *p) {
  p->sections = 1;
  p->count = (size_t)p->L + ((!p->causal && p->last != p->m && p->n > 1) ? 1u : 0u);
  return 1;
}

static double combiner__axial_summary_terms(const combiner__problem *p, double *extra) {
  double summary = 0.0;
  int r;
  for (r = 0; r < p->n; ++r) summary += (double)combiner__row_len(p, r) * combiner__row_len(p, r);
  *extra = p->axial_key == COMBINER_AXIAL_KEY_WSUM ? summary * 2.0 * p->d : 0.0;   /* expected keys */
  if ((size_t)p->L < p->count) summary += p->last;
  return summary;
}

static double combiner__axial_terms(const combiner__problem *p, double len) { (void)len; return 2.0 * p->m + p->n; }

static int combiner__axial_state_sets(const combiner__problem *p) { (void)p; return 1; }  /* the direct terms, between passes */


/* Unit (head h, row t, tile of its cells): R[t][c] = att(q[t][c], whole row
 * t), with its key (WSUM: expected key under the same weights; SELF:
 * k[t][c]); the short last row of a bidirectional call also gets its
 * fixed-style abstraction at entry L. */
static void combiner__axial_row_tile(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc,
                                     int with_direct) {
  const combiner__problem *p = c->p;
  int wsum = p->axial_key == COMBINER_AXIAL_KEY_WSUM, i, x, h, g, q0, nq;
  ptrdiff_t first;
  combiner__rowtile t;
  combiner__seq qs, ks, vs;
  combiner__states st;
  if (!combiner__row_unit(p, unit, &t)) return;
  h = t.h; g = t.g; q0 = t.q0; nq = t.nq; first = t.first;
  qs = combiner__queries(c, h, first + q0, 1, nq);
  ks = combiner__keys(c, g, first, 1, t.len);
  vs = combiner__values(c, g, first, 1, t.len);
  st = combiner__tile_states(sc->tile[0], p->dv, wsum ? sc->acc2 : NULL, p->d);
  combiner__states_begin(&st, nq, p->dv, p->d);
  combiner__pack_queries(p, sc, &qs, nq);
  if (with_direct && p->causal) {
    combiner__states dir = combiner__saved_states(c, 0, h, first + q0, 1);
    combiner__states_begin(&dir, nq, p->dv, p->d);
    combiner__attend_two(p, sc, nq, &ks, &vs, COMBINER__ALL, 0, &st, COMBINER__CAUSAL, q0, &dir);
  } else {
    combiner__attend(p, sc, nq, &ks, &vs, COMBINER__ALL, 0, &st);
    if (with_direct) {   /* bidirectional: the direct terms are this very softmax */
      combiner__states dir = combiner__saved_states(c, 0, h, first + q0, 1);
      combiner__states_copy(&dir, &st, nq, p->dv);
    }
  }
  combiner__states_finish(&st, nq, p->dv, combiner__wval(c, h, first + q0), p->dv);
  for (i = 0; i < nq; ++i) {
    float *key = combiner__wkey(c, h, first + q0 + i);
    if (wsum) {
      for (x = 0; x < p->d; ++x) key[x] = st.acc2[i * st.a2s + x] / st.sum[i];
    } else {
      combiner__row_copy(key, combiner__k(c, first + q0 + i, g), p->k.type, p->d);
    }
  }
  if ((size_t)p->L < p->count && t.r == p->n - 1 && q0 == 0)
    combiner__block_summary(c, sc, h, first, t.len, combiner__wkey(c, h, p->L), combiner__wval(c, h, p->L));
}

static void combiner__axial_summary_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  combiner__axial_row_tile(c, unit, sc, 0);
}

/* The same and, from the same scores, pass 1 below (one call: one read of
 * the row's q, k, v and one QK^T; bidirectional, the direct terms are the
 * abstraction's own softmax). */
static void combiner__axial_summary_rows_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  combiner__axial_row_tile(c, unit, sc, 1);
}

/* Pass 1, unit (head h, row r, tile): the direct terms, own row (causal: up
 * to the query), into the saved states. */
static void combiner__axial_rows_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  combiner__rowtile t;
  combiner__states st;
  if (!combiner__row_unit(c->p, unit, &t)) return;
  st = combiner__saved_states(c, 0, t.h, t.first + t.q0, 1);
  combiner__attend_own_row(c, sc, &t, &st);
}

/* Pass 2, unit (head h, column col, tile of its rows): the regions. Query
 * (r, col) reaches row t through entry (t, col), which column col's queries
 * share: a causal (t < r) or all-but-own-row attention down the column; a
 * row lacking the column (bidirectional, short last row) through entry L. */
static void combiner__axial_cols_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__problem *p = c->p;
  int tiles = combiner__tiles(p->n), cols = combiner__cols(p);
  int h = (int)(unit / tiles / cols), col = (int)(unit / tiles % cols);
  int rows = combiner__col_len(p, col), q0 = (int)(unit % tiles) * COMBINER__BQ, nq;
  ptrdiff_t m = p->m;
  combiner__seq qs;
  combiner__states st;
  if (q0 >= rows) return;
  nq = rows - q0 < COMBINER__BQ ? rows - q0 : COMBINER__BQ;
  qs = combiner__queries(c, h, col + q0 * m, m, nq);
  combiner__pack_queries(p, sc, &qs, nq);
  st = combiner__saved_states(c, 0, h, col + q0 * m, m);
  if (p->causal) {
    combiner__attend_summaries(c, sc, nq, h, col, m, rows, COMBINER__CAUSAL, q0 - 1, &st);
  } else {
    combiner__attend_summaries(c, sc, nq, h, col, m, rows, COMBINER__SKIP, q0, &st);
    if ((size_t)p->L < p->count && rows < p->n)
      combiner__attend_summaries(c, sc, nq, h, p->L, 1, 1, COMBINER__ALL, 0, &st);
  }
  combiner__states_finish(&st, nq, p->dv, combiner__out(c, col + q0 * m, h), m * p->o.ts);
}

static int combiner__axial_steps(const combiner__problem *p, int one_call, combiner__step *s) {
  int n = 0;
  if (one_call) {          /* a call that keeps its abstractions: rows fused in */
    s[n].fn = combiner__axial_summary_rows_unit; s[n++].units = combiner__row_tiles(p);
  } else {
    s[n].fn = combiner__axial_summary_unit; s[n].summary = 1; s[n++].units = combiner__row_tiles(p);
    s[n].fn = combiner__axial_rows_unit; s[n++].units = combiner__row_tiles(p);
  }
  s[n].fn = combiner__axial_cols_unit; s[n++].units = combiner__col_tiles(p);
  return n;
}

/* Writes cell entry `slot` of head h (position e) from its state: R, and
 * its key (WSUM: the expected key, st->acc2; SELF: k_e). */
static void combiner__axial_cell_finish(const combiner__ctx *c, int h, ptrdiff_t e, ptrdiff_t slot,
                                        const combiner__single_state *st) {
  const combiner__problem *p = c->p;
  combiner__single_state_finish(st, combiner__wval(c, h, slot), p->dv);
  if (st->acc2) {
    combiner__single_state kst = *st;
    kst.acc = st->acc2;
    combiner__single_state_finish(&kst, combiner__wkey(c, h, slot), p->d);
  } else {
    combiner__row_copy(combiner__wkey(c, h, slot), combiner__k(c, e, h / p->group), p->k.type, p->d);
  }
}

/* Axial cell (t, u) at position e = t*m + u: R = att(q_e, row t) and its
 * key (WSUM: the expected key; SELF: k_e), into entry `slot`. */
static void combiner__axial_decode_cell(const combiner__ctx *c, const combiner__scratch *sc, int h, ptrdiff_t e, ptrdiff_t slot) {
  const combiner__problem *p = c->p;
  const int g = h / p->group, wsum = p->axial_key == COMBINER_AXIAL_KEY_WSUM;
  const ptrdiff_t row = e / p->m * p->m;
  float *qp = sc->qbuf + p->d;
  combiner__seq ks = combiner__keys(c, g, row, 1, p->m), vs = combiner__values(c, g, row, 1, p->m);
  combiner__single_state st;
  combiner__scaled_copy(qp, combiner__q(c, e, h), p->scale, p->d);
  combiner__single_state_begin(&st, sc->tile[1], wsum ? sc->acc2 : NULL, p->dv, p->d);
  combiner__single_query_attend(p, qp, &ks, &vs, &st, sc);
  combiner__axial_cell_finish(c, h, e, slot, &st);
}

/* Decode: cell (r-1, u), first used by (r, u). */
static void combiner__axial_cache_trigger(const combiner__cache_job *jb, const combiner__scratch *sc, int h, ptrdiff_t i) {
  const ptrdiff_t m = jb->c.p->m, r = i / m, u = i % m;
  if (r > 0) combiner__axial_decode_cell(&jb->c, sc, h, i - m, u * jb->c.p->n + r - 1);
}

/* The same for positions i0 .. i0+n-1 of one row r > 0: cells (r-1, u)
 * for their columns u, whose queries all attend row r-1 (its rows read
 * once for all). Each cell writes only its own entry. */
static void combiner__axial_cache_triggers(const combiner__cache_job *jb, const combiner__scratch *sc, int h,
                                           ptrdiff_t i0, int n) {
  const combiner__ctx *c = &jb->c;
  const combiner__problem *p = c->p;
  const int g = h / p->group, wsum = p->axial_key == COMBINER_AXIAL_KEY_WSUM;
  const ptrdiff_t m = p->m, r = i0 / m, stride = (ptrdiff_t)combiner__round_up((size_t)p->dv, COMBINER__ALIGN / sizeof(float)),
                  kstride = (ptrdiff_t)combiner__round_up((size_t)p->d, COMBINER__ALIGN / sizeof(float));
  combiner__single_state st[COMBINER__MQ];
  const float *q[COMBINER__MQ] = {NULL};
  int cnt[COMBINER__MQ] = {0}, b;
  combiner__seq ks, vs;
  if (r <= 0) return;
  ks = combiner__keys(c, g, (r - 1) * m, 1, (int)m);
  vs = combiner__values(c, g, (r - 1) * m, 1, (int)m);
  for (b = 0; b < n; ++b) {
    float *qb = sc->qbuf + (ptrdiff_t)(COMBINER__MQ + b) * p->d;
    combiner__scaled_copy(qb, combiner__q(c, i0 + b - m, h), p->scale, p->d);
    q[b] = qb;
    cnt[b] = (int)m;
    combiner__single_state_begin(&st[b], sc->tile[1] + b * stride, wsum ? sc->acc2 + b * kstride : NULL, p->dv, p->d);
  }
  combiner__multi_query_attend(p, n, q, cnt, &ks, &vs, st, sc);
  for (b = 0; b < n; ++b) combiner__axial_cell_finish(c, h, i0 + b - m, (i0 + b - m) % m * p->n + r - 1, &st[b]);
}

static int combiner__axial_cache_query(const combiner__cache_job *jb, const combiner__scratch *sc, int h, ptrdiff_t i,
                                       const float *q, combiner__single_state *st) {
  combiner__blocks_cache_query(jb, sc, h, i, q, st, i % jb->c.p->m * jb->c.p->n);   /* cells above: column-major */
  return 0;
}

static void combiner__axial_cache_queries(const combiner__cache_job *jb, const combiner__scratch *sc, int h, ptrdiff_t i0,
                                          int nq, const float *const *q, combiner__single_state *st) {
  combiner__blocks_cache_queries(jb, sc, h, i0, nq, q, st, 0);
}

static const combiner__kind_ops combiner__axial_ops = {
  1, combiner__axial_count, combiner__blocks_support, combiner__blocks_query_terms,   /* partition */
  combiner__axial_summary_terms, combiner__axial_terms, combiner__axial_state_sets,
  1, 1, 1, 0, 0,   /* cache layout */
  1, NULL, NULL, NULL,   /* borrowed cache */
  combiner__axial_steps, NULL,   /* prefill */
  combiner__axial_cache_trigger, combiner__axial_cache_query, 0, NULL, combiner__axial_cache_queries,
  combiner__axial_cache_triggers, NULL,   /* decode */
  NULL, NULL   /* fast chunks */
};

#endif

/* ------------------------------------------------------------------------ */
/* >>mixture: Combiner-Mixture (SPEC 5)                                    */
/* ------------------------------------------------------------------------ */
#if COMBINER__HAS_MIXTURE

/* The partition: query (r, u) attends its column (up to r causal) and row
 * (up to u causal) directly; the rest of the grid through two plans of
 * abstractions, per section of L entries indexed by the region's last cell:
 * column prefixes (0) and, bidirectional, suffixes (3) for the vertical
 * plan, row prefixes (1) and suffixes (2) for the horizontal one. */
static int combiner__mixture_count(combiner__problem *p) {
  p->sections = p->causal ? 3 : 4;
  return combiner__mul((size_t)p->L, (size_t)p->sections, &p->count);
}

static int combiner__mixture_support(const combiner__problem *p, int plan, ptrdiff_t i, ptrdiff_t j) {
  const ptrdiff_t m = p->m, s = i / m, u = i % m, t = j / m, c = j % m;
  if (s == t || u == c) return 0;
  if (plan == 0) return t < s ? 1 + (int)c : 1 + (int)(m + c);
  return c < u ? 1 + 2 * (int)t : 2 + 2 * (int)t;
}

/* Groups 1-5 of SPEC 5. */
static double combiner__mixture_query_terms(const combiner__problem *p, int r, int u) {
  const int n = p->n, m = p->m, len = combiner__row_len(p, r);
  double t;
  if (p->causal) return (double)r + (u + 1) + (r >= 1 ? m - 1 : 0) + (u >= 1 ? r : 0) + (u + 1 < m ? r : 0);
  t = (double)(combiner__col_len(p, u) - 1) + len;
  if (r >= 1) t += m - 1;
  if (r + 1 < n) t += combiner__row_len(p, r + 1) - (u < combiner__row_len(p, r + 1) ? 1 : 0);
  t += u >= 1 ? n - 1 : 0;                                            /* left parts */
  t += (u + 1 < m ? n - 1 : 0) + (u + 1 < p->last ? 1 : 0) - (u + 1 < len ? 1 : 0);  /* right */
  return t;
}

static double combiner__mixture_summary_terms(const combiner__problem *p, double *extra) {
  double summary = 0.0;
  int r, u;
  for (r = 0; r < p->n; ++r) summary += (double)combiner__row_len(p, r) * (combiner__row_len(p, r) + 1);  /* row prefix + suffix */
  for (u = 0; u < combiner__cols(p); ++u) {
    double rows = combiner__col_len(p, u);
    summary += rows * (rows + 1) / 2 * (p->causal ? 1 : 2);                  /* column prefix (+ suffix) */
  }
  *extra = 0.0;
  return summary;
}

static double combiner__mixture_terms(const combiner__problem *p, double len) { (void)len; return 3.0 * p->m + 5.0 * p->n; }

static int combiner__mixture_state_sets(const combiner__problem *p) {
  return p->mixture_norm == COMBINER_MIXTURE_AVERAGE ? 2 : 1;   /* AVERAGE: one per plan */
}


enum { COMBINER__COL_PREFIX = 0, COMBINER__ROW_PREFIX, COMBINER__ROW_SUFFIX, COMBINER__COL_SUFFIX };

/* Cumulative abstractions along a line of cells (a column or a row) walked
 * from `first` by `step`: for walk index w the region is cells 0..w of the
 * walk; key = pool of k, value = att(pool of q, region), a causal attention
 * along the walk. Written to `section` at each cell. */
static void combiner__mixture_walk(const combiner__ctx *c, const combiner__scratch *sc, int h,
                                   ptrdiff_t first, ptrdiff_t step, int count, int section) {
  const combiner__problem *p = c->p;
  int g = h / p->group, q0, i;
  float *qrun = sc->run, *krun = sc->run + p->d;
  ptrdiff_t base = (ptrdiff_t)section * p->L;
  combiner__seq ks = combiner__keys(c, g, first, step, count);
  combiner__seq vs = combiner__values(c, g, first, step, count);
  combiner__seq qs = combiner__seq_of(sc->qbuf, p->d, 0);
  combiner__states st = combiner__tile_states(sc->tile[0], p->dv, NULL, p->d);
  for (q0 = 0; q0 < count; q0 += COMBINER__BQ) {
    int nq = count - q0 < COMBINER__BQ ? count - q0 : COMBINER__BQ;
    for (i = 0; i < nq; ++i) {
      int w = q0 + i;
      ptrdiff_t pos = first + w * step;
      if (w == 0) {
        combiner__pool_start(qrun, combiner__q(c, pos, h), p->d);
        combiner__pool_start(krun, combiner__krow(c, pos, g, sc->kpack), p->d);
      } else {
        combiner__pool_add(qrun, combiner__q(c, pos, h), p->d, p->pool);
        combiner__pool_add(krun, combiner__krow(c, pos, g, sc->kpack), p->d, p->pool);
      }
      combiner__pool_read(sc->qbuf + (ptrdiff_t)i * p->d, qrun, p->d, p->pool, w + 1);
      combiner__pool_read(combiner__wkey(c, h, base + pos), krun, p->d, p->pool, w + 1);
    }
    combiner__states_begin(&st, nq, p->dv, p->d);
    combiner__pack_queries(p, sc, &qs, nq);
    combiner__attend(p, sc, nq, &ks, &vs, COMBINER__CAUSAL, q0, &st);
    combiner__states_finish(&st, nq, p->dv, combiner__wval(c, h, base + first + q0 * step),
                            step * p->dv);
  }
}

/* Units: (head, column) for the column prefixes (and suffixes), then
 * (head, row) for the row prefixes and suffixes. */
static void combiner__mixture_summary_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__problem *p = c->p;
  int cols = combiner__cols(p);
  ptrdiff_t col_units = (ptrdiff_t)p->H * cols;
  if (unit < col_units) {
    int h = (int)(unit % p->H), col = (int)(unit / p->H), rows = combiner__col_len(p, col);
    ptrdiff_t m = p->m;
    combiner__mixture_walk(c, sc, h, col, m, rows, COMBINER__COL_PREFIX);
    if (!p->causal)
      combiner__mixture_walk(c, sc, h, (rows - 1) * m + col, -m, rows, COMBINER__COL_SUFFIX);
  } else {
    int h = (int)((unit - col_units) % p->H), t = (int)((unit - col_units) / p->H);
    int len = combiner__row_len(p, t);
    ptrdiff_t first = (ptrdiff_t)t * p->m;
    combiner__mixture_walk(c, sc, h, first, 1, len, COMBINER__ROW_PREFIX);
    combiner__mixture_walk(c, sc, h, first + len - 1, -1, len, COMBINER__ROW_SUFFIX);
  }
}

static ptrdiff_t combiner__mixture_summary_units(const combiner__problem *p) {
  return (ptrdiff_t)p->H * ((ptrdiff_t)combiner__cols(p) + p->n);
}

/* Pass 1, unit (head h, row r, tile): row direct (group 2), then the column
 * abstractions of the vertical plan (group 3): column prefixes at row r-1
 * and (bidirectional) suffixes at row r+1, every column but the query's.
 * AVERAGE keeps the direct-only state in set 1 for the horizontal plan. */
static void combiner__mixture_rows_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__problem *p = c->p;
  ptrdiff_t L = p->L, m = p->m;
  combiner__rowtile t;
  combiner__states st;
  if (!combiner__row_unit(p, unit, &t)) return;
  st = combiner__saved_states(c, 0, t.h, t.first + t.q0, 1);
  combiner__attend_own_row(c, sc, &t, &st);
  if (p->mixture_norm == COMBINER_MIXTURE_AVERAGE) {
    combiner__states direct = combiner__saved_states(c, 1, t.h, t.first + t.q0, 1);
    combiner__states_copy(&direct, &st, t.nq, p->dv);
  }
  if (t.r >= 1)
    combiner__attend_summaries(c, sc, t.nq, t.h, COMBINER__COL_PREFIX * L + (t.r - 1) * m, 1, p->m,
                               COMBINER__SKIP, t.q0, &st);
  if (!p->causal && t.r + 1 < p->n)
    combiner__attend_summaries(c, sc, t.nq, t.h, COMBINER__COL_SUFFIX * L + (t.r + 1) * m, 1,
                               combiner__row_len(p, t.r + 1), COMBINER__SKIP, t.q0, &st);
}

/* Rows (out of all n) whose entry at column `col` follows the regular
 * stride: all of them unless the short last row lacks the column. */
static int combiner__rows_with(const combiner__problem *p, int col) {
  return col < p->last ? p->n : p->n - 1;
}

/* Row abstractions of the horizontal plan (groups 4-5) for column u's
 * queries: left part (prefix ending at u-1) and right part (suffix from u+1)
 * of every other (causal: earlier) row. The short last row is clamped to its
 * cells: its left part may end at its last cell, its right part may be empty. */
static void combiner__mixture_row_regions(const combiner__ctx *c, const combiner__scratch *sc,
    int nq, int h, int u, int q0, const combiner__states *st) {
  const combiner__problem *p = c->p;
  ptrdiff_t L = p->L, m = p->m;
  int mask = p->causal ? COMBINER__CAUSAL : COMBINER__SKIP;
  ptrdiff_t diag = p->causal ? q0 - 1 : q0;
  if (u >= 1) {
    int rows = combiner__rows_with(p, u - 1);
    combiner__attend_summaries(c, sc, nq, h, COMBINER__ROW_PREFIX * L + u - 1, m, rows, mask, diag, st);
    if (!p->causal && rows < p->n)   /* the short row ends before u-1: its whole row */
      combiner__attend_summaries(c, sc, nq, h, COMBINER__ROW_PREFIX * L + (p->n - 1) * m + p->last - 1,
                                 1, 1, COMBINER__ALL, 0, st);
  }
  if (u + 1 < p->m)
    combiner__attend_summaries(c, sc, nq, h, COMBINER__ROW_SUFFIX * L + u + 1, m,
                               combiner__rows_with(p, u + 1), mask, diag, st);
}

/* Pass 2, unit (head h, column u, tile of its rows): column direct (group 1)
 * and the row abstractions (groups 4-5), then the output. */
static void combiner__mixture_cols_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__problem *p = c->p;
  int tiles = combiner__tiles(p->n), cols = combiner__cols(p);
  int h = (int)(unit / tiles / cols), u = (int)(unit / tiles % cols), g = h / p->group;
  int rows = combiner__col_len(p, u), q0 = (int)(unit % tiles) * COMBINER__BQ, nq;
  ptrdiff_t m = p->m;
  int mask = p->causal ? COMBINER__CAUSAL : COMBINER__SKIP;
  ptrdiff_t diag = p->causal ? q0 - 1 : q0;
  combiner__seq qs, ks, vs;
  combiner__states st;
  float *out;
  if (q0 >= rows) return;
  nq = rows - q0 < COMBINER__BQ ? rows - q0 : COMBINER__BQ;
  qs = combiner__queries(c, h, u + q0 * m, m, nq);
  combiner__pack_queries(p, sc, &qs, nq);
  ks = combiner__keys(c, g, u, m, rows);
  vs = combiner__values(c, g, u, m, rows);
  st = combiner__saved_states(c, 0, h, u + q0 * m, m);
  out = combiner__out(c, u + q0 * m, h);
  if (p->mixture_norm == COMBINER_MIXTURE_JOINT) {
    combiner__attend(p, sc, nq, &ks, &vs, mask, diag, &st);
    combiner__mixture_row_regions(c, sc, nq, h, u, q0, &st);
    combiner__states_finish(&st, nq, p->dv, out, m * p->o.ts);
  } else {
    /* AVERAGE: vertical = set 0 (groups 2, 3) + column direct; horizontal =
     * set 1 (group 2) + column direct + row regions; out = the mean. */
    combiner__states col = combiner__tile_states(sc->tile[0], p->dv, NULL, p->d);
    combiner__states horiz = combiner__saved_states(c, 1, h, u + q0 * m, m);
    combiner__states vfin = combiner__tile_states(sc->tile[1], p->dv, NULL, p->d);
    int i, y;
    combiner__states_begin(&col, nq, p->dv, p->d);
    combiner__attend(p, sc, nq, &ks, &vs, mask, diag, &col);
    combiner__states_merge(&st, &col, nq, p->dv);
    combiner__states_merge(&horiz, &col, nq, p->dv);
    combiner__mixture_row_regions(c, sc, nq, h, u, q0, &horiz);
    combiner__states_finish(&st, nq, p->dv, vfin.acc, p->dv);
    combiner__states_finish(&horiz, nq, p->dv, col.acc, p->dv);
    for (i = 0; i < nq; ++i) {
      float *o = out + (ptrdiff_t)i * m * p->o.ts;
      const float *a = vfin.acc + (ptrdiff_t)i * p->dv, *b = col.acc + (ptrdiff_t)i * p->dv;
      for (y = 0; y < p->dv; ++y) o[y] = 0.5f * a[y] + 0.5f * b[y];
    }
  }
}

static int combiner__mixture_steps(const combiner__problem *p, int one_call, combiner__step *s) {
  (void)one_call;
  s[0].fn = combiner__mixture_summary_unit; s[0].units = combiner__mixture_summary_units(p); s[0].summary = 1;
  s[1].fn = combiner__mixture_rows_unit; s[1].units = combiner__row_tiles(p);
  s[2].fn = combiner__mixture_cols_unit; s[2].units = combiner__col_tiles(p);
  return 3;
}

/* Decode: SPEC 5's regions ending at i, and row r-1's suffix from column
 * u+1 (first used by (r, u)). The cache's entries are column-major per
 * section, S = entries per section. */
/* Column u, rows 0..rows-1 of K and V: an owned cache's column-major copy,
 * else the (borrowed) rows themselves, m positions apart. */
static void combiner__mixture_column(const combiner__cache_job *jb, int g, ptrdiff_t u, int rows,
                                     combiner__seq *ks, combiner__seq *vs) {
  const combiner__problem *p = jb->c.p;
  if (jb->kc) {
    *ks = combiner__seq_of(combiner__colrow(jb, jb->kc, g, u, 0, p->d), p->d, rows);
    *vs = combiner__seq_of(combiner__colrow(jb, jb->vc, g, u, 0, p->dv), p->dv, rows);
  } else {
    *ks = combiner__keys(&jb->c, g, u, p->m, rows);
    *vs = combiner__values(&jb->c, g, u, p->m, rows);
  }
}

/* Borrowed: column u's running pool of queries, rows 0..r (section 0). */
static int combiner__mixture_cache_tracks(const combiner__problem *p) { return combiner__cols(p); }

static void combiner__mixture_cache_fold(const combiner__cache_job *jb, float *tracks, int h, ptrdiff_t i) {
  const combiner__problem *p = jb->c.p;
  float *acc = tracks + ((ptrdiff_t)h * combiner__cols(p) + i % p->m) * p->d;
  if (i < p->m) combiner__pool_start(acc, combiner__q(&jb->c, i, h), p->d);
  else combiner__pool_add(acc, combiner__q(&jb->c, i, h), p->d, p->pool);
}

static void combiner__mixture_cache_trigger(const combiner__cache_job *jb, const combiner__scratch *sc, int h, ptrdiff_t i) {
  const combiner__ctx *c = &jb->c;
  const combiner__problem *p = c->p;
  const ptrdiff_t m = p->m, n = p->n, r = i / m, u = i % m, S = jb->section;
  const int g = h / p->group;
  combiner__seq ks, vs;
  combiner__mixture_column(jb, g, u, (int)r + 1, &ks, &vs);
  /* section 0, row-major: column u, rows 0..r (used by row r+1) */
  if (jb->qc)
    combiner__region_summary(p, sc, combiner__colrow(jb, jb->qc, h, u, 0, p->d), p->d, &ks, &vs,
                             combiner__wkey(c, h, r * m + u), combiner__wval(c, h, r * m + u));
  else
    combiner__region_summary_pooled(p, sc, jb->tracks + ((ptrdiff_t)h * combiner__cols(p) + u) * p->d, &ks, &vs,
                                    combiner__wkey(c, h, r * m + u), combiner__wval(c, h, r * m + u));
  /* section 1: row r, columns 0..u (used by later rows at column u+1) */
  ks = combiner__keys(c, g, r * m, 1, (int)u + 1);
  vs = combiner__values(c, g, r * m, 1, (int)u + 1);
  combiner__region_summary(p, sc, combiner__q(c, r * m, h), p->q.ts, &ks, &vs,
                           combiner__wkey(c, h, S + u * n + r), combiner__wval(c, h, S + u * n + r));
  if (r > 0 && u + 1 < m) {   /* section 2: row r-1, columns u+1.. (first used by (r, u)) */
    ks = combiner__keys(c, g, i - m + 1, 1, (int)(m - u - 1));
    vs = combiner__values(c, g, i - m + 1, 1, (int)(m - u - 1));
    combiner__region_summary(p, sc, combiner__q(c, i - m + 1, h), p->q.ts, &ks, &vs,
                             combiner__wkey(c, h, 2 * S + (u + 1) * n + r - 1),
                             combiner__wval(c, h, 2 * S + (u + 1) * n + r - 1));
  }
}

static int combiner__mixture_cache_query(const combiner__cache_job *jb, const combiner__scratch *sc, int h, ptrdiff_t i,
                                         const float *q, combiner__single_state *st) {
  const combiner__ctx *c = &jb->c;
  const combiner__problem *p = c->p;
  const ptrdiff_t m = p->m, n = p->n, r = i / m, u = i % m, S = jb->section;
  const int g = h / p->group;
  combiner__single_state hz;
  if (r > 0) {                                                  /* 1. column direct */
    combiner__seq ks, vs;
    combiner__mixture_column(jb, g, u, (int)r, &ks, &vs);
    combiner__single_query_attend(p, q, &ks, &vs, st, sc);
  }
  combiner__ddirect(c, sc, q, g, r * m, u + 1, st);             /* 2. row direct */
  hz = *st;
  if (p->mixture_norm == COMBINER_MIXTURE_AVERAGE) {            /* the horizontal plan: own copy */
    hz.acc = sc->tile[1];
    memcpy(hz.acc, st->acc, (size_t)p->dv * sizeof(float));
  }
  if (r > 0) {                                                  /* 3. column abstractions, c != u */
    combiner__dsummaries(c, sc, q, h, (r - 1) * m, 1, u, st);
    combiner__dsummaries(c, sc, q, h, (r - 1) * m + u + 1, 1, m - u - 1, st);
  }
  if (p->mixture_norm != COMBINER_MIXTURE_AVERAGE) hz = *st;    /* JOINT: one softmax */
  if (u > 0) combiner__dsummaries(c, sc, q, h, S + (u - 1) * n, 1, r, &hz);       /* 4. left */
  if (u + 1 < m) combiner__dsummaries(c, sc, q, h, 2 * S + (u + 1) * n, 1, r, &hz); /* 5. right */
  if (p->mixture_norm == COMBINER_MIXTURE_AVERAGE) {            /* (A_vertical + A_horizontal) / 2 */
    float *out = combiner__cache_out(jb, i, h), *tmp = sc->acc2;
    int y;
    combiner__single_state_finish(st, out, p->dv);
    combiner__single_state_finish(&hz, tmp, p->dv);
    for (y = 0; y < p->dv; ++y) out[y] = 0.5f * out[y] + 0.5f * tmp[y];
    return 1;
  }
  *st = hz;
  return 0;
}

static const combiner__kind_ops combiner__mixture_ops = {
  1, combiner__mixture_count, combiner__mixture_support, combiner__mixture_query_terms,   /* partition */
  combiner__mixture_summary_terms, combiner__mixture_terms, combiner__mixture_state_sets,
  1, 3, 1, 1, 1,   /* cache layout */
  1, combiner__mixture_cache_tracks, combiner__mixture_cache_fold, NULL,   /* borrowed cache */
  combiner__mixture_steps, NULL,   /* prefill */
  combiner__mixture_cache_trigger, combiner__mixture_cache_query, 0, NULL, NULL, NULL, NULL,   /* decode */
  NULL, NULL   /* fast chunks */
};

#endif

/* ------------------------------------------------------------------------ */
/* >>logsparse: Combiner-Logsparse (SPEC 5b)                               */
/* ------------------------------------------------------------------------ */
#if COMBINER__HAS_LOGSPARSE

/* The partition: query p attends itself, p-1 when p is odd, and for every
 * set bit l >= 1 of p the aligned block of 2^l positions just below p's
 * prefix at that bit; bidirectional, the same on the reversed sequence.
 * Entries per section: floor(L/2) + floor(L/4) + ... (level by level). */
static int combiner__logsparse_count(combiner__problem *p) {
  size_t per = 0, s = (size_t)p->L;
  while (s >>= 1) per += s;
  p->sections = p->causal ? 1 : 2;
  return combiner__mul(per, (size_t)p->sections, &p->count);
}

static int combiner__logsparse_support(const combiner__problem *p, int plan, ptrdiff_t i, ptrdiff_t j) {
  ptrdiff_t a = i, b = j;
  int base = 0, l;
  (void)plan;
  if (j == i) return 0;
  if (j > i) {               /* the future: the same construction, reversed */
    a = (ptrdiff_t)p->L - 1 - i;
    b = (ptrdiff_t)p->L - 1 - j;
    base = 32;
  }
  if ((a & 1) && b == a - 1) return 0;
  for (l = 1; ((ptrdiff_t)1 << l) <= a; ++l)
    if (((a >> l) & 1) && b >= ((a >> l) - 1) << l && b < (a >> l) << l) return base + l;
  return -1;                 /* unreachable: the blocks partition [0, a - a%2) */
}

static int combiner__popcount_above0(ptrdiff_t x) {   /* set bits l >= 1 */
  int c = 0;
  for (x >>= 1; x; x >>= 1) c += (int)(x & 1);
  return c;
}

static double combiner__logsparse_query_terms(const combiner__problem *p, int r, int u) {
  const ptrdiff_t i = (ptrdiff_t)r * p->m + u, rev = (ptrdiff_t)p->L - 1 - i;
  double t = 1.0 + (double)(i & 1) + combiner__popcount_above0(i);
  if (!p->causal) t += (double)(rev & 1) + combiner__popcount_above0(rev);
  return t;
}

/* Every aligned block attends to itself once. */
static double combiner__logsparse_summary_terms(const combiner__problem *p, double *extra) {
  double summary = 0.0;
  ptrdiff_t span;
  for (span = 2; span <= (ptrdiff_t)p->L; span *= 2) {
    ptrdiff_t covered = (ptrdiff_t)p->L - (ptrdiff_t)p->L % span;      /* whole blocks only */
    summary += (double)covered * (p->causal ? 1 : 2);
  }
  *extra = 0.0;
  return summary;
}

static double combiner__logsparse_terms(const combiner__problem *p, double len) { (void)len; return 3.0 * log2((double)p->L + 1.0); }


/* Levels l >= 1 with a whole aligned block of 2^l positions: floor(log2 L). */
static int combiner__log_levels(ptrdiff_t L) {
  int l = 0;
  while (((ptrdiff_t)2 << l) <= L) ++l;
  return l;
}

/* First entry of level l (>= 1) in a section: the blocks of the levels
 * below, floor(L / 2^l') each. */
static ptrdiff_t combiner__log_offset(ptrdiff_t L, int l) {
  ptrdiff_t off = 0;
  int i;
  for (i = 1; i < l; ++i) off += L >> i;
  return off;
}


/* The summaries in two steps. Step 0, unit (section s, chunk of 128
 * positions, its rows asked for in address order first): levels 1..7 of
 * the chunk, head by head — with max pooling, pooled queries and keys level
 * by level from the level below (the max of a block is the max of its
 * halves' maxima: the same bits as pooling its rows), with mean from the
 * rows as before (an in-order sum) — then every block's value while the
 * chunk's rows are in cache; the pooled queries of the chunk's level-7
 * block kept in the workspace (pq7, combiner__kind_extra). Step 1, unit
 * (section, level l >= 8, block): its pooled queries and keys from the
 * level-7 pools it covers (max), its value over its 2^l positions for every
 * head at once, position by position (combiner__heads_attend: the address
 * order of a token-major K/V). Q and K are read once for all max pooling
 * instead of once per level, and a large block's K/V is streamed once for
 * all heads. The arithmetic of every value is the single-query
 * primitive's, so the bits are those of pooling and attending each block
 * on its own (the decode cache's, and a range's). */
#define COMBINER__LOG_LOW 7

/* First position (forward) of block B of level l, section s. */
static ptrdiff_t combiner__log_first(const combiner__problem *p, int s, int l, ptrdiff_t B) {
  return s == 0 ? B << l : (ptrdiff_t)p->L - ((B + 1) << l);
}

static ptrdiff_t combiner__log_entry1(const combiner__problem *p, int s, int l, ptrdiff_t B) {
  return (s ? (ptrdiff_t)(p->count / 2) : 0) + combiner__log_offset(p->L, l) + B;
}

/* out = the max pool of two max pools (the max of their rows, exactly) */
static void combiner__pool_pair(float *out, const float *a, const float *b, int w) {
  memcpy(out, a, (size_t)w * sizeof(float));
  combiner__pool_add(out, b, w, COMBINER_POOL_MAX);
}

/* Chunks of 128 positions with at least one block of level 1, per section. */
static ptrdiff_t combiner__log_chunks(const combiner__problem *p) {
  return ((ptrdiff_t)p->L / 2 + 63) >> (COMBINER__LOG_LOW - 1);
}

/* Floats of the level-7 pooled queries: per section, chunk and head. */
static size_t combiner__logsparse_extra(const combiner__problem *p) {
  return (size_t)(p->causal ? 1 : 2) * (size_t)((ptrdiff_t)p->L >> COMBINER__LOG_LOW) * (size_t)p->H * (size_t)p->d;
}

static float *combiner__log_pq7(const combiner__ctx *c, int s, ptrdiff_t chunk, int h) {
  const combiner__problem *p = c->p;
  return c->extra + ((((ptrdiff_t)s * ((ptrdiff_t)p->L >> COMBINER__LOG_LOW) + chunk) * p->H) + h) * p->d;
}

/* val = att(pooled query qp (scaled here, in place), the block's keys) */
static void combiner__log_value(const combiner__ctx *c, const combiner__scratch *sc, int h, ptrdiff_t first, int len,
                                float *qp, float *val) {
  const int g = h / c->p->group;
  combiner__seq ks = combiner__keys(c, g, first, 1, len), vs = combiner__values(c, g, first, 1, len);
  combiner__region_value(c->p, sc, qp, &ks, &vs, val);
}

static void combiner__logsparse_low_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__problem *p = c->p;
  const ptrdiff_t chunks = combiner__log_chunks(p), ch = unit % chunks, L = p->L;
  const int s = (int)(unit / chunks), levels = combiner__log_levels(L), d = p->d;
  float *const lev[2] = {sc->qbuf, sc->acc2};   /* pooled queries: level 1 in qbuf, levels 2..7 in acc2 */
  const ptrdiff_t lo = ch << COMBINER__LOG_LOW, hi = lo + ((ptrdiff_t)1 << COMBINER__LOG_LOW) < L ? lo + ((ptrdiff_t)1 << COMBINER__LOG_LOW) : L;
  ptrdiff_t i;
  int h, l;
  for (i = lo; i < hi; ++i)   /* the chunk's rows, asked for in address order before the heads take them one by one */
    for (h = 0; h < p->H; ++h) {
      const ptrdiff_t at = s == 0 ? i : L - 1 - i;
      combiner__prefetch_rows(combiner__q(c, at, h), 0, 1, d, 0);
      if (h % p->group == 0) {
        combiner__prefetch_rows((const float *)combiner__k(c, at, h / p->group), 0, 1, (d * (int)combiner__type_size(p->k.type) + 3) / 4, 0);
        combiner__prefetch_rows((const float *)combiner__v(c, at, h / p->group), 0, 1, (p->dv * (int)combiner__type_size(p->v.type) + 3) / 4, 0);
      }
    }
  for (h = 0; h < p->H; ++h) {
    const int g = h / p->group;
    float *below = NULL, *at = NULL;
    ptrdiff_t used = 0;
    for (l = 1; l <= levels && l <= COMBINER__LOG_LOW; ++l) {
      const ptrdiff_t per = (ptrdiff_t)1 << (COMBINER__LOG_LOW - l), B0 = ch * per;
      const ptrdiff_t B1 = B0 + per < (L >> l) ? B0 + per : (L >> l);
      ptrdiff_t B;
      at = l == 1 ? lev[0] : lev[1] + used * d;
      for (B = B0; B < B1; ++B) {
        float *qrow = at + (B - B0) * d, *key = combiner__wkey(c, h, combiner__log_entry1(p, s, l, B));
        if (l == 1 || p->pool != COMBINER_POOL_MAX) {   /* from the rows */
          const ptrdiff_t first = combiner__log_first(p, s, l, B);
          combiner__seq ks = combiner__keys(c, g, first, 1, 1 << l);
          combiner__pool_rows(qrow, combiner__q(c, first, h), p->q.ts, 1 << l, d, p->pool);
          combiner__pool_keys(p, key, &ks, sc->kpack);
        } else {
          const float *k0 = combiner__wkey(c, h, combiner__log_entry1(p, s, l - 1, 2 * B));
          combiner__pool_pair(qrow, below + (2 * B - 2 * B0) * d, below + (2 * B + 1 - 2 * B0) * d, d);
          combiner__pool_pair(key, k0, k0 + d, d);   /* entries 2B, 2B + 1: consecutive */
        }
        memcpy(sc->run, qrow, (size_t)d * sizeof(float));
        combiner__log_value(c, sc, h, combiner__log_first(p, s, l, B), 1 << l, sc->run,
                            combiner__wval(c, h, combiner__log_entry1(p, s, l, B)));
      }
      if (l > 1) used += per;
      below = at;
      if (l == COMBINER__LOG_LOW && B1 > B0) memcpy(combiner__log_pq7(c, s, ch, h), at, (size_t)d * sizeof(float));
    }
  }
}

/* Step 1 units: (section, level >= 8, block), level by level. */
static ptrdiff_t combiner__log_high_blocks(const combiner__problem *p) {
  ptrdiff_t n = 0;
  int l;
  for (l = COMBINER__LOG_LOW + 1; l <= combiner__log_levels(p->L); ++l) n += (ptrdiff_t)p->L >> l;
  return n;
}

static void combiner__logsparse_high_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__problem *p = c->p;
  const ptrdiff_t per_section = combiner__log_high_blocks(p);
  const int s = (int)(unit / per_section), d = p->d;
  ptrdiff_t B = unit % per_section, span;
  int l = COMBINER__LOG_LOW + 1, h0, b, nb;
  while (B >= ((ptrdiff_t)p->L >> l)) B -= (ptrdiff_t)p->L >> l++;
  span = (ptrdiff_t)1 << (l - COMBINER__LOG_LOW);   /* level-7 blocks in it */
  for (h0 = 0; h0 < p->H; h0 += nb) {
    const ptrdiff_t e7 = combiner__log_entry1(p, s, COMBINER__LOG_LOW, B * span), first = combiner__log_first(p, s, l, B);
    const ptrdiff_t e = combiner__log_entry1(p, s, l, B);
    combiner__single_state st[COMBINER__BQ];
    nb = p->H - h0 < COMBINER__BQ ? p->H - h0 : COMBINER__BQ;
    for (b = 0; b < nb; ++b) {
      const int h = h0 + b;
      float *qp = sc->qbuf + (ptrdiff_t)b * d, *key = combiner__wkey(c, h, e);
      if (p->pool == COMBINER_POOL_MAX) {
        combiner__pool_rows(qp, combiner__log_pq7(c, s, B * span, h), (ptrdiff_t)p->H * d, (int)span, d, p->pool);
        combiner__pool_rows(key, combiner__wkey(c, h, e7), d, (int)span, d, p->pool);
      } else {                    /* mean: from the rows (in order, the bits of every other path) */
        combiner__seq ks = combiner__keys(c, h / p->group, first, 1, 1 << l);
        combiner__pool_rows(qp, combiner__q(c, first, h), p->q.ts, 1 << l, d, p->pool);
        combiner__pool_keys(p, key, &ks, sc->kpack);
      }
      combiner__scale_row(qp, p->scale, d);
      combiner__single_state_begin(&st[b], sc->tile[0] + (ptrdiff_t)b * p->dv, NULL, p->dv, d);
    }
    combiner__heads_attend(c, sc, h0, nb, first, first + ((ptrdiff_t)1 << l), st);
    for (b = 0; b < nb; ++b) combiner__single_state_finish(&st[b], combiner__wval(c, h0 + b, e), p->dv);
  }
}

/* Entry of block b of level l in a cache: a borrowed one keeps a ring of
 * the last few blocks per level (the only ones later queries read). */
static ptrdiff_t combiner__log_entry(const combiner__cache_job *jb, int l, ptrdiff_t b) {
  if (!jb->level_keep) return combiner__log_offset(jb->c.p->L, l) + b;
  return jb->level_off[l] + b % jb->level_keep[l];
}

/* Query pos of head h (q pre-scaled) into st, its terms in one batch: its
 * direct positions (pos - 1 when pos is odd, pos, and bidirectional pos + 1
 * when L - 1 - pos is odd; half-precision rows widened into the packs), then
 * one abstraction per set bit l >= 1 of pos (and of L - 1 - pos), read where
 * they are: entry (l, block) through the cache job's ring (jb) or the
 * call's slots. The prefill and the decode cache run this same function, so
 * their bits agree. */
static void combiner__log_query(const combiner__ctx *c, const combiner__scratch *sc, const float *q, int h, ptrdiff_t pos,
                                const combiner__cache_job *jb, combiner__single_state *st) {
  const combiner__problem *p = c->p;
  const int g = h / p->group, bidir = !jb && !p->causal;
  const ptrdiff_t L = p->L, rev = L - 1 - pos, first = pos - (pos & 1), last = pos + (bidir && (rev & 1) ? 1 : 0);
  const float *kr[2 * COMBINER__MAX_LEVELS + 3], *vr[2 * COMBINER__MAX_LEVELS + 3];
  combiner__seq ks, vs;
  ptrdiff_t i;
  int n = 0, l, sec;
  for (i = first; i <= last; ++i, ++n) {
    kr[n] = combiner__row_f32(combiner__k(c, i, g), p->k.type, p->d, sc->kpack + (ptrdiff_t)n * p->d);
    vr[n] = combiner__row_f32(combiner__v(c, i, g), p->v.type, p->dv, sc->vpack + (ptrdiff_t)n * p->dv);
  }
  for (sec = 0; sec < (bidir ? 2 : 1); ++sec) {
    const ptrdiff_t x = sec ? rev : pos;
    ptrdiff_t off = (sec ? (ptrdiff_t)(p->count / 2) : 0);   /* level l's first entry (one call) */
    for (l = 1; ((ptrdiff_t)1 << l) <= x; off += L >> l, ++l)
      if ((x >> l) & 1) {
        const ptrdiff_t B = (x >> l) - 1;
        const ptrdiff_t e = jb ? combiner__log_entry(jb, l, B)
                          : c->rmap ? c->rmap->off[sec][l] + B - c->rmap->lo[sec][l] : off + B;
        kr[n] = combiner__skey(c, h, e);
        vr[n++] = combiner__sval(c, h, e);
      }
  }
  ks = combiner__seq_rows(kr, n);
  vs = combiner__seq_rows(vr, n);
  combiner__single_query_attend(p, q, &ks, &vs, st, sc);
}

/* Unit (64 consecutive queries, head h): each query's O(log L) terms. */
static void combiner__logsparse_combine_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__problem *p = c->p;
  const int h = (int)(unit % p->H);   /* a tile's heads in consecutive units: rows shared */
  const ptrdiff_t q0 = c->qbegin + (unit / p->H) * COMBINER__BQ;
  const int nq = c->qend - q0 < COMBINER__BQ ? (int)(c->qend - q0) : COMBINER__BQ;
  combiner__single_state st;
  int i;
  for (i = 0; i < nq; ++i) {
    combiner__scaled_copy(sc->qt, combiner__q(c, q0 + i, h), p->scale, p->d);
    combiner__single_state_begin(&st, sc->tile[0], NULL, p->dv, p->d);
    combiner__log_query(c, sc, sc->qt, h, q0 + i, NULL, &st);
    combiner__single_state_finish(&st, combiner__out(c, q0 + i, h), p->dv);
  }
}

static int combiner__logsparse_steps(const combiner__problem *p, int one_call, combiner__step *s) {
  int n = 0;
  (void)one_call;
  if (p->count) {                     /* L = 1 has no block */
    const ptrdiff_t sections = p->causal ? 1 : 2;
    s[n].fn = combiner__logsparse_low_unit; s[n].summary = 1; s[n++].units = sections * combiner__log_chunks(p);
    s[n].fn = combiner__logsparse_high_unit; s[n].summary = 1; s[n++].units = sections * combiner__log_high_blocks(p);
  }
  s[n].fn = combiner__logsparse_combine_unit; s[n++].units = (ptrdiff_t)p->H * combiner__tiles(p->L);
  return n;
}

/* Query i reads block (i >> l) - 1 of level l: the last one completed. A
 * rollback of `span` positions reaches back floor(span / 2^l) + 1 more. */
static size_t combiner__logsparse_cache_window(const combiner__problem *p, int span, ptrdiff_t *off, int *keep) {
  const int levels = combiner__log_levels(p->L);
  size_t total = 0;
  int l;
  for (l = 1; l <= levels; ++l) {
    keep[l] = (int)(span >> l) + 2;
    off[l] = (ptrdiff_t)total;
    total += (size_t)keep[l];
  }
  return total;
}

/* Borrowed: per level l, the running pool of the queries of the open
 * block, restarted at every multiple of 2^l. */
static int combiner__logsparse_cache_tracks(const combiner__problem *p) { return combiner__log_levels(p->L); }

static void combiner__logsparse_cache_fold(const combiner__cache_job *jb, float *tracks, int h, ptrdiff_t i) {
  const combiner__problem *p = jb->c.p;
  const int levels = combiner__log_levels(p->L);
  const float *q = combiner__q(&jb->c, i, h);
  int l;
  for (l = 1; l <= levels; ++l) {
    float *acc = tracks + ((ptrdiff_t)h * levels + l - 1) * p->d;
    if (i % ((ptrdiff_t)1 << l) == 0) combiner__pool_start(acc, q, p->d);
    else combiner__pool_add(acc, q, p->d, p->pool);
  }
}

/* Decode: every aligned block that ends just before i (before i's query is
 * folded into the level pools). */
static void combiner__logsparse_cache_trigger(const combiner__cache_job *jb, const combiner__scratch *sc, int h, ptrdiff_t i) {
  const combiner__ctx *c = &jb->c;
  const int g = h / c->p->group, levels = combiner__log_levels(c->p->L);
  int l;
  for (l = 1; ((ptrdiff_t)1 << l) <= i && i % ((ptrdiff_t)1 << l) == 0; ++l) {
    const ptrdiff_t b = (i >> l) - 1, e = combiner__log_entry(jb, l, b);
    if (jb->tracks) {
      combiner__seq ks = combiner__keys(c, g, b << l, 1, 1 << l), vs = combiner__values(c, g, b << l, 1, 1 << l);
      combiner__region_summary_pooled(c->p, sc, jb->tracks + ((ptrdiff_t)h * levels + l - 1) * c->p->d, &ks, &vs,
                                      combiner__wkey(c, h, e), combiner__wval(c, h, e));
    } else {
      combiner__block_summary(c, sc, h, b << l, 1 << l, combiner__wkey(c, h, e), combiner__wval(c, h, e));
    }
  }
}

/* Decode: the prefill's own per-query function (the ring's entries). */
static int combiner__logsparse_cache_query(const combiner__cache_job *jb, const combiner__scratch *sc, int h, ptrdiff_t i,
                                           const float *q, combiner__single_state *st) {
  combiner__log_query(&jb->c, sc, q, h, i, jb, st);
  return 0;
}

static const combiner__kind_ops combiner__logsparse_ops = {
  0, combiner__logsparse_count, combiner__logsparse_support, combiner__logsparse_query_terms,   /* partition */
  combiner__logsparse_summary_terms, combiner__logsparse_terms, NULL,
  0, 1, 1, 0, 0,   /* cache layout */
  2, combiner__logsparse_cache_tracks, combiner__logsparse_cache_fold, combiner__logsparse_cache_window,   /* borrowed cache */
  combiner__logsparse_steps, NULL,   /* prefill */
  combiner__logsparse_cache_trigger, combiner__logsparse_cache_query, 0, NULL, NULL, NULL, NULL,   /* decode */
  NULL, NULL   /* fast chunks */
};

#endif

/* ------------------------------------------------------------------------ */
/* >>kinds: the table of factorizations                                    */
/* ------------------------------------------------------------------------ */

/* Adding a kind: a section like the ones above (its partition and kernels
 * under COMBINER__HAS_<KIND>, one combiner__kind_ops) and one row here. */
/* A kind compiled out (COMBINER_NO_<KIND>): no summaries, no kernels;
 * combiner__resolve reports it unsupported after the generic checks. */
static const combiner__kind_ops combiner__absent_ops = {
  0, combiner__no_summaries, NULL, NULL,   /* partition */
  NULL, NULL, NULL,
  0, 0, 0, 0, 0,   /* cache layout */
  0, NULL, NULL, NULL,   /* borrowed cache */
  NULL, NULL,   /* prefill */
  NULL, NULL, 0, NULL, NULL, NULL, NULL,   /* decode */
  NULL, NULL   /* fast chunks */
};

static const combiner__kind_ops *combiner__ops(int kind) {
  switch (kind) {
#if COMBINER__HAS_FIXED
    case COMBINER_FIXED: return &combiner__fixed_ops;
#endif
#if COMBINER__HAS_AXIAL
    case COMBINER_AXIAL: return &combiner__axial_ops;
#endif
#if COMBINER__HAS_MIXTURE
    case COMBINER_MIXTURE: return &combiner__mixture_ops;
#endif
#if COMBINER__HAS_DENSE
    case COMBINER_DENSE: return &combiner__dense_ops;
#endif
#if COMBINER__HAS_LOGSPARSE
    case COMBINER_LOGSPARSE: return &combiner__logsparse_ops;
#endif
    default: return &combiner__absent_ops;
  }
}

static int combiner__kind_has_blocks(int kind) { return combiner__ops(kind)->has_blocks; }
static int combiner__kind_compiled(int kind) { return combiner__ops(kind)->steps != NULL; }
static int combiner__summary_count(combiner__problem *p) {
  const combiner__kind_ops *k = combiner__ops(p->kind);
  return k->count(p);
}

static int combiner__state_sets(const combiner__problem *p) {
  const combiner__kind_ops *k = combiner__ops(p->kind);
  return k->state_sets ? k->state_sets(p) : 0;
}

static size_t combiner__kind_extra(const combiner__problem *p) {
#if COMBINER__HAS_LOGSPARSE
  if (p->kind == COMBINER_LOGSPARSE) return combiner__logsparse_extra(p);   /* its level-7 pooled queries */
#endif
  (void)p;
  return 0;
}

static double combiner__kind_terms(const combiner__problem *p, double len) {
  const combiner__kind_ops *k = combiner__ops(p->kind);
  COMBINER_ASSERT(k->terms != NULL);   /* a kind compiled in */
  return k->terms(p, len);
}

/* ------------------------------------------------------------------------ */
/* >>dispatch: running the steps of a call                                 */
/* ------------------------------------------------------------------------ */

static int combiner__steps(const combiner__problem *p, int one_call, combiner__step *s) {
  const combiner__kind_ops *k = combiner__ops(p->kind);   /* resolve refused kinds compiled out */
  int n;
  memset(s, 0, COMBINER__MAX_STEPS * sizeof *s);
  COMBINER_ASSERT(k->steps != NULL);   /* a kind compiled in */
  n = k->steps(p, one_call, s);
  COMBINER_ASSERT(n <= COMBINER__MAX_STEPS);
  return n;
}

/* Runs steps [first, last) (last < 0: to the end) on the call's threads. */
static void combiner__run_steps(const combiner__ctx *c, int first, int last) {
  const combiner__kind_ops *k = combiner__ops(c->p->kind);
  combiner__step s[COMBINER__MAX_STEPS];
  int n = combiner__steps(c->p, c->one_call, s), i;
  if (last < 0 || last > n) last = n;
  if (c->one_call && k->whole && k->whole(c)) return;
  for (i = first; i < last; ++i) combiner__run(c, s[i].units, s[i].fn);
}

/* Steps that compute abstractions: the first ones of the two-phase steps. */
static int combiner__summary_steps(const combiner__problem *p) {
  combiner__step s[COMBINER__MAX_STEPS];
  int n = combiner__steps(p, 0, s), i = 0;
  while (i < n && s[i].summary) ++i;
  return i;
}

/* Checks q/k/v (and out, and the summaries where given) for NULL and for out
 * or written summaries overlapping anything else. */
static combiner_status combiner__check_buffers(const combiner__problem *p,
    const float *q, const void *k, const void *v, const float *out,
    const float *skeys, const float *svals, int need_summaries, int writes_summaries) {
  size_t kf = (size_t)p->H * p->count * (size_t)p->d;
  size_t vf = (size_t)p->H * p->count * (size_t)p->dv;
  const size_t ke = combiner__tfloats(&p->k), ve = combiner__tfloats(&p->v);
  if (!q || !k || !v) return COMBINER_ERR_INVALID_ARGUMENT;
  if (need_summaries && p->count && (!skeys || !svals)) return COMBINER_ERR_INVALID_ARGUMENT;
  if (!need_summaries) { kf = 0; vf = 0; }
  if (out) {
    if (combiner__overlap(out, p->o.extent, q, p->q.extent) ||
        combiner__overlap(out, p->o.extent, k, ke) ||
        combiner__overlap(out, p->o.extent, v, ve) ||
        combiner__overlap(out, p->o.extent, skeys, kf) ||
        combiner__overlap(out, p->o.extent, svals, vf))
      return COMBINER_ERR_INVALID_ARGUMENT;
  }
  if (writes_summaries) {
    if (combiner__overlap(skeys, kf, svals, vf) ||
        combiner__overlap(skeys, kf, q, p->q.extent) || combiner__overlap(svals, vf, q, p->q.extent) ||
        combiner__overlap(skeys, kf, k, ke) || combiner__overlap(svals, vf, k, ke) ||
        combiner__overlap(skeys, kf, v, ve) || combiner__overlap(svals, vf, v, ve))
      return COMBINER_ERR_INVALID_ARGUMENT;
  }
  return COMBINER_OK;
}

/* A caller's workspace must not overlap any tensor or summary buffer: the
 * call writes all of it. */
static int combiner__workspace_overlaps(const combiner__problem *p, const void *ws, size_t bytes,
    const float *q, const void *k, const void *v, const float *out,
    const float *skeys, const float *svals) {
  size_t n = bytes / sizeof(float) + 1;
  size_t kf = (size_t)p->H * p->count * (size_t)p->d, vf = (size_t)p->H * p->count * (size_t)p->dv;
  if (!ws) return 0;
  return combiner__overlap(ws, n, q, p->q.extent) || combiner__overlap(ws, n, k, combiner__tfloats(&p->k)) ||
         combiner__overlap(ws, n, v, combiner__tfloats(&p->v)) || combiner__overlap(ws, n, out, p->o.extent) ||
         combiner__overlap(ws, n, skeys, kf) || combiner__overlap(ws, n, svals, vf);
}

/* Resolves the caller's workspace (or allocates one): *base is 64-byte
 * aligned, *owned what to free. */
static combiner_status combiner__acquire(const combiner__workspace *w, void *workspace,
    size_t workspace_size, unsigned char **base, void **owned) {
  uintptr_t a;
  *owned = NULL;
  if (!workspace) {
    workspace = COMBINER_MALLOC(w->total);
    if (!workspace) return COMBINER_ERR_OUT_OF_MEMORY;
    *owned = workspace;
  } else if (workspace_size < w->total) {
    return COMBINER_ERR_WORKSPACE_TOO_SMALL;
  }
  a = (uintptr_t)workspace;
  *base = (unsigned char *)workspace + (COMBINER__ALIGN - a % COMBINER__ALIGN) % COMBINER__ALIGN;
  return COMBINER_OK;
}

static void combiner__ctx_init(combiner__ctx *c, const combiner__problem *p,
    const combiner__workspace *w, unsigned char *base,
    const float *q, const void *k, const void *v, float *out) {
  c->p = p;
  c->q = q; c->k = k; c->v = v; c->out = out;
  c->wkeys = (float *)(void *)(base + w->keys);
  c->wvals = (float *)(void *)(base + w->values);
  c->skeys = c->wkeys;
  c->svals = c->wvals;
  c->states = (float *)(void *)(base + w->states);
  c->state_floats = w->state_floats;
  c->extra = (float *)(void *)(base + w->extra);
  c->scratch = base + w->scratch;
  c->scratch_stride = w->scratch_stride;
  c->one_call = 0;
  c->qbegin = 0;
  c->qend = p->L;
  c->rmap = NULL;
  c->rjob = NULL;
}

/* ------------------------------------------------------------------------ */
/* >>cache: the decode cache                                               */
/* ------------------------------------------------------------------------ */

struct combiner_cache {
  unsigned magic;
  int length, max_len;
  int triggered;           /* positions [0, triggered) have run their triggers on today's data */
  int borrowed, rollback;  /* K/V in the engine's buffers; how far a truncate may go back */
  int batch;               /* positions per run: a run's Q rows never overwrite what it reads */
  int tracks;              /* running query pools per head (borrowed MIXTURE, LOGSPARSE) */
  int snap, snaps;         /* the pools are copied at every multiple of snap, into a ring of snaps */
  int reach;               /* the furthest length held: a borrowed cache goes back to reach - rollback */
  int ranges;              /* cache_range kinds: key ranges of the last position */
  int fast_chunks;         /* appends of >= 64 tokens with outputs run the prefill kernels (tile_unit) */
  combiner_config cfg;     /* resolved; seq_len = max_len; layouts of the appended tensors */
  combiner__problem p;     /* L = max_len; q, k, v describe the stored arrays; count = entries per head */
  size_t section;          /* entries per head and section */
  size_t off[12];          /* byte offsets from the cache of its parts (COMBINER__CQ..) */
  ptrdiff_t level_off[32]; /* borrowed LOGSPARSE: level l's ring of level_keep[l] entries */
  int level_keep[32];
  const void *bk, *bv;     /* borrowed K and V */
  size_t bk_extent, bv_extent;   /* floats they span for max_len positions (rounded up) */
  size_t scratch_stride;   /* bytes of scratch per thread */
  size_t bytes;            /* from the cache to the end of its last scratch slot */
};

/* The parts of a cache, in order (any may be empty). Owned: Q, K, V of
 * every position, Mixture's column copies. Borrowed: Q of the last `qring`
 * positions, the running pools and their copy `rollback` positions behind
 * (snapshots: a truncate restarts from the last one at or below it). */
enum { COMBINER__CQ = 0, COMBINER__CK, COMBINER__CV, COMBINER__CQC, COMBINER__CKC, COMBINER__CVC,
       COMBINER__CKEYS, COMBINER__CVALS, COMBINER__CTRACK, COMBINER__CSNAP, COMBINER__CPART, COMBINER__CSCRATCH,
       COMBINER__CPARTS };

/* Positions per run of a cache_range kind: the partial states of a run's
 * positions are kept until they merge. */
#define COMBINER__RANGE_BATCH COMBINER__MQ

#define COMBINER__CACHE_MAGIC 0x436f6d62u

/* Fast chunks: a borrowed cache's query ring holds runs of at least this
 * many positions (a run is what the prefill kernels see at once). */
#define COMBINER__FAST_RUN 256

static float *combiner__cache_floats(combiner_cache *cache, size_t off) {
  return (float *)(void *)((unsigned char *)(void *)cache + off);
}

/* The job of appending [first, first + count) to a cache. */
static void combiner__cache_job_of(combiner_cache *cache, combiner__cache_job *jb) {
  memset(jb, 0, sizeof *jb);
  jb->c.p = &cache->p;
  jb->c.q = combiner__cache_floats(cache, cache->off[COMBINER__CQ]);
  jb->c.k = cache->borrowed ? cache->bk : (const void *)combiner__cache_floats(cache, cache->off[COMBINER__CK]);
  jb->c.v = cache->borrowed ? cache->bv : (const void *)combiner__cache_floats(cache, cache->off[COMBINER__CV]);
  if (cache->off[COMBINER__CKC] != cache->off[COMBINER__CKEYS]) {   /* column copies kept */
    jb->qc = combiner__cache_floats(cache, cache->off[COMBINER__CQC]);
    jb->kc = combiner__cache_floats(cache, cache->off[COMBINER__CKC]);
    jb->vc = combiner__cache_floats(cache, cache->off[COMBINER__CVC]);
  }
  if (cache->tracks) jb->tracks = combiner__cache_floats(cache, cache->off[COMBINER__CTRACK]);
  if (cache->snaps) jb->snapshots = combiner__cache_floats(cache, cache->off[COMBINER__CSNAP]);
  jb->ntracks = cache->tracks;
  jb->snap = cache->snap;
  jb->snaps = cache->snaps;
  if (cache->level_keep[1]) {
    jb->level_off = cache->level_off;
    jb->level_keep = cache->level_keep;
  }
  jb->c.wkeys = combiner__cache_floats(cache, cache->off[COMBINER__CKEYS]);
  jb->c.wvals = combiner__cache_floats(cache, cache->off[COMBINER__CVALS]);
  jb->c.skeys = jb->c.wkeys;
  jb->c.svals = jb->c.wvals;
  jb->section = (ptrdiff_t)cache->section;
  jb->part = combiner__cache_floats(cache, cache->off[COMBINER__CPART]);
  jb->ranges = cache->ranges;
}

/* Folds the queries of positions [from, to) into the pools at `tracks`,
 * every head (a truncate's replay from a snapshot). */
static void combiner__cache_fold_range(combiner_cache *cache, float *tracks, ptrdiff_t from, ptrdiff_t to) {
  const combiner__kind_ops *k = combiner__ops(cache->p.kind);
  combiner__cache_job jb;
  ptrdiff_t i;
  int h;
  COMBINER_ASSERT(k->cache_fold != NULL);   /* caches have tracks only for kinds that fold */
  combiner__cache_job_of(cache, &jb);
  for (i = from; i < to; ++i)
    for (h = 0; h < cache->p.H; ++h) k->cache_fold(&jb, tracks, h, i);
}

/* Output of position i, head h: its direct terms and abstractions (SPEC 3-5b). */
static void combiner__cache_query(const combiner__cache_job *jb, const combiner__kind_ops *k, const combiner__scratch *sc,
                                  int h, ptrdiff_t i) {
  const combiner__problem *p = jb->c.p;
  combiner__single_state st;
  combiner__scaled_copy(sc->qbuf, combiner__q(&jb->c, i, h), p->scale, p->d);
  combiner__single_state_begin(&st, sc->tile[0], NULL, p->dv, p->d);
  COMBINER_ASSERT(k->cache_query != NULL);   /* a kind compiled in */
  if (!k->cache_query(jb, sc, h, i, sc->qbuf, &st)) combiner__single_state_finish(&st, combiner__cache_out(jb, i, h), p->dv);
}

/* Outputs of positions i0 .. i0+nq-1 (one block, their triggers run), head
 * h: one at a time, or at once where the kind can (the same bits). */
static void combiner__cache_queries(const combiner__cache_job *jb, const combiner__kind_ops *k, const combiner__scratch *sc,
                                    int h, ptrdiff_t i0, int nq) {
  const combiner__problem *p = jb->c.p;
  const ptrdiff_t stride = (ptrdiff_t)combiner__round_up((size_t)p->dv, COMBINER__ALIGN / sizeof(float));
  combiner__single_state st[COMBINER__MQ];
  const float *q[COMBINER__MQ] = {NULL};
  int b;
  if (nq == 1) {
    combiner__cache_query(jb, k, sc, h, i0);
    return;
  }
  for (b = 0; b < nq; ++b) {
    float *qb = sc->qbuf + (ptrdiff_t)b * p->d;
    combiner__scaled_copy(qb, combiner__q(&jb->c, i0 + b, h), p->scale, p->d);
    q[b] = qb;
    combiner__single_state_begin(&st[b], sc->tile[0] + b * stride, NULL, p->dv, p->d);
  }
  k->cache_batch(jb, sc, h, i0, nq, q, st);
  for (b = 0; b < nq; ++b) combiner__single_state_finish(&st[b], combiner__cache_out(jb, i0 + b, h), p->dv);
}

/* Unit = a query head (its abstractions, pools and outputs); it walks the
 * appended positions in order. A position's query joins the pools before
 * its triggers when they read it (Mixture's regions ending at it), else
 * after. */
static void combiner__cache_unit(const combiner__cache_job *jb, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__kind_ops *k = combiner__ops(jb->c.p->kind);
  const int h = (int)unit;
  void (*const fold)(const combiner__cache_job *, float *, int, ptrdiff_t) = jb->tracks ? k->cache_fold : NULL;
  float *const tracks = jb->tracks;
  const ptrdiff_t end = jb->first + jb->count, m = jb->c.p->m;
  ptrdiff_t i;
  if (k->cache_batch && !fold) {   /* positions of one block in batches: their triggers, then their queries */
    for (i = jb->first; i < end;) {
      ptrdiff_t t = i > jb->triggered ? i : jb->triggered, i1 = i + COMBINER__MQ < end ? i + COMBINER__MQ : end;
      if (i1 > (i / m + 1) * m) i1 = (i / m + 1) * m;
      if (k->cache_triggers && i1 - t > 1) {
        k->cache_triggers(jb, sc, h, t, (int)(i1 - t));
      } else if (k->cache_trigger) {
        for (; t < i1; ++t) k->cache_trigger(jb, sc, h, t);
      }
      if (jb->out) combiner__cache_queries(jb, k, sc, h, i, (int)(i1 - i));
      i = i1;
    }
    return;
  }
  for (i = jb->first; i < end; ++i) {
    if (jb->snapshots && tracks && i % jb->snap == 0) {   /* head h's pools before position i */
      const size_t n = (size_t)jb->ntracks * (size_t)jb->c.p->d;
      memcpy(jb->snapshots + ((size_t)(i / jb->snap % jb->snaps) * (size_t)jb->c.p->H + (size_t)h) * n,
             tracks + (size_t)h * n, n * sizeof(float));
    }
    if (fold && k->trigger_reads_self) fold(jb, tracks, h, i);
    if (k->cache_trigger && i >= jb->triggered) k->cache_trigger(jb, sc, h, i);
    if (fold && !k->trigger_reads_self) fold(jb, tracks, h, i);
    if (jb->out) combiner__cache_query(jb, k, sc, h, i);
  }
}

/* cache_range kinds. Unit = (appended position, key range): every head's
 * partial state over that range. */
static void combiner__cache_range_unit(const combiner__cache_job *jb, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__kind_ops *k = combiner__ops(jb->c.p->kind);
  const ptrdiff_t b = unit / jb->ranges, i = jb->first + b;
  const int r = (int)(unit % jb->ranges);
  COMBINER_ASSERT(k->cache_range != NULL);   /* only cache_range kinds run these units */
  if ((ptrdiff_t)r * k->cache_split <= i)
    k->cache_range(jb, sc, i, r, jb->part + b * jb->c.p->H * jb->ranges * combiner__part_stride(jb->c.p));
}

/* The same for runs of several positions: unit = (range, head), every
 * position of the run at once. */
static void combiner__cache_ranges_unit(const combiner__cache_job *jb, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__kind_ops *k = combiner__ops(jb->c.p->kind);
  COMBINER_ASSERT(k->cache_ranges != NULL);   /* only kinds that have it run these units */
  k->cache_ranges(jb, sc, (int)(unit % jb->c.p->H), (int)(unit / jb->c.p->H));
}

/* Unit = (appended position, head): its partial states merged in range
 * order, then normalized into the output. */
static void combiner__cache_merge_unit(const combiner__cache_job *jb, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__problem *p = jb->c.p;
  const int split = combiner__ops(p->kind)->cache_split;
  const ptrdiff_t b = unit / p->H, i = jb->first + b, w = combiner__part_stride(p), dvp = combiner__part_dvp(p);
  const int h = (int)(unit % p->H), n = split > 0 ? (int)(i / split) + 1 : 1;
  float *ps = jb->part + (b * p->H + h) * jb->ranges * w;
  combiner__states dst, src;
  combiner__single_state st;
  int r;
  (void)sc;
  memset(&dst, 0, sizeof dst);
  dst.mx = ps + dvp; dst.sum = ps + dvp + 1; dst.acc = ps; dst.ms = dst.as = w;
  for (r = 1; r < n; ++r) {
    src = dst;
    src.mx += r * w; src.sum += r * w; src.acc += r * w;
    combiner__states_merge(&dst, &src, 1, p->dv);
  }
  st.mx = ps[dvp]; st.sum = ps[dvp + 1]; st.acc = ps; st.acc2 = NULL;
  combiner__single_state_finish(&st, combiner__cache_out(jb, i, h), p->dv);
}

typedef void (*combiner__cache_fn)(const combiner__cache_job *jb, ptrdiff_t unit, const combiner__scratch *sc);

/* base: scratch slot 0; stride: bytes per slot; threads: at most. Units
 * [0, n1) of fn1, then (all of them done) [0, n2) of fn2. */
static void combiner__cache_team(const combiner__cache_job *jb, unsigned char *base, size_t stride, int threads,
                                 double work, combiner__cache_fn fn1, ptrdiff_t n1, combiner__cache_fn fn2, ptrdiff_t n2) {
  const combiner__problem *p = jb->c.p;
  (void)work; (void)stride; (void)threads;
#ifdef COMBINER__OPENMP
  if (threads > 1 && n1 > 1 && work >= 1.5e5) {   /* a team costs microseconds to wake */
#pragma omp parallel num_threads(threads)
    {
      const uint64_t csr = combiner__denormals_off();
      combiner__scratch sc;
      ptrdiff_t u;
      combiner__scratch_parts(p, &sc, (float *)(void *)(base + (size_t)omp_get_thread_num() * stride));
#pragma omp for schedule(dynamic, 1)
      for (u = 0; u < n1; ++u) fn1(jb, u, &sc);
#pragma omp for schedule(dynamic, 1)
      for (u = 0; u < n2; ++u) fn2(jb, u, &sc);
      combiner__denormals_restore(csr);
    }
    return;
  }
#endif
  {
    const uint64_t csr = combiner__denormals_off();
    combiner__scratch sc;
    ptrdiff_t u;
    combiner__scratch_parts(p, &sc, (float *)(void *)base);
    for (u = 0; u < n1; ++u) fn1(jb, u, &sc);
    for (u = 0; u < n2; ++u) fn2(jb, u, &sc);
    combiner__denormals_restore(csr);
  }
}

static void combiner__cache_run(const combiner__cache_job *jb, unsigned char *base, size_t stride, int threads) {
  const combiner__problem *p = jb->c.p;
  const combiner__kind_ops *k = combiner__ops(p->kind);
  const double work = (double)jb->count * p->H * combiner__kind_terms(p, (double)jb->first + (double)jb->count) *
                      ((double)p->d + p->dv);
  if (k->cache_range && jb->count > 1 && k->cache_ranges)
    combiner__cache_team(jb, base, stride, threads, work, combiner__cache_ranges_unit,
                         (ptrdiff_t)((jb->first + jb->count - 1) / k->cache_split + 1) * p->H,
                         combiner__cache_merge_unit, jb->count * p->H);
  else if (k->cache_range)
    combiner__cache_team(jb, base, stride, threads, work, combiner__cache_range_unit, jb->count * jb->ranges,
                         combiner__cache_merge_unit, jb->count * p->H);
  else
    combiner__cache_team(jb, base, stride, threads, work, combiner__cache_unit, p->H, combiner__cache_unit, 0);
}

/* Sizes a cache (hdr->bytes, offsets) for cfg and the options; the one
 * place that validates them. */
static combiner_status combiner__cache_plan(const combiner_config *cfg, const combiner_cache_options *opt,
                                            combiner_cache *hdr) {
  combiner_config c2;
  combiner__tensor t;
  combiner__problem *p = &hdr->p;
  const combiner__kind_ops *kind;
  combiner__scratch sc;
  combiner_status st;
  size_t rows[COMBINER__CPARTS], width[COMBINER__CPARTS], esize[COMBINER__CPARTS], off, cells;
  int i, max_len;
  if (!cfg || !opt || opt->max_len < 1 || cfg->seq_len < 0 || cfg->block < 0 || opt->rollback < 0 ||
      !opt->k != !opt->v)
    return COMBINER_ERR_INVALID_ARGUMENT;
  max_len = opt->max_len;
  memset(hdr, 0, sizeof *hdr);
  c2 = *cfg;
  /* The model's block, from its context length, never from the capacity:
   * the same tokens give the same outputs in a cache of any max_len. */
  c2.block = combiner__model_block(cfg);
  c2.seq_len = max_len;
  memset(&c2.q_layout, 0, sizeof c2.q_layout);
  memset(&c2.k_layout, 0, sizeof c2.k_layout);
  memset(&c2.v_layout, 0, sizeof c2.v_layout);
  memset(&c2.out_layout, 0, sizeof c2.out_layout);
  if ((st = combiner__resolve(&c2, p)) != COMBINER_OK && st != COMBINER_ERR_UNSUPPORTED) return st;
  if (!p->causal) return COMBINER_ERR_INVALID_ARGUMENT;
  /* the caller's layouts, for one token (their strides do not depend on T) */
  if ((st = combiner__resolve_tensor(&cfg->q_layout, 1, p->H, p->d, &t)) != COMBINER_OK) return st;
  c2.q_layout.token_stride = t.ts; c2.q_layout.head_stride = t.hs;
  if ((st = combiner__resolve_tensor(&cfg->k_layout, 1, p->Hkv, p->d, &t)) != COMBINER_OK) return st;
  c2.k_layout.token_stride = t.ts; c2.k_layout.head_stride = t.hs;
  if ((st = combiner__resolve_tensor(&cfg->v_layout, 1, p->Hkv, p->dv, &t)) != COMBINER_OK) return st;
  c2.v_layout.token_stride = t.ts; c2.v_layout.head_stride = t.hs;
  if ((st = combiner__resolve_tensor(&cfg->out_layout, 1, p->H, p->dv, &t)) != COMBINER_OK) return st;
  c2.out_layout.token_stride = t.ts; c2.out_layout.head_stride = t.hs;
  hdr->borrowed = opt->k != NULL;
  if (hdr->borrowed) {   /* the engine's K and V, for the whole capacity */
    if ((st = combiner__resolve_tensor(&cfg->k_layout, max_len, p->Hkv, p->d, &p->k)) != COMBINER_OK) return st;
    if ((st = combiner__resolve_tensor(&cfg->v_layout, max_len, p->Hkv, p->dv, &p->v)) != COMBINER_OK) return st;
    p->k.type = (int)cfg->k_type;
    p->v.type = (int)cfg->v_type;
    hdr->bk = opt->k; hdr->bv = opt->v;
    hdr->bk_extent = combiner__tfloats(&p->k); hdr->bv_extent = combiner__tfloats(&p->v);
  }
  if (!combiner__kind_compiled(p->kind)) return COMBINER_ERR_UNSUPPORTED;
  if (!c2.block && combiner__kind_has_blocks(p->kind)) return COMBINER_ERR_NO_BLOCK;
  kind = combiner__ops(p->kind);
  c2.kind = (combiner_kind)p->kind;
  c2.value_dim = p->dv;
  c2.num_kv_heads = p->Hkv;
  c2.block = p->m;
  c2.scale = p->scale;
  c2.num_threads = p->threads;
  hdr->cfg = c2;
  hdr->max_len = max_len;
  hdr->batch = max_len;
  hdr->fast_chunks = opt->fast_chunks && kind->tile_unit;
  /* entries per head: Axial and Mixture index cells column-major, u*n + t */
  cells = (size_t)combiner__cols(p) * (size_t)p->n;       /* <= 2*max_len */
  hdr->section = kind->cache_by_cell ? cells : p->count;
  p->count = hdr->section * (size_t)kind->cache_sections;
  for (i = 0; i < COMBINER__CPARTS; ++i) rows[i] = 0;
  rows[COMBINER__CQ] = kind->cache_queries ? (size_t)max_len * (size_t)p->H : 0;
  if (hdr->borrowed) {
    /* the rollback window, and the queries the triggers of a run read: a
     * block (m) before the run in block-aligned rings, which hold the run */
    const int span = opt->rollback < max_len ? opt->rollback : max_len;
    hdr->rollback = span;
    if (kind->cache_ring == 1) {
      ptrdiff_t blocks = (ptrdiff_t)span / p->m + 2;
      if (hdr->fast_chunks && (blocks - 1) * p->m < COMBINER__FAST_RUN)   /* runs long enough for the tiles */
        blocks = (COMBINER__FAST_RUN + p->m - 1) / p->m + 1;
      p->qring = blocks * p->m;
      hdr->batch = (int)(p->qring - p->m);
    } else if (kind->cache_ring == 2) {
      p->qring = (ptrdiff_t)span + (ptrdiff_t)COMBINER__BQ * 4;
      hdr->batch = COMBINER__BQ * 4;
    }
    if (p->qring >= max_len) {   /* everything fits: no ring */
      p->qring = 0;
      hdr->batch = max_len;
    }
    if (p->qring) rows[COMBINER__CQ] = (size_t)p->qring * (size_t)p->H;
    if (kind->cache_tracks) hdr->tracks = kind->cache_tracks(p);
    rows[COMBINER__CTRACK] = (size_t)hdr->tracks * (size_t)p->H;
    if (hdr->tracks && span > 0) {   /* snapshots of the pools every `snap` positions, the window's worth */
      hdr->snap = kind->cache_ring == 1 ? p->m : COMBINER__BQ;
      hdr->snaps = span / hdr->snap + 2;
      rows[COMBINER__CSNAP] = (size_t)hdr->snaps * rows[COMBINER__CTRACK];
    }
    if (kind->cache_window) {
      p->count = kind->cache_window(p, span, hdr->level_off, hdr->level_keep);
      hdr->section = p->count;
    }
  } else {
    rows[COMBINER__CK] = rows[COMBINER__CV] = (size_t)max_len * (size_t)p->Hkv;
    rows[COMBINER__CQC] = kind->cache_columns ? cells * (size_t)p->H : 0;
    rows[COMBINER__CKC] = rows[COMBINER__CVC] = kind->cache_columns ? cells * (size_t)p->Hkv : 0;
  }
  if (kind->cache_range) {   /* partial states of a run's positions */
    hdr->ranges = (max_len - 1) / kind->cache_split + 1;
    if (hdr->batch > COMBINER__RANGE_BATCH) hdr->batch = COMBINER__RANGE_BATCH;
    rows[COMBINER__CPART] = (size_t)hdr->batch * (size_t)p->H * (size_t)hdr->ranges;
  }
  rows[COMBINER__CKEYS] = rows[COMBINER__CVALS] = p->count;
  width[COMBINER__CQ] = width[COMBINER__CK] = width[COMBINER__CQC] = width[COMBINER__CKC] = (size_t)p->d;
  width[COMBINER__CV] = width[COMBINER__CVC] = (size_t)p->dv;
  width[COMBINER__CKEYS] = (size_t)p->H * (size_t)p->d;
  width[COMBINER__CVALS] = (size_t)p->H * (size_t)p->dv;
  width[COMBINER__CTRACK] = width[COMBINER__CSNAP] = (size_t)p->d;
  width[COMBINER__CPART] = (size_t)combiner__part_stride(p);
  rows[COMBINER__CSCRATCH] = opt->shared_scratch ? 0 : (size_t)combiner__scratch_threads(p);
  width[COMBINER__CSCRATCH] = combiner__scratch_parts(p, &sc, NULL);
  if (!width[COMBINER__CSCRATCH]) return COMBINER_ERR_OVERFLOW;
  hdr->scratch_stride = width[COMBINER__CSCRATCH] * sizeof(float);
  for (i = 0; i < COMBINER__CPARTS; ++i) esize[i] = sizeof(float);
  esize[COMBINER__CK] = combiner__type_size(p->k.type);   /* an owned cache keeps K and V as given */
  esize[COMBINER__CV] = combiner__type_size(p->v.type);
  off = combiner__round_up(sizeof(combiner_cache), COMBINER__ALIGN);
  for (i = 0; i < COMBINER__CPARTS; ++i) {
    size_t bytes;
    hdr->off[i] = off;
    if (!combiner__mul(rows[i], width[i], &bytes) || !combiner__mul(bytes, esize[i], &bytes) ||
        bytes > (size_t)PTRDIFF_MAX || !combiner__add(off, combiner__round_up(bytes, COMBINER__ALIGN), &off) ||
        off > (size_t)PTRDIFF_MAX - COMBINER__ALIGN)
      return COMBINER_ERR_OVERFLOW;
  }
  hdr->bytes = off;
  /* the stored arrays as the kernels see them: head-major (a head's blocks
   * contiguous), but K/V token-major for cache_range kinds (DENSE reads
   * every kv head of a position at once) */
  p->q.ts = p->d;  p->q.hs = (p->qring ? p->qring : (ptrdiff_t)max_len) * p->d;
  if (!hdr->borrowed && kind->cache_range) {
    p->k.ts = (ptrdiff_t)p->Hkv * p->d;  p->k.hs = p->d;
    p->v.ts = (ptrdiff_t)p->Hkv * p->dv; p->v.hs = p->dv;
  } else if (!hdr->borrowed) {
    p->k.ts = p->d;  p->k.hs = (ptrdiff_t)max_len * p->d;
    p->v.ts = p->dv; p->v.hs = (ptrdiff_t)max_len * p->dv;
  }
  p->slots = 0;
  hdr->magic = COMBINER__CACHE_MAGIC;
  return COMBINER_OK;
}

static int combiner__cache_ok(const combiner_cache *cache) {
  return cache && cache->magic == COMBINER__CACHE_MAGIC && cache->max_len >= 1 &&
         cache->length >= 0 && cache->length <= cache->max_len;
}

/* Fast chunks: the outputs of the run [first, first + count) by the kind's
 * prefill unit over the queries [first, first + count) (its triggers have
 * run), on the cache's K/V and abstractions; out, q: the run's first token. */
static void combiner__cache_tile_unit(const combiner__cache_job *jb, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__kind_ops *k = combiner__ops(jb->c.p->kind);
  COMBINER_ASSERT(jb->tiles != NULL && k->tile_unit != NULL);   /* set by combiner__cache_tiles */
  k->tile_unit(jb->tiles, unit, sc);
}

/* The run's triggers (per head), then (all of them done) its outputs by the
 * kind's tile_unit, in one thread team: a run of a borrowed cache's ring
 * can be a block short, and teams cost microseconds each. */
static void combiner__cache_tiles(const combiner_cache *cache, const combiner__cache_job *jb, float *out,
                                  unsigned char *scratch, int threads) {
  const combiner__kind_ops *k = combiner__ops(cache->p.kind);
  combiner__problem p = cache->p;
  combiner__ctx c = jb->c;
  combiner__cache_job j2 = *jb;
  ptrdiff_t units;
  double work;
  p.o = jb->o;
  p.o.org = jb->first;
  p.threads = threads;
  if (!k->cache_queries) {   /* the caller's queries (DENSE keeps none) */
    p.q = jb->tq;
    p.q.org = jb->first;
    p.qring = 0;
    c.q = jb->q;
  }
  c.p = &p;
  c.out = out;
  c.qbegin = jb->first;
  c.qend = jb->first + jb->count;
  c.scratch = scratch;
  c.scratch_stride = cache->scratch_stride;
  COMBINER_ASSERT(k->tile_unit != NULL && k->tile_units != NULL);   /* fast_chunks only for kinds that have one */
  units = k->tile_units(&p, c.qbegin, c.qend);
  work = (double)jb->count * p.H * combiner__kind_terms(&p, (double)jb->first + (double)jb->count) * ((double)p.d + p.dv);
  j2.out = NULL;   /* the triggers only */
  j2.tiles = &c;
  if ((k->cache_trigger || jb->tracks) && p.H > 1) {
    combiner__cache_team(&j2, scratch, cache->scratch_stride, threads, work, combiner__cache_unit, p.H,
                         combiner__cache_tile_unit, units);
  } else {   /* one head: its triggers alone, then the tiles on every thread */
    if (k->cache_trigger || jb->tracks)
      combiner__cache_team(&j2, scratch, cache->scratch_stride, threads, work, combiner__cache_unit, p.H,
                           combiner__cache_tile_unit, 0);
    combiner__cache_team(&j2, scratch, cache->scratch_stride, threads, work, combiner__cache_tile_unit, units,
                         combiner__cache_tile_unit, 0);
  }
}

/* Stores the rows of the run's token i (at position first + i): K, V as
 * given (owned), Mixture's column copies, the query (ring slot). */
static void combiner__cache_store(combiner_cache *cache, const combiner__cache_job *jb, ptrdiff_t first, ptrdiff_t i,
    const float *q, const combiner__tensor *tq, const void *k, const combiner__tensor *tk, const void *v,
    const combiner__tensor *tv) {
  const combiner__problem *p = &cache->p;
  const combiner__kind_ops *kind = combiner__ops(p->kind);
  float *cq = combiner__cache_floats(cache, cache->off[COMBINER__CQ]);
  unsigned char *ck = (unsigned char *)(void *)combiner__cache_floats(cache, cache->off[COMBINER__CK]);
  unsigned char *cv = (unsigned char *)(void *)combiner__cache_floats(cache, cache->off[COMBINER__CV]);
  int h;
  const ptrdiff_t at = first + i, u = at % p->m, r = at / p->m, slot = p->qring ? at % p->qring : at;
  if (!cache->borrowed)
    for (h = 0; h < p->Hkv; ++h) {   /* as given; Mixture's column copies as float32 */
      const void *kr = combiner__elem(k, tk, i, h), *vr = combiner__elem(v, tv, i, h);
      memcpy(ck + (at * p->k.ts + (ptrdiff_t)h * p->k.hs) * (ptrdiff_t)combiner__type_size(p->k.type), kr,
             (size_t)p->d * combiner__type_size(p->k.type));
      memcpy(cv + (at * p->v.ts + (ptrdiff_t)h * p->v.hs) * (ptrdiff_t)combiner__type_size(p->v.type), vr,
             (size_t)p->dv * combiner__type_size(p->v.type));
      if (jb->kc) {
        combiner__row_copy(combiner__colrow(jb, jb->kc, h, u, r, p->d), kr, p->k.type, p->d);
        combiner__row_copy(combiner__colrow(jb, jb->vc, h, u, r, p->dv), vr, p->v.type, p->dv);
      }
    }
  if (kind->cache_queries)   /* the summaries pool queries (DENSE reads them in place) */
    for (h = 0; h < p->H; ++h) {
      const float *qr = q + i * tq->ts + (ptrdiff_t)h * tq->hs;
      memcpy(cq + slot * p->q.ts + (ptrdiff_t)h * p->q.hs, qr, (size_t)p->d * sizeof(float));
      if (jb->qc) memcpy(combiner__colrow(jb, jb->qc, h, u, r, p->d), qr, (size_t)p->d * sizeof(float));
    }
}

/* Appends the run [first, first + count) (count <= batch): the rows are
 * stored, the units run. q, k, v, out: the run's first token. */
static void combiner__cache_run_batch(combiner_cache *cache, int count, const float *q, const combiner__tensor *tq,
    const void *k, const combiner__tensor *tk, const void *v, const combiner__tensor *tv, float *out,
    const combiner__tensor *to, unsigned char *scratch, int threads, int fast) {
  const combiner__problem *p = &cache->p;
  const combiner__kind_ops *kind = combiner__ops(p->kind);
  const ptrdiff_t first = cache->length;
  combiner__cache_job jb;
  ptrdiff_t i;
  combiner__cache_job_of(cache, &jb);
#ifdef COMBINER__OPENMP
  if (threads > 1 && count >= 256) {   /* a long chunk's copies on every thread (they write disjoint rows) */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (i = 0; i < count; ++i) combiner__cache_store(cache, &jb, first, i, q, tq, k, tk, v, tv);
  } else
#endif
  {
    for (i = 0; i < count; ++i) combiner__cache_store(cache, &jb, first, i, q, tq, k, tk, v, tv);
  }
  jb.first = first;
  jb.count = count;
  jb.triggered = cache->triggered;
  jb.out = out;
  jb.o = *to;
  jb.q = q;
  jb.tq = *tq;
  if (fast)   /* the triggers, then the outputs by the prefill kernels */
    combiner__cache_tiles(cache, &jb, out, scratch, threads);
  else if (kind->cache_trigger || jb.tracks || out)
    combiner__cache_run(&jb, scratch, cache->scratch_stride, threads);
  cache->length += count;
  cache->triggered = cache->length;
  if (cache->length > cache->reach) cache->reach = cache->length;
}

/* ------------------------------------------------------------------------ */
/* >>ranges: one range of a sequence (sequence parallelism, SPEC 7)        */
/* ------------------------------------------------------------------------ */

/* A region with a block-style abstraction (FIXED's blocks, LOGSPARSE's
 * aligned blocks): positions [lo, hi), read by the queries in [r0, r1) and
 * [r2, r3); block B of level l (FIXED: 0) of section s. */
typedef struct combiner__reg {
  ptrdiff_t lo, hi, r0, r1, r2, r3, B;
  int s, l;
} combiner__reg;

static void combiner__range_reg(const combiner__problem *p, int s, int l, ptrdiff_t B, combiner__reg *g) {
  const ptrdiff_t L = p->L, w = (ptrdiff_t)1 << l;
  g->s = s; g->l = l; g->B = B;
  g->r2 = 0; g->r3 = 0;
  if (p->kind == COMBINER_FIXED) {             /* read by every later (bidirectional: other) block */
    g->lo = B * p->m;
    g->hi = g->lo + p->m < L ? g->lo + p->m : L;
    g->r0 = g->hi; g->r1 = L;
    if (!p->causal) g->r3 = g->lo;
    return;
  }
  if (s == 0) {                                /* read by the next block, when B is even */
    g->lo = B * w; g->hi = g->lo + w;
    g->r0 = g->hi; g->r1 = g->hi + w < L ? g->hi + w : L;
  } else {                                     /* end aligned: the block before it */
    g->hi = L - B * w; g->lo = g->hi - w;
    g->r1 = g->lo; g->r0 = g->lo - w > 0 ? g->lo - w : 0;
  }
  if (B & 1) g->r1 = g->r0;
}

static int combiner__meets(ptrdiff_t a0, ptrdiff_t a1, ptrdiff_t b0, ptrdiff_t b1) {
  return a0 < a1 && b0 < b1 && a0 < b1 && b0 < a1;
}
static int combiner__reg_live(const combiner__reg *g) { return g->r0 < g->r1 || g->r2 < g->r3; }
static int combiner__reg_read_in(const combiner__reg *g, ptrdiff_t b, ptrdiff_t e) {
  return combiner__meets(g->r0, g->r1, b, e) || combiner__meets(g->r2, g->r3, b, e);
}
static int combiner__reg_read_only_in(const combiner__reg *g, ptrdiff_t b, ptrdiff_t e) {
  return (g->r0 >= g->r1 || (b <= g->r0 && g->r1 <= e)) && (g->r2 >= g->r3 || (b <= g->r2 && g->r3 <= e));
}
static int combiner__reg_within(const combiner__reg *g, ptrdiff_t b, ptrdiff_t e) { return b <= g->lo && g->hi <= e; }

/* Sections and levels of the regions: FIXED one section, level 0 only;
 * LOGSPARSE levels 1 .. floor(log2 L), two sections when bidirectional. */
static int combiner__range_sections(const combiner__problem *p) {
  return p->kind == COMBINER_LOGSPARSE && !p->causal ? 2 : 1;
}
static int combiner__range_levels(const combiner__problem *p, int *first) {
  int l = 0;
  *first = p->kind == COMBINER_FIXED ? 0 : 1;
  if (p->kind == COMBINER_FIXED) return 0;
  while (((ptrdiff_t)2 << l) <= (ptrdiff_t)p->L) ++l;
  return l;
}
static ptrdiff_t combiner__range_blocks(const combiner__problem *p, int l) {
  return p->kind == COMBINER_FIXED ? (ptrdiff_t)p->n : (ptrdiff_t)p->L >> l;
}

/* Blocks [*B0, *B1) of (s, l) that meet positions [b, e); read: those that
 * queries in [b, e) read instead (FIXED: every block). */
static void combiner__range_span(const combiner__problem *p, int s, int l, ptrdiff_t b, ptrdiff_t e, int read,
                                 ptrdiff_t *B0, ptrdiff_t *B1) {
  const ptrdiff_t nb = combiner__range_blocks(p, l), L = p->L;
  if (p->kind == COMBINER_FIXED) {
    *B0 = read ? 0 : b / p->m;
    *B1 = read ? nb : (e - 1) / p->m + 1;
  } else {
    *B0 = (s == 0 ? b : L - e) >> l;
    *B1 = ((s == 0 ? e - 1 : L - 1 - b) >> l) + 1;
    if (read) { *B0 -= 1; *B1 -= 1; }          /* query p reads block (p >> l) - 1 */
  }
  if (*B0 < 0) *B0 = 0;
  if (*B1 > nb) *B1 = nb;
  if (*B0 > *B1) *B0 = *B1;
}

/* The regions range [b, e) publishes, in the order every rank derives:
 * round 1, the live regions it shares with another range (partial query
 * pools); round 2, those and the ones within it that another range reads
 * (partial states). Calls fn (if any) with each and its index; returns the
 * count. */
typedef void (*combiner__reg_fn)(void *arg, const combiner__reg *g, size_t index);

static size_t combiner__range_walk(const combiner__problem *p, ptrdiff_t b, ptrdiff_t e, int round,
                                   combiner__reg_fn fn, void *arg) {
  size_t count = 0;
  int s, l, l0;
  const int l1 = combiner__range_levels(p, &l0);
  for (s = 0; s < combiner__range_sections(p); ++s)
    for (l = l0; l <= l1; ++l) {
      ptrdiff_t B0, B1, B;
      combiner__range_span(p, s, l, b, e, 0, &B0, &B1);
      for (B = B0; B < B1; ++B) {
        combiner__reg g;
        combiner__range_reg(p, s, l, B, &g);
        if (!combiner__reg_live(&g) ||
            (combiner__reg_within(&g, b, e) && (round == 1 || combiner__reg_read_only_in(&g, b, e))))
          continue;
        if (fn) fn(arg, &g, count);
        ++count;
      }
    }
  return count;
}

/* A rank's part: the whole sequence's problem with this range's tensors
 * (rows from b for q and out, from kb for k and v), its slots, its
 * messages' entry counts and its workspace. */
typedef struct combiner__rplan {
  combiner__problem p;
  ptrdiff_t b, e, kb, ke;
  size_t pools, states;       /* entries of its round-1 and round-2 messages */
  size_t received;            /* slots assembled from other ranks' states */
  combiner__rmap map;
  const int *bounds;
  int nranks;
  size_t ws_keys, ws_vals, ws_merge, ws_flags, ws_regs, ws_qpool, ws_scratch, ws_stride, ws_total;
} combiner__rplan;

static size_t combiner__state_width(const combiner__problem *p) { return (size_t)p->d + (size_t)p->dv + 2; }

static void combiner__rmap_of(const combiner__problem *p, ptrdiff_t b, ptrdiff_t e, combiner__rmap *map) {
  int s, l, l0;
  const int l1 = combiner__range_levels(p, &l0);
  memset(map, 0, sizeof *map);
  for (s = 0; s < combiner__range_sections(p); ++s)
    for (l = l0; l <= l1; ++l) {
      ptrdiff_t B0, B1;
      combiner__range_span(p, s, l, b, e, 1, &B0, &B1);
      map->lo[s][l] = B0;
      map->n[s][l] = B1 - B0;
      map->off[s][l] = map->slots;
      map->slots += B1 - B0;
    }
}

/* Adds `bytes` (64-byte aligned) at *at; 0 on overflow. */
static int combiner__ws_take(size_t *at, size_t *total, size_t floats, size_t unit) {
  size_t bytes;
  if (!combiner__mul(floats, unit, &bytes)) return 0;
  *at = *total;
  bytes = combiner__round_up(bytes, COMBINER__ALIGN);
  return combiner__add(*total, bytes, total);
}

static combiner_status combiner__range_resolve(const combiner_config *cfg, int nranks, const int *bounds, int rank,
                                               combiner__rplan *r) {
  combiner_config whole;
  combiner__problem *p = &r->p;
  combiner__scratch sc;
  combiner_status st;
  size_t slots_h, n, sb;
  int i, s, l, l0, l1;
  if (!cfg) return COMBINER_ERR_INVALID_ARGUMENT;
  whole = *cfg;                     /* the layouts count this range's rows: checked below */
  memset(&whole.q_layout, 0, sizeof whole.q_layout);
  memset(&whole.k_layout, 0, sizeof whole.k_layout);
  memset(&whole.v_layout, 0, sizeof whole.v_layout);
  memset(&whole.out_layout, 0, sizeof whole.out_layout);
  memset(r, 0, sizeof *r);
  if ((st = combiner__resolve(&whole, p)) != COMBINER_OK) return st;
  if (p->kind != COMBINER_FIXED && p->kind != COMBINER_LOGSPARSE) return COMBINER_ERR_UNSUPPORTED;
  if (nranks < 1 || !bounds || rank < 0 || rank >= nranks || bounds[0] != 0 || bounds[nranks] != p->L)
    return COMBINER_ERR_INVALID_ARGUMENT;
  for (i = 0; i < nranks; ++i)
    if (bounds[i + 1] <= bounds[i]) return COMBINER_ERR_INVALID_ARGUMENT;
  r->bounds = bounds;
  r->nranks = nranks;
  r->b = bounds[rank];
  r->e = bounds[rank + 1];
  if (p->kind == COMBINER_FIXED) {  /* the direct terms: own block (causal: up to the query) */
    r->kb = r->b / p->m * p->m;
    r->ke = p->causal ? r->e : ((r->e - 1) / p->m + 1) * p->m;
    if (r->ke > p->L) r->ke = p->L;
  } else {                          /* p - 1 for odd p; bidirectional p + 1 when L - 1 - p is odd */
    r->kb = r->b - (r->b & 1);
    r->ke = r->e + (!p->causal && r->e < p->L && ((p->L - r->e) & 1) ? 1 : 0);
  }
  if ((st = combiner__resolve_tensor(&cfg->q_layout, (int)(r->e - r->b), p->H, p->d, &p->q)) != COMBINER_OK ||
      (st = combiner__resolve_tensor(&cfg->k_layout, (int)(r->ke - r->kb), p->Hkv, p->d, &p->k)) != COMBINER_OK ||
      (st = combiner__resolve_tensor(&cfg->v_layout, (int)(r->ke - r->kb), p->Hkv, p->dv, &p->v)) != COMBINER_OK ||
      (st = combiner__resolve_tensor(&cfg->out_layout, (int)(r->e - r->b), p->H, p->dv, &p->o)) != COMBINER_OK)
    return st;
  p->q.org = r->b; p->o.org = r->b;
  p->k.org = r->kb; p->v.org = r->kb;
  p->k.type = (int)cfg->k_type;
  p->v.type = (int)cfg->v_type;
  r->pools = combiner__range_walk(p, r->b, r->e, 1, NULL, NULL);
  r->states = combiner__range_walk(p, r->b, r->e, 2, NULL, NULL);
  combiner__rmap_of(p, r->b, r->e, &r->map);
  p->count = (size_t)r->map.slots;            /* the slots are this range's summaries */
  l1 = combiner__range_levels(p, &l0);
  for (s = 0; s < combiner__range_sections(p); ++s)
    for (l = l0; l <= l1; ++l) {
      ptrdiff_t B;
      for (B = r->map.lo[s][l]; B < r->map.lo[s][l] + r->map.n[s][l]; ++B) {
        combiner__reg g;
        combiner__range_reg(p, s, l, B, &g);
        if (combiner__reg_read_in(&g, r->b, r->e) && !combiner__reg_within(&g, r->b, r->e)) ++r->received;
      }
    }
  /* workspace: slots' keys and values, their merge state (max, sum) and
   * flags, this rank's round-1 regions and their merged query pools, scratch */
  sb = combiner__scratch_parts(p, &sc, NULL);
  if (!combiner__mul((size_t)r->map.slots, (size_t)p->H, &slots_h) ||
      !combiner__mul((size_t)p->H, (size_t)p->d, &n) || !combiner__mul(n, r->pools, &n) ||
      !combiner__ws_take(&r->ws_keys, &r->ws_total, slots_h, (size_t)p->d * sizeof(float)) ||
      !combiner__ws_take(&r->ws_vals, &r->ws_total, slots_h, (size_t)p->dv * sizeof(float)) ||
      !combiner__ws_take(&r->ws_merge, &r->ws_total, slots_h, 2 * sizeof(float)) ||
      !combiner__ws_take(&r->ws_flags, &r->ws_total, (size_t)r->map.slots + r->pools, 1) ||
      !combiner__ws_take(&r->ws_regs, &r->ws_total, r->pools + r->states, sizeof(combiner__reg)) ||
      !combiner__ws_take(&r->ws_qpool, &r->ws_total, n, sizeof(float)) ||
      !sb || !combiner__mul(sb, sizeof(float), &r->ws_stride) ||
      !combiner__ws_take(&r->ws_scratch, &r->ws_total, (size_t)combiner__scratch_threads(p), r->ws_stride) ||
      !combiner__add(r->ws_total, COMBINER__ALIGN, &r->ws_total) || r->ws_total > (size_t)PTRDIFF_MAX ||
      !combiner__mul(r->states, (size_t)p->H * combiner__state_width(p), &n) ||
      !combiner__mul(r->pools, (size_t)p->H * (size_t)p->d, &n))
    return COMBINER_ERR_OVERFLOW;
  return COMBINER_OK;
}

/* The job of a range call, reached from its units through the context. */
typedef struct combiner__rjob {
  const combiner__rplan *r;
  const combiner__reg *mine;  /* this rank's round-1 regions */
  const combiner__reg *regs;  /* its round-2 regions */
  const float *qpool;         /* the merged query pools of its round-1 regions */
  float *message;             /* its round-2 message */
} combiner__rjob;

/* Round 1: the partial query pools (unread: sums for mean) over this
 * range's part of each region, per head. */
typedef struct combiner__rpools {
  const combiner__ctx *c;
  float *message;
} combiner__rpools;

static void combiner__rpools_fn(void *arg, const combiner__reg *g, size_t index) {
  const combiner__rpools *a = (const combiner__rpools *)arg;
  const combiner__ctx *c = a->c;
  const combiner__problem *p = c->p;
  const ptrdiff_t lo = g->lo > p->q.org ? g->lo : p->q.org, hi = g->hi < c->qend ? g->hi : c->qend;
  ptrdiff_t i;
  int h;
  for (h = 0; h < p->H; ++h) {
    float *acc = a->message + (index * (size_t)p->H + (size_t)h) * (size_t)p->d;
    combiner__pool_start(acc, combiner__q(c, lo, h), p->d);
    for (i = lo + 1; i < hi; ++i) combiner__pool_add(acc, combiner__q(c, i, h), p->d, p->pool);
  }
}

/* Round 2, collecting: this rank's round-1 regions (to match others'
 * partial pools against) and its round-2 regions (the units). */
static void combiner__rcollect_fn(void *arg, const combiner__reg *g, size_t index) {
  ((combiner__reg *)arg)[index] = *g;
}

typedef struct combiner__rqmerge {
  const combiner__rplan *r;
  const combiner__reg *mine;  /* this rank's round-1 regions */
  const float *message;       /* the other rank's round-1 message */
  float *qpool;
  unsigned char *seen;
} combiner__rqmerge;

static ptrdiff_t combiner__reg_find(const combiner__reg *list, size_t n, const combiner__reg *g) {
  size_t i;
  for (i = 0; i < n; ++i)
    if (list[i].s == g->s && list[i].l == g->l && list[i].B == g->B) return (ptrdiff_t)i;
  return -1;
}

static void combiner__rqmerge_fn(void *arg, const combiner__reg *g, size_t index) {
  const combiner__rqmerge *a = (const combiner__rqmerge *)arg;
  const combiner__problem *p = &a->r->p;
  const ptrdiff_t j = combiner__reg_find(a->mine, a->r->pools, g);
  size_t hd = (size_t)p->H * (size_t)p->d;
  if (j < 0) return;
  if (!a->seen[j]) memcpy(a->qpool + (size_t)j * hd, a->message + index * hd, hd * sizeof(float));
  else {
    int h;
    for (h = 0; h < p->H; ++h)
      combiner__pool_add(a->qpool + (size_t)j * hd + (size_t)h * p->d, a->message + index * hd + (size_t)h * p->d,
                         p->d, p->pool);
  }
  a->seen[j] = 1;
}

/* Unit (published region i, head h): pooled key over this range's part of
 * the region (unread), the region's pooled query (its own rows when the
 * region lies within the range, else the merged round-1 pools) against
 * this part's keys: max, sum, weighted values. */
static void combiner__rstate_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__rjob *jb = c->rjob;
  const combiner__rplan *r = jb->r;
  const combiner__problem *p = c->p;
  const int h = (int)(unit % p->H), g = h / p->group;
  const combiner__reg *rg = &jb->regs[unit / p->H];
  const ptrdiff_t lo = rg->lo > r->b ? rg->lo : r->b, hi = rg->hi < r->e ? rg->hi : r->e;
  float *out = jb->message + ((size_t)(unit / p->H) * (size_t)p->H + (size_t)h) * combiner__state_width(p);
  float *qp = sc->qbuf + p->d;
  combiner__seq ks = combiner__keys(c, g, lo, 1, (int)(hi - lo)), vs = combiner__values(c, g, lo, 1, (int)(hi - lo));
  combiner__single_state st;
  ptrdiff_t i;
  if (combiner__reg_within(rg, r->b, r->e)) {
    combiner__pool_rows(qp, combiner__q(c, rg->lo, h), p->q.ts, (int)(rg->hi - rg->lo), p->d, p->pool);
  } else {
    const size_t hd = (size_t)p->H * (size_t)p->d;
    const ptrdiff_t j = combiner__reg_find(jb->mine, r->pools, rg);
    COMBINER_ASSERT(j >= 0);
    combiner__pool_read(qp, jb->qpool + (size_t)j * hd + (size_t)h * p->d, p->d, p->pool, (int)(rg->hi - rg->lo));
  }
  combiner__pool_start(out, combiner__krow(c, lo, g, sc->kpack), p->d);
  for (i = lo + 1; i < hi; ++i) combiner__pool_add(out, combiner__krow(c, i, g, sc->kpack), p->d, p->pool);
  combiner__scale_row(qp, p->scale, p->d);
  combiner__single_state_begin(&st, out + p->d, NULL, p->dv, p->d);
  combiner__single_query_attend(p, qp, &ks, &vs, &st, sc);
  out[p->d + p->dv] = st.mx;
  out[p->d + p->dv + 1] = st.sum;
}

/* Combine, merging: another rank's published partial states into the
 * slots this range reads (in rank order). */
typedef struct combiner__rsmerge {
  const combiner__rplan *r;
  const float *message;
  float *keys, *vals, *merge;
  unsigned char *seen;
} combiner__rsmerge;

static void combiner__rsmerge_fn(void *arg, const combiner__reg *g, size_t index) {
  const combiner__rsmerge *a = (const combiner__rsmerge *)arg;
  const combiner__rplan *r = a->r;
  const combiner__problem *p = &r->p;
  const size_t w = combiner__state_width(p);
  ptrdiff_t slot;
  int h;
  if (!combiner__reg_read_in(g, r->b, r->e) || combiner__reg_within(g, r->b, r->e)) return;
  slot = r->map.off[g->s][g->l] + g->B - r->map.lo[g->s][g->l];
  for (h = 0; h < p->H; ++h) {   /* [pooled key d][weighted values dv][max][sum] */
    const float *src = a->message + (index * (size_t)p->H + (size_t)h) * w;
    const size_t at = (size_t)h * (size_t)r->map.slots + (size_t)slot;
    float *key = a->keys + at * (size_t)p->d, *acc = a->vals + at * (size_t)p->dv, *ms = a->merge + 2 * at;
    if (!a->seen[slot]) {
      memcpy(key, src, (size_t)p->d * sizeof(float));
      memcpy(acc, src + p->d, (size_t)p->dv * sizeof(float));
      ms[0] = src[p->d + p->dv];
      ms[1] = src[p->d + p->dv + 1];
    } else {
      combiner__pool_add(key, src, p->d, p->pool);
      combiner__merge_state(&ms[0], &ms[1], acc, src[p->d + p->dv], src[p->d + p->dv + 1], src + p->d, p->dv);
    }
  }
  a->seen[slot] = 1;
}

/* Combine, unit (section s, level l, head h): the abstractions of the
 * regions this range reads that lie within it, as the one call computes
 * them. */
static void combiner__rlocal_unit(const combiner__ctx *c, ptrdiff_t unit, const combiner__scratch *sc) {
  const combiner__rplan *r = c->rjob->r;
  const combiner__problem *p = c->p;
  int l0, levels = combiner__range_levels(p, &l0) - l0 + 1;
  const int h = (int)(unit % p->H), l = l0 + (int)(unit / p->H % levels), s = (int)(unit / p->H / levels);
  ptrdiff_t B;
  for (B = r->map.lo[s][l]; B < r->map.lo[s][l] + r->map.n[s][l]; ++B) {
    const ptrdiff_t slot = r->map.off[s][l] + B - r->map.lo[s][l];
    combiner__reg g;
    combiner__range_reg(p, s, l, B, &g);
    if (combiner__reg_within(&g, r->b, r->e) && combiner__reg_read_in(&g, r->b, r->e))
      combiner__block_summary(c, sc, h, g.lo, (int)(g.hi - g.lo), combiner__wkey(c, h, slot), combiner__wval(c, h, slot));
  }
}


/* Every rank's message offsets: sizes in floats of rank i's round `round`. */
static size_t combiner__range_message(const combiner__rplan *r, int rank, int round) {
  const combiner__problem *p = &r->p;
  size_t n = combiner__range_walk(p, r->bounds[rank], r->bounds[rank + 1], round, NULL, NULL);
  return n * (size_t)p->H * (round == 1 ? (size_t)p->d : combiner__state_width(p));
}

/* ------------------------------------------------------------------------ */
/* >>introspection: support map and effective matrix                       */
/* ------------------------------------------------------------------------ */

/* Region of position j for query i (see combiner_support_map): an
 * evaluation of SPEC's partitions, independent of the kernels. */
static int combiner__support(const combiner__problem *p, int plan, ptrdiff_t i, ptrdiff_t j) {
  if (p->causal && j > i) return -1;
  const combiner__kind_ops *k = combiner__ops(p->kind);
  COMBINER_ASSERT(k->support != NULL);   /* a kind compiled in */
  return k->support(p, plan, i, j);
}

COMBINER_API combiner_status combiner_support_map(const combiner_config *cfg, int plan, int *map) {
  combiner__problem p;
  combiner_status st;
  ptrdiff_t i, j, L;
  size_t cells;
  if ((st = combiner__resolve(cfg, &p)) != COMBINER_OK) return st;
  L = p.L;
  if (!map || plan < 0 || plan > 1) return COMBINER_ERR_INVALID_ARGUMENT;
  if (!combiner__mul((size_t)L, (size_t)L, &cells) || cells > (size_t)PTRDIFF_MAX / sizeof(int))
    return COMBINER_ERR_OVERFLOW;
  for (i = 0; i < L; ++i)
    for (j = 0; j < L; ++j) map[i * L + j] = combiner__support(&p, plan, i, j);
  return COMBINER_OK;
}

COMBINER_API combiner_status combiner_attention_matrix(const combiner_config *cfg,
    const float *q, const void *k, float *matrix) {
  combiner__problem p;
  combiner_config c2;
  combiner_status st;
  size_t cells, vf, mf;
  float *eye;
  ptrdiff_t j;
  int g;
  if ((st = combiner__resolve(cfg, &p)) != COMBINER_OK) return st;
  if (!q || !k || !matrix) return COMBINER_ERR_INVALID_ARGUMENT;
  if (!combiner__mul((size_t)p.L, (size_t)p.L, &cells) ||
      !combiner__mul(cells, (size_t)p.Hkv, &vf) || !combiner__mul(cells, (size_t)p.H, &mf) ||
      vf > (size_t)PTRDIFF_MAX / sizeof(float) || mf > (size_t)PTRDIFF_MAX / sizeof(float))
    return COMBINER_ERR_OVERFLOW;
  c2 = *cfg;
  c2.value_dim = p.L;                                   /* v_j = e_j for every kv head */
  memset(&c2.v_layout, 0, sizeof c2.v_layout);
  c2.out_layout.token_stride = p.L;                     /* out = matrix [H][L][L] */
  c2.out_layout.head_stride = (ptrdiff_t)cells;
  c2.v_type = COMBINER_F32;
  if (combiner__overlap(matrix, mf, q, p.q.extent) || combiner__overlap(matrix, mf, k, combiner__tfloats(&p.k)))
    return COMBINER_ERR_INVALID_ARGUMENT;
  eye = (float *)COMBINER_MALLOC(vf * sizeof(float) + 1);   /* + 1: never malloc(0) */
  if (!eye) return COMBINER_ERR_OUT_OF_MEMORY;
  memset(eye, 0, vf * sizeof(float));
  for (j = 0; j < p.L; ++j)
    for (g = 0; g < p.Hkv; ++g) eye[(j * p.Hkv + g) * p.L + j] = 1.0f;
  st = combiner_attention(&c2, q, k, eye, matrix, NULL, 0);
  COMBINER_FREE(eye);
  return st;
}

/* ------------------------------------------------------------------------ */
/* >>api: the public functions                                             */
/* ------------------------------------------------------------------------ */

COMBINER_API const char *combiner_status_string(combiner_status s) {
  switch (s) {
    case COMBINER_OK: return "ok";
    case COMBINER_ERR_INVALID_ARGUMENT:
      return "invalid argument: a NULL pointer, a size < 1, an unknown enum value, kv heads not "
             "dividing heads, a non-finite scale, overlapping rows, or out overlapping an input";
    case COMBINER_ERR_WORKSPACE_TOO_SMALL:
      return "workspace too small: pass at least combiner_workspace_size() bytes (or NULL)";
    case COMBINER_ERR_OUT_OF_MEMORY: return "out of memory: the workspace allocation failed";
    case COMBINER_ERR_OVERFLOW: return "overflow: a tensor or workspace byte count does not fit in size_t/ptrdiff_t";
    case COMBINER_ERR_UNSUPPORTED: return "unsupported: this kind was compiled out (COMBINER_NO_*) or has no such call (ranges: FIXED and LOGSPARSE only)";
    case COMBINER_ERR_CACHE_FULL:
      return "cache full: the append would pass the max_len the cache was made for";
    case COMBINER_ERR_NO_BLOCK:
      return "no block: block 0 means ceil(sqrt(seq_len)) of the model's context length; set seq_len "
             "or an explicit block (a buffer's capacity never decides the math)";
    case COMBINER_ERR_ROLLBACK:
      return "rollback: a cache on borrowed K/V goes back at most the rollback it was made with "
             "(combiner_cache_options.rollback)";
    default: return "unknown combiner_status";
  }
}

COMBINER_API const char *combiner_kind_string(combiner_kind k) {
  switch (k) {
    case COMBINER_KIND_DEFAULT: return "default";
    case COMBINER_FIXED: return "fixed";
    case COMBINER_AXIAL: return "axial";
    case COMBINER_MIXTURE: return "mixture";
    case COMBINER_DENSE: return "dense";
    case COMBINER_LOGSPARSE: return "logsparse";
    default: return "unknown";
  }
}

COMBINER_API const char *combiner_kernel_name(void) {
#if defined(COMBINER__AVX512)
  return "AVX-512";
#elif defined(COMBINER__AVX2)
  return "AVX2+FMA";
#elif defined(COMBINER__NEON)
  return "NEON";
#else
  return "portable C";
#endif
}

COMBINER_API combiner_status combiner_resolve_config(const combiner_config *cfg,
                                                     combiner_config *resolved) {
  combiner__problem p;
  combiner_status st;
  if (!resolved) return COMBINER_ERR_INVALID_ARGUMENT;
  if ((st = combiner__resolve(cfg, &p)) != COMBINER_OK) return st;
  *resolved = *cfg;
  resolved->kind = (combiner_kind)p.kind;
  resolved->value_dim = p.dv;
  resolved->num_kv_heads = p.Hkv;
  resolved->block = p.m;
  resolved->scale = p.scale;
  resolved->num_threads = p.threads;
  resolved->q_layout.token_stride = p.q.ts;   resolved->q_layout.head_stride = p.q.hs;
  resolved->k_layout.token_stride = p.k.ts;   resolved->k_layout.head_stride = p.k.hs;
  resolved->v_layout.token_stride = p.v.ts;   resolved->v_layout.head_stride = p.v.hs;
  resolved->out_layout.token_stride = p.o.ts; resolved->out_layout.head_stride = p.o.hs;
  return COMBINER_OK;
}

COMBINER_API size_t combiner_workspace_size(const combiner_config *cfg) {
  combiner__problem p;
  combiner__workspace w;
  if (combiner__resolve(cfg, &p) != COMBINER_OK || combiner__layout(&p, 1, 1, &w) != COMBINER_OK)
    return 0;
  return w.total;
}

COMBINER_API size_t combiner_phase_workspace_size(const combiner_config *cfg) {
  combiner__problem p;
  combiner__workspace w;
  if (combiner__resolve(cfg, &p) != COMBINER_OK || combiner__layout(&p, 0, 1, &w) != COMBINER_OK)
    return 0;
  return w.total;
}

/* Terms (logit + value) that every query attends, and the terms of the
 * summaries, per head (each kind's partition counts them). */
COMBINER_API double combiner_flops(const combiner_config *cfg) {
  combiner__problem p;
  const combiner__kind_ops *kind;
  double per_term, terms = 0.0, summary = 0.0, extra = 0.0;
  int r, u;
  if (combiner__resolve(cfg, &p) != COMBINER_OK) return 0.0;
  kind = combiner__ops(p.kind);
  per_term = 2.0 * ((double)p.d + p.dv);
  for (r = 0; r < p.n; ++r) {
    int len = combiner__row_len(&p, r);
    for (u = 0; u < len; ++u) terms += kind->query_terms(&p, r, u);
  }
  if (kind->summary_terms) summary = kind->summary_terms(&p, &extra);
  return p.H * ((terms + summary) * per_term + extra);
}

COMBINER_API combiner_status combiner_query_summaries(const combiner_config *cfg,
                                                      combiner_summary_info *info) {
  combiner__problem p;
  combiner_status st;
  if (!info) return COMBINER_ERR_INVALID_ARGUMENT;
  if ((st = combiner__resolve(cfg, &p)) != COMBINER_OK) return st;
  info->count = p.count;
  info->key_floats = (size_t)p.H * p.count * (size_t)p.d;
  info->value_floats = (size_t)p.H * p.count * (size_t)p.dv;
  info->sections = p.sections;
  return COMBINER_OK;
}

/* The one internal entry path of the four tensor calls: resolve, check the
 * call's own arguments and buffers, lay out the workspace, refuse overlaps,
 * acquire the workspace, run the call's steps, free. */
enum { COMBINER__CALL_ONE = 0, COMBINER__CALL_PART, COMBINER__CALL_SUMMARIZE, COMBINER__CALL_COMBINE };

typedef struct combiner__call {
  int what;                          /* COMBINER__CALL_* */
  const float *q;
  const void *k, *v;
  float *out;                        /* ONE, PART, COMBINE */
  float *wkeys, *wvals;              /* SUMMARIZE: written */
  const float *skeys, *svals;        /* COMBINE: read */
  void *workspace;
  size_t workspace_size;
  int step, ith, nth;                /* PART */
} combiner__call;

static combiner_status combiner__enter(const combiner_config *cfg, const combiner__call *a) {
  const int summarize = a->what == COMBINER__CALL_SUMMARIZE, combine = a->what == COMBINER__CALL_COMBINE;
  const int two_phase = summarize || combine;
  combiner__problem p;
  combiner__workspace w;
  combiner__ctx c;
  combiner__step s[COMBINER__MAX_STEPS];
  unsigned char *base;
  void *owned;
  combiner_status st;
  const float *sk = summarize ? a->wkeys : a->skeys, *sv = summarize ? a->wvals : a->svals;
  if ((st = combiner__resolve(cfg, &p)) != COMBINER_OK) return st;
  if (!summarize && !a->out) return COMBINER_ERR_INVALID_ARGUMENT;
  if (a->what == COMBINER__CALL_PART &&
      (!a->workspace || a->nth < 1 || a->ith < 0 || a->ith >= a->nth || a->step < 0 ||
       a->step >= combiner__steps(&p, 1, s)))
    return COMBINER_ERR_INVALID_ARGUMENT;
  if ((st = combiner__check_buffers(&p, a->q, a->k, a->v, a->out, two_phase ? sk : NULL, two_phase ? sv : NULL,
                                    two_phase, summarize)) != COMBINER_OK)
    return st;
  if (combiner__workspace_overlaps(&p, a->workspace, a->workspace_size, a->q, a->k, a->v, a->out,
                                   two_phase ? sk : NULL, two_phase ? sv : NULL))
    return COMBINER_ERR_INVALID_ARGUMENT;
  if (summarize && p.count == 0) return COMBINER_OK;   /* DENSE: nothing to summarize */
  if (a->what == COMBINER__CALL_PART) p.slots = a->nth;
  if ((st = combiner__layout(&p, !two_phase, 1, &w)) != COMBINER_OK) return st;
  if ((st = combiner__acquire(&w, a->workspace, a->workspace_size, &base, &owned)) != COMBINER_OK) return st;
  combiner__ctx_init(&c, &p, &w, base, a->q, a->k, a->v, a->out);
  c.one_call = !two_phase;
  if (two_phase) {
    c.wkeys = a->wkeys;   /* combine only reads the summaries */
    c.wvals = a->wvals;
    c.skeys = sk;
    c.svals = sv;
  }
  switch (a->what) {
    case COMBINER__CALL_PART:
      combiner__steps(&p, 1, s);
      combiner__run_slice(&c, s[a->step].fn, s[a->step].units, a->ith, a->nth, a->ith);
      break;
    case COMBINER__CALL_SUMMARIZE: combiner__run_steps(&c, 0, combiner__summary_steps(&p)); break;
    case COMBINER__CALL_COMBINE: combiner__run_steps(&c, combiner__summary_steps(&p), -1); break;
    default: combiner__run_steps(&c, 0, -1); break;
  }
  if (owned) COMBINER_FREE(owned);
  return COMBINER_OK;
}

static combiner__call combiner__call_of(int what, const float *q, const void *k, const void *v, float *out,
                                        void *workspace, size_t workspace_size) {
  combiner__call a;
  memset(&a, 0, sizeof a);
  a.what = what;
  a.q = q; a.k = k; a.v = v; a.out = out;
  a.workspace = workspace;
  a.workspace_size = workspace_size;
  return a;
}

COMBINER_API combiner_status combiner_attention(const combiner_config *cfg,
    const float *q, const void *k, const void *v, float *out,
    void *workspace, size_t workspace_size) {
  const combiner__call a = combiner__call_of(COMBINER__CALL_ONE, q, k, v, out, workspace, workspace_size);
  return combiner__enter(cfg, &a);
}

COMBINER_API int combiner_step_count(const combiner_config *cfg) {
  combiner__problem p;
  combiner__step s[COMBINER__MAX_STEPS];
  if (combiner__resolve(cfg, &p) != COMBINER_OK) return 0;
  return combiner__steps(&p, 1, s);
}

COMBINER_API size_t combiner_part_workspace_size(const combiner_config *cfg, int nth) {
  combiner__problem p;
  combiner__workspace w;
  if (nth < 1 || combiner__resolve(cfg, &p) != COMBINER_OK) return 0;
  p.slots = nth;
  if (combiner__layout(&p, 1, 1, &w) != COMBINER_OK) return 0;
  return w.total;
}

COMBINER_API combiner_status combiner_attention_part(const combiner_config *cfg,
    const float *q, const void *k, const void *v, float *out,
    void *workspace, size_t workspace_size, int step, int ith, int nth) {
  combiner__call a = combiner__call_of(COMBINER__CALL_PART, q, k, v, out, workspace, workspace_size);
  a.step = step; a.ith = ith; a.nth = nth;
  return combiner__enter(cfg, &a);
}

COMBINER_API combiner_status combiner_summarize(const combiner_config *cfg,
    const float *q, const void *k, const void *v,
    float *summary_keys, float *summary_values,
    void *workspace, size_t workspace_size) {
  combiner__call a = combiner__call_of(COMBINER__CALL_SUMMARIZE, q, k, v, NULL, workspace, workspace_size);
  a.wkeys = summary_keys; a.wvals = summary_values;
  return combiner__enter(cfg, &a);
}

COMBINER_API combiner_status combiner_combine(const combiner_config *cfg,
    const float *q, const void *k, const void *v,
    const float *summary_keys, const float *summary_values, float *out,
    void *workspace, size_t workspace_size) {
  combiner__call a = combiner__call_of(COMBINER__CALL_COMBINE, q, k, v, out, workspace, workspace_size);
  a.skeys = summary_keys; a.svals = summary_values;
  return combiner__enter(cfg, &a);
}

COMBINER_API size_t combiner_cache_size_ex(const combiner_config *cfg, const combiner_cache_options *opt) {
  combiner_cache hdr;
  if (combiner__cache_plan(cfg, opt, &hdr) != COMBINER_OK) return 0;
  return hdr.bytes + COMBINER__ALIGN;   /* any alignment of the buffer */
}

COMBINER_API size_t combiner_cache_size(const combiner_config *cfg, int max_len) {
  combiner_cache_options opt;
  memset(&opt, 0, sizeof opt);
  opt.max_len = max_len;
  return combiner_cache_size_ex(cfg, &opt);
}

COMBINER_API combiner_status combiner_cache_init_ex(combiner_cache **cache, const combiner_config *cfg,
    const combiner_cache_options *opt, void *buffer, size_t buffer_size) {
  combiner_cache hdr;
  combiner_status st;
  unsigned char *base;
  if (!cache || !buffer) return COMBINER_ERR_INVALID_ARGUMENT;
  if ((st = combiner__cache_plan(cfg, opt, &hdr)) != COMBINER_OK) return st;
  if (buffer_size < hdr.bytes + COMBINER__ALIGN) return COMBINER_ERR_WORKSPACE_TOO_SMALL;
  if (combiner__overlap(buffer, buffer_size / sizeof(float) + 1, hdr.bk, hdr.bk_extent) ||
      combiner__overlap(buffer, buffer_size / sizeof(float) + 1, hdr.bv, hdr.bv_extent))
    return COMBINER_ERR_INVALID_ARGUMENT;   /* the cache would write over the engine's K/V */
  base = (unsigned char *)buffer + (COMBINER__ALIGN - (uintptr_t)buffer % COMBINER__ALIGN) % COMBINER__ALIGN;
  memcpy(base, &hdr, sizeof hdr);
  *cache = (combiner_cache *)(void *)base;
  return COMBINER_OK;
}

COMBINER_API combiner_status combiner_cache_init(combiner_cache **cache, const combiner_config *cfg,
    int max_len, void *buffer, size_t buffer_size) {
  combiner_cache_options opt;
  memset(&opt, 0, sizeof opt);
  opt.max_len = max_len;
  return combiner_cache_init_ex(cache, cfg, &opt, buffer, buffer_size);
}

COMBINER_API size_t combiner_cache_scratch_size(const combiner_config *cfg, int threads) {
  combiner_cache hdr;
  combiner_cache_options opt;
  size_t bytes;
  memset(&opt, 0, sizeof opt);
  opt.max_len = 1;
  opt.shared_scratch = 1;
  if (threads < 0 || combiner__cache_plan(cfg, &opt, &hdr) != COMBINER_OK) return 0;
  if (threads == 0) threads = hdr.p.threads;
  if (!combiner__mul(hdr.scratch_stride, (size_t)threads, &bytes) || !combiner__add(bytes, COMBINER__ALIGN, &bytes))
    return 0;
  return bytes;
}

COMBINER_API int combiner_cache_length(const combiner_cache *cache) {
  return combiner__cache_ok(cache) ? cache->length : -1;
}

COMBINER_API combiner_status combiner_cache_config(const combiner_cache *cache, combiner_config *resolved) {
  if (!combiner__cache_ok(cache) || !resolved) return COMBINER_ERR_INVALID_ARGUMENT;
  *resolved = cache->cfg;
  return COMBINER_OK;
}

COMBINER_API combiner_status combiner_cache_kv(const combiner_cache *cache, const void **k, const void **v,
    combiner_layout *k_layout, combiner_layout *v_layout) {
  const unsigned char *base = (const unsigned char *)(const void *)cache;
  if (!combiner__cache_ok(cache) || !k || !v || !k_layout || !v_layout) return COMBINER_ERR_INVALID_ARGUMENT;
  *k = cache->borrowed ? cache->bk : (const void *)(base + cache->off[COMBINER__CK]);
  *v = cache->borrowed ? cache->bv : (const void *)(base + cache->off[COMBINER__CV]);
  k_layout->token_stride = cache->p.k.ts; k_layout->head_stride = cache->p.k.hs;
  v_layout->token_stride = cache->p.v.ts; v_layout->head_stride = cache->p.v.hs;
  return COMBINER_OK;
}

COMBINER_API combiner_status combiner_cache_truncate(combiner_cache *cache, int length) {
  if (!combiner__cache_ok(cache) || length < 0 || length > cache->length) return COMBINER_ERR_INVALID_ARGUMENT;
  if (cache->borrowed && length < cache->reach - cache->rollback) return COMBINER_ERR_ROLLBACK;
  if (length == cache->length) return COMBINER_OK;
  /* What position `length` computed at its triggers came from earlier
   * positions only (Mixture's regions ending at it include it): still valid,
   * so re-appending there does not redo, say, Logsparse's O(N) top block. */
  if (cache->triggered > length)
    cache->triggered = combiner__ops(cache->p.kind)->trigger_reads_self ? length : length + 1;
  if (cache->tracks && cache->snaps) {   /* the running pools: the last snapshot at or below length, then the ring */
    const size_t floats = (size_t)cache->tracks * (size_t)cache->p.H * (size_t)cache->p.d;
    const int from = length / cache->snap * cache->snap;
    float *tracks = combiner__cache_floats(cache, cache->off[COMBINER__CTRACK]);
    memcpy(tracks, combiner__cache_floats(cache, cache->off[COMBINER__CSNAP]) + (size_t)(from / cache->snap % cache->snaps) * floats,
           floats * sizeof(float));
    combiner__cache_fold_range(cache, tracks, from, length);
  }
  cache->length = length;
  return COMBINER_OK;
}

COMBINER_API combiner_status combiner_cache_append_at(combiner_cache *cache, int position, int count,
    const float *q, const void *k, const void *v, float *out, void *scratch, size_t scratch_size) {
  const combiner__problem *p;
  combiner__tensor tq, tk, tv, to;
  combiner_status st;
  size_t cache_floats, slots;
  unsigned char *base;
  int threads, done, fast, runs, run, n;
  if (!combiner__cache_ok(cache) || count < 1 || !q || position < 0 || position > cache->length ||
      (cache->borrowed ? (k || v) : (!k || !v)))
    return COMBINER_ERR_INVALID_ARGUMENT;
  p = &cache->p;
  if (cache->borrowed && position < cache->reach - cache->rollback) return COMBINER_ERR_ROLLBACK;
  if (count > cache->max_len - position) return COMBINER_ERR_CACHE_FULL;
  if ((st = combiner__resolve_tensor(&cache->cfg.q_layout, count, p->H, p->d, &tq)) != COMBINER_OK ||
      (st = combiner__resolve_tensor(&cache->cfg.k_layout, count, p->Hkv, p->d, &tk)) != COMBINER_OK ||
      (st = combiner__resolve_tensor(&cache->cfg.v_layout, count, p->Hkv, p->dv, &tv)) != COMBINER_OK ||
      (st = combiner__resolve_tensor(&cache->cfg.out_layout, count, p->H, p->dv, &to)) != COMBINER_OK)
    return st;
  tk.type = p->k.type;
  tv.type = p->v.type;
  if (cache->borrowed) tk.extent = tv.extent = 0;
  cache_floats = cache->bytes / sizeof(float);
  if (combiner__overlap(q, tq.extent, cache, cache_floats) ||
      combiner__overlap(k, combiner__tfloats(&tk), cache, cache_floats) ||
      combiner__overlap(v, combiner__tfloats(&tv), cache, cache_floats) || combiner__overlap(out, to.extent, cache, cache_floats) ||
      combiner__overlap(out, to.extent, q, tq.extent) || combiner__overlap(out, to.extent, k, combiner__tfloats(&tk)) ||
      combiner__overlap(out, to.extent, v, combiner__tfloats(&tv)) ||
      combiner__overlap(out, to.extent, cache->bk, cache->bk_extent) ||
      combiner__overlap(out, to.extent, cache->bv, cache->bv_extent))
    return COMBINER_ERR_INVALID_ARGUMENT;
  if (scratch) {   /* the caller's: as many threads as it has slots for */
    base = (unsigned char *)scratch + (COMBINER__ALIGN - (uintptr_t)scratch % COMBINER__ALIGN) % COMBINER__ALIGN;
    slots = scratch_size < COMBINER__ALIGN ? 0 : (scratch_size - COMBINER__ALIGN) / cache->scratch_stride;
    if (!slots) return COMBINER_ERR_WORKSPACE_TOO_SMALL;
    if (combiner__overlap(scratch, scratch_size / sizeof(float) + 1, cache, cache_floats) ||
        combiner__overlap(scratch, scratch_size / sizeof(float) + 1, q, tq.extent) ||
        combiner__overlap(scratch, scratch_size / sizeof(float) + 1, out, to.extent))
      return COMBINER_ERR_INVALID_ARGUMENT;
  } else {
    base = (unsigned char *)(void *)combiner__cache_floats(cache, cache->off[COMBINER__CSCRATCH]);
    slots = (cache->bytes - cache->off[COMBINER__CSCRATCH]) / cache->scratch_stride;
    if (!slots) return COMBINER_ERR_WORKSPACE_TOO_SMALL;   /* shared_scratch: pass one */
  }
  threads = slots < (size_t)p->threads ? (int)slots : p->threads;
  if (position < cache->length) combiner_cache_truncate(cache, position);
  /* Runs of at most `batch` positions. Fast chunks: the whole append in one
   * run, or with the queries in a ring, in runs as equal as can be (each
   * >= batch / 2 >= COMBINER__FAST_RUN / 2: all of them reach the tiles) */
  fast = cache->fast_chunks && out && count >= COMBINER__BQ;
  runs = (count - 1) / cache->batch + 1;
  for (done = 0, run = 0; done < count; done += n, ++run) {
    n = !fast ? (count - done < cache->batch ? count - done : cache->batch)
              : !p->qring ? count : count / runs + (run < count % runs);
    combiner__cache_run_batch(cache, n, q + (ptrdiff_t)done * tq.ts, &tq,
                              k ? combiner__elem(k, &tk, done, 0) : NULL, &tk, v ? combiner__elem(v, &tv, done, 0) : NULL, &tv,
                              out ? out + (ptrdiff_t)done * to.ts : NULL, &to, base, threads, fast && n >= COMBINER__BQ);
  }
  return COMBINER_OK;
}

COMBINER_API combiner_status combiner_cache_append(combiner_cache *cache, int count,
    const float *q, const void *k, const void *v, float *out) {
  if (!combiner__cache_ok(cache)) return COMBINER_ERR_INVALID_ARGUMENT;
  return combiner_cache_append_at(cache, cache->length, count, q, k, v, out, NULL, 0);
}


/* ---- ranges of one sequence (>>ranges) ---- */

COMBINER_API combiner_status combiner_range_plan(const combiner_config *cfg, int nranks, const int *bounds,
                                                 int rank, combiner_range_info *info) {
  combiner__rplan r;
  combiner_config any;
  combiner_status st;
  if (!info || !cfg) return COMBINER_ERR_INVALID_ARGUMENT;
  any = *cfg;                     /* a rank's layouts count its own rows: checked by the calls that take tensors */
  memset(&any.q_layout, 0, sizeof any.q_layout);
  memset(&any.k_layout, 0, sizeof any.k_layout);
  memset(&any.v_layout, 0, sizeof any.v_layout);
  memset(&any.out_layout, 0, sizeof any.out_layout);
  if ((st = combiner__range_resolve(&any, nranks, bounds, rank, &r)) != COMBINER_OK) return st;
  info->begin = (int)r.b;
  info->end = (int)r.e;
  info->kv_begin = (int)r.kb;
  info->kv_end = (int)r.ke;
  info->pool_floats = combiner__range_message(&r, rank, 1);
  info->state_floats = combiner__range_message(&r, rank, 2);
  info->received_entries = r.received;
  info->workspace_size = r.ws_total;
  return COMBINER_OK;
}

COMBINER_API combiner_status combiner_range_pools(const combiner_config *cfg, int nranks, const int *bounds,
                                                  int rank, const float *q, float *message) {
  combiner__rplan r;
  combiner__ctx c;
  combiner__rpools a;
  combiner_status st;
  if ((st = combiner__range_resolve(cfg, nranks, bounds, rank, &r)) != COMBINER_OK) return st;
  if (!q || (r.pools && !message) ||
      combiner__overlap(message, r.pools * (size_t)r.p.H * (size_t)r.p.d, q, r.p.q.extent))
    return COMBINER_ERR_INVALID_ARGUMENT;
  memset(&c, 0, sizeof c);
  c.p = &r.p;
  c.q = q;
  c.qbegin = r.b;
  c.qend = r.e;
  a.c = &c;
  a.message = message;
  combiner__range_walk(&r.p, r.b, r.e, 1, combiner__rpools_fn, &a);
  return COMBINER_OK;
}

/* The checks and workspace of the two calls that read K/V; a context on it. */
static combiner_status combiner__range_enter(const combiner__rplan *r, const float *q, const void *k, const void *v,
    const float *in, int in_round, const float *written, size_t written_floats,
    void *workspace, size_t workspace_size, unsigned char **base, void **owned, combiner__ctx *c) {
  const combiner__problem *p = &r->p;
  combiner__workspace w;
  size_t all = 0, wf = workspace ? workspace_size / sizeof(float) + 1 : 0;
  int i;
  for (i = 0; i < r->nranks; ++i) all += combiner__range_message(r, i, in_round);
  if (!q || !k || !v || !written || (all && !in)) return COMBINER_ERR_INVALID_ARGUMENT;
  if (combiner__overlap(written, written_floats, q, p->q.extent) ||
      combiner__overlap(written, written_floats, k, combiner__tfloats(&p->k)) ||
      combiner__overlap(written, written_floats, v, combiner__tfloats(&p->v)) ||
      combiner__overlap(written, written_floats, in, all) ||
      combiner__overlap(workspace, wf, q, p->q.extent) || combiner__overlap(workspace, wf, written, written_floats) ||
      combiner__overlap(workspace, wf, k, combiner__tfloats(&p->k)) ||
      combiner__overlap(workspace, wf, v, combiner__tfloats(&p->v)) || combiner__overlap(workspace, wf, in, all))
    return COMBINER_ERR_INVALID_ARGUMENT;
  memset(&w, 0, sizeof w);
  w.total = r->ws_total;
  if (combiner__acquire(&w, workspace, workspace_size, base, owned) != COMBINER_OK)
    return workspace ? COMBINER_ERR_WORKSPACE_TOO_SMALL : COMBINER_ERR_OUT_OF_MEMORY;
  memset(c, 0, sizeof *c);
  c->p = p;
  c->q = q; c->k = k; c->v = v;
  c->scratch = *base + r->ws_scratch;
  c->scratch_stride = r->ws_stride;
  c->qbegin = r->b;
  c->qend = r->e;
  c->rmap = &r->map;
  return COMBINER_OK;
}

COMBINER_API combiner_status combiner_range_states(const combiner_config *cfg, int nranks, const int *bounds,
    int rank, const float *q, const void *k, const void *v, const float *pools, float *message,
    void *workspace, size_t workspace_size) {
  combiner__rplan r;
  combiner__ctx c;
  combiner__rjob jb;
  combiner__rqmerge a;
  combiner__reg *regs;
  unsigned char *base;
  void *owned;
  combiner_status st;
  size_t off = 0, hd;
  int i;
  float empty = 0.0f;
  if ((st = combiner__range_resolve(cfg, nranks, bounds, rank, &r)) != COMBINER_OK) return st;
  if (!message && r.states == 0) message = &empty;   /* nothing to write */
  if ((st = combiner__range_enter(&r, q, k, v, pools, 1, message, r.states * (size_t)r.p.H * combiner__state_width(&r.p),
                                  workspace, workspace_size, &base, &owned, &c)) != COMBINER_OK)
    return st;
  hd = (size_t)r.p.H * (size_t)r.p.d;
  regs = (combiner__reg *)(void *)(base + r.ws_regs);
  combiner__range_walk(&r.p, r.b, r.e, 1, combiner__rcollect_fn, regs);
  combiner__range_walk(&r.p, r.b, r.e, 2, combiner__rcollect_fn, regs + r.pools);
  a.r = &r;
  a.mine = regs;
  a.qpool = (float *)(void *)(base + r.ws_qpool);
  a.seen = base + r.ws_flags + r.map.slots;
  memset(a.seen, 0, r.pools);
  for (i = 0; i < nranks && r.pools; ++i) {          /* others' partial pools of the regions shared with them */
    a.message = pools + off;
    off += combiner__range_walk(&r.p, bounds[i], bounds[i + 1], 1, combiner__rqmerge_fn, &a) * hd;
  }
  jb.r = &r;
  jb.mine = regs;
  jb.regs = regs + r.pools;
  jb.qpool = a.qpool;
  jb.message = message;
  c.rjob = &jb;
  combiner__run(&c, (ptrdiff_t)(r.states * (size_t)r.p.H), combiner__rstate_unit);
  if (owned) COMBINER_FREE(owned);
  return COMBINER_OK;
}

COMBINER_API combiner_status combiner_range_combine(const combiner_config *cfg, int nranks, const int *bounds,
    int rank, const float *q, const void *k, const void *v, const float *states,
    float *out, void *workspace, size_t workspace_size) {
  combiner__rplan r;
  combiner__ctx c;
  combiner__rjob jb;
  combiner__rsmerge a;
  unsigned char *base;
  void *owned;
  combiner_status st;
  const combiner__problem *p;
  size_t off = 0;
  int i, s, l, l0, l1, levels;
  if ((st = combiner__range_resolve(cfg, nranks, bounds, rank, &r)) != COMBINER_OK) return st;
  p = &r.p;
  if ((st = combiner__range_enter(&r, q, k, v, states, 2, out, p->o.extent, workspace, workspace_size,
                                  &base, &owned, &c)) != COMBINER_OK)
    return st;
  a.r = &r;
  a.keys = (float *)(void *)(base + r.ws_keys);
  a.vals = (float *)(void *)(base + r.ws_vals);
  a.merge = (float *)(void *)(base + r.ws_merge);
  a.seen = base + r.ws_flags;
  memset(a.seen, 0, (size_t)r.map.slots);
  for (i = 0; i < nranks; ++i) {                     /* partial states, merged in rank order */
    a.message = states ? states + off : NULL;   /* NULL: every message is empty */
    off += combiner__range_walk(p, bounds[i], bounds[i + 1], 2, combiner__rsmerge_fn, &a) *
           (size_t)p->H * combiner__state_width(p);
  }
  l1 = combiner__range_levels(p, &l0);
  levels = l1 - l0 + 1;
  for (s = 0; s < combiner__range_sections(p); ++s)  /* finish the merged ones: key pool, acc / sum */
    for (l = l0; l <= l1; ++l) {
      ptrdiff_t B;
      for (B = r.map.lo[s][l]; B < r.map.lo[s][l] + r.map.n[s][l]; ++B) {
        const ptrdiff_t slot = r.map.off[s][l] + B - r.map.lo[s][l];
        combiner__reg g;
        int h;
        if (!a.seen[slot]) continue;
        combiner__range_reg(p, s, l, B, &g);
        for (h = 0; h < p->H; ++h) {
          const size_t at = (size_t)h * (size_t)r.map.slots + (size_t)slot;
          float *key = a.keys + at * (size_t)p->d, *val = a.vals + at * (size_t)p->dv;
          combiner__pool_read(key, key, p->d, p->pool, (int)(g.hi - g.lo));
          combiner__mul_row(val, val, 1.0f / a.merge[2 * at + 1], p->dv);   /* as combiner__states_finish */
        }
      }
    }
  c.out = out;
  c.wkeys = a.keys; c.wvals = a.vals;
  c.skeys = a.keys; c.svals = a.vals;
  jb.r = &r;
  jb.mine = NULL; jb.regs = NULL; jb.qpool = NULL; jb.message = NULL;
  c.rjob = &jb;
  combiner__run(&c, (ptrdiff_t)combiner__range_sections(p) * (l1 >= l0 ? levels : 0) * p->H, combiner__rlocal_unit);
#if COMBINER__HAS_FIXED
  if (p->kind == COMBINER_FIXED) {
    combiner__run(&c, combiner__fixed_range_units(p, r.b, r.e), combiner__fixed_range_unit);
  }
#endif
#if COMBINER__HAS_LOGSPARSE
  if (p->kind == COMBINER_LOGSPARSE)
    combiner__run(&c, (ptrdiff_t)p->H * combiner__tiles((int)(r.e - r.b)), combiner__logsparse_combine_unit);
#endif
  if (owned) COMBINER_FREE(owned);
  return COMBINER_OK;
}

#endif /* COMBINER_IMPLEMENTATION_INCLUDED */
#endif /* COMBINER_IMPLEMENTATION */

/*
MIT License

Copyright (c) 2026 The combiner.h authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
*/
