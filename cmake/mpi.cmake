# Sequence parallelism over MPI (SPEC 7, the ranges API): the example
# examples/mpi_attention.c, built only where CMake finds MPI for C, and its
# checks: small runs on 1-4 ranks, each comparing the gathered rows with
# combiner_attention on the whole sequence (--check). `make mpi` runs the big
# traffic table; nothing here is big.
if(NOT COMBINER_BUILD_EXAMPLES OR CMAKE_CROSSCOMPILING)
  return()
endif()

find_package(MPI QUIET COMPONENTS C)
if(NOT MPI_C_FOUND)
  return()
endif()

# MPI::MPI_C is an imported target: its include directories are system
# directories, so mpi.h meets -std=c99 -Wpedantic -Werror on its own terms.
add_executable(combiner-mpi-attention ${PROJECT_SOURCE_DIR}/examples/mpi_attention.c)
combiner_target(combiner-mpi-attention)
target_link_libraries(combiner-mpi-attention PRIVATE MPI::MPI_C)

if(NOT COMBINER_BUILD_TESTS OR NOT MPIEXEC_EXECUTABLE)
  return()
endif()

# Open MPI in a container: it refuses root unless told twice, and the tests
# run up to 4 ranks on however many cores there are (--oversubscribe: ranks
# yield while they wait). OMP_WAIT_POLICY: the --threads 2 run does not spin.
execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version
  OUTPUT_VARIABLE COMBINER_MPIEXEC_VERSION ERROR_QUIET RESULT_VARIABLE COMBINER_MPIEXEC_RESULT)
set(COMBINER_MPI_FLAGS ${MPIEXEC_PREFLAGS})
set(COMBINER_MPI_ENV "OMP_WAIT_POLICY=passive")
if(COMBINER_MPIEXEC_RESULT EQUAL 0 AND COMBINER_MPIEXEC_VERSION MATCHES "Open MPI|OpenRTE")
  list(APPEND COMBINER_MPI_FLAGS --oversubscribe)
  list(APPEND COMBINER_MPI_ENV OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)
endif()

# mpi_<kind>_<causal|bidir>_np<P>[_suffix]: combiner-mpi-attention --check
# on P ranks with the given flags.
function(combiner_mpi_test kind mode nranks suffix)
  set(name mpi_${kind}_${mode}_np${nranks}${suffix})
  set(flags --kind ${kind} ${ARGN})
  if(mode STREQUAL "bidir")
    list(APPEND flags --bidirectional)
  endif()
  add_test(NAME ${name}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${nranks} ${COMBINER_MPI_FLAGS}
            $<TARGET_FILE:combiner-mpi-attention> ${MPIEXEC_POSTFLAGS} --check ${flags})
  set_tests_properties(${name} PROPERTIES PROCESSORS ${nranks} TIMEOUT 120
    ENVIRONMENT "${COMBINER_MPI_ENV}")
endfunction()

foreach(kind fixed logsparse)
  foreach(mode causal bidir)
    # L = 1000: not divisible by 3 or by the block (32, last block of 8);
    # with 4 ranks the bounds fall inside blocks.
    foreach(np 1 2 3 4)
      combiner_mpi_test(${kind} ${mode} ${np} "" --L 1000 --split even)
    endforeach()
    # L = 777 (block 28, last block of 21), bounds drawn at random
    foreach(np 3 4)
      combiner_mpi_test(${kind} ${mode} ${np} _l777_random --L 777 --split random --seed ${np})
    endforeach()
    # whole blocks per rank (FIXED: bit-identical), GQA: 4 heads on 2 kv heads
    foreach(np 2 3)
      combiner_mpi_test(${kind} ${mode} ${np} _blocks_gqa --L 1000 --heads 4 --kv-heads 2 --split blocks)
    endforeach()
    # bounds 0 195 245 297 300 (seed 7): block 0 [0, 298) straddles all four
    # ranks, and rank 3's halo is 297 rows
    combiner_mpi_test(${kind} ${mode} 4 _wide_block --L 300 --block 298 --split random --seed 7)
  endforeach()
endforeach()
# half-precision K/V; two threads per rank; L = 2^10 + 1 (LOGSPARSE's top level)
combiner_mpi_test(fixed causal 2 _f16 --L 1000 --f16 --split random)
combiner_mpi_test(logsparse bidir 2 _f16 --L 1000 --f16 --split random)
combiner_mpi_test(fixed bidir 2 _threads2 --L 1000 --threads 2 --heads 4 --kv-heads 1)
combiner_mpi_test(logsparse causal 3 _l1025 --L 1025 --split even)
combiner_mpi_test(logsparse bidir 4 _l1025 --L 1025 --split random --seed 3)

# AXIAL (and MIXTURE, DENSE) are refused (COMBINER_ERR_UNSUPPORTED): the
# example says so, the status string beside it, and exits 1.
add_test(NAME mpi_axial_causal_np2_refused
  COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${COMBINER_MPI_FLAGS}
          $<TARGET_FILE:combiner-mpi-attention> ${MPIEXEC_POSTFLAGS} --check --kind axial --L 1000)
set_tests_properties(mpi_axial_causal_np2_refused PROPERTIES PROCESSORS 2 TIMEOUT 60
  PASS_REGULAR_EXPRESSION "combiner_range_plan refused axial" ENVIRONMENT "${COMBINER_MPI_ENV}")
