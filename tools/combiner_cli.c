/* combiner-cli: Combiner attention on NumPy .npy files.
 *
 *   combiner-cli [options] q.npy k.npy v.npy -o out.npy [--matrix A.npy] [--bench]
 *
 * Reads q, k and v (float32 '<f4', C order, .npy format 1.0, 2.0 or 3.0),
 * each of rank 3: token-major [L, H, D] (the default, --layout lhd) or
 * head-major [H, L, D] (--layout hld). k and v have Hkv heads, which must
 * divide the H heads of q (GQA/MQA); v may be wider or narrower than q and k
 * (value width Dv). Runs combiner_attention with the kind and options given
 * and writes out [L, H, Dv] (or [H, L, Dv] with --layout hld) as '<f4'.
 * --matrix writes the effective attention matrix A [H, L, L]
 * (combiner_attention_matrix: out = A.v per head), refused for L > 4096.
 * --bench times the call: one untimed warm-up, then the median of --runs
 * calls on a preallocated workspace, and GFLOP/s from combiner_flops.
 *
 * Every input is validated before anything is computed; a problem is
 * reported on stderr as "combiner-cli: FILE: what is wrong". Exit status:
 * 0 success, 1 a bad input file or a failed call/write, 2 bad usage.
 * Only libc and libm (OpenMP if the build enables it).
 */
#define _POSIX_C_SOURCE 199309L
#define COMBINER_IMPLEMENTATION
#include "combiner.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLI_NAME "combiner-cli"
#define CLI_MATRIX_MAX_L 4096          /* --matrix holds H*L*L floats */
#define CLI_MAX_HEADER (1ul << 20)     /* a rank-3 float header is < 200 bytes */
#define NPY_MAX_RANK 32                /* NumPy's NPY_MAXDIMS */
#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6

enum { EXIT_INPUT = 1, EXIT_USAGE = 2 };

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

#if defined(__GNUC__) || defined(__clang__)
#  define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#  define CLI_PRINTF(a, b)
#endif

/* "combiner-cli: WHAT: message"; returns 0 so callers can `return fail(...)`. */
static int fail(const char *what, const char *fmt, ...) CLI_PRINTF(2, 3);
static int fail(const char *what, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: %s: ", CLI_NAME, what);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* .npy reading: the format of numpy.lib.format                             */
/* ------------------------------------------------------------------------ */

typedef struct npy_header {
  char descr[32];
  int fortran_order;                   /* -1 until the header names it */
  int rank;                            /* -1 until the header names it */
  size_t shape[NPY_MAX_RANK];
} npy_header;

/* The header is a Python dict literal; this reads the subset NumPy writes:
 * {'descr': '<f4', 'fortran_order': False, 'shape': (L, H, D), } */
typedef struct npy_parser {
  const char *s, *end;
  const char *why;                     /* first syntax problem, NULL if none */
} npy_parser;

static void npy_skip_space(npy_parser *p) {
  while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r')) ++p->s;
}

static int npy_expect(npy_parser *p, char c, const char *why) {
  npy_skip_space(p);
  if (p->s >= p->end || *p->s != c) { p->why = why; return 0; }
  ++p->s;
  return 1;
}

static int npy_parse_string(npy_parser *p, char *out, size_t cap) {
  char quote;
  size_t n = 0;
  npy_skip_space(p);
  if (p->s >= p->end || (*p->s != '\'' && *p->s != '"')) { p->why = "expected a quoted string"; return 0; }
  quote = *p->s++;
  while (p->s < p->end && *p->s != quote) {
    if (*p->s == '\\' || n + 1 >= cap) { p->why = "a string is too long or has escapes"; return 0; }
    out[n++] = *p->s++;
  }
  if (p->s >= p->end) { p->why = "unterminated string"; return 0; }
  ++p->s;
  out[n] = '\0';
  return 1;
}

static int npy_parse_bool(npy_parser *p, int *value) {
  npy_skip_space(p);
  if (p->end - p->s >= 4 && !memcmp(p->s, "True", 4)) { *value = 1; p->s += 4; return 1; }
  if (p->end - p->s >= 5 && !memcmp(p->s, "False", 5)) { *value = 0; p->s += 5; return 1; }
  p->why = "'fortran_order' is not True or False";
  return 0;
}

/* A tuple of non-negative integers: (), (n,), (a, b, c) with an optional
 * trailing comma; Python 2 era files may write 3L. */
static int npy_parse_shape(npy_parser *p, npy_header *h) {
  int rank = 0;
  if (!npy_expect(p, '(', "'shape' is not a tuple")) return 0;
  for (;;) {
    size_t v = 0;
    npy_skip_space(p);
    if (p->s < p->end && *p->s == ')') break;
    if (p->s >= p->end || *p->s < '0' || *p->s > '9') { p->why = "'shape' holds something other than integers"; return 0; }
    while (p->s < p->end && *p->s >= '0' && *p->s <= '9') {
      unsigned digit = (unsigned)(*p->s++ - '0');
      if (v > (SIZE_MAX - digit) / 10) { p->why = "a dimension of 'shape' does not fit in size_t"; return 0; }
      v = v * 10 + digit;
    }
    if (p->s < p->end && *p->s == 'L') ++p->s;
    if (rank == NPY_MAX_RANK) { p->why = "'shape' has more than 32 dimensions"; return 0; }
    h->shape[rank++] = v;
    npy_skip_space(p);
    if (p->s < p->end && *p->s == ',') { ++p->s; continue; }
    if (p->s < p->end && *p->s == ')') break;
    p->why = "'shape' is not a tuple of integers";
    return 0;
  }
  ++p->s;
  h->rank = rank;
  return 1;
}

static int npy_parse_header(const char *text, size_t len, npy_header *h, const char **why) {
  npy_parser p;
  int have_descr = 0;
  p.s = text; p.end = text + len; p.why = NULL;
  h->descr[0] = '\0'; h->fortran_order = -1; h->rank = -1;
  if (!npy_expect(&p, '{', "it does not start with '{'")) { *why = p.why; return 0; }
  for (;;) {
    char key[32];
    npy_skip_space(&p);
    if (p.s < p.end && *p.s == '}') break;
    if (!npy_parse_string(&p, key, sizeof key) || !npy_expect(&p, ':', "expected ':' after a key")) {
      *why = p.why; return 0;
    }
    if (!strcmp(key, "descr")) {
      npy_skip_space(&p);
      if (p.s < p.end && *p.s == '[') { *why = "'descr' is a structured dtype (a list of fields)"; return 0; }
      if (have_descr || !npy_parse_string(&p, h->descr, sizeof h->descr)) {
        *why = have_descr ? "'descr' appears twice" : p.why; return 0;
      }
      have_descr = 1;
    } else if (!strcmp(key, "fortran_order")) {
      if (h->fortran_order >= 0) { *why = "'fortran_order' appears twice"; return 0; }
      if (!npy_parse_bool(&p, &h->fortran_order)) { *why = p.why; return 0; }
    } else if (!strcmp(key, "shape")) {
      if (h->rank >= 0) { *why = "'shape' appears twice"; return 0; }
      if (!npy_parse_shape(&p, h)) { *why = p.why; return 0; }
    } else {
      *why = "it has a key other than 'descr', 'fortran_order' and 'shape'";
      return 0;
    }
    npy_skip_space(&p);
    if (p.s < p.end && *p.s == ',') { ++p.s; continue; }
    if (p.s < p.end && *p.s == '}') break;
    *why = "expected ',' or '}' after a value";
    return 0;
  }
  ++p.s;
  npy_skip_space(&p);                  /* padding: spaces, then '\n' */
  if (p.s != p.end) { *why = "it has text after the closing '}'"; return 0; }
  if (!have_descr) { *why = "it lacks the key 'descr'"; return 0; }
  if (h->fortran_order < 0) { *why = "it lacks the key 'fortran_order'"; return 0; }
  if (h->rank < 0) { *why = "it lacks the key 'shape'"; return 0; }
  return 1;
}

/* '<f8' -> "float64", for messages; "" when the code is not a plain number type. */
static const char *npy_dtype_name(const char *descr, char *buf, size_t cap) {
  const char *kind;
  const char *c = descr;
  long bytes;
  char *end;
  if (*c == '<' || *c == '>' || *c == '|' || *c == '=') ++c;
  switch (*c) {
    case 'f': kind = "float"; break;
    case 'i': kind = "int"; break;
    case 'u': kind = "uint"; break;
    case 'c': kind = "complex"; break;
    case 'b': kind = "bool"; break;
    default: return "";
  }
  bytes = strtol(c + 1, &end, 10);
  if (end == c + 1 || *end || bytes <= 0 || bytes > 64) return "";
  if (*c == 'b') snprintf(buf, cap, " (bool)");
  else snprintf(buf, cap, " (%s%ld)", kind, bytes * 8);
  return buf;
}

static int npy_check_dtype(const char *path, const char *descr) {
  char name[32];
  if (!strcmp(descr, "<f4")) return 1;
  if (!strcmp(descr, ">f4"))
    return fail(path, "dtype '>f4' is big-endian float32; only little-endian '<f4' is read "
                "(save arr.astype('<f4'))");
  return fail(path, "dtype '%s'%s is not float32 '<f4' (save arr.astype('<f4'))", descr,
              npy_dtype_name(descr, name, sizeof name));
}

static int host_is_little_endian(void) {
  const uint32_t one = 1;
  unsigned char first;
  memcpy(&first, &one, 1);
  return first == 1;
}

static void swap_bytes4(float *x, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) {
    unsigned char b[4], t;
    memcpy(b, &x[i], 4);
    t = b[0]; b[0] = b[3]; b[3] = t;
    t = b[1]; b[1] = b[2]; b[2] = t;
    memcpy(&x[i], b, 4);
  }
}

/* "(37, 4, 8)" */
static const char *shape_string(const size_t *shape, int rank, char *buf, size_t cap) {
  size_t n = 0;
  int i;
  buf[0] = '\0';
  n += (size_t)snprintf(buf, cap, "(");
  for (i = 0; i < rank && n < cap; ++i)
    n += (size_t)snprintf(buf + n, cap - n, i ? ", %lu" : "%lu", (unsigned long)shape[i]);
  if (n < cap) snprintf(buf + n, cap - n, rank == 1 ? ",)" : ")");
  return buf;
}

/* One input tensor, after validation. */
typedef struct tensor {
  const char *path;
  size_t shape[3];
  size_t count;                        /* floats */
  float *data;
} tensor;

/* Magic, version and header of an open file: NumPy's read_magic and
 * _read_array_header, for versions 1.0 (uint16 header length) and 2.0/3.0
 * (uint32; 3.0 only changes the header's encoding to UTF-8). */
static int npy_read_header(FILE *f, const char *path, npy_header *h, size_t *data_offset) {
  unsigned char pre[12];
  size_t got, len_bytes, hlen, i;
  char *text;
  const char *why = NULL;
  int ok;
  got = fread(pre, 1, 8, f);
  if (ferror(f)) return fail(path, "read error: %s", strerror(errno));
  if (got >= 2 && pre[0] == 'P' && pre[1] == 'K')
    return fail(path, "not a .npy file: bad magic (this is a zip archive, an .npz? extract its arrays)");
  if (memcmp(pre, NPY_MAGIC, got < NPY_MAGIC_LEN ? got : NPY_MAGIC_LEN) || got == 0)
    return fail(path, got ? "not a .npy file: bad magic (expected \\x93NUMPY)"
                          : "empty file (not a .npy file)");
  if (got < 8) return fail(path, "truncated header: the file ends after %lu bytes", (unsigned long)got);
  if (!(pre[6] >= 1 && pre[6] <= 3 && pre[7] == 0))
    return fail(path, "unsupported .npy format version %u.%u (1.0, 2.0 and 3.0 are read)",
                (unsigned)pre[6], (unsigned)pre[7]);
  len_bytes = pre[6] == 1 ? 2 : 4;
  if (fread(pre + 8, 1, len_bytes, f) != len_bytes)
    return fail(path, "truncated header: the file ends inside the header length");
  for (hlen = 0, i = len_bytes; i-- > 0;) hlen = hlen << 8 | pre[8 + i];   /* little-endian */
  if (hlen > CLI_MAX_HEADER)
    return fail(path, "header length %lu is implausible for a plain array (limit %lu)",
                (unsigned long)hlen, CLI_MAX_HEADER);
  text = (char *)malloc(hlen + 1);
  if (!text) return fail(path, "out of memory reading the header");
  got = fread(text, 1, hlen, f);
  if (got != hlen) {
    free(text);
    if (ferror(f)) return fail(path, "read error: %s", strerror(errno));
    return fail(path, "truncated header: %lu of its %lu bytes are present", (unsigned long)got,
                (unsigned long)hlen);
  }
  text[hlen] = '\0';
  ok = npy_parse_header(text, hlen, h, &why);
  free(text);
  if (!ok) return fail(path, "malformed header: %s", why);
  *data_offset = 8 + len_bytes + hlen;
  return 1;
}

/* Reads and validates one rank-3 '<f4' C-order tensor; axes names what the
 * three dimensions mean in the chosen layout, for messages. */
static int tensor_load(tensor *t, const char *path, const char *axes) {
  npy_header h;
  FILE *f;
  size_t offset = 0, bytes, got;
  char shape[128];
  int i, ok = 0;
  memset(t, 0, sizeof *t);
  memset(&h, 0, sizeof h);
  t->path = path;
  f = fopen(path, "rb");
  if (!f) return fail(path, "cannot open: %s", strerror(errno));
  if (!npy_read_header(f, path, &h, &offset) || !npy_check_dtype(path, h.descr)) goto done;
  if (h.fortran_order) {
    fail(path, "fortran_order is True (column-major); save a C-order array "
         "(np.ascontiguousarray(arr))");
    goto done;
  }
  if (h.rank != 3) {
    fail(path, "shape %s has rank %d; expected 3 dimensions %s", shape_string(h.shape, h.rank, shape, sizeof shape),
         h.rank, axes);
    goto done;
  }
  t->count = 1;
  for (i = 0; i < 3; ++i) {
    if (h.shape[i] == 0) {
      fail(path, "shape %s has an empty dimension", shape_string(h.shape, 3, shape, sizeof shape));
      goto done;
    }
    if (h.shape[i] > INT_MAX || t->count > SIZE_MAX / h.shape[i]) {
      fail(path, "shape %s is too large", shape_string(h.shape, 3, shape, sizeof shape));
      goto done;
    }
    t->shape[i] = h.shape[i];
    t->count *= h.shape[i];
  }
  if (t->count > (size_t)PTRDIFF_MAX / sizeof(float)) {
    fail(path, "shape %s is too large", shape_string(h.shape, 3, shape, sizeof shape));
    goto done;
  }
  bytes = t->count * sizeof(float);
  /* A regular file tells its size: a header that promises more data than
   * there is fails here, before a large allocation. */
  if (fseek(f, 0, SEEK_END) == 0) {
    long size = ftell(f);
    if (size >= 0 && (size_t)size - offset < bytes) {
      fail(path, "truncated data: shape %s needs %lu bytes after the header, the file has %lu",
           shape_string(t->shape, 3, shape, sizeof shape), (unsigned long)bytes,
           (unsigned long)((size_t)size - offset));
      goto done;
    }
    if (fseek(f, (long)offset, SEEK_SET) != 0) {
      fail(path, "cannot seek back to the data: %s", strerror(errno));
      goto done;
    }
  }
  clearerr(f);
  t->data = (float *)malloc(bytes);
  if (!t->data) {
    fail(path, "out of memory: %lu bytes for shape %s", (unsigned long)bytes,
         shape_string(t->shape, 3, shape, sizeof shape));
    goto done;
  }
  got = fread(t->data, 1, bytes, f);
  if (got != bytes) {
    if (ferror(f)) fail(path, "read error: %s", strerror(errno));
    else fail(path, "truncated data: shape %s needs %lu bytes after the header, the file has %lu",
              shape_string(t->shape, 3, shape, sizeof shape), (unsigned long)bytes, (unsigned long)got);
    goto done;
  }
  if (fgetc(f) != EOF) {
    fail(path, "unexpected bytes after the array data (shape %s is %lu bytes); one array per file",
         shape_string(t->shape, 3, shape, sizeof shape), (unsigned long)bytes);
    goto done;
  }
  if (ferror(f)) {
    fail(path, "read error: %s", strerror(errno));
    goto done;
  }
  if (!host_is_little_endian()) swap_bytes4(t->data, t->count);
  ok = 1;
done:
  fclose(f);                           /* read-only: nothing to lose */
  if (!ok) { free(t->data); t->data = NULL; }
  return ok;
}

/* ------------------------------------------------------------------------ */
/* .npy writing: version 1.0, '<f4', C order, header padded to 64 bytes     */
/* ------------------------------------------------------------------------ */

static int npy_write_stream(FILE *f, const float *data, const size_t *shape, int rank) {
  char header[256], dims[128];
  unsigned char pre[10];
  size_t hlen, count = 1, done = 0;
  int i;
  for (i = 0; i < rank; ++i) count *= shape[i];
  hlen = (size_t)snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }",
                          shape_string(shape, rank, dims, sizeof dims));
  while ((10 + hlen + 1) % 64) header[hlen++] = ' ';
  header[hlen++] = '\n';
  memcpy(pre, NPY_MAGIC, NPY_MAGIC_LEN);
  pre[6] = 1; pre[7] = 0;
  pre[8] = (unsigned char)(hlen & 0xff); pre[9] = (unsigned char)(hlen >> 8);
  if (fwrite(pre, 1, sizeof pre, f) != sizeof pre || fwrite(header, 1, hlen, f) != hlen) return 0;
  if (host_is_little_endian()) return fwrite(data, sizeof(float), count, f) == count;
  while (done < count) {                /* big-endian host: little-endian chunks */
    float chunk[1024];
    size_t n = count - done < 1024 ? count - done : 1024;
    memcpy(chunk, data + done, n * sizeof(float));
    swap_bytes4(chunk, n);
    if (fwrite(chunk, sizeof(float), n, f) != n) return 0;
    done += n;
  }
  return 1;
}

/* Writes path, or removes what it wrote and says why. */
static int npy_write(const char *path, const float *data, const size_t *shape, int rank) {
  FILE *f = fopen(path, "wb");
  int ok;
  if (!f) return fail(path, "cannot create: %s", strerror(errno));
  ok = npy_write_stream(f, data, shape, rank);
  if (fclose(f) != 0) ok = 0;
  if (!ok) {
    int err = errno;
    remove(path);
    return fail(path, "cannot write: %s", strerror(err));
  }
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct cli_options {
  const char *inputs[3];
  int ninputs;
  const char *out_path, *matrix_path;
  int head_major;                      /* --layout hld */
  int bench, runs, quiet;
  combiner_config cfg;                 /* kind and options; sizes come from the files */
} cli_options;

static void usage(FILE *to) {
  fprintf(to,
    "usage: " CLI_NAME " [options] q.npy k.npy v.npy -o out.npy [--matrix A.npy] [--bench]\n"
    "\n"
    "Combiner attention (combiner.h %d.%d.%d) of q, k, v read from NumPy .npy files:\n"
    "float32 '<f4', C order, rank 3. k and v have Hkv heads dividing q's H (GQA);\n"
    "v's width Dv may differ from D.\n"
    "\n"
    "  -o, --output FILE      write the output, float32, in q's layout: [L, H, Dv] or [H, L, Dv]\n"
    "  --layout lhd|hld       token-major [L, H, D] (default) or head-major [H, L, D] inputs\n"
    "  --kind K               fixed, axial, mixture, dense or logsparse (default %s)\n"
    "  --causal               autoregressive (default: bidirectional)\n"
    "  --block N              block / row length (default ceil(sqrt(L)))\n"
    "  --pool max|mean        pooling of region keys and queries (default max)\n"
    "  --axial-key wsum|self  Axial summary keys (default wsum)\n"
    "  --mixture-norm joint|average\n"
    "                         Mixture: one softmax (default) or the mean of two plans\n"
    "  --scale S              logit scale (default 1/sqrt(D))\n"
    "  --threads N            OpenMP threads (default: OpenMP's; output is the same for any N)\n"
    "  --matrix FILE          write the effective attention matrix A [H, L, L] (out = A.v);\n"
    "                         L <= %d\n"
    "  --bench                time the call: 1 warm-up, then the median of --runs calls, GFLOP/s\n"
    "  --runs N               timed calls of --bench (default 10)\n"
    "  -q, --quiet            print nothing on success (except --bench's line)\n"
    "  -h, --help             this text;  --version  the library version\n"
    "\n"
    "Exit status: 0 ok, 1 bad input file or failed call, 2 bad usage.\n"
    "Example: " CLI_NAME " --kind mixture --causal q.npy k.npy v.npy -o out.npy\n",
    COMBINER_VERSION_MAJOR, COMBINER_VERSION_MINOR, COMBINER_VERSION_PATCH,
    combiner_kind_string(COMBINER_DEFAULT_KIND), CLI_MATRIX_MAX_L);
}

static int usage_error(const char *fmt, ...) CLI_PRINTF(1, 2);
static int usage_error(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: ", CLI_NAME);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry '%s --help'.\n", CLI_NAME);
  return 0;
}

static int parse_int(const char *opt, const char *val, int min, int *out) {
  char *end;
  long x;
  errno = 0;
  x = strtol(val, &end, 10);
  if (end == val || *end || errno || x < min || x > INT_MAX)
    return usage_error("%s: '%s' is not an integer >= %d", opt, val, min);
  *out = (int)x;
  return 1;
}

static int parse_choice(const char *opt, const char *val, const char *const *names, int n, int *out) {
  int i;
  for (i = 0; i < n; ++i)
    if (!strcmp(val, names[i])) { *out = i; return 1; }
  fprintf(stderr, "%s: %s: unknown value '%s' (one of:", CLI_NAME, opt, val);
  for (i = 0; i < n; ++i) fprintf(stderr, " %s", names[i]);
  fprintf(stderr, ")\nTry '%s --help'.\n", CLI_NAME);
  return 0;
}

/* Returns 1 to run, 0 on a usage error (reported), -1 when --help or
 * --version has been answered. Accepts "--opt value" and "--opt=value". */
static int parse_options(int argc, char **argv, cli_options *o) {
  static const char *const kinds[] = {"fixed", "axial", "mixture", "dense", "logsparse"};
  static const combiner_kind kind_values[] = {COMBINER_FIXED, COMBINER_AXIAL, COMBINER_MIXTURE,
                                              COMBINER_DENSE, COMBINER_LOGSPARSE};
  static const char *const layouts[] = {"lhd", "hld"};
  static const char *const pools[] = {"max", "mean"};
  static const char *const keys[] = {"wsum", "self"};
  static const char *const norms[] = {"joint", "average"};
  static const struct { const char *name; int takes_value; } flags[] = {
    {"-o", 1}, {"--output", 1}, {"--matrix", 1}, {"--layout", 1}, {"--kind", 1}, {"--causal", 0},
    {"--block", 1}, {"--pool", 1}, {"--axial-key", 1}, {"--mixture-norm", 1}, {"--scale", 1},
    {"--threads", 1}, {"--runs", 1}, {"--bench", 0}, {"-q", 0}, {"--quiet", 0}};
  int i, only_files = 0, choice;
  size_t j;
  memset(o, 0, sizeof *o);
  o->runs = 10;
  for (i = 1; i < argc; ++i) {
    const char *arg = argv[i], *val = NULL, *eq;
    char name[32];
    int takes_value;
    if (only_files || arg[0] != '-' || !arg[1]) {
      if (o->ninputs == 3) return usage_error("expected 3 input files (q.npy k.npy v.npy), got a 4th: '%s'", arg);
      o->inputs[o->ninputs++] = arg;
      continue;
    }
    if (!strcmp(arg, "--")) { only_files = 1; continue; }
    eq = arg[1] == '-' ? strchr(arg, '=') : NULL;
    if ((size_t)(eq ? eq - arg : (ptrdiff_t)strlen(arg)) >= sizeof name)
      return usage_error("unknown option '%s'", arg);
    if (eq) {
      memcpy(name, arg, (size_t)(eq - arg));
      name[eq - arg] = '\0';
      val = eq + 1;
    } else {
      memcpy(name, arg, strlen(arg) + 1);
    }
    if (!strcmp(name, "-h") || !strcmp(name, "--help")) { usage(stdout); return -1; }
    if (!strcmp(name, "--version")) {
      printf("%s (combiner.h %d.%d.%d)\n", CLI_NAME, COMBINER_VERSION_MAJOR, COMBINER_VERSION_MINOR,
             COMBINER_VERSION_PATCH);
      return -1;
    }
    for (j = 0; j < sizeof flags / sizeof flags[0] && strcmp(name, flags[j].name); ++j) {}
    if (j == sizeof flags / sizeof flags[0]) return usage_error("unknown option '%s'", arg);
    takes_value = flags[j].takes_value;
    if (!takes_value && val) return usage_error("%s takes no value", name);
    if (takes_value && !val) {
      if (i + 1 >= argc) return usage_error("%s needs a value", name);
      val = argv[++i];
    }
    if (!strcmp(name, "-o") || !strcmp(name, "--output")) o->out_path = val;
    else if (!strcmp(name, "--matrix")) o->matrix_path = val;
    else if (!strcmp(name, "--layout")) {
      if (!parse_choice(name, val, layouts, 2, &o->head_major)) return 0;
    } else if (!strcmp(name, "--kind")) {
      if (!parse_choice(name, val, kinds, 5, &choice)) return 0;
      o->cfg.kind = kind_values[choice];
    } else if (!strcmp(name, "--causal")) o->cfg.causal = 1;
    else if (!strcmp(name, "--block")) {
      if (!parse_int(name, val, 1, &o->cfg.block)) return 0;
    } else if (!strcmp(name, "--pool")) {
      if (!parse_choice(name, val, pools, 2, &choice)) return 0;
      o->cfg.pool = choice ? COMBINER_POOL_MEAN : COMBINER_POOL_MAX;
    } else if (!strcmp(name, "--axial-key")) {
      if (!parse_choice(name, val, keys, 2, &choice)) return 0;
      o->cfg.axial_key = choice ? COMBINER_AXIAL_KEY_SELF : COMBINER_AXIAL_KEY_WSUM;
    } else if (!strcmp(name, "--mixture-norm")) {
      if (!parse_choice(name, val, norms, 2, &choice)) return 0;
      o->cfg.mixture_norm = choice ? COMBINER_MIXTURE_AVERAGE : COMBINER_MIXTURE_JOINT;
    } else if (!strcmp(name, "--scale")) {
      char *end;
      double s;
      errno = 0;
      s = strtod(val, &end);
      if (end == val || *end || errno || !(fabs(s) <= FLT_MAX) || (float)s == 0.0f)
        return usage_error("--scale: '%s' is not a finite nonzero number", val);
      o->cfg.scale = (float)s;
    } else if (!strcmp(name, "--threads")) {
      if (!parse_int(name, val, 1, &o->cfg.num_threads)) return 0;
    } else if (!strcmp(name, "--runs")) {
      if (!parse_int(name, val, 1, &o->runs)) return 0;
    } else if (!strcmp(name, "--bench")) o->bench = 1;
    else o->quiet = 1;                 /* -q, --quiet: the last entry of flags */
  }
  if (o->ninputs != 3)
    return usage_error("expected 3 input files (q.npy k.npy v.npy), got %d", o->ninputs);
  if (!o->out_path && !o->matrix_path && !o->bench)
    return usage_error("nothing to do: give -o out.npy, --matrix A.npy and/or --bench");
  if (o->out_path && o->matrix_path && !strcmp(o->out_path, o->matrix_path))
    return usage_error("-o and --matrix name the same file '%s'", o->out_path);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Shapes to a config                                                       */
/* ------------------------------------------------------------------------ */

/* Position and head counts of a tensor in the chosen layout. */
static size_t axis_len(const tensor *t, int head_major) { return t->shape[head_major ? 1 : 0]; }
static size_t axis_heads(const tensor *t, int head_major) { return t->shape[head_major ? 0 : 1]; }

static int load_inputs(const cli_options *o, tensor *q, tensor *k, tensor *v) {
  const int hm = o->head_major;
  const char *note = hm ? "(head-major, --layout hld)" : "(token-major; --layout hld reads [H, L, D])";
  const char *read_as = hm ? "head-major [H, L, D], --layout hld" : "token-major [L, H, D]";
  char axes[3][96];
  snprintf(axes[0], sizeof axes[0], "%s %s", hm ? "[H, L, D]" : "[L, H, D]", note);
  snprintf(axes[1], sizeof axes[1], "%s %s", hm ? "[Hkv, L, D]" : "[L, Hkv, D]", note);
  snprintf(axes[2], sizeof axes[2], "%s %s", hm ? "[Hkv, L, Dv]" : "[L, Hkv, Dv]", note);
  if (!tensor_load(q, o->inputs[0], axes[0]) || !tensor_load(k, o->inputs[1], axes[1]) ||
      !tensor_load(v, o->inputs[2], axes[2]))
    return 0;
  if (axis_len(k, hm) != axis_len(q, hm))
    return fail(k->path, "sequence length %lu does not match %s's %lu (read as %s)", (unsigned long)axis_len(k, hm),
                q->path, (unsigned long)axis_len(q, hm), read_as);
  if (k->shape[2] != q->shape[2])
    return fail(k->path, "head dim %lu does not match %s's %lu (q and k have the same width)",
                (unsigned long)k->shape[2], q->path, (unsigned long)q->shape[2]);
  if (axis_heads(q, hm) % axis_heads(k, hm) != 0)
    return fail(k->path, "%lu kv heads do not divide the %lu heads of %s (GQA needs H %% Hkv == 0)",
                (unsigned long)axis_heads(k, hm), (unsigned long)axis_heads(q, hm), q->path);
  if (axis_len(v, hm) != axis_len(q, hm))
    return fail(v->path, "sequence length %lu does not match %s's %lu (read as %s)", (unsigned long)axis_len(v, hm),
                q->path, (unsigned long)axis_len(q, hm), read_as);
  if (axis_heads(v, hm) != axis_heads(k, hm))
    return fail(v->path, "kv heads: %lu, but %s has %lu (v and k need the same number)",
                (unsigned long)axis_heads(v, hm), k->path, (unsigned long)axis_heads(k, hm));
  return 1;
}

/* Every size from the files; head-major is one pair of strides per tensor. */
static combiner_config make_config(const cli_options *o, const tensor *q, const tensor *k, const tensor *v) {
  combiner_config c = o->cfg;
  const int hm = o->head_major;
  c.seq_len = (int)axis_len(q, hm);
  c.num_heads = (int)axis_heads(q, hm);
  c.num_kv_heads = (int)axis_heads(k, hm);
  c.head_dim = (int)q->shape[2];
  c.value_dim = (int)v->shape[2];
  if (hm) {
    const ptrdiff_t L = c.seq_len;
    c.q_layout.token_stride = c.head_dim; c.q_layout.head_stride = L * c.head_dim;
    c.k_layout.token_stride = c.head_dim; c.k_layout.head_stride = L * c.head_dim;
    c.v_layout.token_stride = c.value_dim; c.v_layout.head_stride = L * c.value_dim;
    c.out_layout.token_stride = c.value_dim; c.out_layout.head_stride = L * c.value_dim;
  }
  return c;
}

/* ------------------------------------------------------------------------ */
/* Timing                                                                   */
/* ------------------------------------------------------------------------ */

static double now_seconds(void) {
#if defined(CLOCK_MONOTONIC)
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0) return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#endif
  return (double)clock() / CLOCKS_PER_SEC;
}

static int compare_doubles(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Times `runs` more calls after the warm-up the caller already made. */
static int bench(const combiner_config *cfg, const tensor *q, const tensor *k, const tensor *v, float *out,
                 void *work, size_t work_size, int runs) {
  double *t = (double *)malloc((size_t)runs * sizeof *t);
  double median, flops = combiner_flops(cfg);
  int r;
  if (!t) return fail("--bench", "out of memory");
  for (r = 0; r < runs; ++r) {
    const double t0 = now_seconds();
    const combiner_status st = combiner_attention(cfg, q->data, k->data, v->data, out, work, work_size);
    t[r] = now_seconds() - t0;
    if (st != COMBINER_OK) {
      free(t);
      return fail("combiner_attention", "%s", combiner_status_string(st));
    }
  }
  qsort(t, (size_t)runs, sizeof *t, compare_doubles);
  median = runs % 2 ? t[runs / 2] : 0.5 * (t[runs / 2 - 1] + t[runs / 2]);
  printf("bench: median %.3f ms (min %.3f, max %.3f) over %d runs after 1 warm-up; "
         "%.3g GFLOP per call, %.2f GFLOP/s\n",
         1e3 * median, 1e3 * t[0], 1e3 * t[runs - 1], runs, flops * 1e-9,
         median > 0.0 ? flops / median * 1e-9 : 0.0);
  free(t);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* main                                                                     */
/* ------------------------------------------------------------------------ */

static int run(const cli_options *o, tensor *q, tensor *k, tensor *v) {
  combiner_config cfg, res;
  combiner_status st;
  size_t work_size = 0, out_count, cells, shape[3];
  float *out = NULL, *matrix = NULL;
  void *work = NULL;
  int ok = 0;
  if (!load_inputs(o, q, k, v)) return 0;
  cfg = make_config(o, q, k, v);
  if ((st = combiner_resolve_config(&cfg, &res)) != COMBINER_OK)
    return fail("combiner_resolve_config", "%s", combiner_status_string(st));
  if (o->matrix_path && res.seq_len > CLI_MATRIX_MAX_L)
    return fail(o->matrix_path, "L = %d is too large for the dense attention matrix [H, L, L] "
                "(--matrix is for L <= %d)", res.seq_len, CLI_MATRIX_MAX_L);
  /* L*H*Dv floats: more than q or v holds when Dv > D or with GQA */
  out_count = (size_t)res.seq_len * (size_t)res.num_heads * (size_t)res.value_dim;
  if (out_count / (size_t)res.value_dim / (size_t)res.num_heads != (size_t)res.seq_len ||
      out_count > (size_t)PTRDIFF_MAX / sizeof(float))
    return fail("output", "[L, H, Dv] = [%d, %d, %d] is too large", res.seq_len, res.num_heads, res.value_dim);
  if (o->out_path || o->bench) {
    work_size = combiner_workspace_size(&cfg);
    if (!work_size) return fail("combiner_workspace_size", "the configuration is not valid");
    out = (float *)malloc(out_count * sizeof(float));
    work = malloc(work_size);
    if (!out || !work) {
      fail("output", "out of memory (%lu + %lu bytes)", (unsigned long)(out_count * sizeof(float)),
           (unsigned long)work_size);
      goto done;
    }
    st = combiner_attention(&cfg, q->data, k->data, v->data, out, work, work_size);
    if (st != COMBINER_OK) { fail("combiner_attention", "%s", combiner_status_string(st)); goto done; }
    if (o->out_path) {
      shape[0] = o->head_major ? (size_t)res.num_heads : (size_t)res.seq_len;
      shape[1] = o->head_major ? (size_t)res.seq_len : (size_t)res.num_heads;
      shape[2] = (size_t)res.value_dim;
      if (!npy_write(o->out_path, out, shape, 3)) goto done;
    }
  }
  if (!o->quiet)
    printf("%s%s L=%d H=%d Hkv=%d D=%d Dv=%d block=%d scale=%g threads=%d layout=%s%s%s%s%s\n",
           combiner_kind_string(res.kind), res.causal ? " causal" : "", res.seq_len, res.num_heads,
           res.num_kv_heads, res.head_dim, res.value_dim, res.block, (double)res.scale, res.num_threads,
           o->head_major ? "hld" : "lhd", o->out_path ? " -> " : "", o->out_path ? o->out_path : "",
           o->matrix_path ? " matrix -> " : "", o->matrix_path ? o->matrix_path : "");
  fflush(stdout);
  if (o->bench && !bench(&cfg, q, k, v, out, work, work_size, o->runs)) goto done;
  if (o->matrix_path) {
    cells = (size_t)res.seq_len * (size_t)res.seq_len;          /* L <= 4096: no overflow */
    if (cells > SIZE_MAX / sizeof(float) / (size_t)res.num_heads) {
      fail(o->matrix_path, "H * L * L floats do not fit in memory");
      goto done;
    }
    matrix = (float *)malloc(cells * (size_t)res.num_heads * sizeof(float));
    if (!matrix) {
      fail(o->matrix_path, "out of memory: %lu bytes for [H, L, L] = [%d, %d, %d]",
           (unsigned long)(cells * (size_t)res.num_heads * sizeof(float)), res.num_heads, res.seq_len,
           res.seq_len);
      goto done;
    }
    st = combiner_attention_matrix(&cfg, q->data, k->data, matrix);
    if (st != COMBINER_OK) { fail("combiner_attention_matrix", "%s", combiner_status_string(st)); goto done; }
    shape[0] = (size_t)res.num_heads; shape[1] = shape[2] = (size_t)res.seq_len;
    if (!npy_write(o->matrix_path, matrix, shape, 3)) goto done;
  }
  ok = 1;
done:
  free(matrix);
  free(work);
  free(out);
  return ok;
}

int main(int argc, char **argv) {
  cli_options o;
  tensor q, k, v;
  int parsed, ok;
  parsed = parse_options(argc, argv, &o);
  if (parsed < 0) return 0;
  if (!parsed) return EXIT_USAGE;
  memset(&q, 0, sizeof q); memset(&k, 0, sizeof k); memset(&v, 0, sizeof v);
  ok = run(&o, &q, &k, &v);
  free(q.data); free(k.data); free(v.data);
  if (fflush(stdout) != 0) ok = fail("stdout", "write error: %s", strerror(errno));
  return ok ? 0 : EXIT_INPUT;
}
