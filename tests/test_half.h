/* tests/test_half.h -- binary16 and bfloat16 for the tests, from the
 * formats' definitions (round to nearest even; widening by the formulas),
 * shared with nothing in the header. Include after test_common.h. */
#ifndef COMBINER_TEST_HALF_H
#define COMBINER_TEST_HALF_H

enum { F32 = COMBINER_F32, F16 = COMBINER_F16, BF16 = COMBINER_BF16 };
static const char *const type_names[] = {"f32", "f16", "bf16"};

TEST_HELPER uint32_t bits_of(float f) { uint32_t b; memcpy(&b, &f, sizeof b); return b; }
TEST_HELPER float float_of(uint32_t b) { float f; memcpy(&f, &b, sizeof f); return f; }

/* float32 -> binary16, round to nearest even */
TEST_HELPER uint16_t to_f16(float f) {
  const uint32_t x = bits_of(f), a = x & 0x7fffffffu;
  const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  if (a >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);            /* >= 65520: rounds to Inf */
  if (a < 0x38800000u) {                                              /* below 2^-14: subnormal */
    const double m = rint(fabs((double)f) * 16777216.0);              /* units of 2^-24 */
    return (uint16_t)(sign | (uint16_t)m);                            /* 1024 = the smallest normal */
  } else {
    uint32_t h = (((a >> 23) - 112u) << 10) | ((a & 0x7fffffu) >> 13), rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return (uint16_t)(sign | h);
  }
}

/* float32 -> bfloat16, round to nearest even */
TEST_HELPER uint16_t to_bf16(float f) {
  const uint32_t x = bits_of(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);   /* NaN stays NaN */
  return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* binary16 / bfloat16 -> the value, from the formats' definitions */
TEST_HELPER float widen(uint16_t h, int type) {
  if (type == BF16) return float_of((uint32_t)h << 16);
  {
    const int e = (h >> 10) & 31, m = h & 1023;
    const double s = (h & 0x8000u) ? -1.0 : 1.0;
    if (e == 31) return m ? NAN : (float)(s * INFINITY);
    if (e == 0) return (float)(s * ldexp((double)m, -24));
    return (float)(s * ldexp((double)(1024 + m), e - 25));
  }
}

TEST_HELPER uint16_t narrow(float f, int type) { return type == F16 ? to_f16(f) : to_bf16(f); }

#endif
