/*
 * Internal helpers shared by the packed-weight kernels (not part of the public API).
 * Loops are written as fixed 16-wide blocks over restrict pointers so that a C99
 * compiler at -O2 (GCC's very-cheap vectorizer) turns them into SIMD code; the scalar
 * tails handle the remainder.
 */
#ifndef TC_PACKED_INTERNAL_H
#define TC_PACKED_INTERNAL_H

#include "tc_kernels.h"

/* sum(w[i] * x[i]), and *wsum += sum(w[i]) */
TC_INLINE int32_t tc_dot_s8_wsum(const int8_t *restrict w, const int8_t *restrict x, int32_t n,
                                 int32_t *wsum)
{
    int32_t acc = 0, s = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        int32_t j;
        for (j = 0; j < 16; j++) {
            acc += (int32_t)w[i + j] * (int32_t)x[i + j];
            s += w[i + j];
        }
    }
    for (; i < n; i++) {
        acc += (int32_t)w[i] * (int32_t)x[i];
        s += w[i];
    }
    *wsum += s;
    return acc;
}

/* sum(w[i] * x[i]) */
TC_INLINE int32_t tc_dot_s8(const int8_t *restrict w, const int8_t *restrict x, int32_t n)
{
    int32_t acc = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        int32_t j;
        for (j = 0; j < 16; j++) {
            acc += (int32_t)w[i + j] * (int32_t)x[i + j];
        }
    }
    for (; i < n; i++) {
        acc += (int32_t)w[i] * (int32_t)x[i];
    }
    return acc;
}

/* acc[i] += w[i] * (x[i] + offset), offset in [-128, 128] so x + offset fits int16 */
TC_INLINE void tc_mac_s8_offset(int32_t *restrict acc, const int8_t *restrict w,
                                const int8_t *restrict x, int32_t offset, int32_t n)
{
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        int32_t j;
        for (j = 0; j < 16; j++) {
            const int16_t xv = (int16_t)(x[i + j] + offset);
            acc[i + j] += (int32_t)((int16_t)w[i + j] * xv);
        }
    }
    for (; i < n; i++) {
        acc[i] += (int32_t)w[i] * ((int32_t)x[i] + offset);
    }
}

/* First valid kernel tap k of a window starting at input coordinate `origin` with dilation
 * `dil`: 0 <= origin + k*dil < size  <=>  k in [lo, hi). */
TC_INLINE void tc_tap_range(int32_t origin, int32_t dil, int32_t size, int32_t k, int32_t *lo,
                            int32_t *hi)
{
    int32_t a = 0, b;
    if (origin < 0) {
        a = (-origin + dil - 1) / dil;
    }
    if (size - origin <= 0) {
        b = 0;
    } else {
        b = (size - origin + dil - 1) / dil;
    }
    if (b > k) {
        b = k;
    }
    if (a > b) {
        a = b;
    }
    *lo = a;
    *hi = b;
}

/* 4-byte-aligned int32 area at the start of caller scratch (3 bytes of slack are budgeted) */
TC_INLINE int32_t *tc_scratch_s32(int8_t *scratch)
{
    const size_t mis = (size_t)((uintptr_t)scratch & 3u);
    return (int32_t *)(void *)(scratch + ((4u - mis) & 3u));
}

#endif /* TC_PACKED_INTERNAL_H */
