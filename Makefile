# Thin wrapper over CMake: `make demo` and `make test` are all a fresh clone needs.
CMAKE ?= cmake
JOBS  ?= 2
CTEST  = ctest --output-on-failure -j$(JOBS) --test-dir
SAN    = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

.PHONY: all demo test test-main test-clang test-asan test-noomp clean

all: build/CMakeCache.txt
	$(CMAKE) --build build -j$(JOBS)

build/CMakeCache.txt:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release

demo: build/CMakeCache.txt
	$(CMAKE) --build build -j$(JOBS) --target combiner-demo
	./build/combiner-demo

# The whole suite: gcc (C99 and C++, OpenMP, -O2), clang (-O3 -march=native),
# clang ASan+UBSan (-O1), and gcc without OpenMP (-O0).
test: test-main test-clang test-noomp test-asan

test-main: build/CMakeCache.txt
	$(CMAKE) --build build -j$(JOBS)
	$(CTEST) build

test-clang:
	$(CMAKE) -S . -B build-clang -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_CXX_COMPILER=clang++ "-DCMAKE_C_FLAGS=-O3 -march=native" "-DCMAKE_CXX_FLAGS=-O3 -march=native"
	$(CMAKE) --build build-clang -j$(JOBS)
	$(CTEST) build-clang

test-noomp:
	$(CMAKE) -S . -B build-noomp -DCMAKE_BUILD_TYPE=Debug -DCOMBINER_OPENMP=OFF \
	  -DCOMBINER_TESTS_AS_CXX=OFF "-DCMAKE_C_FLAGS=-O0"
	$(CMAKE) --build build-noomp -j$(JOBS)
	$(CTEST) build-noomp

test-asan:
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_CXX_COMPILER=clang++ -DCOMBINER_TESTS_AS_CXX=OFF -DCOMBINER_BUILD_EXAMPLES=OFF \
	  "-DCMAKE_C_FLAGS=-O1 $(SAN)" "-DCMAKE_EXE_LINKER_FLAGS=$(SAN)"
	$(CMAKE) --build build-asan -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $(CTEST) build-asan

clean:
	rm -rf build build-clang build-noomp build-asan
