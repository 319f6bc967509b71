/*
 * tc_unpack_lut: packed index bitstream -> codebook values, with byte-wise fast paths for
 * 1, 2, 4 and 8 bits when the first index starts on a byte boundary, and for 3, 5, 6, 7 bits
 * a group-of-8 path (8 indices = `bits` whole bytes); unaligned starts and tails go to the
 * generic bitstream reader (tc_unpack_lut_generic).
 *
 * Per-core fast path (x86 hosts only, selected at run time): for 2- and 4-bit streams the
 * codebook fits one 16-byte register and SSSE3 pshufb looks up 16 indices per instruction.
 * It reads 2^bits codebook entries (see the padding rule in tc_kernels.h). Cortex-M builds
 * never see this block; -DTC_NO_HOST_SIMD removes it on hosts (the tests build both).
 */
#include "tc_packed_internal.h"

static const int8_t tc_identity16[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

#ifdef TC_HOST_X86_SIMD
#include <tmmintrin.h>

/* 4-bit: 16 packed bytes -> 32 values per iteration; returns the number of values written */
__attribute__((target("ssse3"))) static int32_t unpack4_ssse3(const uint8_t *p, const int8_t *cb,
                                                              int32_t n, int8_t *out)
{
    const __m128i tab = _mm_loadu_si128((const __m128i *)(const void *)cb);
    const __m128i m = _mm_set1_epi8(0x0F);
    const int32_t blocks = n >> 5;
    int32_t i;
    for (i = 0; i < blocks; i++) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * i));
        const __m128i lo = _mm_shuffle_epi8(tab, _mm_and_si128(v, m));
        const __m128i hi = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(v, 4), m));
        _mm_storeu_si128((__m128i *)(void *)(out + 32 * i), _mm_unpacklo_epi8(lo, hi));
        _mm_storeu_si128((__m128i *)(void *)(out + 32 * i + 16), _mm_unpackhi_epi8(lo, hi));
    }
    return blocks << 5;
}

/* 2-bit: 16 packed bytes -> 64 values per iteration */
__attribute__((target("ssse3"))) static int32_t unpack2_ssse3(const uint8_t *p, const int8_t *cb,
                                                              int32_t n, int8_t *out)
{
    int8_t t[16] = {0};
    __m128i tab;
    const __m128i m = _mm_set1_epi8(0x03);
    const int32_t blocks = n >> 6;
    int32_t i;
    t[0] = cb[0];
    t[1] = cb[1];
    t[2] = cb[2];
    t[3] = cb[3];
    tab = _mm_loadu_si128((const __m128i *)(const void *)t);
    for (i = 0; i < blocks; i++) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * i));
        const __m128i a0 = _mm_shuffle_epi8(tab, _mm_and_si128(v, m));
        const __m128i a1 = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(v, 2), m));
        const __m128i a2 = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(v, 4), m));
        const __m128i a3 = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(v, 6), m));
        const __m128i p01l = _mm_unpacklo_epi8(a0, a1), p01h = _mm_unpackhi_epi8(a0, a1);
        const __m128i p23l = _mm_unpacklo_epi8(a2, a3), p23h = _mm_unpackhi_epi8(a2, a3);
        int8_t *o = out + 64 * i;
        _mm_storeu_si128((__m128i *)(void *)o, _mm_unpacklo_epi16(p01l, p23l));
        _mm_storeu_si128((__m128i *)(void *)(o + 16), _mm_unpackhi_epi16(p01l, p23l));
        _mm_storeu_si128((__m128i *)(void *)(o + 32), _mm_unpacklo_epi16(p01h, p23h));
        _mm_storeu_si128((__m128i *)(void *)(o + 48), _mm_unpackhi_epi16(p01h, p23h));
    }
    return blocks << 6;
}

static int tc_host_ssse3(void)
{
    return __builtin_cpu_supports("ssse3");
}

/* 4-bit straight to int16: 32 values per iteration, sign-extended in registers */
__attribute__((target("ssse3"))) static int32_t unpack4_s16_ssse3(const uint8_t *p, const int8_t *cb,
                                                                  int32_t n, int16_t *out)
{
    const __m128i tab = _mm_loadu_si128((const __m128i *)(const void *)cb);
    const __m128i m = _mm_set1_epi8(0x0F);
    const int32_t blocks = n >> 5;
    int32_t i;
    for (i = 0; i < blocks; i++) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * i));
        const __m128i lo = _mm_shuffle_epi8(tab, _mm_and_si128(v, m));
        const __m128i hi = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(v, 4), m));
        const __m128i w0 = _mm_unpacklo_epi8(lo, hi), w1 = _mm_unpackhi_epi8(lo, hi);
        __m128i *o = (__m128i *)(void *)(out + 32 * i);
        _mm_storeu_si128(o, _mm_srai_epi16(_mm_unpacklo_epi8(w0, w0), 8));
        _mm_storeu_si128(o + 1, _mm_srai_epi16(_mm_unpackhi_epi8(w0, w0), 8));
        _mm_storeu_si128(o + 2, _mm_srai_epi16(_mm_unpacklo_epi8(w1, w1), 8));
        _mm_storeu_si128(o + 3, _mm_srai_epi16(_mm_unpackhi_epi8(w1, w1), 8));
    }
    return blocks << 5;
}
#endif

int32_t tc_unpack4_s16_host(const uint8_t *p, const int8_t *codebook, int32_t n, int16_t *out)
{
#ifdef TC_HOST_X86_SIMD
    if (n >= 32 && tc_host_ssse3()) {
        return unpack4_s16_ssse3(p, codebook, n, out);
    }
#else
    (void)p;
    (void)codebook;
    (void)n;
    (void)out;
#endif
    return 0;
}

static void unpack8(const uint8_t *restrict p, const int8_t *restrict cb, int32_t n,
                    int8_t *restrict out)
{
    int32_t i;
    for (i = 0; i < n; i++) {
        out[i] = cb[p[i]];
    }
}

static void unpack4(const uint8_t *restrict p, const int8_t *restrict cb, int32_t n,
                    int8_t *restrict out)
{
    const int32_t full = n >> 1;
    int32_t i;
    for (i = 0; i < full; i++) {
        const uint32_t b = p[i];
        out[2 * i] = cb[b & 15u];
        out[2 * i + 1] = cb[b >> 4];
    }
    if (n & 1) {
        out[n - 1] = cb[p[full] & 15u];
    }
}

static void unpack2(const uint8_t *restrict p, const int8_t *restrict cb, int32_t n,
                    int8_t *restrict out)
{
    const int32_t full = n >> 2;
    int32_t i, j;
    for (i = 0; i < full; i++) {
        const uint32_t b = p[i];
        out[4 * i] = cb[b & 3u];
        out[4 * i + 1] = cb[(b >> 2) & 3u];
        out[4 * i + 2] = cb[(b >> 4) & 3u];
        out[4 * i + 3] = cb[b >> 6];
    }
    for (j = 4 * full; j < n; j++) {
        out[j] = cb[(p[full] >> (2 * (j & 3))) & 3u];
    }
}

static void unpack1(const uint8_t *restrict p, const int8_t *restrict cb, int32_t n,
                    int8_t *restrict out)
{
    const int32_t full = n >> 3;
    int32_t i, j;
    for (i = 0; i < full; i++) {
        const uint32_t b = p[i];
        for (j = 0; j < 8; j++) {
            out[8 * i + j] = cb[(b >> j) & 1u];
        }
    }
    for (j = 8 * full; j < n; j++) {
        out[j] = cb[(p[full] >> (j & 7)) & 1u];
    }
}

/* Any width, byte-aligned start: 8 indices occupy exactly `bits` bytes, so each group of 8
 * is read as one little-endian word and split with fixed shifts. Returns values written (a
 * multiple of 8); the caller finishes the tail. */
TC_INLINE int32_t unpack_groups8(const uint8_t *restrict p, uint32_t bits,
                                 const int8_t *restrict cb, int32_t n, int8_t *restrict out)
{
    const uint64_t mask = (1u << bits) - 1u;
    const int32_t groups = n >> 3;
    int32_t g, j;
    for (g = 0; g < groups; g++) {
        const uint8_t *q = p + g * (int32_t)bits;
        uint64_t v = 0;
        for (j = 0; j < (int32_t)bits; j++) {
            v |= (uint64_t)q[j] << (8 * j);
        }
        for (j = 0; j < 8; j++) {
            out[8 * g + j] = cb[(v >> (bits * (uint32_t)j)) & mask];
        }
    }
    return groups << 3;
}

void tc_unpack_lut(const uint8_t *packed, uint32_t bit_offset, uint8_t bits,
                   const int8_t *codebook, int32_t count, int8_t *out)
{
    const uint8_t *p = packed + (bit_offset >> 3);
    const int8_t *cb = codebook;
    int32_t done = 0;
    if (count <= 0) {
        return;
    }
    if ((bit_offset & 7u) != 0) {
        tc_unpack_lut_generic(packed, bit_offset, bits, codebook, count, out);
        return;
    }
    if (bits != 1 && bits != 2 && bits != 4 && bits != 8) { /* 3, 5, 6, 7 */
        if (codebook != NULL) { /* constant widths so each instance unrolls */
            done = bits == 3   ? unpack_groups8(p, 3, codebook, count, out)
                   : bits == 5 ? unpack_groups8(p, 5, codebook, count, out)
                   : bits == 6 ? unpack_groups8(p, 6, codebook, count, out)
                               : unpack_groups8(p, 7, codebook, count, out);
        }
        tc_unpack_lut_generic(packed, bit_offset + (uint32_t)done * bits, bits, codebook, count - done,
                              out + done);
        return;
    }
    if (cb == NULL) {
        if (bits == 8) {
            int32_t i;
            for (i = 0; i < count; i++) {
                out[i] = (int8_t)p[i];
            }
            return;
        }
        cb = tc_identity16; /* raw indices of 1, 2 or 4 bits */
    }
    switch (bits) {
    case 8:
        unpack8(p, cb, count, out);
        break;
    case 4:
#ifdef TC_HOST_X86_SIMD
        if (count >= 32 && tc_host_ssse3()) {
            done = unpack4_ssse3(p, cb, count, out);
        }
#endif
        unpack4(p + (done >> 1), cb, count - done, out + done);
        break;
    case 2:
#ifdef TC_HOST_X86_SIMD
        if (count >= 64 && tc_host_ssse3()) {
            done = unpack2_ssse3(p, cb, count, out);
        }
#endif
        unpack2(p + (done >> 2), cb, count - done, out + done);
        break;
    default: /* 1 */
        unpack1(p, cb, count, out);
        break;
    }
}
