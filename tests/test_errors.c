/* Bad input: every invalid config field, NULL pointers, bad strides and
 * overlaps, overflowing sizes, a workspace one byte too small and a failing
 * allocator each give their specific status, write nothing to out, and have a
 * status string. Valid edge cases (misaligned workspace, exact size) work. */
#include <limits.h>
#include <stdlib.h>

static int fail_next_malloc = 0;
static void *test_malloc(size_t n) {
  if (fail_next_malloc) { fail_next_malloc = 0; return NULL; }
  return malloc(n);
}
#define COMBINER_MALLOC(n) test_malloc(n)
#define COMBINER_FREE(p) free(p)
#define COMBINER_IMPLEMENTATION
#include "test_common.h"

enum { L = 10, D = 4, H = 2 };
static float q[L * H * D], k[L * H * D], v[L * H * D], out[L * H * D], out_ref[L * H * D];
static int cases = 0;

static combiner_config valid(void) {
  combiner_config c = test_config(COMBINER_AXIAL, L, D, H, 0, 3, 1);
  return c;
}

static void poison(void) {
  size_t i;
  for (i = 0; i < sizeof out / sizeof out[0]; ++i) out[i] = -1234.5f;
  memcpy(out_ref, out, sizeof out);
}

/* Runs the call and checks status, untouched output and workspace query. */
static void expect(const combiner_config *cfg, combiner_status want, const char *what) {
  combiner_status st;
  poison();
  st = combiner_attention(cfg, q, k, v, out, NULL, 0);
  ++cases;
  CHECK(st == want, "%s: got \"%s\", want \"%s\"", what, combiner_status_string(st),
        combiner_status_string(want));
  if (want == COMBINER_OK)
    CHECK(memcmp(out, out_ref, sizeof out) != 0 && out[0] == out[0], "%s: no output", what);
  else
    CHECK(memcmp(out, out_ref, sizeof out) == 0, "%s: out was written on failure", what);
  if (cfg && want != COMBINER_OK && want != COMBINER_ERR_OUT_OF_MEMORY &&
      want != COMBINER_ERR_WORKSPACE_TOO_SMALL)
    CHECK(combiner_workspace_size(cfg) == 0, "%s: workspace size of an invalid config", what);
}

static void config_fields(void) {
  combiner_config c;
#define BAD(field_stmt, status)        \
  do {                                 \
    c = valid();                       \
    field_stmt;                        \
    expect(&c, status, #field_stmt);   \
  } while (0)
  expect(NULL, COMBINER_ERR_INVALID_ARGUMENT, "cfg NULL");
  BAD(c.kind = (combiner_kind)99, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.kind = (combiner_kind)-1, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.seq_len = 0, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.seq_len = -5, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.head_dim = 0, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.head_dim = -1, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.value_dim = -1, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.num_heads = 0, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.num_heads = -2, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.num_kv_heads = -1, COMBINER_ERR_INVALID_ARGUMENT);
  BAD((c.num_heads = 2, c.num_kv_heads = 3), COMBINER_ERR_INVALID_ARGUMENT);
  BAD((c.num_heads = 3, c.num_kv_heads = 2, c.q_layout.token_stride = 6), COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.block = -1, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.num_threads = -1, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.scale = NAN, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.scale = INFINITY, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.scale = -INFINITY, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.pool = (combiner_pool)2, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.pool = (combiner_pool)-1, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.axial_key = (combiner_axial_key)2, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.mixture_norm = (combiner_mixture_norm)2, COMBINER_ERR_INVALID_ARGUMENT);
  /* strides */
  BAD(c.q_layout.token_stride = -8, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.k_layout.head_stride = -4, COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.v_layout.head_stride = D - 1, COMBINER_ERR_INVALID_ARGUMENT);       /* < width */
  BAD(c.out_layout.token_stride = D - 1, COMBINER_ERR_INVALID_ARGUMENT);
  BAD((c.q_layout.token_stride = D, c.q_layout.head_stride = D), COMBINER_ERR_INVALID_ARGUMENT);
  BAD(c.out_layout.head_stride = D + 1, COMBINER_ERR_INVALID_ARGUMENT);     /* heads overlap next token */
  BAD(c.k_layout.token_stride = D, COMBINER_ERR_INVALID_ARGUMENT);          /* tokens overlap heads */
  /* sizes whose byte counts overflow */
  BAD((c.seq_len = INT_MAX, c.head_dim = INT_MAX, c.num_heads = INT_MAX), COMBINER_ERR_OVERFLOW);
  BAD(c.q_layout.token_stride = PTRDIFF_MAX / 4, COMBINER_ERR_OVERFLOW);
  BAD((c.seq_len = 3, c.k_layout.token_stride = PTRDIFF_MAX / 2), COMBINER_ERR_OVERFLOW);
  BAD(c.v_layout.head_stride = PTRDIFF_MAX, COMBINER_ERR_OVERFLOW);
  BAD((c.kind = COMBINER_MIXTURE, c.seq_len = INT_MAX, c.head_dim = INT_MAX / 2, c.num_heads = 1 << 20),
      COMBINER_ERR_OVERFLOW);
  /* valid edge cases still work */
  BAD((void)0, COMBINER_OK);
  BAD(c.block = INT_MAX, COMBINER_OK);
  BAD((c.num_kv_heads = 1, c.scale = -0.5f), COMBINER_OK);
#undef BAD
}

static void pointers(void) {
  combiner_config c = valid();
  combiner_status st;
  const float *null_f = NULL;
  int which;
  for (which = 0; which < 4; ++which) {
    poison();
    st = combiner_attention(&c, which == 0 ? null_f : q, which == 1 ? null_f : k,
                            which == 2 ? null_f : v, which == 3 ? NULL : out, NULL, 0);
    ++cases;
    CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "NULL pointer %d: %s", which, combiner_status_string(st));
    CHECK(memcmp(out, out_ref, sizeof out) == 0, "NULL pointer %d: out written", which);
  }
  /* out overlapping an input */
  poison();
  memcpy(q, out, sizeof q);
  st = combiner_attention(&c, out, k, v, out, NULL, 0);
  ++cases;
  CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "out == q: %s", combiner_status_string(st));
  CHECK(memcmp(out, out_ref, sizeof out) == 0, "out == q: out written");
  poison();
  st = combiner_attention(&c, q, out + 3, v, out, NULL, 0);
  ++cases;
  CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "out overlaps k: %s", combiner_status_string(st));
  CHECK(memcmp(out, out_ref, sizeof out) == 0, "out overlaps k: out written");
  poison();
  st = combiner_attention(&c, q, k, out + 7, out, NULL, 0);
  ++cases;
  CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "out overlaps v: %s", combiner_status_string(st));
  CHECK(memcmp(out, out_ref, sizeof out) == 0, "out overlaps v: out written");
}

static void workspaces(void) {
  combiner_config c = valid();
  size_t ws = combiner_workspace_size(&c);
  unsigned char *buf = (unsigned char *)test_alloc(ws + 1);
  combiner_status st;
  CHECK(ws > 0, "workspace size of a valid config");
  poison();
  st = combiner_attention(&c, q, k, v, out, buf, ws - 1);
  ++cases;
  CHECK(st == COMBINER_ERR_WORKSPACE_TOO_SMALL, "one byte short: %s", combiner_status_string(st));
  CHECK(memcmp(out, out_ref, sizeof out) == 0, "one byte short: out written");
  poison();
  st = combiner_attention(&c, q, k, v, out, buf + 1, ws);   /* misaligned is fine */
  ++cases;
  CHECK(st == COMBINER_OK, "exact, misaligned workspace: %s", combiner_status_string(st));
  poison();
  st = combiner_attention(&c, q, k, v, out, out, sizeof out);
  ++cases;
  CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "workspace overlapping out: %s", combiner_status_string(st));
  CHECK(memcmp(out, out_ref, sizeof out) == 0, "workspace overlapping out: out written");
  {   /* a workspace overlapping any one input */
    static float big[3 * L * H * D + 4096];
    const float *ins[3];
    int which;
    size_t n = sizeof q / sizeof q[0];
    memcpy(big, q, sizeof q); memcpy(big + n, k, sizeof k); memcpy(big + 2 * n, v, sizeof v);
    for (which = 0; which < 3; ++which) {
      ins[0] = which == 0 ? big : q;
      ins[1] = which == 1 ? big + n : k;
      ins[2] = which == 2 ? big + 2 * n : v;
      poison();
      st = combiner_attention(&c, ins[0], ins[1], ins[2], out, big + (size_t)which * n + 5,
                              sizeof big - ((size_t)which * n + 5) * sizeof(float));
      ++cases;
      CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "workspace overlapping input %d: %s", which,
            combiner_status_string(st));
      CHECK(memcmp(out, out_ref, sizeof out) == 0, "workspace overlapping input %d: out written", which);
    }
  }
  /* the allocating path reports a failed allocation */
  poison();
  fail_next_malloc = 1;
  st = combiner_attention(&c, q, k, v, out, NULL, 0);
  ++cases;
  CHECK(st == COMBINER_ERR_OUT_OF_MEMORY, "failed allocation: %s", combiner_status_string(st));
  CHECK(memcmp(out, out_ref, sizeof out) == 0, "failed allocation: out written");
  free(buf);
}

static void two_phase(void) {
  combiner_config c = valid();
  combiner_summary_info info;
  float *keys, *vals;
  combiner_status st;
  CHECK(combiner_query_summaries(&c, &info) == COMBINER_OK, "query");
  CHECK(combiner_query_summaries(&c, NULL) == COMBINER_ERR_INVALID_ARGUMENT, "query info NULL");
  CHECK(combiner_query_summaries(NULL, &info) == COMBINER_ERR_INVALID_ARGUMENT, "query cfg NULL");
  keys = (float *)test_alloc(sizeof(float) * info.key_floats);
  vals = (float *)test_alloc(sizeof(float) * info.value_floats);
  st = combiner_summarize(&c, q, k, v, NULL, vals, NULL, 0);
  ++cases;
  CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "summarize keys NULL: %s", combiner_status_string(st));
  st = combiner_summarize(&c, q, k, v, keys, keys, NULL, 0);
  ++cases;
  CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "summarize keys == values: %s", combiner_status_string(st));
  {   /* summaries overlapping an input, and two-phase workspaces overlapping one */
    static float pool_buf[2 * L * H * D + 8192];
    float q_copy[L * H * D];
    memcpy(q_copy, q, sizeof q);
    memcpy(pool_buf, q, sizeof q);
    st = combiner_summarize(&c, pool_buf, k, v, pool_buf + 8, vals, NULL, 0);
    ++cases;
    CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "summary keys overlapping q: %s", combiner_status_string(st));
    st = combiner_summarize(&c, q, k, v, keys, (float *)(uintptr_t)(k + 2), NULL, 0);
    ++cases;
    CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "summary values overlapping k: %s", combiner_status_string(st));
    st = combiner_summarize(&c, q, k, v, (float *)(uintptr_t)(v + 1), vals, NULL, 0);
    ++cases;
    CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "summary keys overlapping v: %s", combiner_status_string(st));
    st = combiner_summarize(&c, pool_buf, k, v, keys, vals, pool_buf + 16, sizeof pool_buf - 64);
    ++cases;
    CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "summarize workspace overlapping q: %s", combiner_status_string(st));
    CHECK(memcmp(pool_buf, q_copy, sizeof q_copy) == 0, "summarize wrote into q");
    poison();
    st = combiner_combine(&c, pool_buf, k, v, keys, vals, out, pool_buf + 16, sizeof pool_buf - 64);
    ++cases;
    CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "combine workspace overlapping q: %s", combiner_status_string(st));
    CHECK(memcmp(out, out_ref, sizeof out) == 0, "combine workspace overlapping q: out written");
  }
  st = combiner_summarize(&c, q, k, v, keys, vals, NULL, 0);
  CHECK(st == COMBINER_OK, "summarize: %s", combiner_status_string(st));
  poison();
  st = combiner_combine(&c, q, k, v, keys, NULL, out, NULL, 0);
  ++cases;
  CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "combine values NULL: %s", combiner_status_string(st));
  CHECK(memcmp(out, out_ref, sizeof out) == 0, "combine values NULL: out written");
  st = combiner_combine(&c, q, k, v, keys, vals, keys, NULL, 0);
  ++cases;
  CHECK(st == COMBINER_ERR_INVALID_ARGUMENT, "combine out == keys: %s", combiner_status_string(st));
  c.kind = COMBINER_DENSE;   /* no abstractions: NULL summaries are fine */
  st = combiner_combine(&c, q, k, v, NULL, NULL, out, NULL, 0);
  CHECK(st == COMBINER_OK, "dense combine without summaries: %s", combiner_status_string(st));
  free(keys);
  free(vals);
}

static void strings(void) {
  int s, t;
  for (s = COMBINER_OK; s <= COMBINER_ERR_UNSUPPORTED; ++s) {
    const char *a = combiner_status_string((combiner_status)s);
    CHECK(a && strlen(a) > 1, "status %d has a string", s);
    for (t = COMBINER_OK; t < s; ++t)
      CHECK(strcmp(a, combiner_status_string((combiner_status)t)) != 0, "status %d and %d differ", s, t);
  }
  CHECK(strcmp(combiner_status_string((combiner_status)77), "unknown combiner_status") == 0, "unknown");
}

static void resolve(void) {
  combiner_config c = valid(), r;
  memset(&r, 0, sizeof r);
  c.block = 0;
  c.kind = COMBINER_KIND_DEFAULT;
  CHECK(combiner_resolve_config(&c, &r) == COMBINER_OK, "resolve");
  CHECK(r.kind == COMBINER_AXIAL && r.block == 4 && r.value_dim == D && r.num_kv_heads == H &&
        fabsf(r.scale - 0.5f) < 1e-7f && r.q_layout.token_stride == H * D &&
        r.q_layout.head_stride == D && r.num_threads >= 1, "defaults made explicit");
  CHECK(combiner_resolve_config(&c, NULL) == COMBINER_ERR_INVALID_ARGUMENT, "resolve into NULL");
  c.value_dim = 3 * D;        /* the default scale follows head_dim, not value_dim */
  CHECK(combiner_resolve_config(&c, &r) == COMBINER_OK && fabsf(r.scale - 0.5f) < 1e-7f &&
        r.value_dim == 3 * D, "default scale 1/sqrt(head_dim) with value_dim != head_dim");
}

int main(void) {
  test_rng rng = {5};
  size_t i;
  for (i = 0; i < sizeof q / sizeof q[0]; ++i) {
    q[i] = test_rng_float(&rng);
    k[i] = test_rng_float(&rng);
    v[i] = test_rng_float(&rng);
  }
  if (test_unfiltered()) {   /* bad input belongs to no variant: COMBINER_TEST_KINDS skips it */
    config_fields();
    pointers();
    workspaces();
    two_phase();
    strings();
    resolve();
    printf("test_errors: %d bad-input cases\n", cases);
  }
  return TEST_SUMMARY();
}
