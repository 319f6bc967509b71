/*
 * tc_unpack_lut: packed index bitstream -> codebook values, without a per-index bit cursor:
 * a start inside a byte decodes the few indices (< 8) up to the next byte boundary with the
 * generic reader, then byte-wise paths for 1, 2, 4 and 8 bits and, for 3, 5, 6 and 7 bits,
 * groups of 8 indices (`bits` whole bytes, two 32-bit words, constant shifts); the tail
 * (< 8 indices) goes to the generic reader (tc_unpack_lut_generic). Only the bytes holding
 * the requested indices are read.
 *
 * Per-core fast paths (x86 hosts only, selected at run time): for 2- and 4-bit streams the
 * codebook fits one 16-byte register and SSSE3 pshufb looks up 16 indices per instruction;
 * 3, 5, 6 and 7 bits take 32 indices per AVX2 step (unpack_avx2 below).
 * It reads 2^bits codebook entries (see the padding rule in tc_kernels.h). Cortex-M builds
 * never see this block; -DTC_PORTABLE removes it on hosts (the tests build both).
 */
#include "tc_packed_internal.h"

/* raw indices (codebook == NULL) of widths 1..7: the index as its own value */
static const int8_t tc_identity128[128] = {
    0,   1,   2,   3,   4,   5,   6,   7,   8,   9,   10,  11,  12,  13,  14,  15,  16,  17,  18,
    19,  20,  21,  22,  23,  24,  25,  26,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,
    38,  39,  40,  41,  42,  43,  44,  45,  46,  47,  48,  49,  50,  51,  52,  53,  54,  55,  56,
    57,  58,  59,  60,  61,  62,  63,  64,  65,  66,  67,  68,  69,  70,  71,  72,  73,  74,  75,
    76,  77,  78,  79,  80,  81,  82,  83,  84,  85,  86,  87,  88,  89,  90,  91,  92,  93,  94,
    95,  96,  97,  98,  99,  100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113,
    114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127};

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

/* Any width 3, 5, 6, 7, byte-aligned start: 8 indices occupy exactly `bits` whole bytes, read
 * as two 32-bit words (bytes 0..3 and 4..bits-1, nothing past the group); every index is cut
 * with constant shifts (no bit cursor). Returns values written (a multiple of 8); the caller
 * finishes the tail. */
TC_INLINE uint32_t tc_group_lo(const uint8_t *q)
{
    return (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
}


TC_INLINE int32_t unpack_groups8(const uint8_t *restrict p, uint32_t bits,
                                 const int8_t *restrict cb, int32_t n, int8_t *restrict out)
{
    const int32_t groups = n >> 3;
    int32_t g;
    for (g = 0; g < groups; g++) {
        const uint8_t *q = p + g * (int32_t)bits;
        uint32_t lo, hi = 0;
        int8_t *o = out + 8 * g;
        if (bits == 3) {
            lo = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16;
        } else {
            lo = tc_group_lo(q);
            hi = q[4];
            if (bits > 5) {
                hi |= (uint32_t)q[5] << 8;
            }
            if (bits > 6) {
                hi |= (uint32_t)q[6] << 16;
            }
        }
        o[0] = cb[tc_group_index(lo, hi, bits, 0)];
        o[1] = cb[tc_group_index(lo, hi, bits, 1)];
        o[2] = cb[tc_group_index(lo, hi, bits, 2)];
        o[3] = cb[tc_group_index(lo, hi, bits, 3)];
        o[4] = cb[tc_group_index(lo, hi, bits, 4)];
        o[5] = cb[tc_group_index(lo, hi, bits, 5)];
        o[6] = cb[tc_group_index(lo, hi, bits, 6)];
        o[7] = cb[tc_group_index(lo, hi, bits, 7)];
    }
    return groups << 3;
}

TC_NOINLINE static int32_t unpack_groups8_any(const uint8_t *p, uint32_t bits, const int8_t *cb,
                                              int32_t n, int8_t *out)
{
    return bits == 3   ? unpack_groups8(p, 3, cb, n, out)
           : bits == 5 ? unpack_groups8(p, 5, cb, n, out)
           : bits == 6 ? unpack_groups8(p, 6, cb, n, out)
                       : unpack_groups8(p, 7, cb, n, out);
}

#ifdef TC_HOST_X86_SIMD
#include <immintrin.h>
/* x86 hosts with AVX2 (run-time check), widths 3, 5, 6, 7, byte-aligned start: 32 indices
 * (4*bits bytes) per step without a bit cursor. Each 128-bit lane takes the 16 bytes from the
 * start of its 8-index group; VPSHUFB gathers, for each index, the two bytes holding it into a
 * 16-bit lane; a multiply by 2^(16 - offset - bits) moves the field to the top of the lane (the
 * bits above it fall out) and a shift by 16 - bits brings it down (no mask). The indices are
 * stored, then looked up in place: VPSHUFB over 16-entry slices of the codebook, merged by
 * VPBLENDVB on index bits 4, 5, 6 (2, 4 or 8 slices). Only bytes holding requested indices are
 * read (steps whose 16-byte loads would pass the last one are left to the caller); the
 * codebook is copied into a zero-padded table up to the largest index decoded, so no entry
 * past those the scalar path reads is touched. Returns the values written (a multiple of 32).
 * (Adapted, after review, from the unmerged wip-issue-10b.) */
#define TC_U_SEL(a, b, idx, bit) _mm256_blendv_epi8((a), (b), _mm256_slli_epi16((idx), 7 - (bit)))
#define TC_U_SLICE(t, s) _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)((t) + 16 * (s))))

__attribute__((target("avx2"))) static int32_t unpack_avx2(const uint8_t *p, uint32_t bits,
                                                          const int8_t *cb, int32_t count, int8_t *out)
{
    const int64_t total = ((int64_t)count * bits + 7) / 8; /* bytes holding the requested indices */
    const int32_t reach = 3 * (int32_t)bits + 16;           /* bytes a step reads from its start */
    const int32_t slices = bits > 4 ? 1 << (bits - 4) : 1;
    int8_t sh[16], tab[128];
    int16_t mu[8];
    __m256i shuf, mul, mx = _mm256_setzero_si256();
    int32_t steps = count >> 5, i, k;
    if (total < reach) {
        return 0;
    }
    steps = (int32_t)TC_MIN((int64_t)steps, (total - reach) / (4 * (int64_t)bits) + 1);
    if (steps <= 0) {
        return 0;
    }
    for (i = 0; i < 8; i++) { /* index i of a group: bits [o, o + bits) of the window at byte bit/8 */
        const uint32_t bit = bits * (uint32_t)i, o = bit & 7u;
        sh[2 * i] = (int8_t)(bit >> 3);
        sh[2 * i + 1] = (int8_t)((bit >> 3) + 1);
        mu[i] = (int16_t)(uint16_t)(1u << (16u - o - bits));
    }
    shuf = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)sh));
    mul = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)mu));
    for (i = 0; i < steps; i++) {
        const uint8_t *q = p + 4 * bits * (uint32_t)i;
        const __m256i s01 = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)q)),
            _mm_loadu_si128((const __m128i *)(const void *)(q + bits)), 1);
        const __m256i s23 = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(q + 2 * bits))),
            _mm_loadu_si128((const __m128i *)(const void *)(q + 3 * bits)), 1);
        const __m256i f01 = _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(s01, shuf), mul), 16 - (int)bits);
        const __m256i f23 = _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(s23, shuf), mul), 16 - (int)bits);
        /* packus interleaves the 128-bit lanes (0-7, 16-23 | 8-15, 24-31); VPERMQ restores the order */
        const __m256i idx = _mm256_permute4x64_epi64(_mm256_packus_epi16(f01, f23), 0xD8);
        _mm256_storeu_si256((__m256i *)(void *)(out + 32 * i), idx);
        mx = _mm256_max_epu8(mx, idx);
    }
    if (cb == NULL) {
        return 32 * steps;
    }
    {
        __m128i m = _mm_max_epu8(_mm256_castsi256_si128(mx), _mm256_extracti128_si256(mx, 1));
        int32_t kmax;
        m = _mm_max_epu8(m, _mm_srli_si128(m, 8));
        m = _mm_max_epu8(m, _mm_srli_si128(m, 4));
        m = _mm_max_epu8(m, _mm_srli_si128(m, 2));
        m = _mm_max_epu8(m, _mm_srli_si128(m, 1));
        kmax = _mm_cvtsi128_si32(m) & 0xFF;
        for (k = 0; k < 16 * slices; k++) {
            tab[k] = k <= kmax ? cb[k] : 0;
        }
    }
    for (i = 0; i < steps; i++) {
        __m256i *o = (__m256i *)(void *)(out + 32 * i);
        const __m256i idx = _mm256_loadu_si256(o);
        __m256i r = _mm256_shuffle_epi8(TC_U_SLICE(tab, 0), idx);
        if (slices >= 2) {
            r = TC_U_SEL(r, _mm256_shuffle_epi8(TC_U_SLICE(tab, 1), idx), idx, 4);
        }
        if (slices >= 4) {
            const __m256i r23 = TC_U_SEL(_mm256_shuffle_epi8(TC_U_SLICE(tab, 2), idx),
                                         _mm256_shuffle_epi8(TC_U_SLICE(tab, 3), idx), idx, 4);
            r = TC_U_SEL(r, r23, idx, 5);
        }
        if (slices >= 8) {
            const __m256i r45 = TC_U_SEL(_mm256_shuffle_epi8(TC_U_SLICE(tab, 4), idx),
                                         _mm256_shuffle_epi8(TC_U_SLICE(tab, 5), idx), idx, 4);
            const __m256i r67 = TC_U_SEL(_mm256_shuffle_epi8(TC_U_SLICE(tab, 6), idx),
                                         _mm256_shuffle_epi8(TC_U_SLICE(tab, 7), idx), idx, 4);
            r = TC_U_SEL(r, TC_U_SEL(r45, r67, idx, 5), idx, 6);
        }
        _mm256_storeu_si256(o, r);
    }
    return 32 * steps;
}
#endif

/* Byte-aligned start (p = the first index's byte). */
static void unpack_aligned(const uint8_t *p, uint32_t bit_offset, uint8_t bits,
                           const int8_t *codebook, int32_t count, int8_t *out,
                           const uint8_t *packed)
{
    const int8_t *cb = codebook;
    int32_t done = 0;
    if (bits != 1 && bits != 2 && bits != 4 && bits != 8) { /* 3, 5, 6, 7 */
#ifdef TC_HOST_X86_SIMD
        if (count >= 32 && __builtin_cpu_supports("avx2")) {
            done = unpack_avx2(p, bits, codebook, count, out);
        }
#endif
        done += unpack_groups8_any(p + (done >> 3) * bits, bits,
                                   codebook != NULL ? codebook : tc_identity128, count - done,
                                   out + done);
        tc_unpack_lut_generic(packed, bit_offset + (uint32_t)done * bits, bits, codebook,
                              count - done, out + done);
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
        cb = tc_identity128; /* raw indices of 1, 2 or 4 bits */
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

void tc_unpack_lut(const uint8_t *packed, uint32_t bit_offset, uint8_t bits,
                   const int8_t *codebook, int32_t count, int8_t *out)
{
    int32_t head = 0;
    if (count <= 0) {
        return;
    }
    /* a start inside a byte: the few indices (< 8) up to the next byte boundary with the
     * generic reader, the rest byte-aligned (index i of a stream sits at bit i*bits, so a
     * boundary comes within 8 / gcd(bits, 8) indices) */
    while (((bit_offset + (uint32_t)head * bits) & 7u) != 0) {
        if (++head >= 8 || head >= count) {
            tc_unpack_lut_generic(packed, bit_offset, bits, codebook, count, out);
            return;
        }
    }
    if (head > 0) {
        tc_unpack_lut_generic(packed, bit_offset, bits, codebook, head, out);
    }
    bit_offset += (uint32_t)head * bits;
    unpack_aligned(packed + (bit_offset >> 3), bit_offset, bits, codebook, count - head,
                   out + head, packed);
}
