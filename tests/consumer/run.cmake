# One way of consuming combiner.h, end to end (registered by
# cmake/install.cmake; each VARIANT is a ctest of that name):
#   install_find_package      cmake --install into a temp prefix, then the
#                             consumer project with find_package (CMAKE_PREFIX_PATH)
#   install_pkgconfig         the same prefix, cc main.c $(pkg-config --cflags --libs combiner)
#   consume_add_subdirectory  the consumer project with add_subdirectory(<source>);
#                             installing it must install nothing of combiner's
#   consume_fetchcontent      FetchContent with SOURCE_DIR = <source>, offline
#   consume_copied_header     combiner.h copied into the consumer's tree, cc -I
# Each builds tests/consumer/main.c in a fresh WORK_DIR, runs it and expects
# "OK combiner <VERSION>".
#
# cmake -DVARIANT=... -DSOURCE_DIR=<source> -DBUILD_DIR=<build> -DWORK_DIR=<fresh dir>
#       -DC_COMPILER=cc [-DCXX_COMPILER=c++] [-DGENERATOR=...] [-DMAKE_PROGRAM=...]
#       [-DCONFIG=Release] -DVERSION=x.y.z
#       [-DINCLUDEDIR=include -DCMAKEDIR=lib/cmake/combiner -DPKGCONFIGDIR=share/pkgconfig]
#       -P tests/consumer/run.cmake
# (the last three: where the install rules put things, relative to the prefix)
cmake_minimum_required(VERSION 3.16)

foreach(var VARIANT SOURCE_DIR BUILD_DIR WORK_DIR C_COMPILER VERSION)
  if(NOT ${var})
    message(FATAL_ERROR "run.cmake needs -D${var}=...")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Release)
endif()
set(consumer_src "${CMAKE_CURRENT_LIST_DIR}")

# run(<step name> <command...>): runs the command in WORK_DIR, stops with its
# output if it fails; its output is left in `run_output`.
function(run step)
  execute_process(COMMAND ${ARGN} WORKING_DIRECTORY "${WORK_DIR}"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "${VARIANT}: ${step} failed (${rc}):\n  ${cmd}\n${out}")
  endif()
  set(run_output "${out}" PARENT_SCOPE)
endfunction()

# check_program(<path>): main.c, built, must run and print OK with our version.
function(check_program exe)
  run("running ${exe}" "${exe}")
  string(STRIP "${run_output}" said)
  if(NOT said STREQUAL "OK combiner ${VERSION}")
    message(FATAL_ERROR "${VARIANT}: expected \"OK combiner ${VERSION}\", got \"${said}\"")
  endif()
endfunction()

# consumer_project(<binary dir> <cmake -D arguments...>): configure, build,
# run the consumer CMake project with the compiler of the calling build.
function(consumer_project bin)
  set(args -S "${consumer_src}" -B "${bin}" -DCMAKE_BUILD_TYPE=${CONFIG}
    "-DCMAKE_C_COMPILER=${C_COMPILER}" ${ARGN})
  if(GENERATOR)
    list(APPEND args -G "${GENERATOR}")
  endif()
  if(MAKE_PROGRAM)
    list(APPEND args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
  endif()
  run("configuring the consumer" "${CMAKE_COMMAND}" ${args})
  set(configure_output "${run_output}" PARENT_SCOPE)
  run("building the consumer" "${CMAKE_COMMAND}" --build "${bin}" --config ${CONFIG})
  file(GLOB_RECURSE exe LIST_DIRECTORIES false "${bin}/consumer" "${bin}/consumer.exe")
  if(NOT exe)
    message(FATAL_ERROR "${VARIANT}: no consumer program under ${bin}")
  endif()
  list(GET exe 0 exe)
  check_program("${exe}")
endfunction()

# install_prefix(<dir>): cmake --install of the calling build into <dir>;
# the header, the CMake package and the .pc file must be there.
function(install_prefix prefix)
  run("cmake --install" "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --config ${CONFIG}
    --prefix "${prefix}")
  foreach(file "${INCLUDEDIR}/combiner.h" "${CMAKEDIR}/combinerConfig.cmake"
      "${CMAKEDIR}/combinerConfigVersion.cmake" "${CMAKEDIR}/combinerTargets.cmake"
      "${PKGCONFIGDIR}/combiner.pc")
    if(NOT EXISTS "${prefix}/${file}")
      file(GLOB_RECURSE installed RELATIVE "${prefix}" "${prefix}/*")
      string(REPLACE ";" "\n  " installed "${installed}")
      message(FATAL_ERROR "${VARIANT}: no ${file} in ${prefix}, only:\n  ${installed}")
    endif()
  endforeach()
endfunction()

# A fresh tree for every run.
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

if(VARIANT STREQUAL "install_find_package")
  install_prefix("${WORK_DIR}/prefix")
  consumer_project("${WORK_DIR}/build" -DCOMBINER_FROM=package
    "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix")
  # The package found must be the one just installed, at our version.
  string(FIND "${configure_output}" "combiner ${VERSION} from ${WORK_DIR}/prefix/" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${VARIANT}: find_package did not find ${VERSION} in "
      "${WORK_DIR}/prefix:\n${configure_output}")
  endif()
  # The version file: the same major.minor is compatible; another minor
  # (0.x) or major is not, nor a newer patch than installed.
  set(version_file "${WORK_DIR}/prefix/${CMAKEDIR}/combinerConfigVersion.cmake")
  string(REGEX MATCH "^([0-9]+)\\.([0-9]+)\\.([0-9]+)$" _ "${VERSION}")
  set(major ${CMAKE_MATCH_1})
  set(minor ${CMAKE_MATCH_2})
  set(patch ${CMAKE_MATCH_3})
  math(EXPR next_major "${major} + 1")
  math(EXPR next_minor "${minor} + 1")
  math(EXPR next_patch "${patch} + 1")
  set(cases "${major}.${minor}=TRUE" "${VERSION}=TRUE" "${major}.${minor}.${next_patch}=FALSE"
    "${next_major}.0=FALSE")
  if(major EQUAL 0)
    list(APPEND cases "${major}.${next_minor}=FALSE")
  endif()
  foreach(case ${cases})
    string(REPLACE "=" ";" case "${case}")
    list(GET case 0 want)
    list(GET case 1 expected)
    set(PACKAGE_FIND_VERSION ${want})
    string(REPLACE "." ";" parts "${want}.0.0")
    list(GET parts 0 PACKAGE_FIND_VERSION_MAJOR)
    list(GET parts 1 PACKAGE_FIND_VERSION_MINOR)
    list(GET parts 2 PACKAGE_FIND_VERSION_PATCH)
    unset(PACKAGE_VERSION_COMPATIBLE)
    include("${version_file}")
    if(NOT PACKAGE_VERSION_COMPATIBLE STREQUAL expected)
      message(FATAL_ERROR "${VARIANT}: find_package(combiner ${want}) against ${VERSION}: "
        "compatible = ${PACKAGE_VERSION_COMPATIBLE}, expected ${expected}")
    endif()
  endforeach()

elseif(VARIANT STREQUAL "install_pkgconfig")
  if(DEFINED ENV{PKG_CONFIG})
    set(pkg_config "$ENV{PKG_CONFIG}")
  else()
    find_program(pkg_config pkg-config)
  endif()
  if(NOT pkg_config)
    message(FATAL_ERROR "${VARIANT}: pkg-config not found: install it (Debian: "
      "apt-get install pkgconf) or point the PKG_CONFIG environment variable at it")
  endif()
  install_prefix("${WORK_DIR}/prefix")
  set(pcdir "${WORK_DIR}/prefix/${PKGCONFIGDIR}")
  # Only our prefix: a combiner.pc installed on this machine must not answer.
  set(ENV{PKG_CONFIG_PATH} "${pcdir}")
  set(ENV{PKG_CONFIG_LIBDIR} "${pcdir}")
  run("pkg-config --modversion" "${pkg_config}" --modversion combiner)
  string(STRIP "${run_output}" modversion)
  if(NOT modversion STREQUAL VERSION)
    message(FATAL_ERROR "${VARIANT}: pkg-config says version ${modversion}, the header ${VERSION}")
  endif()
  run("pkg-config --cflags --libs" "${pkg_config}" --cflags --libs combiner)
  string(STRIP "${run_output}" flags)
  message(STATUS "pkg-config --cflags --libs combiner: ${flags}")
  separate_arguments(flags UNIX_COMMAND "${flags}")
  run("compiling with the pkg-config flags" "${C_COMPILER}" -std=c99 -O2
    "${consumer_src}/main.c" ${flags} -o "${WORK_DIR}/consumer")
  check_program("${WORK_DIR}/consumer")

elseif(VARIANT STREQUAL "consume_add_subdirectory" OR VARIANT STREQUAL "consume_fetchcontent")
  if(VARIANT STREQUAL "consume_add_subdirectory")
    set(from subdirectory)
  else()
    set(from fetchcontent)
  endif()
  set(cxx "")
  if(CXX_COMPILER)
    set(cxx "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")  # combiner's project() enables C++
  endif()
  consumer_project("${WORK_DIR}/build" -DCOMBINER_FROM=${from}
    "-DCOMBINER_SOURCE_DIR=${SOURCE_DIR}" ${cxx})
  # Installing the consumer installs the consumer, and nothing of combiner's.
  run("installing the consumer" "${CMAKE_COMMAND}" --install "${WORK_DIR}/build"
    --config ${CONFIG} --prefix "${WORK_DIR}/prefix")
  file(GLOB_RECURSE installed RELATIVE "${WORK_DIR}/prefix" "${WORK_DIR}/prefix/*")
  if(NOT installed MATCHES "^bin/consumer(\\.exe)?$")
    string(REPLACE ";" "\n  " installed "${installed}")
    message(FATAL_ERROR "${VARIANT}: as a subproject combiner must install nothing; "
      "the consumer's install has:\n  ${installed}")
  endif()

elseif(VARIANT STREQUAL "consume_copied_header")
  file(COPY "${SOURCE_DIR}/include/combiner.h" DESTINATION "${WORK_DIR}/third_party")
  run("compiling with the copied header" "${C_COMPILER}" -std=c99 -O2
    "-I${WORK_DIR}/third_party" "${consumer_src}/main.c" -o "${WORK_DIR}/consumer" -lm)
  check_program("${WORK_DIR}/consumer")

else()
  message(FATAL_ERROR "run.cmake: unknown VARIANT ${VARIANT}")
endif()

message(STATUS "${VARIANT}: OK")
