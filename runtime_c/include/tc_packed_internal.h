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

/* Bytes of the decoded depthwise filter in scratch (after the 3 bytes of alignment slack),
 * rounded up to 4: the int16 filter, + the 16-lane copy for tc_dw_pairs() layers. A flag word
 * (TC_RQ_READY) and a table of prepared requantization parameters (tc_rq, one per output
 * channel) follow it. */
TC_INLINE int32_t tc_dw_filter_bytes(const tc_dw_packed_params *p)
{
    const int32_t ntaps = (int32_t)p->k_h * p->k_w;
    return (2 * ntaps * p->out_c + (tc_dw_pairs(p) ? 2 * ntaps * 16 : 0) + 3) & ~3;
}

/* Layout of the decoded depthwise filter in scratch, chosen by the rows path the build runs
 * (tc_depthwise_conv2d_packed_decode.c documents each); all fit the one scratch size. */
#define TC_DW_PORTABLE 0
#define TC_DW_DSP 1
#define TC_DW_V6M 2
TC_INLINE int tc_dw_layout(const tc_dw_packed_params *p)
{
#if defined(TC_ARCH_ARM_DSP)
    return p->depth_multiplier == 1 ? TC_DW_DSP : TC_DW_PORTABLE;
#elif defined(TC_ARCH_ARMV6M)
    /* channel sums (4 B) + int8 taps per channel fit the int16 filter's bytes from 4 taps */
    return (int32_t)p->k_h * p->k_w >= 4 ? TC_DW_V6M : TC_DW_PORTABLE;
#else
    (void)p;
    return TC_DW_PORTABLE;
#endif
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

/* Arm form of the all-filters scratch of a shallow layer (tc_conv2d_packed_decode.c): 3 bytes of
 * alignment slack, a flag word (TC_RQ_READY) and 12 bytes per channel (DSP cores: the prepared
 * requantization, tc_rq; ARMv6-M: the int32 weight sum of each channel), all filters as int8
 * [out_c][flen] rounded up to 4 bytes, and a two-position patch of 4 * ceil(flen / 4) bytes
 * (int16 on DSP cores, int8 on ARMv6-M). The same size is reserved on every target. */
TC_INLINE int32_t tc_conv_shallow_arm_bytes(const tc_conv_packed_params *p)
{
    const int32_t flen = (int32_t)p->k_h * p->k_w * p->filter_in_c;
    return 3 + 4 + 12 * p->out_c + ((flen * p->out_c + 3) & ~3) + 4 * ((flen + 3) & ~3);
}

/* x86 hosts (SSE2): shallow filters are stored as input-channel pairs for pmaddwd
 * (tc_conv2d_packed_rows.c); elsewhere as [kh*kw*in_c][out_c]. */
#if defined(TC_HOST_X86_SIMD) && defined(__SSE2__)
#define TC_CONV_PAIRS 1
#else
#define TC_CONV_PAIRS 0
#endif

/* x86 hosts with AVX2: int8 shallow filters (mode 2) with an even depth are stored as
 * input-channel pairs too, [kh*kw][in_c/2][out_c][2] int8 (the same bytes as [kh*kw*in_c][out_c]),
 * widened in the loop for VPMADDWD. Decode and rows ask the same question. */
TC_INLINE int tc_conv_pairs8(const tc_conv_packed_params *p)
{
#if defined(TC_HOST_X86_SIMD)
    return tc_conv_shallow_mode(p) == 2 && (p->in_c & 1) == 0 && __builtin_cpu_supports("avx2");
#else
    (void)p;
    return 0;
#endif
}

/* Keep a hot loop in its own function (own register allocation: matters on Thumb-1 cores). */
#if defined(__GNUC__)
#define TC_NOINLINE __attribute__((noinline))
#else
#define TC_NOINLINE
#endif

/* Biases in per-position hot loops (depthwise, shallow conv on Arm): those loops read int32.
 * tc_bias_stage() gives the int32 biases of channels [0, n) once per call: the stored array
 * itself when it is int32, else a copy in `buf` (TC_BIAS_STAGE entries, zeros for no bias) when
 * n <= TC_BIAS_STAGE; NULL otherwise (more channels, stored narrower or absent: the caller
 * stages a block of channels at a time with tc_bias_n(), or reads with tc_bias_cold()). */
#define TC_BIAS_STAGE 64

TC_INLINE const int32_t *tc_bias_stage(const void *bias, uint32_t bias_bits, int32_t n, int32_t *buf)
{
    if (bias != NULL && bias_bits != 16 && bias_bits != 24) {
        return (const int32_t *)bias;
    }
    if (n > TC_BIAS_STAGE) {
        return NULL;
    }
    tc_bias_n(bias, bias_bits, 0, n, buf);
    return buf;
}

/* tc_bias_at out of line (the rare fallback inside a hot loop keeps the loop's registers) */
#if defined(__GNUC__)
__attribute__((unused))
#endif
static TC_NOINLINE int32_t tc_bias_cold(const void *bias, uint32_t bias_bits, int32_t c)
{
    return tc_bias_at(bias, bias_bits, c);
}

/* Scheduling order for the unrolled hot loops on Arm (no instruction emitted): GCC's first
 * scheduling pass (on at -O2) hoists every table load of an unrolled loop body to the top,
 * which needs more registers than the core has and spills accumulators to the stack
 * (Cortex-M4, FC 4-bit: 3.2 instead of 2.2 instructions per MAC). TC_AFTER(p, v) makes the
 * pointer p depend on the value v (an empty asm with p as in/out operand), so loads through p
 * wait for v: each row's loads stay next to its multiply-accumulates. (The function attribute
 * `optimize("no-schedule-insns")` does this too, but miscompiled calls between such functions
 * at -Os; GCC documents the attribute as not meant for production code.) */
#if defined(__GNUC__) && defined(__arm__)
#define TC_AFTER(p, v) __asm__("" : "+r"(p) : "r"(v))
#else
#define TC_AFTER(p, v) ((void)0)
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

/* Index j (0..7) of a group of 8 indices of `bits` bits read as two words: bytes 0..3 of the
 * group in lo, bytes 4..bits-1 in hi; index j is bits [bits*j, bits*j + bits) of hi:lo. With
 * constant bits and j the shifts fold (no bit cursor). */
TC_INLINE uint32_t tc_group_index(uint32_t lo, uint32_t hi, uint32_t bits, uint32_t j)
{
    const uint32_t s = bits * j, m = (1u << bits) - 1u;
    if (s + bits <= 32u) {
        return (lo >> s) & m;
    }
    if (s >= 32u) {
        return (hi >> (s - 32u)) & m;
    }
    return ((lo >> s) | (hi << (32u - s))) & m;
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

/* ---- Arm fast paths (tc_arch.h: TC_ARCH_ARM_DSP, TC_ARCH_ARMV6M) ------------------------ */

#if defined(TC_ARCH_ARM_DSP)
#include <string.h>
/* DSP-core primitives shared by the packed kernels. Loads from any address (one LDR/LDRH:
 * ARMv7-M / ARMv8-M Mainline load words and halfwords unaligned). GCC's ACLE has __sxtb16 but
 * no SXTB16 with its ROR #8 operand and no PKHBT/PKHTB, and does not fold a rotate into
 * __sxtb16, so those are one-instruction asm statements (as CMSIS-NN's cmsis_gcc.h does). */
TC_INLINE uint32_t tc_ld32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
TC_INLINE uint32_t tc_ld16(const void *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
/* bytes 1 and 3 of x sign-extended into two int16 lanes */
TC_INLINE int32_t tc_sxtb16_ror8(uint32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
/* (lo[15:0], hi[15:0]) */
TC_INLINE int32_t tc_pkhbt16(int32_t lo, int32_t hi)
{
    int32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
    return r;
}
/* (lo[31:16], hi[31:16]) */
TC_INLINE int32_t tc_pkhtb16(int32_t hi, int32_t lo)
{
    int32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(hi), "r"(lo));
    return r;
}

/* Four requantized channels (values before the output offset) to four int8 bytes in one
 * word: + out_offset, saturate to int8 (SSAT), pack (PKHBT, UXTB16), clamp to
 * [act_min, act_max] in the byte lanes (SSUB8 sets the lane flags, SEL picks), one store.
 * min4 / max4: act_min / act_max in every byte. Same bytes as tc_requantize()'s clamp. */
TC_INLINE void tc_store4_s8(int32_t v0, int32_t v1, int32_t v2, int32_t v3, int32_t out_off,
                            uint32_t min4, uint32_t max4, int8_t *out)
{
    const uint32_t s0 = (uint32_t)__ssat(v0 + out_off, 8), s1 = (uint32_t)__ssat(v1 + out_off, 8);
    const uint32_t s2 = (uint32_t)__ssat(v2 + out_off, 8), s3 = (uint32_t)__ssat(v3 + out_off, 8);
    uint32_t v = __uxtb16((uint32_t)tc_pkhbt16((int32_t)s0, (int32_t)s2)) |
               (__uxtb16((uint32_t)tc_pkhbt16((int32_t)s1, (int32_t)s3)) << 8);
    (void)__ssub8(v, min4);
    v = __sel(v, min4);
    (void)__ssub8(v, max4);
    v = __sel(max4, v);
    memcpy(out, &v, 4);
}

/* Two requantized channels (before the output offset) to two adjacent int8 bytes: the same
 * saturate / clamp as tc_store4_s8, one halfword store. */
TC_INLINE void tc_store2_s8(int32_t v0, int32_t v1, int32_t out_off, uint32_t min4, uint32_t max4,
                            int8_t *out)
{
    const uint32_t s0 = (uint32_t)__ssat(v0 + out_off, 8), s1 = (uint32_t)__ssat(v1 + out_off, 8);
    uint32_t v = (s0 & 0xFFu) | (s1 << 8);
    uint16_t h;
    (void)__ssub8(v, min4);
    v = __sel(v, min4);
    (void)__ssub8(v, max4);
    v = __sel(max4, v);
    h = (uint16_t)v;
    memcpy(out, &h, 2);
}

/* SXTAB16 with its ROR #8 operand: a + (bytes 1 and 3 of x, sign-extended), two int16 lanes */
TC_INLINE uint32_t tc_sxtab16_ror8(uint32_t a, uint32_t x)
{
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}
#endif

#if defined(TC_ARCH_ARMV6M)
/* ARMv6-M int8 dot products, 2 positions x 2 channels and 1 position x 2 channels:
 * acc[0] += w0.xa, acc[1] += w1.xa, acc[2] += w0.xb, acc[3] += w1.xb over n >= 0 elements.
 *
 * Thumb-1 has no intrinsics for any of this, and GCC's Thumb-1 register allocation (-Os, the
 * boards' setting) keeps the accumulators in low registers and spills the pointers: 6.5
 * instructions per multiply-accumulate. The loops below are the shape the core wants: seven
 * low registers hold the four base pointers, one index (LDRSB takes register offsets only)
 * and two temporaries (r7 stays free for a frame pointer); the accumulators live in r8-r11
 * (ADD accepts high registers); MULS keeps its Rn operand, so an input byte is loaded once
 * per two products and a weight reloaded rather than copied: 30 instructions per 8
 * multiply-accumulates (2x2), 16 per 4 (1x2), two elements per iteration. Builds without
 * optimization (frame pointer, no register variables) and other compilers run the C loop,
 * which computes the same sums. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE__)
#define TC_V6M_ASM 1
#define TC_V6M_MAC2(x, a0, a1)                                                                    \
    "ldrsb %[t0], [%[" x "], %[i]]\n\t"                                                         \
    "ldrsb %[t1], [%[w0], %[i]]\n\t"                                                            \
    "muls %[t1], %[t0], %[t1]\n\t"                                                              \
    "add %[" a0 "], %[t1]\n\t"                                                                  \
    "ldrsb %[t1], [%[w1], %[i]]\n\t"                                                            \
    "muls %[t1], %[t0], %[t1]\n\t"                                                              \
    "add %[" a1 "], %[t1]\n\t"
#endif

TC_INLINE void tc_v6m_dot2x2(const int8_t *xa, const int8_t *xb, const int8_t *w0,
                             const int8_t *w1, int32_t n, int32_t *acc)
{
#if defined(TC_V6M_ASM)
    register int32_t a0 __asm__("r8") = acc[0];
    register int32_t a1 __asm__("r9") = acc[1];
    register int32_t b0 __asm__("r10") = acc[2];
    register int32_t b1 __asm__("r11") = acc[3];
    if (n & 1) { /* odd element first, then pairs */
        const int32_t x0 = xa[0], x1 = xb[0], v0 = w0[0], v1 = w1[0];
        a0 += x0 * v0;
        a1 += x0 * v1;
        b0 += x1 * v0;
        b1 += x1 * v1;
        xa++;
        xb++;
        w0++;
        w1++;
        n--;
    }
    if (n > 0) {
        int32_t i = -n, t0, t1;
        xa += n;
        xb += n;
        w0 += n;
        w1 += n;
        __asm__ volatile(".syntax unified\n"
                         "1:\n\t" TC_V6M_MAC2("xa", "a0", "a1") TC_V6M_MAC2("xb", "b0", "b1")
                         "adds %[i], #1\n\t" TC_V6M_MAC2("xa", "a0", "a1")
                         TC_V6M_MAC2("xb", "b0", "b1") "adds %[i], #1\n\t"
                         "bne 1b\n"
                         : [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0), [b1] "+r"(b1),
                           [i] "+l"(i), [t0] "=&l"(t0), [t1] "=&l"(t1)
                         : [xa] "l"(xa), [xb] "l"(xb), [w0] "l"(w0), [w1] "l"(w1)
                         : "cc", "memory");
    }
#else
    int32_t a0 = acc[0], a1 = acc[1], b0 = acc[2], b1 = acc[3];
    int32_t i;
    for (i = 0; i < n; i++) {
        const int32_t x0 = xa[i], x1 = xb[i], v0 = w0[i], v1 = w1[i];
        a0 += x0 * v0;
        a1 += x0 * v1;
        b0 += x1 * v0;
        b1 += x1 * v1;
    }
#endif
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = b0;
    acc[3] = b1;
}

TC_INLINE void tc_v6m_dot1x2(const int8_t *xa, const int8_t *w0, const int8_t *w1, int32_t n,
                             int32_t *acc)
{
#if defined(TC_V6M_ASM)
    register int32_t a0 __asm__("r8") = acc[0];
    register int32_t a1 __asm__("r9") = acc[1];
    if (n & 1) {
        const int32_t x0 = xa[0];
        a0 += x0 * w0[0];
        a1 += x0 * w1[0];
        xa++;
        w0++;
        w1++;
        n--;
    }
    if (n > 0) {
        int32_t i = -n, t0, t1;
        xa += n;
        w0 += n;
        w1 += n;
        __asm__ volatile(".syntax unified\n"
                         "1:\n\t" TC_V6M_MAC2("xa", "a0", "a1") "adds %[i], #1\n\t"
                         TC_V6M_MAC2("xa", "a0", "a1") "adds %[i], #1\n\t"
                         "bne 1b\n"
                         : [a0] "+r"(a0), [a1] "+r"(a1), [i] "+l"(i), [t0] "=&l"(t0),
                           [t1] "=&l"(t1)
                         : [xa] "l"(xa), [w0] "l"(w0), [w1] "l"(w1)
                         : "cc", "memory");
    }
#else
    int32_t a0 = acc[0], a1 = acc[1];
    int32_t i;
    for (i = 0; i < n; i++) {
        const int32_t x0 = xa[i];
        a0 += x0 * w0[i];
        a1 += x0 * w1[i];
    }
#endif
    acc[0] = a0;
    acc[1] = a1;
}
#endif

#if defined(TC_ARCH_ARMV6M)
/* ARMv6-M depthwise window of one channel: sum of x[r*rx + i] * w[r*rw + i] over rows r <
 * `rows` and i = 0, s, ..., (cols - 1) * s (x and w advance by the same s per tap: input and
 * filter are both [..][channels] with multiplier 1). `span` = cols * s. With `wsum` != NULL
 * also the sum of the weights seen (for the input offset of windows that leave the input).
 * Same register shape as tc_v6m_dot2x2 (x and w pre-offset by span so that the index runs
 * from -span up to 0 and ADDS sets the loop flag): 6 instructions per tap, 7 with the sum,
 * 19 per row of three taps (unrolled). */
TC_INLINE int32_t tc_v6m_dw_window(const int8_t *x, const int8_t *w, int32_t s, int32_t span,
                                   int32_t rows, int32_t rx, int32_t rw, int32_t *wsum)
{
#if defined(TC_V6M_ASM)
    /* Thumb-1 "r" operands are low registers: the loop constants go to high ones by name */
    register int32_t a __asm__("r8") = 0;
    register int32_t neg __asm__("r10") = -span;
    register int32_t rxh __asm__("r11") = rx;
    register int32_t rwh __asm__("r12") = rw;
    int32_t i, t0, t1;
    x += span;
    w += span;
    if (wsum == NULL && span == 3 * s) { /* three taps per row, unrolled */
        __asm__ volatile(".syntax unified\n"
                         "1:\n\t"
                         "mov %[i], %[neg]\n\t"
                         "ldrsb %[t0], [%[x], %[i]]\n\t"
                         "ldrsb %[t1], [%[w], %[i]]\n\t"
                         "muls %[t1], %[t0], %[t1]\n\t"
                         "add %[a], %[t1]\n\t"
                         "adds %[i], %[i], %[s]\n\t"
                         "ldrsb %[t0], [%[x], %[i]]\n\t"
                         "ldrsb %[t1], [%[w], %[i]]\n\t"
                         "muls %[t1], %[t0], %[t1]\n\t"
                         "add %[a], %[t1]\n\t"
                         "adds %[i], %[i], %[s]\n\t"
                         "ldrsb %[t0], [%[x], %[i]]\n\t"
                         "ldrsb %[t1], [%[w], %[i]]\n\t"
                         "muls %[t1], %[t0], %[t1]\n\t"
                         "add %[a], %[t1]\n\t"
                         "add %[x], %[rx]\n\t"
                         "add %[w], %[rw]\n\t"
                         "subs %[rows], #1\n\t"
                         "bne 1b\n"
                         : [a] "+r"(a), [x] "+l"(x), [w] "+l"(w), [rows] "+l"(rows), [i] "=&l"(i),
                           [t0] "=&l"(t0), [t1] "=&l"(t1)
                         : [s] "l"(s), [neg] "r"(neg), [rx] "r"(rxh), [rw] "r"(rwh)
                         : "cc", "memory");
    } else if (wsum == NULL) {
        __asm__ volatile(".syntax unified\n"
                         "1:\n\t"
                         "mov %[i], %[neg]\n"
                         "2:\n\t"
                         "ldrsb %[t0], [%[x], %[i]]\n\t"
                         "ldrsb %[t1], [%[w], %[i]]\n\t"
                         "muls %[t1], %[t0], %[t1]\n\t"
                         "add %[a], %[t1]\n\t"
                         "adds %[i], %[i], %[s]\n\t"
                         "bne 2b\n\t"
                         "add %[x], %[rx]\n\t"
                         "add %[w], %[rw]\n\t"
                         "subs %[rows], #1\n\t"
                         "bne 1b\n"
                         : [a] "+r"(a), [x] "+l"(x), [w] "+l"(w), [rows] "+l"(rows), [i] "=&l"(i),
                           [t0] "=&l"(t0), [t1] "=&l"(t1)
                         : [s] "l"(s), [neg] "r"(neg), [rx] "r"(rxh), [rw] "r"(rwh)
                         : "cc", "memory");
    } else {
        register int32_t ws __asm__("r9") = 0;
        __asm__ volatile(".syntax unified\n"
                         "1:\n\t"
                         "mov %[i], %[neg]\n"
                         "2:\n\t"
                         "ldrsb %[t0], [%[x], %[i]]\n\t"
                         "ldrsb %[t1], [%[w], %[i]]\n\t"
                         "muls %[t0], %[t1], %[t0]\n\t"
                         "add %[a], %[t0]\n\t"
                         "add %[ws], %[t1]\n\t"
                         "adds %[i], %[i], %[s]\n\t"
                         "bne 2b\n\t"
                         "add %[x], %[rx]\n\t"
                         "add %[w], %[rw]\n\t"
                         "subs %[rows], #1\n\t"
                         "bne 1b\n"
                         : [a] "+r"(a), [ws] "+r"(ws), [x] "+l"(x), [w] "+l"(w), [rows] "+l"(rows),
                           [i] "=&l"(i), [t0] "=&l"(t0), [t1] "=&l"(t1)
                         : [s] "l"(s), [neg] "r"(neg), [rx] "r"(rxh), [rw] "r"(rwh)
                         : "cc", "memory");
        *wsum = ws;
    }
    return a;
#else
    int32_t a = 0, ws = 0, r, i;
    for (r = 0; r < rows; r++) {
        for (i = 0; i < span; i += s) {
            a += x[i] * w[i];
            ws += w[i];
        }
        x += rx;
        w += rw;
    }
    if (wsum != NULL) {
        *wsum = ws;
    }
    return a;
#endif
}
#endif

#if defined(TC_ARCH_ARMV6M)
/* ARMv6-M depthwise 3x3 windows that lie inside the input, n consecutive channels of one
 * position: acc[j] += sum over the nine taps of x[j + r*rx + k*s] * w[j + (3r + k)*s]
 * (multiplier 1: input and filter advance by s = channels per tap). One index walks the
 * filter through all nine taps; the input base moves by rx - 3s per row, so each tap is
 * LDRSB, LDRSB, MULS, ADD, ADDS: 55 instructions per channel with the loop. */
TC_INLINE void tc_v6m_dw3x3(const int8_t *x, const int8_t *w, int32_t s, int32_t rx, int32_t n,
                            int32_t *acc)
{
#if defined(TC_V6M_ASM)
    register int32_t a __asm__("r8");
    register int32_t drow __asm__("r9") = rx - 3 * s;
    register int32_t back __asm__("r10") = 1 - 2 * (rx - 3 * s); /* ADD only: Thumb-1 SUB takes low registers */
    register int32_t *end __asm__("r11") = acc + n;
    int32_t i, t0, t1;
    if (n <= 0) {
        return;
    }
#define TC_V6M_TAP                                                                                \
    "ldrsb %[t0], [%[x], %[i]]\n\t"                                                             \
    "ldrsb %[t1], [%[w], %[i]]\n\t"                                                             \
    "muls %[t1], %[t0], %[t1]\n\t"                                                              \
    "add %[a], %[t1]\n\t"
    __asm__ volatile(".syntax unified\n"
                     "1:\n\t"
                     "ldr %[t0], [%[acc]]\n\t"
                     "mov %[a], %[t0]\n\t"
                     "movs %[i], #0\n\t" TC_V6M_TAP "adds %[i], %[i], %[s]\n\t" TC_V6M_TAP
                     "adds %[i], %[i], %[s]\n\t" TC_V6M_TAP "adds %[i], %[i], %[s]\n\t"
                     "add %[x], %[drow]\n\t" TC_V6M_TAP "adds %[i], %[i], %[s]\n\t" TC_V6M_TAP
                     "adds %[i], %[i], %[s]\n\t" TC_V6M_TAP "adds %[i], %[i], %[s]\n\t"
                     "add %[x], %[drow]\n\t" TC_V6M_TAP "adds %[i], %[i], %[s]\n\t" TC_V6M_TAP
                     "adds %[i], %[i], %[s]\n\t" TC_V6M_TAP
                     "mov %[t0], %[a]\n\t"
                     "stm %[acc]!, {%[t0]}\n\t"
                     "add %[x], %[back]\n\t"
                     "adds %[w], #1\n\t"
                     "cmp %[acc], %[end]\n\t"
                     "bne 1b\n"
                     : [a] "=&r"(a), [x] "+l"(x), [w] "+l"(w), [acc] "+l"(acc), [i] "=&l"(i),
                       [t0] "=&l"(t0), [t1] "=&l"(t1)
                     : [s] "l"(s), [drow] "r"(drow), [back] "r"(back), [end] "r"(end)
                     : "cc", "memory");
#undef TC_V6M_TAP
#else
    int32_t j, r, k;
    for (j = 0; j < n; j++) {
        int32_t a = acc[j];
        for (r = 0; r < 3; r++) {
            for (k = 0; k < 3; k++) {
                a += x[j + r * rx + k * s] * w[j + (3 * r + k) * s];
            }
        }
        acc[j] = a;
    }
#endif
}
#endif

/* ---- Requantization prepared per channel ------------------------------------------------
 * Kernels that requantize many outputs of the same channels prepare each channel once
 * (tc_rq_prepare) and then run tc_rq_apply(q, x), which equals tc_mul_by_quant_mult(x, mult,
 * shift) for every int32 x, mult in [0, 2^31) and shift in [-31, 30] (tested exhaustively per
 * shift against the reference on the host and on the targets).
 * For shift = -e <= -2 (every real layer: the multiplier scales down) TFLite's double rounding
 * collapses to one 64-bit product: with p = x*mult + 2^30 (SMLAL), x' = floor(p / 2^31) and
 * RoundingDivideByPOT(x', e) = floor((x' + 2^(e-1) - [x' < 0]) / 2^e)
 *                            = floor((p + 2^(30+e) - [p < 0]*2^31) / 2^(31+e)),
 * and in the two words (hi, lo) of p that is
 *   (hi + 2^(e-2) - [hi < 0 and lo < 2^31]) >> (e - 1)       (arithmetic shift)
 * i.e. MOV, MOV, SMLAL, BIC, ADD, SUB (shifted operand), ASR: 7 instructions instead of ~21.
 * ARMv6-M takes the high product from tc_mul_by_quant_mult (its 16x16 MULS form) and rounds
 * with the same prepared constants. Other shifts (-1 .. 30) take tc_mul_by_quant_mult itself. */
typedef struct {
    int32_t mult;
    int32_t r; /* 2^(e-2); the shift itself on the general path */
    int32_t e; /* e - 1 (1..30), or -1: general path */
} tc_rq;

TC_INLINE void tc_rq_prepare(int32_t mult, int32_t shift, tc_rq *q)
{
    q->mult = mult;
    if (shift <= -2) {
        q->r = (int32_t)1 << (-shift - 2);
        q->e = -shift - 1;
    } else {
        q->r = shift;
        q->e = -1;
    }
}

/* tc_rq_apply for a channel prepared with shift <= -2 (q->e > 0): no test of the form */
TC_INLINE int32_t tc_rq_apply_fast(const tc_rq *q, int32_t x)
{
#if defined(TC_ARCH_ARMV6M)
    /* no 64-bit multiply: the high product h = floor(p / 2^31) from tc_mul_by_quant_mult
     * (shift 0: its per-core product, no rounding), then with h = 2a + b,
     * RoundingDivideByPOT(h, e) = (a + 2^(e-2) - [h < 0 and b == 0]) >> (e - 1) */
    const int32_t h = tc_mul_by_quant_mult(x, q->mult, 0);
    const uint32_t neg_even = ((uint32_t)h >> 31) & ~(uint32_t)h;
    return ((h >> 1) + q->r - (int32_t)(neg_even & 1u)) >> q->e;
#else
    const int64_t p = (int64_t)x * q->mult + ((int64_t)1 << 30);
    const int32_t hi = (int32_t)(p >> 32);
    const uint32_t lo = (uint32_t)(uint64_t)p;
    const uint32_t neg_low = (uint32_t)hi & ~lo; /* bit 31: p < 0 and lo < 2^31 */
    return (hi + q->r - (int32_t)(neg_low >> 31)) >> q->e;
#endif
}

TC_INLINE int32_t tc_rq_apply(const tc_rq *q, int32_t x)
{
    if (q->e > 0) {
        return tc_rq_apply_fast(q, x);
    }
    return tc_mul_by_quant_mult(x, q->mult, q->r);
}

/* tc_rq_apply_fast when `fast` (a compile-time constant in the callers: two specialized copies
 * of a loop, chosen by the table's flag), else tc_rq_apply */
TC_INLINE int32_t tc_rq_apply_sel(const tc_rq *q, int32_t x, const int fast)
{
    return fast ? tc_rq_apply_fast(q, x) : tc_rq_apply(q, x);
}

/* A table of prepared channels in scratch is prepared by the first rows call after a decode
 * and reused by the following ones (the rows calls of one layer run between its decode and
 * the next use of its scratch): the decode clears the word before the table, the rows call
 * that prepares the table sets it to TC_RQ_READY. */
#define TC_RQ_READY 0x52515459u
/* ... or this value when every channel of the table takes tc_rq_apply_fast */
#define TC_RQ_READY_FAST 0x52515446u

TC_INLINE int tc_rq_table_ready(uint32_t flag)
{
    return flag == TC_RQ_READY || flag == TC_RQ_READY_FAST;
}

/* q[j] for channels c0 .. c0 + n - 1 (per_channel) or n copies of channel 0; returns the
 * flag value of the table (TC_RQ_READY_FAST when every channel has shift <= -2) */
TC_INLINE uint32_t tc_rq_prepare_n(const int32_t *mult, const int8_t *shift, int per_channel,
                                   int32_t c0, int32_t n, tc_rq *q)
{
    int32_t j;
    int fast = 1;
    for (j = 0; j < n; j++) {
        const int32_t k = per_channel ? c0 + j : 0;
        tc_rq_prepare(mult[k], shift[k], q + j);
        fast &= q[j].e > 0;
    }
    return fast ? TC_RQ_READY_FAST : TC_RQ_READY;
}

/* 4-byte-aligned int32 area at the start of caller scratch (3 bytes of slack are budgeted) */
TC_INLINE int32_t *tc_scratch_s32(int8_t *scratch)
{
    const size_t mis = (size_t)((uintptr_t)scratch & 3u);
    return (int32_t *)(void *)(scratch + ((4u - mis) & 3u));
}

#endif /* TC_PACKED_INTERNAL_H */
