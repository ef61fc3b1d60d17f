/* Compiled once per kind with every other kind compiled out (see
 * tests/CMakeLists.txt): the library must build warning-free under -Werror
 * whatever subset a user keeps. */
#define COMBINER_IMPLEMENTATION
#include "combiner.h"

int combiner_only_kind_builds(void);
int combiner_only_kind_builds(void) { return combiner_workspace_size(NULL) == 0; }
