# Packaging: `cmake --install` puts the header, a CMake package
# (find_package(combiner CONFIG) -> combiner::combiner) and combiner.pc into
# the prefix. Included at the end of the top-level CMakeLists.txt.
#
#   <prefix>/include/combiner.h
#   <prefix>/lib/cmake/combiner/combinerConfig.cmake, ...ConfigVersion.cmake,
#                               combinerTargets.cmake
#   <prefix>/share/pkgconfig/combiner.pc
#   <prefix>/share/doc/combiner/LICENSE, README.md, docs/INTERNALS.md, docs/SPEC.md
#
# As a subproject (add_subdirectory, FetchContent) nothing is installed
# unless the parent sets COMBINER_INSTALL=ON.

if(NOT DEFINED COMBINER_TOP_LEVEL)
  string(COMPARE EQUAL "${CMAKE_SOURCE_DIR}" "${PROJECT_SOURCE_DIR}" COMBINER_TOP_LEVEL)
endif()
option(COMBINER_INSTALL "Generate the install rules (header, CMake package, pkg-config file)"
  ${COMBINER_TOP_LEVEL})

# The header is the single source of truth for the version.
file(STRINGS "${PROJECT_SOURCE_DIR}/include/combiner.h" combiner_version_lines
  REGEX "^#define COMBINER_VERSION_(MAJOR|MINOR|PATCH) +[0-9]+")
foreach(part MAJOR MINOR PATCH)
  string(REGEX REPLACE ".*#define COMBINER_VERSION_${part} +([0-9]+).*" "\\1"
    COMBINER_VERSION_${part} "${combiner_version_lines}")
endforeach()
set(COMBINER_VERSION
  "${COMBINER_VERSION_MAJOR}.${COMBINER_VERSION_MINOR}.${COMBINER_VERSION_PATCH}")
if(NOT COMBINER_VERSION MATCHES "^[0-9]+\\.[0-9]+\\.[0-9]+$")
  message(FATAL_ERROR "cannot read COMBINER_VERSION_* from include/combiner.h")
endif()
if(COMBINER_TOP_LEVEL AND NOT COMBINER_VERSION VERSION_EQUAL PROJECT_VERSION)
  message(AUTHOR_WARNING "combiner.h is version ${COMBINER_VERSION} but project() says "
    "${PROJECT_VERSION}: update project(combiner VERSION ...). "
    "The installed package uses ${COMBINER_VERSION}.")
endif()

# expf, sqrtf, ...: where the C library keeps them in libm (glibc), whoever
# links combiner::combiner gets -lm, in the build tree here and in an
# installed package from combinerConfig.cmake, decided on the consumer's
# machine. OpenMP stays the consumer's choice.
find_library(COMBINER_LIBM m)
if(COMBINER_LIBM)
  target_link_libraries(combiner INTERFACE $<BUILD_INTERFACE:m>)
endif()

if(COMBINER_INSTALL)
  include(GNUInstallDirs)
  include(CMakePackageConfigHelpers)

  set(COMBINER_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/combiner" CACHE STRING
    "Where combinerConfig.cmake goes, relative to the prefix")
  # A header and -lm: nothing architecture-specific, hence share/.
  set(COMBINER_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_DATADIR}/pkgconfig" CACHE STRING
    "Where combiner.pc goes, relative to the prefix")
  mark_as_advanced(COMBINER_INSTALL_CMAKEDIR COMBINER_INSTALL_PKGCONFIGDIR)

  install(FILES "${PROJECT_SOURCE_DIR}/include/combiner.h"
    DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
  install(FILES "${PROJECT_SOURCE_DIR}/LICENSE" "${PROJECT_SOURCE_DIR}/README.md"
    DESTINATION "${CMAKE_INSTALL_DOCDIR}")
  install(FILES "${PROJECT_SOURCE_DIR}/docs/INTERNALS.md" "${PROJECT_SOURCE_DIR}/docs/SPEC.md"
    DESTINATION "${CMAKE_INSTALL_DOCDIR}/docs")

  # The target's INSTALL_INTERFACE already names include/; only a different
  # CMAKE_INSTALL_INCLUDEDIR needs adding.
  if(CMAKE_INSTALL_INCLUDEDIR STREQUAL "include")
    install(TARGETS combiner EXPORT combinerTargets)
  else()
    install(TARGETS combiner EXPORT combinerTargets
      INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
  endif()
  install(EXPORT combinerTargets NAMESPACE combiner::
    DESTINATION "${COMBINER_INSTALL_CMAKEDIR}")

  configure_package_config_file(
    "${CMAKE_CURRENT_LIST_DIR}/combinerConfig.cmake.in"
    "${PROJECT_BINARY_DIR}/combinerConfig.cmake"
    INSTALL_DESTINATION "${COMBINER_INSTALL_CMAKEDIR}")
  # 0.x: a minor release may change the API (semver), so 0.2 accepts only 0.2.*;
  # from 1.0 on, any release of the same major.
  if(COMBINER_VERSION_MAJOR EQUAL 0)
    set(combiner_compatibility SameMinorVersion)
  else()
    set(combiner_compatibility SameMajorVersion)
  endif()
  write_basic_package_version_file(
    "${PROJECT_BINARY_DIR}/combinerConfigVersion.cmake"
    VERSION "${COMBINER_VERSION}"
    COMPATIBILITY ${combiner_compatibility}
    ARCH_INDEPENDENT)  # header only: fine for 32- and 64-bit consumers alike
  install(FILES
    "${PROJECT_BINARY_DIR}/combinerConfig.cmake"
    "${PROJECT_BINARY_DIR}/combinerConfigVersion.cmake"
    DESTINATION "${COMBINER_INSTALL_CMAKEDIR}")

  # combiner.pc finds the prefix from its own location (${pcfiledir}), so it
  # stays right under `cmake --install --prefix`, DESTDIR and a moved tree.
  if(IS_ABSOLUTE "${COMBINER_INSTALL_PKGCONFIGDIR}")
    message(FATAL_ERROR "COMBINER_INSTALL_PKGCONFIGDIR must be relative to the prefix")
  endif()
  file(RELATIVE_PATH COMBINER_PC_TO_PREFIX
    "/prefix/${COMBINER_INSTALL_PKGCONFIGDIR}" "/prefix")
  string(REGEX REPLACE "/$" "" COMBINER_PC_TO_PREFIX "${COMBINER_PC_TO_PREFIX}")
  if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
    set(COMBINER_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
  else()
    set(COMBINER_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
  endif()
  configure_file("${CMAKE_CURRENT_LIST_DIR}/combiner.pc.in"
    "${PROJECT_BINARY_DIR}/combiner.pc" @ONLY)
  install(FILES "${PROJECT_BINARY_DIR}/combiner.pc"
    DESTINATION "${COMBINER_INSTALL_PKGCONFIGDIR}")
endif()

# Each way of consuming the library, end to end, on a fresh tree under
# <build>/consumer/<test>: configure, build and run tests/consumer/main.c.
# Not in a cross build: the consumer trees are configured for, and their
# programs run on, the build machine.
if(COMBINER_BUILD_TESTS AND NOT CMAKE_CROSSCOMPILING)
  set(combiner_consumer_variants consume_add_subdirectory consume_fetchcontent
    consume_copied_header)
  if(COMBINER_INSTALL)
    list(INSERT combiner_consumer_variants 0 install_find_package install_pkgconfig)
  endif()
  foreach(variant ${combiner_consumer_variants})
    add_test(NAME ${variant}
      COMMAND ${CMAKE_COMMAND}
        -DVARIANT=${variant}
        -DSOURCE_DIR=${PROJECT_SOURCE_DIR}
        -DBUILD_DIR=${PROJECT_BINARY_DIR}
        -DWORK_DIR=${PROJECT_BINARY_DIR}/consumer/${variant}
        -DCONFIG=$<CONFIG>
        "-DGENERATOR=${CMAKE_GENERATOR}"
        "-DMAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}"
        "-DC_COMPILER=${CMAKE_C_COMPILER}"
        "-DCXX_COMPILER=${CMAKE_CXX_COMPILER}"
        -DVERSION=${COMBINER_VERSION}
        "-DINCLUDEDIR=${CMAKE_INSTALL_INCLUDEDIR}"
        "-DCMAKEDIR=${COMBINER_INSTALL_CMAKEDIR}"
        "-DPKGCONFIGDIR=${COMBINER_INSTALL_PKGCONFIGDIR}"
        -P ${PROJECT_SOURCE_DIR}/tests/consumer/run.cmake)
    set_tests_properties(${variant} PROPERTIES
      LABELS consumer TIMEOUT 120)
  endforeach()
endif()
