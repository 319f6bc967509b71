/*
 * Internal helpers shared by the packed-weight kernels (not part of the public API; kept in
 * include/ so that host build caches, keyed by the include directory, see its changes).
 * Loops are written as fixed 16-wide blocks over restrict pointers so that a C99
 * compiler at -O2 (GCC's very-cheap vectorizer) turns them into SIMD code; the scalar
 * tails handle the remainder.
 */
#ifndef TC_PACKED_INTERNAL_H
#define TC_PACKED_INTERNAL_H

#include "tc_kernels.h"

/* Fast-path selection (TC_ARCH_ARM_DSP, TC_ARCH_ARMV6M, TC_HOST_X86_SIMD, TC_HOST_SIMD) comes
 * from tc_arch.h through tc_common.h; -DTC_PORTABLE (or -DTC_NO_HOST_SIMD on a host) builds
 * the portable reference only (the tests build both). */

/* out[j] = tc_requantize(acc[j], mult[c0 + j or 0], shift[c0 + j or 0], ...) for j < n
 * (tc_requantize_lanes.c; vectorized on x86 hosts, mult must be in [0, 2^31)). */
void tc_requantize_lanes(const int32_t *acc, int32_t n, const int32_t *mult, const int8_t *shift,
                         int per_channel, int32_t c0, int32_t out_offset, int32_t act_min,
                         int32_t act_max, int8_t *out);

/* Depthwise, 8 channels, multiplier 1, stride 1: two adjacent output positions share one
 * 16-lane block (their inputs are 16 contiguous bytes), with the filter duplicated to 16
 * lanes in scratch. */
TC_INLINE int tc_dw_pairs(const tc_dw_packed_params *p)
{
    return p->out_c == 8 && p->depth_multiplier == 1 && p->stride_w == 1;
}


/* Shallow filters (e.g. a first layer on 1..3 input channels, or a pointwise layer on 8..16
 * channels) make per-channel dot products too short to vectorize; those layers decode all
 * filters at once, transposed to [k_h][k_w][filter_in_c][out_c], and vectorize over output
 * channels instead: below TC_CONV_SHALLOW_MAX input channels when all filters, decoded to
 * int16, fit TC_CONV_SHALLOW_BYTES of scratch. */
#define TC_CONV_SHALLOW_MAX 32
#define TC_CONV_SHALLOW_BYTES 4096
#define TC_CONV_BLOCK 16

/* 0: deep (one filter at a time); 1: all filters as int16 (input-channel pairs on x86
 * hosts); 2: all filters as int8 [kh*kw*in_c][out_c], when the int16 form would not fit.
 * The all-filters scratch is bounded on every target: scratch is part of the arena, so a fast
 * path must not cost more SRAM than it saves time. */
TC_INLINE int tc_conv_shallow_mode(const tc_conv_packed_params *p)
{
    const int32_t fic = p->filter_in_c;
    const int32_t taps = (int32_t)p->k_h * p->k_w;
    if (fic != p->in_c || fic >= TC_CONV_SHALLOW_MAX) {
        return 0;
    }
    if (2 * taps * 2 * ((fic + 1) / 2) * p->out_c <= TC_CONV_SHALLOW_BYTES) {
        return 1;
    }
    return taps * fic * p->out_c <= TC_CONV_SHALLOW_BYTES ? 2 : 0;
}

TC_INLINE int tc_conv_is_shallow(const tc_conv_packed_params *p)
{
    return tc_conv_shallow_mode(p) != 0;
}

/* x86 hosts (SSE2): shallow filters are stored as input-channel pairs for pmaddwd
 * (tc_conv2d_packed_rows.c); elsewhere as [kh*kw*in_c][out_c]. */
#if defined(TC_HOST_X86_SIMD) && defined(__SSE2__)
#define TC_CONV_PAIRS 1
#else
#define TC_CONV_PAIRS 0
#endif

/* Keep a hot loop in its own function (own register allocation: matters on Thumb-1 cores). */
#if defined(__GNUC__)
#define TC_NOINLINE __attribute__((noinline))
#else
#define TC_NOINLINE
#endif

/* Decoded weights are held as int16 (sign-extended once per decode), so that the dot
 * products below are int16 x int16 -> int32 multiply-adds (SSE2 pmaddwd, Arm SMLAD) and the
 * only per-MAC widening is the one of the int8 activation. Blocks of 64 then 16 keep the
 * horizontal reduction out of the hot loop. */

/* sum(w[i] * x[i]) */
TC_INLINE int32_t tc_dot_s16_s8(const int16_t *restrict w, const int8_t *restrict x, int32_t n)
{
    int32_t acc = 0, i = 0, j;
    for (; i + 64 <= n; i += 64) {
        int32_t s = 0;
        for (j = 0; j < 64; j++) {
            s += (int32_t)w[i + j] * (int16_t)x[i + j];
        }
        acc += s;
    }
    for (; i + 16 <= n; i += 16) {
        int32_t s = 0;
        for (j = 0; j < 16; j++) {
            s += (int32_t)w[i + j] * (int16_t)x[i + j];
        }
        acc += s;
    }
    for (; i < n; i++) {
        acc += (int32_t)w[i] * (int32_t)x[i];
    }
    return acc;
}

/* sum(w[i] * x[i]), int8 weights */
TC_INLINE int32_t tc_dot_s8(const int8_t *restrict w, const int8_t *restrict x, int32_t n)
{
    int32_t acc = 0, i = 0, j;
    for (; i + 64 <= n; i += 64) {
        int32_t s = 0;
        for (j = 0; j < 64; j++) {
            s += (int32_t)(int16_t)w[i + j] * (int16_t)x[i + j];
        }
        acc += s;
    }
    for (; i + 16 <= n; i += 16) {
        int32_t s = 0;
        for (j = 0; j < 16; j++) {
            s += (int32_t)(int16_t)w[i + j] * (int16_t)x[i + j];
        }
        acc += s;
    }
    for (; i < n; i++) {
        acc += (int32_t)w[i] * (int32_t)x[i];
    }
    return acc;
}

/* sum(w[i]) */
TC_INLINE int32_t tc_sum_s16(const int16_t *restrict w, int32_t n)
{
    int32_t acc = 0, i = 0, j;
    for (; i + 16 <= n; i += 16) {
        int32_t s = 0;
        for (j = 0; j < 16; j++) {
            s += w[i + j];
        }
        acc += s;
    }
    for (; i < n; i++) {
        acc += w[i];
    }
    return acc;
}

/* int8 -> int16 */
TC_INLINE void tc_widen_s8_s16(const int8_t *restrict in, int32_t n, int16_t *restrict out)
{
    int32_t i = 0, j;
    for (; i + 16 <= n; i += 16) {
        for (j = 0; j < 16; j++) {
            out[i + j] = in[i + j];
        }
    }
    for (; i < n; i++) {
        out[i] = in[i];
    }
}

#define TC_UNPACK_CHUNK 128

/* Host fast path (tc_unpack_lut.c): byte-aligned 4-bit indices straight to int16 values;
 * returns how many it decoded (a multiple of 32; 0 where no SIMD decoder exists). */
int32_t tc_unpack4_s16_host(const uint8_t *p, const int8_t *codebook, int32_t n, int16_t *out);

/* tc_unpack_lut() into int16, through a TC_UNPACK_CHUNK-byte stack buffer */
TC_INLINE void tc_unpack_lut16(const uint8_t *packed, uint32_t bit_offset, uint8_t bits,
                               const int8_t *codebook, int32_t count, int16_t *out)
{
    int8_t tmp[TC_UNPACK_CHUNK];
    int32_t i = 0;
    if (TC_HOST_SIMD && bits == 4 && (bit_offset & 7u) == 0 && codebook != NULL) {
        i = tc_unpack4_s16_host(packed + (bit_offset >> 3), codebook, count, out);
    }
    for (; i < count; i += TC_UNPACK_CHUNK) {
        const int32_t n = TC_MIN(TC_UNPACK_CHUNK, count - i);
        tc_unpack_lut(packed, bit_offset + (uint32_t)i * bits, bits, codebook, n, tmp);
        tc_widen_s8_s16(tmp, n, out + i);
    }
}

/* First valid kernel tap k of a window starting at input coordinate `origin` with dilation
 * `dil`: 0 <= origin + k*dil < size  <=>  k in [lo, hi). */
TC_INLINE void tc_tap_range(int32_t origin, int32_t dil, int32_t size, int32_t k, int32_t *lo,
                            int32_t *hi)
{
    int32_t a = 0, b;
    if (dil == 1) { /* no division on the common path */
        a = origin < 0 ? -origin : 0;
        b = size - origin;
    } else {
        if (origin < 0) {
            a = (-origin + dil - 1) / dil;
        }
        b = size - origin <= 0 ? 0 : (size - origin + dil - 1) / dil;
    }
    if (b > k) {
        b = k;
    }
    if (b < 0) {
        b = 0;
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
