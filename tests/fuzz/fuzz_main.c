/* Runs the fuzz target without libFuzzer (any compiler): every file named on
 * the command line (the seed corpus and the kept crash inputs), then N
 * pseudo-random inputs from a fixed seed: `fuzz_replay [-n N] FILE...`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "combiner.h"   /* combiner_kernel_name(): the target defines the implementation */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void fuzz_counts(long *accepted, long *rejected);

int main(int argc, char **argv) {
  static uint8_t buf[1 << 16];
  long random_inputs = 0, files = 0, i;
  uint64_t s = 0x9E3779B97F4A7C15ULL;
  int a;
  for (a = 1; a < argc; ++a) {
    FILE *f;
    size_t n;
    if (!strcmp(argv[a], "-n") && a + 1 < argc) { random_inputs = atol(argv[++a]); continue; }
    f = fopen(argv[a], "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", argv[a]); return 1; }
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    ++files;
  }
  for (i = 0; i < random_inputs; ++i) {
    size_t n = 16 + (size_t)(i % 1500), j;
    for (j = 0; j < n; ++j) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      buf[j] = (uint8_t)(s >> 56);
    }
    LLVMFuzzerTestOneInput(buf, n);
  }
  {
    long acc, rej;
    fuzz_counts(&acc, &rej);
    printf("fuzz_replay: %ld files, %ld random inputs: %ld accepted and checked against the "
           "reference, %ld rejected and checked untouched\n", files, random_inputs, acc, rej);
  }
  printf("kernels: %s\n", combiner_kernel_name());
  printf("%ld passed, 0 failed\n", files + random_inputs);
  return 0;
}
