/* What a test build carries: the kinds compiled out with COMBINER_NO_*
 * answer COMBINER_ERR_UNSUPPORTED, and the default block the library is
 * specified to pick. Shared by the cache test and the cache fuzz target
 * (which is built on its own, without test_common.h). C99 and C++. */
#ifndef COMBINER_TEST_KINDS_H
#define COMBINER_TEST_KINDS_H

#include "combiner.h"

static int kind_compiled(int kind) {
  switch (kind) {
#ifdef COMBINER_NO_FIXED
    case COMBINER_FIXED: return 0;
#endif
#ifdef COMBINER_NO_AXIAL
    case COMBINER_AXIAL: return 0;
#endif
#ifdef COMBINER_NO_MIXTURE
    case COMBINER_MIXTURE: return 0;
#endif
#ifdef COMBINER_NO_DENSE
    case COMBINER_DENSE: return 0;
#endif
#ifdef COMBINER_NO_LOGSPARSE
    case COMBINER_LOGSPARSE: return 0;
#endif
    default: return 1;
  }
}

/* Kinds whose math has a block (SPEC 3-5); DENSE and LOGSPARSE have none.
 * KIND_DEFAULT is COMBINER_DEFAULT_KIND (AXIAL when undefined). */
static int kind_has_blocks(int kind) {
#ifdef COMBINER_DEFAULT_KIND
  if (kind == COMBINER_KIND_DEFAULT) kind = COMBINER_DEFAULT_KIND;
#else
  if (kind == COMBINER_KIND_DEFAULT) kind = COMBINER_AXIAL;
#endif
  return kind == COMBINER_FIXED || kind == COMBINER_AXIAL || kind == COMBINER_MIXTURE;
}

/* SPEC 2's default block: ceil(sqrt(n)) */
static int ceil_sqrt(int n) {
  int m = 1;
  while ((long long)m * m < n) ++m;
  return m;
}

#endif
