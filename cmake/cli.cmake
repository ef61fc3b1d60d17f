# combiner-cli: Combiner attention on NumPy .npy files (tools/combiner_cli.c),
# and its test (tests/cli/test_cli.c), which writes valid and malformed .npy
# files, runs the tool on them and checks its outputs against
# combiner_attention called directly.
option(COMBINER_BUILD_CLI "Build the combiner-cli command-line tool" ${COMBINER_TOP_LEVEL})

if(COMBINER_BUILD_CLI)
  add_executable(combiner-cli ${PROJECT_SOURCE_DIR}/tools/combiner_cli.c)
  combiner_target(combiner-cli)
  if(COMBINER_INSTALL)
    install(TARGETS combiner-cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()

  # The test runs the tool through the POSIX shell (system() with redirections).
  if(COMBINER_BUILD_TESTS AND NOT WIN32)
    add_executable(test_cli ${PROJECT_SOURCE_DIR}/tests/cli/test_cli.c)
    target_include_directories(test_cli PRIVATE ${PROJECT_SOURCE_DIR}/tests)
    combiner_target(test_cli)
    add_dependencies(test_cli combiner-cli)

    # Its .npy files live here (the test's working directory).
    set(COMBINER_CLI_TEST_DIR ${CMAKE_CURRENT_BINARY_DIR}/cli-test-files)
    file(MAKE_DIRECTORY ${COMBINER_CLI_TEST_DIR})
    # In a cross build the tool runs under the emulator too: test_cli starts
    # it through the shell, so it gets the emulator as its wrapper command.
    string(REPLACE ";" " " COMBINER_CLI_EMULATOR "${CMAKE_CROSSCOMPILING_EMULATOR}")
    add_test(NAME cli COMMAND test_cli $<TARGET_FILE:combiner-cli> ${COMBINER_CLI_EMULATOR}
      WORKING_DIRECTORY ${COMBINER_CLI_TEST_DIR})
    set_tests_properties(cli PROPERTIES ENVIRONMENT "OMP_WAIT_POLICY=passive")

    # The same runs under valgrind memcheck: every exit path frees everything.
    if(COMBINER_VALGRIND)
      find_program(VALGRIND valgrind REQUIRED)
      set(COMBINER_CLI_VALGRIND_DIR ${CMAKE_CURRENT_BINARY_DIR}/cli-test-files-valgrind)
      file(MAKE_DIRECTORY ${COMBINER_CLI_VALGRIND_DIR})
      add_test(NAME cli_valgrind COMMAND test_cli $<TARGET_FILE:combiner-cli>
        "${VALGRIND} -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect,possible"
        WORKING_DIRECTORY ${COMBINER_CLI_VALGRIND_DIR})
      set_tests_properties(cli_valgrind PROPERTIES ENVIRONMENT "OMP_WAIT_POLICY=passive")
    endif()
  endif()
endif()
