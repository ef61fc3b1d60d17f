/* combiner mpi_attention: one sequence split over MPI ranks (SPEC 7).
 *
 * Every rank owns a contiguous range of positions [bounds[r], bounds[r+1])
 * of one sequence of length L and computes the attention outputs of its own
 * queries with the ranges API of combiner.h. No tensor is scattered: each
 * rank generates its own shard from a hash of (tensor, position, head,
 * element), so every rank (and the check on rank 0) sees the same numbers.
 * A rank holds q for its positions and k, v for [kv_begin, kv_end) (its
 * positions and the halo its direct terms reach, from combiner_range_plan),
 * and then:
 *   1. combiner_range_pools    its round-1 message (often empty)
 *   2. MPI_Allgatherv          every rank's round-1 message, in rank order
 *   3. combiner_range_states   its round-2 message: partial softmax states
 *   4. MPI_Allgatherv          every rank's round-2 message
 *   5. combiner_range_combine  its output rows
 * Each phase is timed (MPI_Wtime, after a barrier). Rank 0 prints one line
 * per rank and a summary: positions, halo rows, the bytes of the messages it
 * sends to and receives from other ranks, the bytes of K/V of the halo (a
 * model would fetch them from its neighbours or recompute them; here they
 * are generated locally), and what an all-gather of K/V (or ring attention,
 * which moves the same K/V around the ring) would receive: K and V of every
 * position it does not own, 2*(L - own)*Hkv*d*elem bytes
 * (= 2*L*d*Hkv*(P-1)/P*4 for an even split of float32 K/V).
 *
 *   --check   gathers every rank's rows on rank 0 (MPI_Gatherv, not counted
 *             as traffic), runs combiner_attention on the whole sequence
 *             there and prints the largest relative difference
 *             max|a-b| / max|ref|; fails above 1e-6, or when the rows are
 *             not bit-identical where the library promises it (one rank;
 *             FIXED with every bound a multiple of the block)
 *   --single  after the distributed run (shards freed, MPI finalized), rank
 *             0 times combiner_attention on the whole sequence with
 *             --threads threads and prints it beside the distributed time
 *
 * Exit status: 0 on success, 1 if a call or the check fails, 2 on bad flags.
 *
 *   mpirun -np 4 combiner-mpi-attention [--kind fixed|logsparse] [--L N] [--heads H]
 *       [--kv-heads G] [--dim d] [--block m] [--bidirectional] [--split even|blocks|random]
 *       [--seed S] [--threads t] [--runs R] [--f16] [--check] [--single]
 */
#define _POSIX_C_SOURCE 200809L
#define COMBINER_IMPLEMENTATION
#include "combiner.h"

#include <mpi.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#if defined(_OPENMP) && !defined(COMBINER_NO_OPENMP)
#  define MPI_EXAMPLE_OPENMP 1
#  include <omp.h>
#endif

#define CHECK_LIMIT 1e-6
#define MAX_LEN (1 << 28)
#define MAX_HEADS 1024   /* the hash packs a head in 10 bits */
#define MAX_DIM 4096     /* and an element in 12 */

enum { TENSOR_Q = 1, TENSOR_K = 2, TENSOR_V = 3 };
enum { SPLIT_EVEN, SPLIT_BLOCKS, SPLIT_RANDOM };

typedef struct options {
  combiner_kind kind;
  int len, heads, kv_heads, dim, block, causal, split, threads, runs, f16, check, single;
  unsigned seed;
} options;

/* ---- the data: a hash of (tensor, position, head, element) ---------------- */

static uint64_t mix64(uint64_t x) {   /* splitmix64's finalizer */
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* Uniform in [-1, 1), the same on every rank for the same coordinates. */
static float element_value(int tensor, int pos, int head, int x) {
  const uint64_t key = (((((uint64_t)tensor << 31) | (uint64_t)pos) << 10 | (uint64_t)head) << 12) | (uint64_t)x;
  return (float)((double)(mix64(key + 0x9e3779b97f4a7c15ULL) >> 40) * (2.0 / 16777216.0) - 1.0);
}

/* float32 -> IEEE binary16, rounding to nearest even (values in [-1, 1)) */
static unsigned short to_f16(float f) {
  unsigned int b;
  unsigned long x, a, h, rem;
  memcpy(&b, &f, sizeof b);
  x = b;
  a = x & 0x7fffffffUL;
  if (a >= 0x477ff000UL) return (unsigned short)(((x >> 16) & 0x8000UL) | 0x7c00UL);
  if (a < 0x38800000UL)
    return (unsigned short)(((x >> 16) & 0x8000UL) | (unsigned long)rint(fabs((double)f) * 16777216.0));
  h = (((a >> 23) - 112UL) << 10) | ((a & 0x7fffffUL) >> 13);
  rem = a & 0x1fffUL;
  if (rem > 0x1000UL || (rem == 0x1000UL && (h & 1UL))) ++h;
  return (unsigned short)(((x >> 16) & 0x8000UL) | h);
}

/* Rows [begin, end) of a token-major [L][heads][width] tensor, as float32
 * or binary16 (half != 0) into dst. */
static void generate_rows(void *dst, int tensor, int begin, int end, int heads, int width, int half,
                          int threads) {
  const ptrdiff_t row = (ptrdiff_t)heads * width;
  ptrdiff_t i;
  (void)threads;
#ifdef MPI_EXAMPLE_OPENMP
#  pragma omp parallel for num_threads(threads) schedule(static)
#endif
  for (i = begin; i < end; ++i) {
    int h, x;
    for (h = 0; h < heads; ++h)
      for (x = 0; x < width; ++x) {
        const size_t at = (size_t)((i - begin) * row + (ptrdiff_t)h * width + x);
        const float value = element_value(tensor, (int)i, h, x);
        if (half) ((unsigned short *)dst)[at] = to_f16(value);
        else ((float *)dst)[at] = value;
      }
  }
}

/* ---- the ranks' bounds, the same on every rank ------------------------------ */

/* 0 = bounds[0] < ... < bounds[P] = L; 0 if the split is impossible. */
static int make_bounds(const options *o, int block, int nranks, int *bounds) {
  int r;
  if (o->len < nranks) return 0;
  bounds[0] = 0;
  bounds[nranks] = o->len;
  if (o->split == SPLIT_EVEN) {
    for (r = 1; r < nranks; ++r) bounds[r] = (int)((long long)o->len * r / nranks);
  } else if (o->split == SPLIT_BLOCKS) {
    const long long blocks = ((long long)o->len + block - 1) / block;
    if (blocks < nranks) return 0;
    for (r = 1; r < nranks; ++r) bounds[r] = (int)(blocks * r / nranks * block);
  } else {
    /* nranks - 1 distinct cut points in [1, L-1], drawn from the seed, sorted */
    uint64_t state = (uint64_t)o->seed * 0x2545f4914f6cdd1dULL + 1;
    int n = 0, j;
    while (n < nranks - 1) {
      int cut, seen = 0;
      state = mix64(state + 0x9e3779b97f4a7c15ULL);
      cut = 1 + (int)(state % (uint64_t)(o->len - 1));
      for (j = 1; j <= n; ++j) seen |= bounds[j] == cut;
      if (!seen) bounds[++n] = cut;
    }
    for (r = 2; r < nranks; ++r)   /* insertion sort: nranks is small */
      for (j = r; j > 1 && bounds[j - 1] > bounds[j]; --j) {
        const int t = bounds[j];
        bounds[j] = bounds[j - 1];
        bounds[j - 1] = t;
      }
  }
  for (r = 0; r < nranks; ++r)
    if (bounds[r] >= bounds[r + 1]) return 0;
  return 1;
}

/* ---- small helpers ---------------------------------------------------------- */

static void die(int rank, const char *what, combiner_status st) {
  fprintf(stderr, "mpi_attention: rank %d: %s: %s\n", rank, what, combiner_status_string(st));
  MPI_Abort(MPI_COMM_WORLD, 1);
}

static void *xmalloc(size_t bytes, int rank, const char *what) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "mpi_attention: rank %d: cannot allocate %zu bytes for %s\n", rank, bytes, what);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return p;
}

static double seconds_now(void) {   /* for the single-process run, after MPI_Finalize */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mib(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0.0;
  return (double)ru.ru_maxrss / 1024.0;   /* Linux: KiB */
}

static void cpu_model(char *name, size_t size) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  char line[512];
  snprintf(name, size, "unknown CPU");
  if (!f) return;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) == 0) {
      char *colon = strchr(line, ':'), *end;
      if (!colon) break;
      colon += 1 + (colon[1] == ' ');
      end = colon + strlen(colon);
      while (end > colon && (end[-1] == '\n' || end[-1] == ' ')) *--end = '\0';
      snprintf(name, size, "%s", colon);
      break;
    }
  }
  fclose(f);
}

/* "12.3 MiB" */
static const char *format_bytes(double bytes, char *buf, size_t size) {
  static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  if (u == 0) snprintf(buf, size, "%.0f B", bytes);
  else snprintf(buf, size, "%.*f %s", bytes < 10.0 ? 2 : 1, bytes, unit[u]);
  return buf;
}

static int count_of(size_t floats, int rank, const char *what) {
  if (floats > (size_t)0x7fffffff) {
    fprintf(stderr, "mpi_attention: rank %d: %s of %zu floats does not fit an MPI count\n", rank, what, floats);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return (int)floats;
}

/* ---- options ------------------------------------------------------------------ */

static void usage(const char *prog) {
  fprintf(stderr,
          "usage: mpirun -np P %s [options]\n"
          "  --kind K          fixed (default) or logsparse (axial, mixture, dense: refused by the library)\n"
          "  --L N             sequence length (65536)\n"
          "  --heads H         query heads (8)\n"
          "  --kv-heads G      kv heads, dividing H (H)\n"
          "  --dim d           head dim = value dim (64)\n"
          "  --block m         the model's block; 0: ceil(sqrt(L)) (0)\n"
          "  --bidirectional   not causal\n"
          "  --split S         even: bounds L*r/P (default); blocks: whole blocks per rank;\n"
          "                    random: strictly increasing bounds drawn from --seed\n"
          "  --seed S          seed of --split random (1)\n"
          "  --threads t       cfg.num_threads of every rank, and of --single (1)\n"
          "  --runs R          run the distributed pipeline R times, report the fastest (1)\n"
          "  --f16             K and V in IEEE binary16 (cfg.k_type = cfg.v_type = COMBINER_F16)\n"
          "  --check           compare with combiner_attention on rank 0 (small L)\n"
          "  --single          time combiner_attention on the whole sequence on rank 0 afterwards\n",
          prog);
}

static int parse_int(const char *s, long lo, long hi, int *value) {
  char *end;
  long x;
  errno = 0;
  x = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || x < lo || x > hi) return 0;
  *value = (int)x;
  return 1;
}

static int parse_options(int argc, char **argv, options *o) {
  static const struct { const char *name; combiner_kind kind; } kinds[] = {
    {"fixed", COMBINER_FIXED}, {"logsparse", COMBINER_LOGSPARSE}, {"axial", COMBINER_AXIAL},
    {"mixture", COMBINER_MIXTURE}, {"dense", COMBINER_DENSE}};
  int i, seed = 1;
  memset(o, 0, sizeof *o);
  o->kind = COMBINER_FIXED;
  o->len = 65536;
  o->heads = 8;
  o->kv_heads = 0;
  o->dim = 64;
  o->causal = 1;
  o->split = SPLIT_EVEN;
  o->threads = 1;
  o->runs = 1;
  for (i = 1; i < argc; ++i) {
    const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--bidirectional") == 0) { o->causal = 0; continue; }
    if (strcmp(a, "--check") == 0) { o->check = 1; continue; }
    if (strcmp(a, "--single") == 0) { o->single = 1; continue; }
    if (strcmp(a, "--f16") == 0) { o->f16 = 1; continue; }
    if (!val) return 0;
    ++i;
    if (strcmp(a, "--kind") == 0) {
      size_t k;
      for (k = 0; k < sizeof kinds / sizeof kinds[0] && strcmp(val, kinds[k].name) != 0; ++k) {}
      if (k == sizeof kinds / sizeof kinds[0]) return 0;
      o->kind = kinds[k].kind;
    } else if (strcmp(a, "--split") == 0) {
      if (strcmp(val, "even") == 0) o->split = SPLIT_EVEN;
      else if (strcmp(val, "blocks") == 0) o->split = SPLIT_BLOCKS;
      else if (strcmp(val, "random") == 0) o->split = SPLIT_RANDOM;
      else return 0;
    } else if (strcmp(a, "--L") == 0) { if (!parse_int(val, 1, MAX_LEN, &o->len)) return 0; }
    else if (strcmp(a, "--heads") == 0) { if (!parse_int(val, 1, MAX_HEADS, &o->heads)) return 0; }
    else if (strcmp(a, "--kv-heads") == 0) { if (!parse_int(val, 1, MAX_HEADS, &o->kv_heads)) return 0; }
    else if (strcmp(a, "--dim") == 0) { if (!parse_int(val, 1, MAX_DIM, &o->dim)) return 0; }
    else if (strcmp(a, "--block") == 0) { if (!parse_int(val, 0, MAX_LEN, &o->block)) return 0; }
    else if (strcmp(a, "--seed") == 0) { if (!parse_int(val, 0, 0x7fffffffL, &seed)) return 0; }
    else if (strcmp(a, "--threads") == 0) { if (!parse_int(val, 1, 1024, &o->threads)) return 0; }
    else if (strcmp(a, "--runs") == 0) { if (!parse_int(val, 1, 1000, &o->runs)) return 0; }
    else return 0;
  }
  if (o->kv_heads == 0) o->kv_heads = o->heads;
  o->seed = (unsigned)seed;
  return o->heads % o->kv_heads == 0;
}

/* ---- one rank's part --------------------------------------------------------- */

/* What every rank reports to rank 0 (doubles, for one MPI_Gather). */
enum {
  STAT_POSITIONS, STAT_HALO, STAT_SENT, STAT_RECEIVED, STAT_HALO_BYTES, STAT_RING,
  STAT_POOLS, STAT_ROUND1, STAT_STATES, STAT_ROUND2, STAT_COMBINE, STAT_TOTAL, STAT_CPU, STAT_RSS, STAT_COUNT
};
static const int phase_stats[] = {STAT_POOLS, STAT_ROUND1, STAT_STATES, STAT_ROUND2, STAT_COMBINE, STAT_TOTAL};

typedef struct shard {
  combiner_range_info info;
  float *q, *out;
  void *k, *v;
  float *pools_out, *pools_in, *states_out, *states_in;
  void *work;
  int *pool_counts, *pool_displs, *state_counts, *state_displs;
  int pool_total, state_total;
} shard;

static void shard_free(shard *s) {
  free(s->q); free(s->out); free(s->k); free(s->v);
  free(s->pools_out); free(s->pools_in); free(s->states_out); free(s->states_in); free(s->work);
  free(s->pool_counts);   /* the four count arrays are one allocation */
  memset(s, 0, sizeof *s);
}

/* Plans every rank's messages (the counts of the all-gathers), allocates and
 * generates this rank's shard. */
static void shard_init(shard *s, const combiner_config *cfg, const options *o, int nranks, const int *bounds,
                       int rank) {
  const size_t elem = o->f16 ? 2 : 4, d = (size_t)o->dim;
  combiner_status st;
  size_t rows, kv_rows;
  int r;
  memset(s, 0, sizeof *s);
  s->pool_counts = (int *)xmalloc(4 * (size_t)nranks * sizeof(int), rank, "counts");
  s->pool_displs = s->pool_counts + nranks;
  s->state_counts = s->pool_counts + 2 * nranks;
  s->state_displs = s->pool_counts + 3 * nranks;
  for (r = 0; r < nranks; ++r) {
    combiner_range_info info;
    st = combiner_range_plan(cfg, nranks, bounds, r, &info);
    if (st != COMBINER_OK) die(rank, "combiner_range_plan", st);
    if (r == rank) s->info = info;
    s->pool_counts[r] = count_of(info.pool_floats, rank, "a round-1 message");
    s->state_counts[r] = count_of(info.state_floats, rank, "a round-2 message");
    s->pool_displs[r] = s->pool_total;
    s->state_displs[r] = s->state_total;
    s->pool_total = count_of((size_t)s->pool_total + info.pool_floats, rank, "round 1");
    s->state_total = count_of((size_t)s->state_total + info.state_floats, rank, "round 2");
  }
  rows = (size_t)(s->info.end - s->info.begin);
  kv_rows = (size_t)(s->info.kv_end - s->info.kv_begin);
  s->q = (float *)xmalloc(rows * (size_t)o->heads * d * sizeof(float), rank, "q");
  s->out = (float *)xmalloc(rows * (size_t)o->heads * d * sizeof(float), rank, "out");
  s->k = xmalloc(kv_rows * (size_t)o->kv_heads * d * elem, rank, "k");
  s->v = xmalloc(kv_rows * (size_t)o->kv_heads * d * elem, rank, "v");
  s->pools_out = (float *)xmalloc(s->info.pool_floats * sizeof(float), rank, "round-1 message");
  s->pools_in = (float *)xmalloc((size_t)s->pool_total * sizeof(float), rank, "round-1 messages");
  s->states_out = (float *)xmalloc(s->info.state_floats * sizeof(float), rank, "round-2 message");
  s->states_in = (float *)xmalloc((size_t)s->state_total * sizeof(float), rank, "round-2 messages");
  s->work = xmalloc(s->info.workspace_size, rank, "workspace");
  generate_rows(s->q, TENSOR_Q, s->info.begin, s->info.end, o->heads, o->dim, 0, o->threads);
  generate_rows(s->k, TENSOR_K, s->info.kv_begin, s->info.kv_end, o->kv_heads, o->dim, o->f16, o->threads);
  generate_rows(s->v, TENSOR_V, s->info.kv_begin, s->info.kv_end, o->kv_heads, o->dim, o->f16, o->threads);
}

static double cpu_seconds(void) {   /* this process's CPU time, all its threads */
  struct timespec ts;
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return 0.0;
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The five steps, timed: t[0..6] = pools, round 1, states, round 2, combine,
 * total (wall), total CPU time of the process. */
static void shard_run(shard *s, const combiner_config *cfg, int nranks, const int *bounds, int rank, double *t) {
  combiner_status st;
  double t0, t1, cpu0;
  MPI_Barrier(MPI_COMM_WORLD);
  cpu0 = cpu_seconds();
  t0 = t1 = MPI_Wtime();
  st = combiner_range_pools(cfg, nranks, bounds, rank, s->q, s->info.pool_floats ? s->pools_out : NULL);
  if (st != COMBINER_OK) die(rank, "combiner_range_pools", st);
  t[0] = MPI_Wtime() - t1;
  t1 = MPI_Wtime();
  if (s->pool_total > 0)   /* every rank knows every size: all skip it together */
    MPI_Allgatherv(s->pools_out, s->pool_counts[rank], MPI_FLOAT, s->pools_in, s->pool_counts, s->pool_displs,
                   MPI_FLOAT, MPI_COMM_WORLD);
  t[1] = MPI_Wtime() - t1;
  t1 = MPI_Wtime();
  st = combiner_range_states(cfg, nranks, bounds, rank, s->q, s->k, s->v, s->pool_total ? s->pools_in : NULL,
                             s->states_out, s->work, s->info.workspace_size);
  if (st != COMBINER_OK) die(rank, "combiner_range_states", st);
  t[2] = MPI_Wtime() - t1;
  t1 = MPI_Wtime();
  if (s->state_total > 0)
    MPI_Allgatherv(s->states_out, s->state_counts[rank], MPI_FLOAT, s->states_in, s->state_counts,
                   s->state_displs, MPI_FLOAT, MPI_COMM_WORLD);
  t[3] = MPI_Wtime() - t1;
  t1 = MPI_Wtime();
  st = combiner_range_combine(cfg, nranks, bounds, rank, s->q, s->k, s->v, s->state_total ? s->states_in : NULL,
                              s->out, s->work, s->info.workspace_size);
  if (st != COMBINER_OK) die(rank, "combiner_range_combine", st);
  t[4] = MPI_Wtime() - t1;
  t[5] = MPI_Wtime() - t0;
  t[6] = cpu_seconds() - cpu0;
}

/* ---- rank 0's report ------------------------------------------------------------ */

static void print_header(const options *o, const combiner_config *resolved, int nranks, const int *bounds) {
  char cpu[256];
  static const char *split_name[] = {"even", "blocks", "random"};
  int r;
  cpu_model(cpu, sizeof cpu);
  printf("mpi_attention: P = %d rank%s on %s (%s kernels): %s %s, L %d, H %d, Hkv %d, d %d, block %d, "
         "split %s, %d thread%s per rank, K/V %s\n",
         nranks, nranks == 1 ? "" : "s", cpu, combiner_kernel_name(), combiner_kind_string(resolved->kind),
         o->causal ? "causal" : "bidirectional", o->len, o->heads, resolved->num_kv_heads, o->dim, resolved->block,
         split_name[o->split], o->threads, o->threads == 1 ? "" : "s", o->f16 ? "f16" : "f32");
  printf("bounds:");
  for (r = 0; r <= nranks && r <= 16; ++r) printf(" %d", bounds[r]);
  if (nranks > 16) printf(" ... %d", bounds[nranks]);
  printf("\n");
}

/* One line per rank and the summary: sums of positions, halo and bytes, the
 * largest time of every phase over the ranks, the largest peak RSS. */
static void print_table(const double *all, int nranks) {
  double sum[STAT_COUNT], top[STAT_COUNT];
  char b[4][32];
  int r, j;
  printf("%5s %9s %5s %10s %10s %10s %10s %9s %8s %8s %8s %8s %8s %8s %8s %6s\n", "rank", "positions", "halo",
         "sent", "received", "halo K/V", "all-gather", "ratio", "pools", "round1", "states", "round2", "combine",
         "total", "CPU", "RSS");
  printf("%5s %9s %5s %10s %10s %10s %10s %9s %8s %8s %8s %8s %8s %8s %8s %6s\n", "", "", "rows", "(msgs)",
         "(msgs)", "(bytes)", "K/V recv", "", "ms", "ms", "ms", "ms", "ms", "ms", "ms", "MiB");
  for (j = 0; j < STAT_COUNT; ++j) sum[j] = top[j] = 0.0;
  for (r = 0; r < nranks; ++r) {
    const double *s = all + (size_t)r * STAT_COUNT;
    const double ours = s[STAT_RECEIVED] + s[STAT_HALO_BYTES];
    for (j = 0; j < STAT_COUNT; ++j) {
      sum[j] += s[j];
      if (s[j] > top[j]) top[j] = s[j];
    }
    printf("%5d %9.0f %5.0f %10s %10s %10s %10s %8.0fx", r, s[STAT_POSITIONS], s[STAT_HALO],
           format_bytes(s[STAT_SENT], b[0], sizeof b[0]), format_bytes(s[STAT_RECEIVED], b[1], sizeof b[1]),
           format_bytes(s[STAT_HALO_BYTES], b[2], sizeof b[2]), format_bytes(s[STAT_RING], b[3], sizeof b[3]),
           ours > 0.0 ? s[STAT_RING] / ours : 0.0);
    for (j = 0; j < 6; ++j) printf(" %8.2f", 1e3 * s[phase_stats[j]]);
    printf(" %8.0f %6.0f\n", 1e3 * s[STAT_CPU], s[STAT_RSS]);
  }
  printf("%5s %9.0f %5.0f %10s %10s %10s %10s %8.0fx", "all", sum[STAT_POSITIONS], sum[STAT_HALO],
         format_bytes(sum[STAT_SENT], b[0], sizeof b[0]), format_bytes(sum[STAT_RECEIVED], b[1], sizeof b[1]),
         format_bytes(sum[STAT_HALO_BYTES], b[2], sizeof b[2]), format_bytes(sum[STAT_RING], b[3], sizeof b[3]),
         sum[STAT_RECEIVED] + sum[STAT_HALO_BYTES] > 0.0
             ? sum[STAT_RING] / (sum[STAT_RECEIVED] + sum[STAT_HALO_BYTES]) : 0.0);
  for (j = 0; j < 6; ++j) printf(" %8.2f", 1e3 * top[phase_stats[j]]);
  printf(" %8.0f %6.0f\n", 1e3 * sum[STAT_CPU], top[STAT_RSS]);
  printf("(sent: the rank's messages times the P-1 ranks that receive them; received: the other ranks' "
         "messages; halo K/V: rows outside its range it reads, generated locally here; all-gather K/V recv: "
         "K and V of every position it does not own, what ring attention moves too; ratio = all-gather / "
         "(received + halo); CPU: the process's CPU time in the run; all: sums, the largest time of each phase over "
         "the ranks, the sum of CPU times, the largest peak RSS)\n");
}

/* ---- the whole sequence on rank 0 (after MPI_Finalize) --------------------------- */

typedef struct whole {
  float *q, *out;
  void *k, *v, *work;
  size_t work_bytes, bytes;
} whole;

static int whole_init(whole *w, const combiner_config *cfg, const options *o) {
  const size_t elem = o->f16 ? 2 : 4, L = (size_t)o->len, d = (size_t)o->dim;
  const size_t qbytes = L * (size_t)o->heads * d * sizeof(float), kvbytes = L * (size_t)o->kv_heads * d * elem;
  int threads = o->threads;
#ifdef MPI_EXAMPLE_OPENMP
  if (omp_get_num_procs() > threads) threads = omp_get_num_procs();   /* generation is not timed */
#endif
  memset(w, 0, sizeof *w);
  w->work_bytes = combiner_workspace_size(cfg);
  w->bytes = 2 * qbytes + 2 * kvbytes + w->work_bytes;
  w->q = (float *)malloc(qbytes);
  w->out = (float *)malloc(qbytes);
  w->k = malloc(kvbytes);
  w->v = malloc(kvbytes);
  w->work = malloc(w->work_bytes ? w->work_bytes : 1);
  if (!w->q || !w->out || !w->k || !w->v || !w->work) return 0;
  generate_rows(w->q, TENSOR_Q, 0, o->len, o->heads, o->dim, 0, threads);
  generate_rows(w->k, TENSOR_K, 0, o->len, o->kv_heads, o->dim, o->f16, threads);
  generate_rows(w->v, TENSOR_V, 0, o->len, o->kv_heads, o->dim, o->f16, threads);
  return 1;
}

static void whole_free(whole *w) {
  free(w->q); free(w->out); free(w->k); free(w->v); free(w->work);
  memset(w, 0, sizeof *w);
}

/* 1 when every bound is a multiple of the block: no region straddles two
 * ranges, so FIXED promises the very bits of combiner_attention. */
static int block_aligned(const int *bounds, int nranks, int block) {
  int r;
  for (r = 1; r < nranks; ++r)
    if (bounds[r] % block != 0) return 0;
  return 1;
}

int main(int argc, char **argv) {
  options o;
  combiner_config cfg, resolved;
  combiner_status st;
  shard s;
  int rank, nranks, *bounds, run, ok = 1, status = 0;
  double stats[STAT_COUNT] = {0}, best[7] = {0}, t[7] = {0}, *all = NULL;
  float *gathered = NULL;
  size_t elem;

  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  if (!parse_options(argc, argv, &o)) {
    if (rank == 0) usage(argv[0]);
    MPI_Finalize();
    return 2;
  }
  elem = o.f16 ? 2 : 4;

  memset(&cfg, 0, sizeof cfg);
  cfg.kind = o.kind;
  cfg.seq_len = o.len;
  cfg.head_dim = o.dim;
  cfg.num_heads = o.heads;
  cfg.num_kv_heads = o.kv_heads;
  cfg.block = o.block;
  cfg.causal = o.causal;
  cfg.num_threads = o.threads;
  cfg.k_type = cfg.v_type = o.f16 ? COMBINER_F16 : COMBINER_F32;
  st = combiner_resolve_config(&cfg, &resolved);
  if (st != COMBINER_OK) {
    if (rank == 0) fprintf(stderr, "mpi_attention: combiner_resolve_config: %s\n", combiner_status_string(st));
    MPI_Finalize();
    return 1;
  }

  bounds = (int *)xmalloc(((size_t)nranks + 1) * sizeof(int), rank, "bounds");
  if (!make_bounds(&o, resolved.block, nranks, bounds)) {
    if (rank == 0)
      fprintf(stderr, "mpi_attention: cannot split L = %d into %d ranges (%s)\n", o.len, nranks,
              o.split == SPLIT_BLOCKS ? "fewer blocks than ranks" : "fewer positions than ranks");
    free(bounds);
    MPI_Finalize();
    return 2;
  }
  {   /* AXIAL, MIXTURE and DENSE are refused: say so once, cleanly */
    combiner_range_info info;
    st = combiner_range_plan(&cfg, nranks, bounds, rank, &info);
    if (st != COMBINER_OK) {
      if (rank == 0)
        fprintf(stderr, "mpi_attention: combiner_range_plan refused %s: %s\n", combiner_kind_string(resolved.kind),
                combiner_status_string(st));
      free(bounds);
      MPI_Finalize();
      return 1;
    }
  }
  if (rank == 0) print_header(&o, &resolved, nranks, bounds);

  shard_init(&s, &cfg, &o, nranks, bounds, rank);
  for (run = 0; run < o.runs; ++run) {
    double slowest;
    shard_run(&s, &cfg, nranks, bounds, rank, t);
    /* the run counts by its slowest rank; keep every rank's phases of the fastest run */
    MPI_Allreduce(&t[5], &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (run == 0 || slowest < best[5]) {
      memcpy(best, t, sizeof best);
      best[5] = slowest;
      stats[STAT_TOTAL] = t[5];
    }
  }

  {   /* traffic: the messages are float32, K/V rows of cfg's type */
    const double kv_row = (double)o.kv_heads * o.dim * (double)elem * 2.0;
    const int own = s.info.end - s.info.begin, halo = (s.info.kv_end - s.info.kv_begin) - own;
    const double msg = (double)s.info.pool_floats + (double)s.info.state_floats;
    stats[STAT_POSITIONS] = own;
    stats[STAT_HALO] = halo;
    stats[STAT_SENT] = 4.0 * msg * (nranks - 1);
    stats[STAT_RECEIVED] = 4.0 * ((double)s.pool_total + (double)s.state_total - msg);
    stats[STAT_HALO_BYTES] = kv_row * halo;
    stats[STAT_RING] = kv_row * (o.len - own);
    stats[STAT_POOLS] = best[0];
    stats[STAT_ROUND1] = best[1];
    stats[STAT_STATES] = best[2];
    stats[STAT_ROUND2] = best[3];
    stats[STAT_COMBINE] = best[4];
    stats[STAT_CPU] = best[6];
    stats[STAT_RSS] = peak_rss_mib();
  }
  if (rank == 0) all = (double *)xmalloc((size_t)nranks * STAT_COUNT * sizeof(double), rank, "stats");
  MPI_Gather(stats, STAT_COUNT, MPI_DOUBLE, all, STAT_COUNT, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    print_table(all, nranks);
    printf("distributed: %.2f ms (the slowest rank, fastest of %d run%s)\n", 1e3 * best[5], o.runs,
           o.runs == 1 ? "" : "s");
  }

  if (o.check) {   /* every rank's rows to rank 0, for the check only */
    const size_t row = (size_t)o.heads * o.dim;
    int *counts = NULL, *displs = NULL, r;
    if (rank == 0) {
      counts = (int *)xmalloc(2 * (size_t)nranks * sizeof(int), rank, "counts");
      displs = counts + nranks;
      for (r = 0; r < nranks; ++r) {
        counts[r] = count_of((size_t)(bounds[r + 1] - bounds[r]) * row, rank, "a range's rows");
        displs[r] = count_of((size_t)bounds[r] * row, rank, "a range's offset");
      }
      gathered = (float *)xmalloc((size_t)o.len * row * sizeof(float), rank, "gathered rows");
    }
    MPI_Gatherv(s.out, count_of((size_t)(s.info.end - s.info.begin) * row, rank, "rows"), MPI_FLOAT, gathered,
                counts, displs, MPI_FLOAT, 0, MPI_COMM_WORLD);
    free(counts);
  }
  shard_free(&s);
  free(all);
  MPI_Finalize();   /* nothing below runs on the other ranks: rank 0 has the machine */

  if (rank == 0 && (o.check || o.single)) {
    whole w;
    double t0, cpu0, single, single_cpu;
    if (!whole_init(&w, &cfg, &o)) {
      fprintf(stderr, "mpi_attention: cannot allocate the whole sequence (%zu bytes)\n", w.bytes);
      whole_free(&w);
      free(gathered);
      free(bounds);
      return 1;
    }
    cpu0 = cpu_seconds();
    t0 = seconds_now();
    st = combiner_attention(&cfg, w.q, w.k, w.v, w.out, w.work, w.work_bytes);
    single = seconds_now() - t0;
    single_cpu = cpu_seconds() - cpu0;
    if (st != COMBINER_OK) {
      fprintf(stderr, "mpi_attention: combiner_attention: %s\n", combiner_status_string(st));
      ok = 0;
    }
    if (ok && o.single) {
      char b[32];
      printf("single process: %.2f ms, CPU %.0f ms (combiner_attention, %d thread%s, %s allocated, peak RSS "
             "%.0f MiB); distributed over %d ranks: %.2f ms, single / distributed = %.2f\n",
             1e3 * single, 1e3 * single_cpu, o.threads, o.threads == 1 ? "" : "s",
             format_bytes((double)w.bytes, b, sizeof b), peak_rss_mib(), nranks, 1e3 * best[5], single / best[5]);
    }
    if (ok && o.check) {
      const size_t n = (size_t)o.len * o.heads * o.dim;
      const int must_match = nranks == 1 || (resolved.kind == COMBINER_FIXED &&
                                             block_aligned(bounds, nranks, resolved.block));
      double diff = 0.0, ref = 0.0, rel;
      size_t i;
      int same = memcmp(gathered, w.out, n * sizeof(float)) == 0;
      for (i = 0; i < n; ++i) {
        const double a = gathered[i], b = w.out[i], e = fabs(a - b);
        if (!(e <= diff)) diff = e;   /* NaN counts */
        if (fabs(b) > ref) ref = fabs(b);
      }
      rel = ref > 0.0 ? diff / ref : diff;
      printf("check against combiner_attention on the whole sequence: max rel diff %.3g, %s%s\n", rel,
             same ? "bit-identical" : "not bit-identical",
             must_match ? " (bit-identical promised: one rank, or FIXED with block-aligned bounds)" : "");
      if (!(rel <= CHECK_LIMIT) || (must_match && !same)) {
        printf("check FAILED\n");
        ok = 0;
      } else {
        printf("check passed\n");
      }
    }
    whole_free(&w);
    status = ok ? 0 : 1;
  }
  free(gathered);
  free(bounds);
  return status;
}
