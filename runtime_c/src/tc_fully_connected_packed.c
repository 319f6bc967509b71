/*
 * tc_fully_connected_packed: FULLY_CONNECTED on packed cluster indices.
 *
 * Each weight is used once per batch row, so decoding cannot be amortized; two row strategies:
 *  - fused (portable, what Cortex-M runs): unpack, look up and multiply-accumulate in one pass
 *    over the packed bytes, one byte = 8/bits weights; for 4-bit rows with a per-tensor
 *    codebook a byte -> (w0, w1) pair table built once per call (1 KiB of stack) replaces the
 *    two nibble lookups. Widths 3, 5, 6, 7 and unaligned rows decode 128-weight chunks.
 *  - host SIMD (x86 hosts, TC_HOST_X86_SIMD): 4-bit rows are decoded with pshufb and dotted
 *    with the input (widened to int16 once per batch row) in registers; other widths decode
 *    128-weight chunks to int16, then an int16 x int8 dot product the compiler vectorizes.
 * The input offset is folded out of the inner loop: sum(w*(x+io)) = sum(w*x) + io*sum(w); the
 * generated code passes input_offset 0 and folds io*sum(w) into the bias at compile time
 * (ops/fully_connected.py), so sum(w) is only computed for layers without a bias.
 * Semantics: TFLite Micro reference_integer_ops FullyConnected / FullyConnectedPerChannel.
 */
#include "tc_packed_internal.h"

#define TC_FC_CHUNK 128

#ifdef TC_HOST_X86_SIMD
#include <tmmintrin.h>
#define TC_FC_HOST_MAX_IN 2048

/* x86 hosts, 4-bit rows: sum(w*x) over n32 (a multiple of 32) weights against the input
 * pre-widened to int16; per 32 weights one 16-byte index load, two pshufb codebook lookups,
 * sign extension and four pmaddwd, accumulated in one register. */
__attribute__((target("ssse3"))) static int32_t fc_dot4_ssse3(const uint8_t *p, const int8_t *cb,
                                                             const int16_t *x16, int32_t n32)
{
    const __m128i tab = _mm_loadu_si128((const __m128i *)(const void *)cb);
    const __m128i m = _mm_set1_epi8(0x0F);
    __m128i acc = _mm_setzero_si128();
    int32_t i;
    for (i = 0; i < n32; i += 32) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + (i >> 1)));
        const __m128i lo = _mm_shuffle_epi8(tab, _mm_and_si128(v, m));
        const __m128i hi = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(v, 4), m));
        const __m128i w0 = _mm_unpacklo_epi8(lo, hi), w1 = _mm_unpackhi_epi8(lo, hi);
        const __m128i *xv = (const __m128i *)(const void *)(x16 + i);
        acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_srai_epi16(_mm_unpacklo_epi8(w0, w0), 8),
                                                _mm_loadu_si128(xv)));
        acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_srai_epi16(_mm_unpackhi_epi8(w0, w0), 8),
                                                _mm_loadu_si128(xv + 1)));
        acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_srai_epi16(_mm_unpacklo_epi8(w1, w1), 8),
                                                _mm_loadu_si128(xv + 2)));
        acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_srai_epi16(_mm_unpackhi_epi8(w1, w1), 8),
                                                _mm_loadu_si128(xv + 3)));
    }
    acc = _mm_add_epi32(acc, _mm_srli_si128(acc, 8));
    acc = _mm_add_epi32(acc, _mm_srli_si128(acc, 4));
    return _mm_cvtsi128_si32(acc);
}
#endif

int32_t tc_fully_connected_packed_get_buffer_size(const tc_fc_packed_params *p)
{
    (void)p;
    return 0;
}

static void fc_build_pairs(int16_t pairs[256][2], const int8_t *cb, int32_t k)
{
    int16_t c16[16];
    int32_t hi, lo;
    for (lo = 0; lo < 16; lo++) {
        c16[lo] = lo < k ? cb[lo] : 0;
    }
    for (hi = 0; hi < 16; hi++) {
        for (lo = 0; lo < 16; lo++) {
            pairs[hi * 16 + lo][0] = c16[lo];
            pairs[hi * 16 + lo][1] = c16[hi];
        }
    }
}

/* sum(w*x) over one row whose first index starts on a byte boundary, bits in {1, 2, 4, 8} */
TC_NOINLINE static int32_t fc_row_fused(const uint8_t *restrict p, uint32_t bits, const int8_t *restrict cb,
                            const int16_t (*pairs)[2], const int8_t *restrict x, int32_t n)
{
    int32_t acc = 0, i, j;
    if (bits == 8) {
        for (i = 0; i < n; i++) {
            acc += (int32_t)cb[p[i]] * x[i];
        }
    } else if (bits == 4) {
        const int32_t full = n >> 1;
        if (pairs != NULL) {
            for (i = 0; i < full; i++) {
                const int16_t *w = pairs[p[i]];
                acc += (int32_t)w[0] * x[2 * i] + (int32_t)w[1] * x[2 * i + 1];
            }
        } else {
            for (i = 0; i < full; i++) {
                const uint32_t b = p[i];
                acc += (int32_t)cb[b & 15u] * x[2 * i] + (int32_t)cb[b >> 4] * x[2 * i + 1];
            }
        }
        if (n & 1) {
            acc += (int32_t)cb[p[full] & 15u] * x[n - 1];
        }
    } else if (bits == 2) {
        const int32_t full = n >> 2;
        for (i = 0; i < full; i++) {
            const uint32_t b = p[i];
            const int8_t *xx = x + 4 * i;
            acc += (int32_t)cb[b & 3u] * xx[0] + (int32_t)cb[(b >> 2) & 3u] * xx[1] +
                   (int32_t)cb[(b >> 4) & 3u] * xx[2] + (int32_t)cb[b >> 6] * xx[3];
        }
        for (j = 4 * full; j < n; j++) {
            acc += (int32_t)cb[(p[full] >> (2 * (j & 3))) & 3u] * x[j];
        }
    } else { /* 1 */
        const int32_t full = n >> 3;
        const int32_t c0 = cb[0];
        for (i = 0; i < full; i++) {
            const uint32_t b = p[i];
            const int8_t *xx = x + 8 * i;
            int32_t sx = 0, s1 = 0;
            /* w = c0 + bit*(c1 - c0): sum(w*x) = c0*sum(x) + (c1 - c0)*sum(x where bit) */
            for (j = 0; j < 8; j++) {
                sx += xx[j];
                s1 += ((b >> j) & 1u) ? xx[j] : 0;
            }
            acc += c0 * sx + (b != 0 ? ((int32_t)cb[1] - c0) * s1 : 0);
        }
        for (j = 8 * full; j < n; j++) {
            acc += (int32_t)cb[(p[full] >> (j & 7)) & 1u] * x[j];
        }
    }
    return acc;
}

/* sum(w*x) for any row, and *ws = sum(w) when want_ws: decode 128-weight chunks */
static int32_t fc_row_chunked(const uint8_t *packed, uint32_t row_bit, uint32_t bits,
                              const int8_t *cb, const int8_t *x, int32_t n, int want_ws,
                              int32_t *ws)
{
    int16_t buf[TC_FC_CHUNK];
    int32_t acc = 0, i;
    for (i = 0; i < n; i += TC_FC_CHUNK) {
        const int32_t m = TC_MIN(TC_FC_CHUNK, n - i);
        tc_unpack_lut16(packed, row_bit + (uint32_t)i * bits, (uint8_t)bits, cb, m, buf);
        acc += tc_dot_s16_s8(buf, x + i, m);
        if (want_ws) {
            *ws += tc_sum_s16(buf, m);
        }
    }
    return acc;
}

void tc_fully_connected_packed(const tc_fc_packed_params *p, const int8_t *input,
                               const uint8_t *packed, const int8_t *codebooks,
                               const uint8_t *codebook_map, const int32_t *bias,
                               const int32_t *mult, const int8_t *shift, int8_t *output)
{
    const int32_t in = p->in_features;
    const int32_t out_f = p->out_features;
    const uint32_t bits = p->bits;
    const int32_t io = p->input_offset;
    const int32_t fo = p->filter_offset;
    const int fused_width = bits == 1 || bits == 2 || bits == 4 || bits == 8;
    /* 4-bit rows all start on a byte boundary when in_features is even */
    const int use_pairs = !TC_HOST_SIMD && bits == 4 && (in & 1) == 0 && p->codebook_stride == 0;
    int16_t pairs[256][2];
    int32_t b, c;
#ifdef TC_HOST_X86_SIMD
    /* whole 4-bit rows on the SSSE3 path (input widened once per batch row, 4 KiB of stack) */
    int16_t x16[TC_FC_HOST_MAX_IN];
    const int host4 = bits == 4 && codebooks != NULL && io == 0 && (in & 1) == 0 && in >= 32 &&
                      in <= TC_FC_HOST_MAX_IN && __builtin_cpu_supports("ssse3");
    const int32_t n32 = in & ~31;
#endif

    if (use_pairs && codebooks != NULL) {
        fc_build_pairs(pairs, codebooks, p->codebook_size);
    }
    for (b = 0; b < p->batches; b++) {
        const int8_t *x = input + (int32_t)b * in;
        int8_t *y = output + (int32_t)b * out_f;
        int64_t xsum = 0;
        if (fo != 0) {
            int32_t i;
            for (i = 0; i < in; i++) {
                xsum += x[i];
            }
        }
#ifdef TC_HOST_X86_SIMD
        if (host4) {
            tc_widen_s8_s16(x, in, x16);
        }
#endif
        for (c = 0; c < out_f; c++) {
            const int32_t cbi = codebook_map != NULL ? codebook_map[c] : c;
            const int8_t *cb = codebooks != NULL ? codebooks + (int32_t)p->codebook_stride * cbi : NULL;
            const uint32_t row_bit = (uint32_t)c * (uint32_t)in * bits;
            const int32_t q = p->requant_per_channel ? c : 0;
            int32_t acc, ws = 0;
            int64_t total;
#ifdef TC_HOST_X86_SIMD
            if (host4) {
                acc = fc_dot4_ssse3(packed + (row_bit >> 3), cb, x16, n32);
                if (n32 < in) {
                    acc += fc_row_chunked(packed, row_bit + (uint32_t)n32 * 4u, 4u, cb, x + n32,
                                          in - n32, 0, &ws);
                }
            } else
#endif
            if (cb == NULL) { /* raw int8 weights: a plain int8 dot product */
                const int8_t *w = (const int8_t *)(const void *)packed + (int32_t)c * in;
                acc = tc_dot_s8(w, x, in);
                if (io != 0) {
                    int32_t i;
                    for (i = 0; i < in; i++) {
                        ws += w[i];
                    }
                }
            } else if (!TC_HOST_SIMD && fused_width && (row_bit & 7u) == 0) {
                acc = fc_row_fused(packed + (row_bit >> 3), bits, cb,
                                   use_pairs ? (const int16_t(*)[2])pairs : NULL, x, in);
                if (io != 0) { /* layers without a bias: the weight sum in a second pass */
                    (void)fc_row_chunked(packed, row_bit, bits, cb, x, in, 1, &ws);
                }
            } else {
                acc = fc_row_chunked(packed, row_bit, bits, cb, x, in, io != 0, &ws);
            }
            /* sum((w+fo)*(x+io)) = sum(w*x) + io*sum(w) + fo*sum(x+io); wraps like int32 */
            total = (int64_t)acc + (int64_t)io * ws;
            if (fo != 0) {
                total += (int64_t)fo * (xsum + (int64_t)in * io);
            }
            if (bias != NULL) {
                total += bias[c];
            }
            y[c] = tc_requantize((int32_t)(uint32_t)(uint64_t)total, mult[q], shift[q],
                                 p->output_offset, p->act_min, p->act_max);
        }
    }
}
