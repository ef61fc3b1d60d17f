# Thin wrapper over CMake: `make demo` and `make test` are all a fresh clone needs.
SHELL := /bin/bash
CMAKE ?= cmake
JOBS  ?= 2
CTEST  = ctest --output-on-failure -j$(JOBS) --test-dir
SAN    = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# Disabled on purpose: easily-swappable-parameters (kernels take many ints by
# design); in C++ mode, the reserved-identifier checks (stb-style private names
# combiner__* are reserved only in C++ and never clash in practice) and
# definitions-in-headers (a single-header library, definitions behind
# COMBINER_IMPLEMENTATION).
TIDY_CHECKS = -*,bugprone-*,clang-analyzer-*,cert-*,misc-*,performance-*,portability-*,-bugprone-easily-swappable-parameters
TIDY_CXX_OFF = ,-bugprone-reserved-identifier,-cert-dcl37-c,-cert-dcl51-cpp,-misc-definitions-in-headers
FUZZ_SECONDS ?= 60
# SIMD kernels are compiled where the build machine has them
NATIVE := $(shell echo 'int main(void){return 0;}' | cc -march=native -x c - -o /dev/null 2>/dev/null && echo -march=native)

.PHONY: all demo generate pictures bench mpi test test-main test-clang test-avx2 test-arm test-noomp test-asan test-tsan test-fuzz lint clean

all: build/CMakeCache.txt
	$(CMAKE) --build build -j$(JOBS)

build/CMakeCache.txt:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release

demo: build/CMakeCache.txt
	$(CMAKE) --build build -j$(JOBS) --target combiner-demo
	./build/combiner-demo

# examples/generate.c, one build per factorization: a tiny transformer that
# prefills a prompt and decodes with combiner_cache; one row per kind and
# engine KV-cache type (f32, f16), borrowed by default. Pass
# flags with GENERATE_ARGS, e.g. make generate GENERATE_ARGS="--prompt 8192 --tokens 512".
GENERATE_KINDS = fixed axial mixture logsparse dense
GENERATE_ARGS ?=
generate: build/CMakeCache.txt
	$(CMAKE) --build build -j$(JOBS) $(foreach k,$(GENERATE_KINDS),--target combiner-generate-$(k))
	@header=--header; for k in $(GENERATE_KINDS); do for t in f32 f16; do \
	  ./build/combiner-generate-$$k --table $$header --kv $$t $(GENERATE_ARGS) || exit 1; header=; done; done

# The attention patterns of every factorization as PNG files (docs/pictures).
pictures: build/CMakeCache.txt
	$(CMAKE) --build build -j$(JOBS) --target combiner-pattern
	mkdir -p docs/pictures
	./build/combiner-pattern docs/pictures

# The benchmark: every kind against DENSE; writes bench/results/. Pass flags
# with BENCH_ARGS, e.g. make bench BENCH_ARGS="--L 4096,16384 --threads 2".
BENCH_ARGS ?=
bench: build/CMakeCache.txt
	$(CMAKE) --build build -j$(JOBS) --target combiner-bench
	mkdir -p bench/results
	./build/combiner-bench $(BENCH_ARGS)

# Sequence parallelism over MPI (examples/mpi_attention.c, docs/MPI.md): one
# sequence split over 4 ranks (--oversubscribe: 4 ranks share the cores),
# FIXED and LOGSPARSE causal at L = 65536, 262144 and 1048576 (H 8, d 64,
# 8 kv heads, 1 thread per rank). Each run prints per rank the bytes of its
# messages against what an all-gather of K/V (ring attention) receives, and
# each phase's time (the fastest of 3 runs; 1 at 1048576); the 1048576 FIXED
# run then times single-process combiner_attention on the whole sequence
# (q, k, v, out: 2 GiB each). 2 min 12 s on the AMD EPYC (2 vCPUs) with
# nothing else running, 3 min 7 s while another job held a vCPU; memory at
# most 4 x 3.1 GiB (the LOGSPARSE ranks at 1048576), 8.0 GiB for the
# single-process run. Not part of `make test`: the ctests run only small
# --check runs (every build that finds MPI). Skipped without mpicc and
# mpirun. Pass flags with MPI_ARGS, e.g. MPI_ARGS="--threads 2".
MPI_OK := $(shell command -v mpicc >/dev/null && command -v mpirun >/dev/null && echo yes)
MPI_LENGTHS = 65536 262144 1048576
MPI_ARGS ?=
# Open MPI refuses root without these and runs no more ranks than cores without --oversubscribe
MPI_RUN = OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive mpirun \
  $(shell mpirun --version 2>/dev/null | grep -q "Open MPI" && echo --oversubscribe) -np 4
mpi:
ifeq ($(MPI_OK),yes)
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release
	$(CMAKE) --build build -j$(JOBS) --target combiner-mpi-attention
	@for k in fixed logsparse; do for n in $(MPI_LENGTHS); do \
	  extra="--runs 3"; if [ $$n = 1048576 ]; then extra="--runs 1"; [ $$k = fixed ] && extra="$$extra --single"; fi; \
	  echo; $(MPI_RUN) ./build/combiner-mpi-attention --kind $$k --L $$n --heads 8 --kv-heads 8 --dim 64 \
	    --threads 1 $$extra $(MPI_ARGS) || exit 1; done; done
else
	@echo "mpi: mpicc or mpirun missing (apt-get install libopenmpi-dev openmpi-bin); skipped"
endif

# The whole suite. Each step prints its own summary; any failure stops make.
test: lint test-noomp test-asan test-tsan test-fuzz test-clang test-avx2 test-arm test-main

# Warnings are errors in every build of the matrix (COMBINER_WERROR); a plain
# CMake build, what users type, keeps them warnings.
WERROR = -DCOMBINER_WERROR=ON

# gcc -O3, OpenMP: the plain CMake configuration (tests, examples and bench
# with -march=native: the SIMD kernels of this machine), C and C++
test-main:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release $(WERROR)
	$(CMAKE) --build build -j$(JOBS)
	$(CTEST) build

# clang -O3, OpenMP (libomp): C tests for a generic x86-64 (the portable
# kernels, optimized), the same tests as C++ with -march=native (SIMD kernels)
test-clang:
	$(CMAKE) -S . -B build-clang -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_CXX_COMPILER=clang++ -DCOMBINER_NATIVE=OFF "-DCMAKE_CXX_FLAGS=$(NATIVE)" $(WERROR)
	$(CMAKE) --build build-clang -j$(JOBS)
	$(CTEST) build-clang

# gcc -O3 -march=haswell: the AVX2+FMA kernels (what a CPU without AVX-512
# runs), C tests only; skipped on a machine that cannot run AVX2+FMA
AVX2_OK := $(shell t=$$(mktemp) && printf '%s\n' 'int main(void){__builtin_cpu_init();return !(__builtin_cpu_supports("avx2")&&__builtin_cpu_supports("fma"));}' | cc -x c - -o $$t 2>/dev/null && $$t && echo yes; rm -f $$t)
test-avx2:
ifeq ($(AVX2_OK),yes)
	$(CMAKE) -S . -B build-avx2 -DCMAKE_BUILD_TYPE=Release $(WERROR) "-DCMAKE_C_FLAGS=-march=haswell" \
	  -DCOMBINER_TESTS_AS_CXX=OFF -DCOMBINER_BUILD_EXAMPLES=OFF -DCOMBINER_NATIVE=OFF
	$(CMAKE) --build build-avx2 -j$(JOBS)
	$(CTEST) build-avx2
else
	@echo "test-avx2: this machine cannot run AVX2+FMA code; skipped"
endif

# gcc -O3 for aarch64 (Debian's cross compiler), every program run under qemu
# user-mode emulation (cmake/toolchain-aarch64.cmake): first with the NEON
# kernels (armv8-a has NEON), C tests only, the header also compiled as C++;
# then COMBINER_NO_SIMD, only the tests whose results go through the kernels.
# Emulation is ~30x slower: no examples, fewer random fuzz inputs, the
# reference's self-check (no library code in it) built but not run, and
# COMBINER_TEST_QUICK=1 for the test programs that offer a reduced set.
# Skipped without the cross compilers or qemu-aarch64.
ARM_OK := $(shell command -v aarch64-linux-gnu-gcc >/dev/null && command -v aarch64-linux-gnu-g++ >/dev/null && \
  command -v qemu-aarch64 >/dev/null && echo yes)
ARM_CMAKE = -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake -DCMAKE_BUILD_TYPE=Release $(WERROR) \
  -DCOMBINER_NATIVE=OFF -DCOMBINER_TESTS_AS_CXX=OFF -DCOMBINER_BUILD_EXAMPLES=OFF -DCOMBINER_BUILD_BENCH=OFF \
  -DCOMBINER_FUZZ_RANDOM=1000
ARM_PORTABLE_TESTS = kernels|properties|two_phase|threads|numerics|parts|cache|range|introspection|concurrent|fuzz_replay|fuzz_cache_replay
test-arm:
ifeq ($(ARM_OK),yes)
	$(CMAKE) -S . -B build-arm $(ARM_CMAKE)
	$(CMAKE) --build build-arm -j$(JOBS)
	aarch64-linux-gnu-g++ -x c++ -O3 -fopenmp -Wall -Wextra -Wno-missing-field-initializers -Werror \
	  -Iinclude -c tests/only_kind.c -o build-arm/header_as_cxx.o
	COMBINER_TEST_QUICK=1 $(CTEST) build-arm -E "^reference$$"
	$(CMAKE) -S . -B build-arm-portable $(ARM_CMAKE) -DCOMBINER_EXTRA_DEFINES=COMBINER_NO_SIMD -DCOMBINER_BUILD_CLI=OFF
	$(CMAKE) --build build-arm-portable -j$(JOBS) --target \
	  $(foreach t,$(subst |, ,$(ARM_PORTABLE_TESTS)),$(if $(filter fuzz_%,$(t)),$(t),test_$(t)))
	COMBINER_TEST_QUICK=1 $(CTEST) build-arm-portable -R "^($(ARM_PORTABLE_TESTS))$$"
else
	@echo "test-arm: aarch64-linux-gnu-gcc/g++ or qemu-aarch64 missing; skipped"
endif

# gcc -O0 for a generic x86-64 (valgrind 3.19 has no AVX-512), compiled with
# -fopenmp but COMBINER_NO_OPENMP and COMBINER_NO_SIMD set, plus valgrind
# memcheck on a small subset
test-noomp:
	$(CMAKE) -S . -B build-noomp -DCMAKE_BUILD_TYPE=Debug $(WERROR) "-DCMAKE_C_FLAGS=-O0" \
	  "-DCOMBINER_EXTRA_DEFINES=COMBINER_NO_OPENMP;COMBINER_NO_SIMD" -DCOMBINER_TESTS_AS_CXX=OFF \
	  -DCOMBINER_VALGRIND=ON -DCOMBINER_NATIVE=OFF
	$(CMAKE) --build build-noomp -j$(JOBS)
	$(CTEST) build-noomp

# clang AddressSanitizer + UndefinedBehaviorSanitizer, OpenMP on, SIMD kernels
# (-march=native) where the machine has them
test-asan:
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug $(WERROR) -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_CXX_COMPILER=clang++ -DCOMBINER_TESTS_AS_CXX=OFF -DCOMBINER_BUILD_EXAMPLES=OFF \
	  "-DCMAKE_C_FLAGS=-O1 $(NATIVE) $(SAN)" "-DCMAKE_EXE_LINKER_FLAGS=$(SAN)"
	$(CMAKE) --build build-asan -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $(CTEST) build-asan

# clang ThreadSanitizer on concurrent calls (OpenMP off: its runtime is not
# TSan-instrumented); also the COMBINER_NO_SIMD build on a SIMD-capable target
test-tsan:
	$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug $(WERROR) -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_CXX_COMPILER=clang++ -DCOMBINER_TESTS_AS_CXX=OFF -DCOMBINER_BUILD_EXAMPLES=OFF \
	  -DCOMBINER_BUILD_BENCH=OFF -DCOMBINER_EXTRA_DEFINES=COMBINER_NO_SIMD \
	  -DCOMBINER_OPENMP=OFF "-DCMAKE_C_FLAGS=-O1 $(NATIVE) -fsanitize=thread" \
	  "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread"
	$(CMAKE) --build build-tsan -j$(JOBS) --target test_concurrent test_threads test_parts test_cache
	$(CTEST) build-tsan -R "^(concurrent|threads|parts|cache)$$"

# libFuzzer with ASan+UBSan for FUZZ_SECONDS, from the seed corpus. A crash
# leaves build-fuzz/crash-* (cache: build-fuzz/cache-crash-*): copy it to
# tests/fuzz/regressions/ (regressions_cache/) so that
# fuzz_replay checks it from then on.
test-fuzz:
	mkdir -p build-fuzz/corpus
	clang -g -O1 $(NATIVE) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -Iinclude -Itests tests/fuzz/fuzz_attention.c tests/reference.c -o build-fuzz/fuzz_attention
	./build-fuzz/fuzz_attention -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  -artifact_prefix=build-fuzz/ build-fuzz/corpus tests/fuzz/corpus 2>&1 | \
	  grep -E "^(stat::number_of_executed_units|stat::new_units_added|Done|==|SUMMARY)|ERROR" ; \
	  test $${PIPESTATUS[0]} -eq 0
	mkdir -p build-fuzz/corpus_cache
	clang -g -O1 $(NATIVE) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -Iinclude tests/fuzz/fuzz_cache.c -o build-fuzz/fuzz_cache
	./build-fuzz/fuzz_cache -max_total_time=$(FUZZ_SECONDS) -max_len=2048 -print_final_stats=1 \
	  -artifact_prefix=build-fuzz/cache- build-fuzz/corpus_cache tests/fuzz/corpus_cache 2>&1 | \
	  grep -E "^(stat::number_of_executed_units|stat::new_units_added|Done|==|SUMMARY)|ERROR|check failed" ; \
	  test $${PIPESTATUS[0]} -eq 0

# cppcheck and clang-tidy on the library (implementation compiled in)
lint:
	cppcheck --enable=warning,performance,portability,style --std=c99 --language=c -q \
	  --error-exitcode=1 -DCOMBINER_IMPLEMENTATION -D__GNUC__ include/combiner.h
	clang-tidy include/combiner.h --warnings-as-errors='*' --checks='$(TIDY_CHECKS)' -- \
	  -x c -std=c99 -fopenmp -DCOMBINER_IMPLEMENTATION -Iinclude
	clang-tidy include/combiner.h --warnings-as-errors='*' --checks='$(TIDY_CHECKS)$(TIDY_CXX_OFF)' -- \
	  -x c++ -DCOMBINER_IMPLEMENTATION -Iinclude
	@echo "lint: cppcheck and clang-tidy clean"

clean:
	rm -rf build build-clang build-avx2 build-noomp build-asan build-tsan build-fuzz build-arm build-arm-portable
