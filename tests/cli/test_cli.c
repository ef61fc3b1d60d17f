/* combiner-cli end to end: writes .npy files (valid and malformed), runs the
 * tool on them through the shell and checks
 *   - outputs, for every kind and option, token-major and head-major, GQA
 *     with a value width != head width, .npy versions 1.0/2.0/3.0: equal
 *     (bitwise) to combiner_attention called here on the same arrays;
 *   - --matrix: A [H, L, L] with A.v = out (1e-5), rows summing to 1, causal
 *     zeros; refused for L > 4096;
 *   - --bench and --help print what they promise;
 *   - every malformed input and bad command line: the exit status (1 bad
 *     input, 2 bad usage), a message on stderr naming the file and the
 *     problem, and no output file left behind;
 *   - randomly corrupted headers: exit 0 or 1, never a crash.
 * The .npy writer and reader here share no code with the tool's.
 *
 *   test_cli /path/to/combiner-cli ["wrapper command, e.g. valgrind -q ..."]
 * Run in a scratch directory: the files are written to the working directory. */
#define _POSIX_C_SOURCE 200809L
#define COMBINER_IMPLEMENTATION
#include "test_common.h"

#include <stdarg.h>
#include <sys/wait.h>

enum { L = 37, H = 4, HKV = 2, D = 8, DV = 5, GROUP = H / HKV };

static const char *cli_path;
static const char *cli_wrapper = "";
static int thorough = 1;               /* 0 under a (slow) wrapper: fewer runs of the same paths */
static char cli_stdout[1 << 14], cli_stderr[1 << 14];

/* ---- files ---- */

static void write_bytes(const char *name, const void *bytes, size_t n) {
  FILE *f = fopen(name, "wb");
  if (!f || fwrite(bytes, 1, n, f) != n || fclose(f) != 0) {
    fprintf(stderr, "cannot write %s (run test_cli in a writable scratch directory)\n", name);
    exit(2);
  }
}

/* Whole file into a malloc'd buffer; NULL if it does not exist. */
static unsigned char *read_bytes(const char *name, size_t *n) {
  FILE *f = fopen(name, "rb");
  unsigned char *buf;
  long size;
  if (!f) return NULL;
  if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return NULL;
  }
  buf = (unsigned char *)test_alloc((size_t)size + 1);
  *n = fread(buf, 1, (size_t)size, f);
  fclose(f);
  buf[*n] = '\0';
  return buf;
}

static int file_exists(const char *name) {
  FILE *f = fopen(name, "rb");
  if (f) fclose(f);
  return f != NULL;
}

/* An .npy file from its parts: version major.0, the header dict padded with
 * spaces and '\n' to a multiple of `align` bytes, then `data_bytes` of data.
 * Returns the size; the bytes stay in *out (malloc'd). */
static size_t npy_build(unsigned char **out, int major, const char *dict, int align, const void *data,
                        size_t data_bytes) {
  const size_t pre = major == 1 ? 10 : 12, dlen = strlen(dict);
  size_t hlen = dlen + 1, total;
  unsigned char *b;
  while ((pre + hlen) % (size_t)align) ++hlen;
  total = pre + hlen + data_bytes;
  b = (unsigned char *)test_alloc(total);
  memcpy(b, "\x93NUMPY", 6);
  b[6] = (unsigned char)major; b[7] = 0;
  if (major == 1) {
    b[8] = (unsigned char)(hlen & 0xff); b[9] = (unsigned char)(hlen >> 8);
  } else {
    b[8] = (unsigned char)(hlen & 0xff); b[9] = (unsigned char)(hlen >> 8 & 0xff);
    b[10] = (unsigned char)(hlen >> 16 & 0xff); b[11] = (unsigned char)(hlen >> 24);
  }
  memcpy(b + pre, dict, dlen);
  memset(b + pre + dlen, ' ', hlen - dlen - 1);
  b[pre + hlen - 1] = '\n';
  if (data_bytes) memcpy(b + pre + hlen, data, data_bytes);
  *out = b;
  return total;
}

/* float32 data as little-endian bytes, whatever the host */
static unsigned char *le_bytes(const float *x, size_t n) {
  unsigned char *b = (unsigned char *)test_alloc(4 * n + 1);
  size_t i;
  for (i = 0; i < n; ++i) {
    uint32_t u;
    memcpy(&u, &x[i], 4);
    b[4 * i] = (unsigned char)u; b[4 * i + 1] = (unsigned char)(u >> 8);
    b[4 * i + 2] = (unsigned char)(u >> 16); b[4 * i + 3] = (unsigned char)(u >> 24);
  }
  return b;
}

/* A valid '<f4' C-order file of shape (a, b, c) holding x. */
static void write_f4(const char *name, int major, int a, int b, int c, const float *x) {
  char dict[128];
  const size_t n = (size_t)a * b * c;
  unsigned char *data = le_bytes(x, n), *file;
  size_t len;
  snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, %d), }", a, b, c);
  len = npy_build(&file, major, dict, 64, data, 4 * n);
  write_bytes(name, file, len);
  free(file);
  free(data);
}

/* Reads an '<f4' C-order rank-3 file as NumPy writes it (version 1.0);
 * returns its floats (malloc'd) and shape, or NULL if it is not that. */
static float *read_f4(const char *name, int shape[3]) {
  size_t n, hlen, count, i;
  unsigned char *b = read_bytes(name, &n);
  const char *s;
  float *x;
  char *end;
  if (!b) return NULL;
  if (n < 10 || memcmp(b, "\x93NUMPY\x01\x00", 8)) { free(b); return NULL; }
  hlen = (size_t)b[8] | (size_t)b[9] << 8;
  if (10 + hlen > n || (10 + hlen) % 64 || b[10 + hlen - 1] != '\n') { free(b); return NULL; }
  b[10 + hlen - 1] = '\0';
  s = strstr((const char *)b + 10, "'shape': (");
  if (!strstr((const char *)b + 10, "'descr': '<f4'") || !strstr((const char *)b + 10, "'fortran_order': False") ||
      !s) { free(b); return NULL; }
  s += strlen("'shape': (");
  for (i = 0; i < 3; ++i) {
    shape[i] = (int)strtol(s, &end, 10);
    s = end;
    if (*s != (i < 2 ? ',' : ')')) { free(b); return NULL; }
    s += i < 2 ? 2 : 1;
  }
  count = (size_t)shape[0] * shape[1] * shape[2];
  if (n != 10 + hlen + 4 * count) { free(b); return NULL; }
  x = (float *)test_alloc(4 * count + 1);
  for (i = 0; i < count; ++i) {
    const unsigned char *p = b + 10 + hlen + 4 * i;
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    memcpy(&x[i], &u, 4);
  }
  free(b);
  return x;
}

/* ---- running the tool ---- */

static void slurp(const char *name, char *buf, size_t cap) {
  FILE *f = fopen(name, "rb");
  size_t n = 0;
  if (f) { n = fread(buf, 1, cap - 1, f); fclose(f); }
  buf[n] = '\0';
}

/* Runs "wrapper combiner-cli ARGS" (stdout and stderr into cli_stdout and
 * cli_stderr); returns the exit status, or 128 + signal. */
static int cli(const char *fmt, ...) {
  char args[2048], cmd[4096];
  va_list ap;
  int st;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof cmd, "%s '%s' %s >cli_stdout.txt 2>cli_stderr.txt", cli_wrapper, cli_path, args);
  st = system(cmd);
  slurp("cli_stdout.txt", cli_stdout, sizeof cli_stdout);
  slurp("cli_stderr.txt", cli_stderr, sizeof cli_stderr);
  /* A sanitizer report counts as a failure whatever the exit status. */
  CHECK(!strstr(cli_stderr, "Sanitizer") && !strstr(cli_stderr, "runtime error"), "%s:\n%s", args, cli_stderr);
  if (st == -1) return -1;
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* The tool must refuse: exit `status`, stderr naming `file` (unless NULL)
 * and containing `phrase`, and no out.npy written. */
static void expect_refusal(int status, const char *file, const char *phrase, const char *fmt, ...) {
  char args[2048];
  va_list ap;
  int got;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  remove("out.npy");
  got = cli("%s", args);
  CHECK(got == status, "'%s': exit %d, expected %d; stderr: %s", args, got, status, cli_stderr);
  CHECK(strstr(cli_stderr, phrase) != NULL, "'%s': stderr lacks \"%s\": %s", args, phrase, cli_stderr);
  if (file)
    CHECK(strstr(cli_stderr, file) != NULL, "'%s': stderr does not name %s: %s", args, file, cli_stderr);
  CHECK(!file_exists("out.npy"), "'%s': out.npy written although the run failed", args);
}

/* ---- the data ---- */

typedef struct inputs {
  float q[L * H * D], k[L * HKV * D], v[L * HKV * DV];                 /* token-major */
  float qh[L * H * D], kh[L * HKV * D], vh[L * HKV * DV];              /* head-major */
} inputs;

static void to_head_major(const float *t, float *h, int heads, int width) {
  int i, g, x;
  for (i = 0; i < L; ++i)
    for (g = 0; g < heads; ++g)
      for (x = 0; x < width; ++x)
        h[((size_t)g * L + i) * width + x] = t[((size_t)i * heads + g) * width + x];
}

static void make_inputs(inputs *in) {
  test_rng r = {2024};
  size_t i;
  for (i = 0; i < sizeof in->q / sizeof in->q[0]; ++i) in->q[i] = 2.0f * test_rng_float(&r);
  for (i = 0; i < sizeof in->k / sizeof in->k[0]; ++i) in->k[i] = 2.0f * test_rng_float(&r);
  for (i = 0; i < sizeof in->v / sizeof in->v[0]; ++i) in->v[i] = test_rng_float(&r);
  to_head_major(in->q, in->qh, H, D);
  to_head_major(in->k, in->kh, HKV, D);
  to_head_major(in->v, in->vh, HKV, DV);
  /* token-major: versions 1.0, 2.0, 3.0; head-major: 3.0, 1.0, 2.0 */
  write_f4("q.npy", 1, L, H, D, in->q);
  write_f4("k.npy", 2, L, HKV, D, in->k);
  write_f4("v.npy", 3, L, HKV, DV, in->v);
  write_f4("qh.npy", 3, H, L, D, in->qh);
  write_f4("kh.npy", 1, HKV, L, D, in->kh);
  write_f4("vh.npy", 2, HKV, L, DV, in->vh);
}

/* ---- valid runs: the tool equals the library ---- */

typedef struct cli_case {
  const char *args;
  combiner_kind kind;
  int causal, block;
  combiner_pool pool;
  combiner_axial_key key;
  combiner_mixture_norm norm;
  float scale;
  int threads;
} cli_case;

static const cli_case cases[] = {
  {"--kind fixed --causal --block 5", COMBINER_FIXED, 1, 5, COMBINER_POOL_MAX, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, 0.0f, 0},
  {"--kind fixed --pool mean --block 6", COMBINER_FIXED, 0, 6, COMBINER_POOL_MEAN, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, 0.0f, 0},
  {"--kind axial --causal", COMBINER_AXIAL, 1, 0, COMBINER_POOL_MAX, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, 0.0f, 0},
  {"--kind=axial --axial-key self --block=5", COMBINER_AXIAL, 0, 5, COMBINER_POOL_MAX, COMBINER_AXIAL_KEY_SELF, COMBINER_MIXTURE_JOINT, 0.0f, 0},
  {"--kind mixture --causal --mixture-norm average", COMBINER_MIXTURE, 1, 0, COMBINER_POOL_MAX, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_AVERAGE, 0.0f, 0},
  {"--kind mixture --block 4 --pool mean", COMBINER_MIXTURE, 0, 4, COMBINER_POOL_MEAN, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, 0.0f, 0},
  {"--kind dense --causal", COMBINER_DENSE, 1, 0, COMBINER_POOL_MAX, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, 0.0f, 0},
  {"--kind logsparse --causal --scale 0.3", COMBINER_LOGSPARSE, 1, 0, COMBINER_POOL_MAX, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, 0.3f, 0},
  {"--kind logsparse --threads 2 --pool mean", COMBINER_LOGSPARSE, 0, 0, COMBINER_POOL_MEAN, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, 0.0f, 2},
  {"--threads 1 --scale 0.25", COMBINER_KIND_DEFAULT, 0, 0, COMBINER_POOL_MAX, COMBINER_AXIAL_KEY_WSUM, COMBINER_MIXTURE_JOINT, 0.25f, 1},
};
#define NCASES (sizeof cases / sizeof cases[0])

static combiner_config case_config(const cli_case *c, int head_major) {
  combiner_config cfg = test_config(c->kind, L, D, H, HKV, c->block, c->causal);
  cfg.value_dim = DV;
  cfg.pool = c->pool; cfg.axial_key = c->key; cfg.mixture_norm = c->norm;
  cfg.scale = c->scale; cfg.num_threads = c->threads;
  if (head_major) {
    cfg.q_layout.token_stride = D; cfg.q_layout.head_stride = (ptrdiff_t)L * D;
    cfg.k_layout.token_stride = D; cfg.k_layout.head_stride = (ptrdiff_t)L * D;
    cfg.v_layout.token_stride = DV; cfg.v_layout.head_stride = (ptrdiff_t)L * DV;
    cfg.out_layout.token_stride = DV; cfg.out_layout.head_stride = (ptrdiff_t)L * DV;
  }
  return cfg;
}

static void test_outputs(const inputs *in) {
  size_t c;
  int hm;
  for (c = 0; c < NCASES; ++c)
    for (hm = 0; hm < (thorough || c < 2 ? 2 : 1); ++hm) {
      const combiner_config cfg = case_config(&cases[c], hm);
      float direct[L * H * DV], *got;
      int shape[3], status, same;
      combiner_status st = combiner_attention(&cfg, hm ? in->qh : in->q, hm ? in->kh : in->k,
                                              hm ? in->vh : in->v, direct, NULL, 0);
      CHECK(st == COMBINER_OK, "direct call for '%s': %s", cases[c].args, combiner_status_string(st));
      remove("out.npy");
      status = hm ? cli("%s --layout hld qh.npy kh.npy vh.npy -o out.npy", cases[c].args)
                  : cli("%s q.npy k.npy v.npy -o out.npy", cases[c].args);
      CHECK(status == 0, "'%s' (%s): exit %d: %s", cases[c].args, hm ? "hld" : "lhd", status, cli_stderr);
      CHECK(cli_stderr[0] == '\0', "'%s': unexpected stderr: %s", cases[c].args, cli_stderr);
      got = read_f4("out.npy", shape);
      CHECK(got != NULL, "'%s' (%s): out.npy is not a float32 .npy file", cases[c].args, hm ? "hld" : "lhd");
      if (!got) continue;
      CHECK(shape[0] == (hm ? H : L) && shape[1] == (hm ? L : H) && shape[2] == DV,
            "'%s': out.npy has shape (%d, %d, %d)", cases[c].args, shape[0], shape[1], shape[2]);
      same = shape[0] * shape[1] * shape[2] == L * H * DV && !memcmp(got, direct, sizeof direct);
      if (!same) {
        double err = 0.0;
        size_t i;
        for (i = 0; i < (size_t)L * H * DV; ++i)
          if (fabs((double)got[i] - direct[i]) > err) err = fabs((double)got[i] - direct[i]);
        fprintf(stderr, "'%s' (%s): max |tool - library| = %.3g\n", cases[c].args, hm ? "hld" : "lhd", err);
      }
      CHECK(same, "'%s' (%s): output differs from combiner_attention", cases[c].args, hm ? "hld" : "lhd");
      free(got);
    }
  /* The summary line says what ran, with every default resolved. */
  CHECK(cli("--kind mixture --causal q.npy k.npy v.npy -o out.npy") == 0, "%s", cli_stderr);
  CHECK(strstr(cli_stdout, "mixture causal L=37 H=4 Hkv=2 D=8 Dv=5 block=7") != NULL, "stdout: %s", cli_stdout);
  CHECK(cli("--quiet q.npy k.npy v.npy -o out.npy") == 0 && cli_stdout[0] == '\0', "--quiet printed: %s", cli_stdout);
}

/* Headers written differently from NumPy's own habits must read the same. */
static void test_header_variants(const inputs *in) {
  static const char *const dicts[] = {
    "{\"shape\": (37, 2, 8), \"fortran_order\": False, \"descr\": \"<f4\"}",   /* any key order, " quotes */
    "{'descr':'<f4','fortran_order':False,'shape':(37L,2L,8L)}",             /* Python 2 longs, no spaces */
  };
  float *ref, *got;
  int shape[3], i;
  unsigned char *data = le_bytes(in->k, sizeof in->k / sizeof in->k[0]), *file;
  size_t len;
  CHECK(cli("-q q.npy k.npy v.npy -o ref.npy") == 0, "%s", cli_stderr);
  ref = read_f4("ref.npy", shape);
  CHECK(ref != NULL, "ref.npy unreadable");
  for (i = 0; i < 2; ++i) {
    len = npy_build(&file, i ? 2 : 1, dicts[i], i ? 4 : 16, data, sizeof in->k);
    write_bytes("k_variant.npy", file, len);
    free(file);
    CHECK(cli("-q q.npy k_variant.npy v.npy -o out.npy") == 0, "header %s: %s", dicts[i], cli_stderr);
    got = read_f4("out.npy", shape);
    CHECK(got && ref && !memcmp(got, ref, sizeof(float) * L * H * DV), "header %s: different output", dicts[i]);
    free(got);
  }
  free(ref);
  free(data);
}

/* ---- --matrix: A.v equals the output ---- */

static void check_matrix(const inputs *in, const char *args, int head_major, int causal) {
  float *A, *out;
  int shape[3], ashape[3], h, i, j, x;
  double err = 0.0, mag = 0.0, worst_row = 0.0;
  int zeros_ok = 1;
  remove("A.npy");
  CHECK(cli("%s -o out.npy --matrix A.npy", args) == 0, "'%s': %s", args, cli_stderr);
  A = read_f4("A.npy", ashape);
  out = read_f4("out.npy", shape);
  CHECK(A && out, "'%s': A.npy or out.npy unreadable", args);
  if (!A || !out) { free(A); free(out); return; }
  CHECK(ashape[0] == H && ashape[1] == L && ashape[2] == L, "'%s': A has shape (%d, %d, %d)", args,
        ashape[0], ashape[1], ashape[2]);
  for (h = 0; h < H; ++h)
    for (i = 0; i < L; ++i) {
      const float *row = A + ((size_t)h * L + i) * L;
      double sum = 0.0;
      for (j = 0; j < L; ++j) {
        sum += row[j];
        if (causal && j > i && row[j] != 0.0f) zeros_ok = 0;
      }
      if (fabs(sum - 1.0) > worst_row) worst_row = fabs(sum - 1.0);
      for (x = 0; x < DV; ++x) {
        double av = 0.0, o;
        for (j = 0; j < L; ++j) {
          const float vj = head_major ? in->vh[((size_t)(h / GROUP) * L + j) * DV + x]
                                      : in->v[((size_t)j * HKV + h / GROUP) * DV + x];
          av += (double)row[j] * vj;
        }
        o = head_major ? out[((size_t)h * L + i) * DV + x] : out[((size_t)i * H + h) * DV + x];
        if (fabs(av - o) > err) err = fabs(av - o);
        if (fabs(o) > mag) mag = fabs(o);
      }
    }
  CHECK(err <= 1e-5 * (mag > 1.0 ? mag : 1.0), "'%s': |A.v - out| = %.3g", args, err);
  CHECK(worst_row <= 1e-5, "'%s': a row of A sums to 1 %+.3g", args, worst_row);
  CHECK(zeros_ok, "'%s': causal A has a nonzero above the diagonal", args);
  free(A);
  free(out);
}

static void test_matrix(const inputs *in) {
  static float big[4097];
  check_matrix(in, "--kind mixture --causal --block 5 q.npy k.npy v.npy", 0, 1);
  check_matrix(in, "--kind fixed --layout hld qh.npy kh.npy vh.npy", 1, 0);
  check_matrix(in, "--kind axial --axial-key self --block 6 q.npy k.npy v.npy", 0, 0);
  /* --matrix alone (no -o) */
  remove("A.npy");
  CHECK(cli("--kind logsparse --causal q.npy k.npy v.npy --matrix A.npy") == 0 && file_exists("A.npy"),
        "--matrix alone: %s", cli_stderr);
  /* L = 4097: refused before anything is computed or written */
  write_f4("big.npy", 1, 4097, 1, 1, big);
  remove("A_big.npy");
  CHECK(cli("big.npy big.npy big.npy --matrix A_big.npy") == 1, "L = 4097 accepted: %s", cli_stderr);
  CHECK(strstr(cli_stderr, "too large") && strstr(cli_stderr, "4096") && strstr(cli_stderr, "A_big.npy"),
        "L = 4097 message: %s", cli_stderr);
  CHECK(!file_exists("A_big.npy"), "A_big.npy written for L = 4097");
  expect_refusal(2, NULL, "same file", "q.npy k.npy v.npy -o out.npy --matrix out.npy");
}

/* ---- --bench, --help ---- */

static void test_bench_help(void) {
  CHECK(cli("--bench --runs 3 --kind fixed --causal q.npy k.npy v.npy") == 0, "%s", cli_stderr);
  CHECK(strstr(cli_stdout, "bench: median") && strstr(cli_stdout, "over 3 runs") && strstr(cli_stdout, "GFLOP/s"),
        "--bench printed: %s", cli_stdout);
  CHECK(cli("--help") == 0 && strstr(cli_stdout, "usage:") && strstr(cli_stdout, "--layout"),
        "--help printed: %s", cli_stdout);
  CHECK(cli("--version") == 0 && strstr(cli_stdout, "combiner.h"), "--version printed: %s", cli_stdout);
}

/* ---- malformed files ---- */

static void write_dict(const char *name, int major, const char *dict, const void *data, size_t bytes) {
  unsigned char *file;
  size_t len = npy_build(&file, major, dict, 64, data, bytes);
  write_bytes(name, file, len);
  free(file);
}

static void test_malformed(const inputs *in) {
  double q64[L * H * D];
  unsigned char *file, *qle = le_bytes(in->q, L * H * D);
  size_t len, i;
  for (i = 0; i < (size_t)L * H * D; ++i) q64[i] = in->q[i];
  write_dict("q_f8.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (37, 4, 8), }", q64, sizeof q64);
  expect_refusal(1, "q_f8.npy", "dtype '<f8' (float64) is not float32", "q_f8.npy k.npy v.npy -o out.npy");
  write_dict("q_be.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (37, 4, 8), }", qle, 4 * L * H * D);
  expect_refusal(1, "q_be.npy", "big-endian", "q_be.npy k.npy v.npy -o out.npy");
  write_dict("k_i4.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (37, 2, 8), }", qle, 4 * L * HKV * D);
  expect_refusal(1, "k_i4.npy", "'<i4' (int32) is not float32", "q.npy k_i4.npy v.npy -o out.npy");
  write_dict("q_fortran.npy", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (37, 4, 8), }", qle, 4 * L * H * D);
  expect_refusal(1, "q_fortran.npy", "fortran_order is True", "q_fortran.npy k.npy v.npy -o out.npy");
  write_dict("q_rank2.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (37, 32), }", qle, 4 * L * H * D);
  expect_refusal(1, "q_rank2.npy", "rank 2", "q_rank2.npy k.npy v.npy -o out.npy");
  write_dict("v_rank1.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (370,), }", qle, 4 * 370);
  expect_refusal(1, "v_rank1.npy", "shape (370,) has rank 1", "q.npy k.npy v_rank1.npy -o out.npy");
  write_dict("q_empty.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4, 8), }", qle, 0);
  expect_refusal(1, "q_empty.npy", "empty dimension", "q_empty.npy k.npy v.npy -o out.npy");
  /* shapes that disagree */
  write_f4("k_L36.npy", 1, 36, HKV, D, in->k);
  expect_refusal(1, "k_L36.npy", "sequence length 36 does not match q.npy's 37", "q.npy k_L36.npy v.npy -o out.npy");
  write_f4("v_L36.npy", 1, 36, HKV, DV, in->v);
  expect_refusal(1, "v_L36.npy", "sequence length 36", "q.npy k.npy v_L36.npy -o out.npy");
  write_f4("k_h3.npy", 1, L, 3, D, in->q);
  write_f4("v_h3.npy", 1, L, 3, DV, in->q);
  expect_refusal(1, "k_h3.npy", "3 kv heads do not divide the 4 heads", "q.npy k_h3.npy v_h3.npy -o out.npy");
  write_f4("v_h1.npy", 1, L, 1, DV, in->v);
  expect_refusal(1, "v_h1.npy", "kv heads: 1, but k.npy has 2", "q.npy k.npy v_h1.npy -o out.npy");
  write_f4("k_d7.npy", 1, L, HKV, 7, in->k);
  expect_refusal(1, "k_d7.npy", "head dim 7 does not match", "q.npy k_d7.npy v.npy -o out.npy");
  /* head-major files read as token-major: L and H swap, and the lengths disagree */
  expect_refusal(1, "kh.npy", "sequence length 2 does not match q.npy's 37 (read as token-major", "q.npy kh.npy vh.npy -o out.npy");
  /* broken files */
  len = npy_build(&file, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (37, 4, 8), }", 64, qle, 4 * L * H * D);
  write_bytes("q_trunc.npy", file, len - 10);
  expect_refusal(1, "q_trunc.npy", "truncated data", "q_trunc.npy k.npy v.npy -o out.npy");
  write_bytes("q_trunc_header.npy", file, 40);
  expect_refusal(1, "q_trunc_header.npy", "truncated header", "q_trunc_header.npy k.npy v.npy -o out.npy");
  write_bytes("q_trunc_magic.npy", file, 7);
  expect_refusal(1, "q_trunc_magic.npy", "truncated header", "q_trunc_magic.npy k.npy v.npy -o out.npy");
  write_bytes("q_zero.npy", file, 0);
  expect_refusal(1, "q_zero.npy", "empty file", "q_zero.npy k.npy v.npy -o out.npy");
  file[7] = 1;
  write_bytes("q_v11.npy", file, len);
  expect_refusal(1, "q_v11.npy", "unsupported .npy format version 1.1", "q_v11.npy k.npy v.npy -o out.npy");
  file[6] = 4; file[7] = 0;
  write_bytes("q_v4.npy", file, len);
  expect_refusal(1, "q_v4.npy", "version 4.0", "q_v4.npy k.npy v.npy -o out.npy");
  file[6] = 1; file[0] = 'X';
  write_bytes("q_magic.npy", file, len);
  expect_refusal(1, "q_magic.npy", "bad magic", "q_magic.npy k.npy v.npy -o out.npy");
  memcpy(file, "PK\x03\x04", 4);
  write_bytes("q_zip.npy", file, len);
  expect_refusal(1, "q_zip.npy", "zip archive", "q_zip.npy k.npy v.npy -o out.npy");
  free(file);
  write_bytes("q_text.npy", "0.5 1.5\n", 8);
  expect_refusal(1, "q_text.npy", "bad magic", "q_text.npy k.npy v.npy -o out.npy");
  /* one byte more than the shape needs */
  len = npy_build(&file, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (37, 4, 8), }", 64, qle, 4 * L * H * D);
  file = (unsigned char *)realloc(file, len + 1);
  if (!file) exit(2);
  file[len] = 0;
  write_bytes("q_extra.npy", file, len + 1);
  expect_refusal(1, "q_extra.npy", "after the array data", "q_extra.npy k.npy v.npy -o out.npy");
  free(file);
  /* headers */
  write_dict("q_list.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': [37, 4, 8], }", qle, 4 * L * H * D);
  expect_refusal(1, "q_list.npy", "malformed header: 'shape' is not a tuple", "q_list.npy k.npy v.npy -o out.npy");
  write_dict("q_nofortran.npy", 1, "{'descr': '<f4', 'shape': (37, 4, 8), }", qle, 4 * L * H * D);
  expect_refusal(1, "q_nofortran.npy", "lacks the key 'fortran_order'", "q_nofortran.npy k.npy v.npy -o out.npy");
  write_dict("q_struct.npy", 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (37, 4, 8), }", qle,
             4 * L * H * D);
  expect_refusal(1, "q_struct.npy", "structured dtype", "q_struct.npy k.npy v.npy -o out.npy");
  write_dict("q_key.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (37, 4, 8), 'x': 1}", qle,
             4 * L * H * D);
  expect_refusal(1, "q_key.npy", "a key other than", "q_key.npy k.npy v.npy -o out.npy");
  write_dict("q_open.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (37, 4, 8)", qle, 4 * L * H * D);
  expect_refusal(1, "q_open.npy", "malformed header", "q_open.npy k.npy v.npy -o out.npy");
  /* a header promising far more data than the file has: refused before allocating */
  write_dict("q_huge.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000, 1000), }",
             qle, 64);
  expect_refusal(1, "q_huge.npy", "truncated data", "q_huge.npy k.npy v.npy -o out.npy");
  write_dict("q_overflow.npy", 1,
             "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", qle, 64);
  expect_refusal(1, "q_overflow.npy", "too large", "q_overflow.npy k.npy v.npy -o out.npy");
  write_dict("q_bigdim.npy", 1,
             "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999, 1, 1), }", qle, 64);
  expect_refusal(1, "q_bigdim.npy", "does not fit", "q_bigdim.npy k.npy v.npy -o out.npy");
  expect_refusal(1, "missing.npy", "cannot open", "q.npy k.npy missing.npy -o out.npy");
  /* the output cannot be created */
  expect_refusal(1, "no_such_dir/out.npy", "cannot create", "q.npy k.npy v.npy -o no_such_dir/out.npy");
  free(qle);
}

/* ---- bad command lines: exit 2 ---- */

static void test_usage(void) {
  expect_refusal(2, NULL, "unknown option '--frobnicate'", "--frobnicate q.npy k.npy v.npy -o out.npy");
  expect_refusal(2, NULL, "--block needs a value", "q.npy k.npy v.npy -o out.npy --block");
  expect_refusal(2, NULL, "-o needs a value", "q.npy k.npy v.npy -o");
  expect_refusal(2, NULL, "unknown option '--frob'", "q.npy k.npy v.npy -o out.npy --frob");
  if (!thorough) return;
  expect_refusal(2, NULL, "expected 3 input files (q.npy k.npy v.npy), got 2", "q.npy k.npy -o out.npy");
  expect_refusal(2, NULL, "got a 4th", "q.npy k.npy v.npy v.npy -o out.npy");
  expect_refusal(2, NULL, "nothing to do", "q.npy k.npy v.npy");
  expect_refusal(2, NULL, "--kind: unknown value 'sparse'", "--kind sparse q.npy k.npy v.npy -o out.npy");
  expect_refusal(2, NULL, "--layout: unknown value", "--layout htd q.npy k.npy v.npy -o out.npy");
  expect_refusal(2, NULL, "--pool: unknown value", "--pool sum q.npy k.npy v.npy -o out.npy");
  expect_refusal(2, NULL, "--axial-key: unknown value", "--axial-key learned q.npy k.npy v.npy -o out.npy");
  expect_refusal(2, NULL, "--mixture-norm: unknown value", "--mixture-norm max q.npy k.npy v.npy -o out.npy");
  expect_refusal(2, NULL, "--block: '0' is not an integer >= 1", "--block 0 q.npy k.npy v.npy -o out.npy");
  expect_refusal(2, NULL, "--threads: '2x'", "--threads 2x q.npy k.npy v.npy -o out.npy");
  expect_refusal(2, NULL, "--runs: '99999999999'", "--bench --runs 99999999999 q.npy k.npy v.npy");
  expect_refusal(2, NULL, "--scale: 'nan'", "--scale nan q.npy k.npy v.npy -o out.npy");
  expect_refusal(2, NULL, "--scale: '0'", "--scale 0 q.npy k.npy v.npy -o out.npy");
  expect_refusal(2, NULL, "--causal takes no value", "--causal=1 q.npy k.npy v.npy -o out.npy");
  expect_refusal(2, NULL, "Try 'combiner-cli --help'", "-x q.npy k.npy v.npy -o out.npy");
}

/* ---- corrupted headers: an error or a result, never a crash ---- */

static void test_corruption(const inputs *in, int rounds) {
  test_rng r = {77};
  unsigned char *good, *bad, *qle = le_bytes(in->q, L * H * D);
  size_t len, n;
  int round, status, crashes = 0;
  len = npy_build(&good, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (37, 4, 8), }", 64, qle, 4 * L * H * D);
  bad = (unsigned char *)test_alloc(len);
  for (round = 0; round < rounds; ++round) {
    int flips = 1 + (int)(test_rng_u32(&r) % 4), f;
    memcpy(bad, good, len);
    n = len;
    for (f = 0; f < flips; ++f) {                       /* the magic, version, length and dict */
      size_t at = test_rng_u32(&r) % 128;
      bad[at] = (unsigned char)(test_rng_u32(&r) & 3 ? test_rng_u32(&r) : bad[at] ^ 0x80u);
    }
    if (test_rng_u32(&r) % 4 == 0) n = test_rng_u32(&r) % len;
    write_bytes("q_corrupt.npy", bad, n);
    status = cli("-q q_corrupt.npy k.npy v.npy -o out.npy");
    if (status != 0 && status != 1) ++crashes;
    CHECK(status == 0 || status == 1, "corruption round %d: exit %d: %s", round, status, cli_stderr);
    CHECK(status == 0 || strstr(cli_stderr, "q_corrupt.npy"), "round %d: %s", round, cli_stderr);
  }
  if (crashes) fprintf(stderr, "%d corrupted files crashed the tool (q_corrupt.npy is the last)\n", crashes);
  free(good);
  free(bad);
  free(qle);
}

int main(int argc, char **argv) {
  static inputs in;
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s /path/to/combiner-cli [wrapper command]\n", argv[0]);
    return 2;
  }
  cli_path = argv[1];
  if (argc == 3) { cli_wrapper = argv[2]; thorough = 0; }
  make_inputs(&in);
  test_outputs(&in);
  test_header_variants(&in);
  test_matrix(&in);
  test_bench_help();
  test_malformed(&in);
  test_usage();
  test_corruption(&in, argc == 3 ? 8 : 60);
  return TEST_SUMMARY();
}
