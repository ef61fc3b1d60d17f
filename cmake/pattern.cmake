# combiner-pattern (examples/pattern.c): PNG pictures of what every
# factorization attends to; `make pictures` writes them into docs/pictures.
#
# This file is also the smoke test's script: run with -P, it empties DIR,
# runs PATTERN (through LAUNCHER, a '|'-separated command such as valgrind)
# into it, and checks that every expected picture is there and starts with
# the PNG signature. The program itself reads each file back and checks its
# chunk CRCs, IHDR, deflate stream, Adler-32 and pixels.
if(CMAKE_SCRIPT_MODE_FILE)
  set(names overview_support.png overview_matrix.png)
  foreach(kind fixed axial mixture logsparse dense)
    foreach(mode causal bidirectional)
      list(APPEND names support_${kind}_${mode}.png matrix_${kind}_${mode}.png)
    endforeach()
  endforeach()
  foreach(kind axial mixture)   # a short last row: L = 45, block 8
    list(APPEND names support_${kind}_bidirectional_L45.png matrix_${kind}_bidirectional_L45.png)
  endforeach()

  file(REMOVE_RECURSE "${DIR}")
  file(MAKE_DIRECTORY "${DIR}")
  string(REPLACE "|" ";" launcher "${LAUNCHER}")
  execute_process(COMMAND ${launcher} "${PATTERN}" "${DIR}" RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "combiner-pattern failed: ${status}")
  endif()
  foreach(name ${names})
    if(NOT EXISTS "${DIR}/${name}")
      message(FATAL_ERROR "missing ${DIR}/${name}")
    endif()
    file(READ "${DIR}/${name}" signature LIMIT 8 HEX)
    if(NOT signature STREQUAL "89504e470d0a1a0a")
      message(FATAL_ERROR "${DIR}/${name} is not a PNG file (starts with ${signature})")
    endif()
  endforeach()
  file(GLOB written "${DIR}/*")
  list(LENGTH written count)
  list(LENGTH names expected)
  if(NOT count EQUAL expected)
    message(FATAL_ERROR "${count} files in ${DIR}, expected ${expected}: ${written}")
  endif()
  message(STATUS "pattern: ${expected} PNG files in ${DIR}")
  return()
endif()

if(COMBINER_BUILD_EXAMPLES)
  add_executable(combiner-pattern ${PROJECT_SOURCE_DIR}/examples/pattern.c)
  combiner_target(combiner-pattern)

  if(COMBINER_BUILD_TESTS)
    # In a cross build the program runs under the emulator (as LAUNCHER).
    string(REPLACE ";" "|" COMBINER_PATTERN_EMULATOR "${CMAKE_CROSSCOMPILING_EMULATOR}")
    add_test(NAME pattern
      COMMAND ${CMAKE_COMMAND} -DPATTERN=$<TARGET_FILE:combiner-pattern>
              "-DLAUNCHER=${COMBINER_PATTERN_EMULATOR}"
              -DDIR=${CMAKE_CURRENT_BINARY_DIR}/pattern-smoke -P ${CMAKE_CURRENT_LIST_FILE})
    set_tests_properties(pattern PROPERTIES ENVIRONMENT "OMP_WAIT_POLICY=passive")
    if(COMBINER_VALGRIND)   # every exit path frees everything
      find_program(VALGRIND valgrind REQUIRED)
      add_test(NAME pattern_valgrind
        COMMAND ${CMAKE_COMMAND} -DPATTERN=$<TARGET_FILE:combiner-pattern>
                -DDIR=${CMAKE_CURRENT_BINARY_DIR}/pattern-smoke-valgrind
                "-DLAUNCHER=${VALGRIND}|-q|--error-exitcode=99|--leak-check=full|--errors-for-leak-kinds=definite,indirect,possible"
                -P ${CMAKE_CURRENT_LIST_FILE})
      set_tests_properties(pattern_valgrind PROPERTIES ENVIRONMENT "OMP_WAIT_POLICY=passive")
    endif()
  endif()
endif()
