/*
 * tc_conv2d_packed_rows: output rows [oy_begin, oy_end) of a shallow conv layer from the
 * filters tc_conv2d_packed_decode() left in scratch: each output position accumulates 16 (then
 * 8 / 4) output channels at a time over the valid taps, in register lanes, then requantizes the
 * block (tc_requantize_lanes). x86 hosts: pmaddwd over input-channel pairs.
 */
#include "tc_packed_internal.h"

#if TC_CONV_PAIRS
#include "tc_requant_avx2.h"
/* x86 hosts: shallow filters stored as input-channel pairs, [kh*kw][in_c/2][oc][2] int16, so
 * one pmaddwd multiplies 4 output channels by two input channels (broadcast pair) and adds the
 * two products: 8 multiply-accumulates per instruction. */

static void conv_shallow_sse2(const tc_conv_packed_params *p, const int8_t *input,
                              const void *bias, const int32_t *mult, const int8_t *shift,
                              int32_t oy_begin, int32_t oy_end, int8_t *output, const int16_t *wt)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_w = p->out_w, oc = p->out_c;
    const int32_t kh = p->k_h, kw = p->k_w;
    const int32_t sh = p->stride_h, sw = p->stride_w, dh = p->dil_h, dwl = p->dil_w;
    const int32_t io = p->input_offset;
    const int32_t npairs = (in_c + 1) / 2;
    int32_t oy;
    for (oy = oy_begin; oy < oy_end; oy++) {
        const int32_t iy0 = oy * sh - p->pad_top;
        int32_t ky_lo, ky_hi, ox;
        int8_t *orow = output + (oy - oy_begin) * out_w * oc;
        tc_tap_range(iy0, dh, in_h, kh, &ky_lo, &ky_hi);
        for (ox = 0; ox < out_w; ox++) {
            const int32_t ix0 = ox * sw - p->pad_left;
            int32_t kx_lo, kx_hi, c0, nb;
            int8_t *o = orow + ox * oc;
            tc_tap_range(ix0, dwl, in_w, kw, &kx_lo, &kx_hi);
            for (c0 = 0; c0 < oc; c0 += nb) {
                int32_t lanes[TC_CONV_BLOCK];
                int32_t j, ky, kx, pi;
                nb = oc - c0 >= TC_CONV_BLOCK ? TC_CONV_BLOCK : oc - c0 >= 4 ? 4 : oc - c0;
                if (nb >= 4) { /* 16 or 4 channels: 4 or 1 registers of 4 lanes */
                    const int32_t nv = nb / 4;
                    __m128i a[4];
                    int32_t v;
                    for (v = 0; v < 4; v++) {
                        a[v] = _mm_setzero_si128();
                    }
                    for (ky = ky_lo; ky < ky_hi; ky++) {
                        const int8_t *xrow = input + (int32_t)(iy0 + ky * dh) * in_w * in_c;
                        for (kx = kx_lo; kx < kx_hi; kx++) {
                            const int8_t *x = xrow + (ix0 + kx * dwl) * in_c;
                            const int16_t *w = wt + ((ky * kw + kx) * npairs * oc + c0) * 2;
                            for (pi = 0; pi < npairs; pi++) {
                                const int32_t x0 = x[2 * pi] + io;
                                const int32_t x1 = 2 * pi + 1 < in_c ? x[2 * pi + 1] + io : 0;
                                const __m128i xx = _mm_set1_epi32((int32_t)(((uint32_t)x1 << 16) |
                                                                            ((uint32_t)x0 & 0xFFFFu)));
                                const __m128i *wp = (const __m128i *)(const void *)(w + pi * oc * 2);
                                for (v = 0; v < nv; v++) {
                                    a[v] = _mm_add_epi32(a[v], _mm_madd_epi16(_mm_loadu_si128(wp + v), xx));
                                }
                            }
                        }
                    }
                    for (v = 0; v < nv; v++) {
                        _mm_storeu_si128((__m128i *)(void *)(lanes + 4 * v), a[v]);
                    }
                } else {
                    for (j = 0; j < nb; j++) {
                        lanes[j] = 0;
                    }
                    for (ky = ky_lo; ky < ky_hi; ky++) {
                        const int8_t *xrow = input + (int32_t)(iy0 + ky * dh) * in_w * in_c;
                        for (kx = kx_lo; kx < kx_hi; kx++) {
                            const int8_t *x = xrow + (ix0 + kx * dwl) * in_c;
                            const int16_t *w = wt + ((ky * kw + kx) * npairs * oc + c0) * 2;
                            for (pi = 0; pi < npairs; pi++) {
                                const int32_t x0 = x[2 * pi] + io;
                                const int32_t x1 = 2 * pi + 1 < in_c ? x[2 * pi + 1] + io : 0;
                                const int16_t *wp = w + pi * oc * 2;
                                for (j = 0; j < nb; j++) {
                                    lanes[j] += wp[2 * j] * x0 + wp[2 * j + 1] * x1;
                                }
                            }
                        }
                    }
                }
                if (bias != NULL) {
                    for (j = 0; j < nb; j++) {
                        lanes[j] += tc_bias_at(bias, p->bias_bits, c0 + j);
                    }
                }
                tc_requantize_lanes(lanes, nb, mult, shift, p->requant_per_channel, c0,
                                    p->output_offset, p->act_min, p->act_max, o + c0);
            }
        }
    }
}

/* The requantization of the first TC_SHALLOW_RQ * 8 channels prepared once per call (channels
 * past them: per block); blocks of 16 (a0, a1) or 8 (a0) channels, stored as int8. */
#define TC_SHALLOW_RQ 8
__attribute__((target("avx2"))) static void shallow_avx2_prepare(tc_rq8 *rq, const tc_conv_packed_params *p,
                                                                const int32_t *mult, const int8_t *shift)
{
    const int pc = p->requant_per_channel;
    int32_t b;
    for (b = 0; b < TC_SHALLOW_RQ && 8 * b + 8 <= p->out_c; b++) {
        tc_rq8_prepare(&rq[b], pc ? mult + 8 * b : mult, pc ? shift + 8 * b : shift, pc);
    }
}

__attribute__((target("avx2"), always_inline)) static inline void shallow_avx2_requant(
    const tc_rq8 *rq, int32_t c0, int32_t nb, __m256i a0, __m256i a1, const tc_conv_packed_params *p,
    const int32_t *mult, const int8_t *shift, int8_t *o)
{
    const int pc = p->requant_per_channel;
    const int32_t out_off = p->output_offset, amin = p->act_min, amax = p->act_max;
    const int32_t b = c0 / 8;
    tc_rq8 r0, r1;
    const tc_rq8 *q0 = &rq[b], *q1 = &rq[b + 1];
    if (b >= TC_SHALLOW_RQ) {
        tc_rq8_prepare(&r0, pc ? mult + c0 : mult, pc ? shift + c0 : shift, pc);
        q0 = &r0;
    }
    if (nb == 16) {
        if (b + 1 >= TC_SHALLOW_RQ) {
            tc_rq8_prepare(&r1, pc ? mult + c0 + 8 : mult, pc ? shift + c0 + 8 : shift, pc);
            q1 = &r1;
        }
        tc_rq8_store16(tc_rq8_apply(q0, a0, out_off, amin, amax), tc_rq8_apply(q1, a1, out_off, amin, amax), o);
    } else {
        tc_rq8_store8(tc_rq8_apply(q0, a0, out_off, amin, amax), o);
    }
}

/* x86 hosts with AVX2, int8 filters in their natural [kh*kw*in_c][oc] order (mode 2 with an
 * odd depth, e.g. a first layer on one channel): the (kx, ci) run of each window row is
 * contiguous in the input and in the filter rows (dil_w == 1), walked two entries at a time:
 * the two filter rows interleaved by VPUNPCKLBW/HBW and widened, one VPMADDWD against the
 * broadcast input pair per 8 channels; 16 channels per block, then 8, then the rest (scalar). */
__attribute__((target("avx2"))) static void conv_shallow_s8_avx2(
    const tc_conv_packed_params *p, const int8_t *input, const void *bias, const int32_t *mult,
    const int8_t *shift, int32_t oy_begin, int32_t oy_end, int8_t *output, const int8_t *wt)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_w = p->out_w, oc = p->out_c;
    const int32_t kh = p->k_h, kw = p->k_w;
    const int32_t sh = p->stride_h, sw = p->stride_w, dh = p->dil_h;
    const int32_t io = p->input_offset;
    tc_rq8 rq[TC_SHALLOW_RQ];
    int32_t oy;
    shallow_avx2_prepare(rq, p, mult, shift);
    for (oy = oy_begin; oy < oy_end; oy++) {
        const int32_t iy0 = oy * sh - p->pad_top;
        int32_t ky_lo, ky_hi, ox;
        int8_t *orow = output + (oy - oy_begin) * out_w * oc;
        tc_tap_range(iy0, dh, in_h, kh, &ky_lo, &ky_hi);
        for (ox = 0; ox < out_w; ox++) {
            const int32_t ix0 = ox * sw - p->pad_left;
            int32_t kx_lo, kx_hi, c0 = 0, ky;
            int8_t *o = orow + ox * oc;
            tc_tap_range(ix0, 1, in_w, kw, &kx_lo, &kx_hi);
            for (; c0 + 8 <= oc; c0 += c0 + 16 <= oc ? 16 : 8) {
                const int32_t nb = c0 + 16 <= oc ? 16 : 8;
                __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
                for (ky = ky_lo; ky < ky_hi && kx_lo < kx_hi; ky++) {
                    const int8_t *x = input + ((int32_t)(iy0 + ky * dh) * in_w + ix0 + kx_lo) * in_c;
                    const int8_t *w = wt + ((ky * kw + kx_lo) * in_c) * oc + c0;
                    const int32_t r = (kx_hi - kx_lo) * in_c;
                    int32_t t;
                    for (t = 0; t < r; t += 2) {
                        const int32_t x0 = x[t] + io, x1 = t + 1 < r ? x[t + 1] + io : 0;
                        const __m256i xx = _mm256_set1_epi32((int32_t)(((uint32_t)x1 << 16) | ((uint32_t)x0 & 0xFFFFu)));
                        const int8_t *wa = w + t * oc;
                        if (nb == 16) {
                            const __m128i va = _mm_loadu_si128((const __m128i *)(const void *)wa);
                            const __m128i vb = t + 1 < r ? _mm_loadu_si128((const __m128i *)(const void *)(wa + oc))
                                                         : _mm_setzero_si128();
                            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_unpacklo_epi8(va, vb)), xx));
                            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_unpackhi_epi8(va, vb)), xx));
                        } else {
                            const __m128i va = _mm_loadl_epi64((const __m128i *)(const void *)wa);
                            const __m128i vb = t + 1 < r ? _mm_loadl_epi64((const __m128i *)(const void *)(wa + oc))
                                                         : _mm_setzero_si128();
                            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_unpacklo_epi8(va, vb)), xx));
                        }
                    }
                }
                if (bias != NULL) {
                    a0 = _mm256_add_epi32(a0, tc_bias8_avx2(bias, p->bias_bits, c0));
                    if (nb == 16) {
                        a1 = _mm256_add_epi32(a1, tc_bias8_avx2(bias, p->bias_bits, c0 + 8));
                    }
                }
                shallow_avx2_requant(rq, c0, nb, a0, a1, p, mult, shift, o + c0);
            }
            for (; c0 < oc; c0++) {
                int32_t acc = tc_bias_at(bias, p->bias_bits, c0);
                for (ky = ky_lo; ky < ky_hi && kx_lo < kx_hi; ky++) {
                    const int8_t *x = input + ((int32_t)(iy0 + ky * dh) * in_w + ix0 + kx_lo) * in_c;
                    const int8_t *w = wt + ((ky * kw + kx_lo) * in_c) * oc + c0;
                    const int32_t r = (kx_hi - kx_lo) * in_c;
                    int32_t t;
                    for (t = 0; t < r; t++) {
                        acc += (int32_t)w[t * oc] * (x[t] + io);
                    }
                }
                o[c0] = tc_requantize(acc, mult[p->requant_per_channel ? c0 : 0],
                                      shift[p->requant_per_channel ? c0 : 0], p->output_offset, p->act_min,
                                      p->act_max);
            }
        }
    }
}

/* one input pair xx (broadcast) against the 8 or 16 channels of filter pair `at` */
__attribute__((target("avx2"), always_inline)) static inline void shallow_avx2_mac(
    __m256i xx, const int16_t *w16, const int8_t *w8, int32_t at, int32_t nb, int int8_weights,
    __m256i *a0, __m256i *a1)
{
    __m256i v0, v1;
    if (int8_weights) {
        v0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(w8 + at)));
        v1 = nb == 16 ? _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(w8 + at + 16))) : v0;
    } else {
        v0 = _mm256_loadu_si256((const __m256i *)(const void *)(w16 + at));
        v1 = nb == 16 ? _mm256_loadu_si256((const __m256i *)(const void *)(w16 + at + 16)) : v0;
    }
    *a0 = _mm256_add_epi32(*a0, _mm256_madd_epi16(v0, xx));
    *a1 = _mm256_add_epi32(*a1, _mm256_madd_epi16(v1, xx));
}

/* x86 hosts with AVX2: the same input-channel pair layout, eight output channels per VPMADDWD
 * (two input channels each): weights int16 (mode 1) or int8 widened by VPMOVSXBW (mode 2, even
 * depth); 16 channels per block in two registers, then 8, then the rest (scalar, same layout). */
__attribute__((target("avx2"))) static void conv_shallow_avx2(
    const tc_conv_packed_params *p, const int8_t *input, const void *bias, const int32_t *mult,
    const int8_t *shift, int32_t oy_begin, int32_t oy_end, int8_t *output, const void *wt,
    int int8_weights)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_w = p->out_w, oc = p->out_c;
    const int32_t kh = p->k_h, kw = p->k_w;
    const int32_t sh = p->stride_h, sw = p->stride_w, dh = p->dil_h, dwl = p->dil_w;
    const int32_t io = p->input_offset;
    const int32_t npairs = (in_c + 1) / 2;
    const int16_t *w16 = (const int16_t *)wt;
    const int8_t *w8 = (const int8_t *)wt;
    /* even depth, no dilation: the (kx, pair) run of a window row is contiguous in the input
     * and in the filter */
    const int runs = (in_c & 1) == 0 && dwl == 1;
    const __m256i iov = _mm256_set1_epi16((int16_t)io);
    tc_rq8 rq[TC_SHALLOW_RQ];
    int32_t oy;
    shallow_avx2_prepare(rq, p, mult, shift);
    for (oy = oy_begin; oy < oy_end; oy++) {
        const int32_t iy0 = oy * sh - p->pad_top;
        int32_t ky_lo, ky_hi, ox;
        int8_t *orow = output + (oy - oy_begin) * out_w * oc;
        tc_tap_range(iy0, dh, in_h, kh, &ky_lo, &ky_hi);
        for (ox = 0; ox < out_w; ox++) {
            const int32_t ix0 = ox * sw - p->pad_left;
            int32_t kx_lo, kx_hi, c0, nb;
            int8_t *o = orow + ox * oc;
            tc_tap_range(ix0, dwl, in_w, kw, &kx_lo, &kx_hi);
            for (c0 = 0; c0 < oc; c0 += nb) {
                int32_t lanes[16];
                int32_t j, ky, kx, pi;
                nb = oc - c0 >= 16 ? 16 : oc - c0 >= 8 ? 8 : oc - c0;
                if (nb >= 8) {
                    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
                    for (ky = ky_lo; ky < ky_hi; ky++) {
                        const int8_t *xrow = input + (int32_t)(iy0 + ky * dh) * in_w * in_c;
                        if (runs) { /* the row's input pairs widened 8 at a time, then broadcast */
                            const int8_t *x = xrow + (ix0 + kx_lo) * in_c;
                            const int32_t np = (kx_hi - kx_lo) * npairs;
                            int32_t at = ((ky * kw + kx_lo) * npairs * oc + c0) * 2, q = 0;
                            for (; q + 8 <= np; q += 8) {
                                const __m256i xv = _mm256_add_epi16(
                                    _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(x + 2 * q))), iov);
                                shallow_avx2_mac(_mm256_permutevar8x32_epi32(xv, _mm256_set1_epi32(0)), w16, w8, at, nb, int8_weights, &a0, &a1);
                                shallow_avx2_mac(_mm256_permutevar8x32_epi32(xv, _mm256_set1_epi32(1)), w16, w8, at + 2 * oc, nb, int8_weights, &a0, &a1);
                                shallow_avx2_mac(_mm256_permutevar8x32_epi32(xv, _mm256_set1_epi32(2)), w16, w8, at + 4 * oc, nb, int8_weights, &a0, &a1);
                                shallow_avx2_mac(_mm256_permutevar8x32_epi32(xv, _mm256_set1_epi32(3)), w16, w8, at + 6 * oc, nb, int8_weights, &a0, &a1);
                                shallow_avx2_mac(_mm256_permutevar8x32_epi32(xv, _mm256_set1_epi32(4)), w16, w8, at + 8 * oc, nb, int8_weights, &a0, &a1);
                                shallow_avx2_mac(_mm256_permutevar8x32_epi32(xv, _mm256_set1_epi32(5)), w16, w8, at + 10 * oc, nb, int8_weights, &a0, &a1);
                                shallow_avx2_mac(_mm256_permutevar8x32_epi32(xv, _mm256_set1_epi32(6)), w16, w8, at + 12 * oc, nb, int8_weights, &a0, &a1);
                                shallow_avx2_mac(_mm256_permutevar8x32_epi32(xv, _mm256_set1_epi32(7)), w16, w8, at + 14 * oc, nb, int8_weights, &a0, &a1);
                                at += 16 * oc;
                            }
                            for (; q < np; q++, at += 2 * oc) {
                                const int32_t x0 = x[2 * q] + io, x1 = x[2 * q + 1] + io;
                                shallow_avx2_mac(_mm256_set1_epi32((int32_t)(((uint32_t)x1 << 16) | ((uint32_t)x0 & 0xFFFFu))),
                                                 w16, w8, at, nb, int8_weights, &a0, &a1);
                            }
                            continue;
                        }
                        for (kx = kx_lo; kx < kx_hi; kx++) {
                            const int8_t *x = xrow + (ix0 + kx * dwl) * in_c;
                            const int32_t base = ((ky * kw + kx) * npairs * oc + c0) * 2;
                            for (pi = 0; pi < npairs; pi++) {
                                const int32_t x0 = x[2 * pi] + io;
                                const int32_t x1 = 2 * pi + 1 < in_c ? x[2 * pi + 1] + io : 0;
                                const __m256i xx = _mm256_set1_epi32(
                                    (int32_t)(((uint32_t)x1 << 16) | ((uint32_t)x0 & 0xFFFFu)));
                                const int32_t at = base + pi * oc * 2;
                                __m256i v0, v1;
                                if (int8_weights) {
                                    v0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(w8 + at)));
                                    v1 = nb == 16 ? _mm256_cvtepi8_epi16(_mm_loadu_si128(
                                                        (const __m128i *)(const void *)(w8 + at + 16)))
                                                  : v0;
                                } else {
                                    v0 = _mm256_loadu_si256((const __m256i *)(const void *)(w16 + at));
                                    v1 = nb == 16 ? _mm256_loadu_si256((const __m256i *)(const void *)(w16 + at + 16))
                                                  : v0;
                                }
                                a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(v0, xx));
                                a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(v1, xx));
                            }
                        }
                    }
                    if (bias != NULL) {
                        a0 = _mm256_add_epi32(a0, tc_bias8_avx2(bias, p->bias_bits, c0));
                        if (nb == 16) {
                            a1 = _mm256_add_epi32(a1, tc_bias8_avx2(bias, p->bias_bits, c0 + 8));
                        }
                    }
                    shallow_avx2_requant(rq, c0, nb, a0, a1, p, mult, shift, o + c0);
                    continue;
                } else {
                    for (j = 0; j < nb; j++) {
                        lanes[j] = 0;
                    }
                    for (ky = ky_lo; ky < ky_hi; ky++) {
                        const int8_t *xrow = input + (int32_t)(iy0 + ky * dh) * in_w * in_c;
                        for (kx = kx_lo; kx < kx_hi; kx++) {
                            const int8_t *x = xrow + (ix0 + kx * dwl) * in_c;
                            const int32_t base = ((ky * kw + kx) * npairs * oc + c0) * 2;
                            for (pi = 0; pi < npairs; pi++) {
                                const int32_t x0 = x[2 * pi] + io;
                                const int32_t x1 = 2 * pi + 1 < in_c ? x[2 * pi + 1] + io : 0;
                                const int32_t at = base + pi * oc * 2;
                                for (j = 0; j < nb; j++) {
                                    lanes[j] += int8_weights ? w8[at + 2 * j] * x0 + w8[at + 2 * j + 1] * x1
                                                             : w16[at + 2 * j] * x0 + w16[at + 2 * j + 1] * x1;
                                }
                            }
                        }
                    }
                }
                if (bias != NULL) {
                    for (j = 0; j < nb; j++) {
                        lanes[j] += tc_bias_at(bias, p->bias_bits, c0 + j);
                    }
                }
                tc_requantize_lanes(lanes, nb, mult, shift, p->requant_per_channel, c0,
                                    p->output_offset, p->act_min, p->act_max, o + c0);
            }
        }
    }
}
#endif

/* int8 filters ([kh*kw*in_c][oc], mode 2): 16 channels per block in two chains (even / odd
 * input channels), then 8, then the rest */
static void conv_shallow_s8(const tc_conv_packed_params *p, const int8_t *input,
                            const void *bias, const int32_t *mult, const int8_t *shift,
                            int32_t oy_begin, int32_t oy_end, int8_t *output, const int8_t *wt)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_w = p->out_w, oc = p->out_c;
    const int32_t kh = p->k_h, kw = p->k_w;
    const int32_t sh = p->stride_h, sw = p->stride_w, dh = p->dil_h, dwl = p->dil_w;
    const int32_t io = p->input_offset;
    int32_t oy;
    for (oy = oy_begin; oy < oy_end; oy++) {
        const int32_t iy0 = oy * sh - p->pad_top;
        int32_t ky_lo, ky_hi, ox;
        int8_t *orow = output + (oy - oy_begin) * out_w * oc;
        tc_tap_range(iy0, dh, in_h, kh, &ky_lo, &ky_hi);
        for (ox = 0; ox < out_w; ox++) {
            const int32_t ix0 = ox * sw - p->pad_left;
            int32_t kx_lo, kx_hi, c0, nb;
            int8_t *o = orow + ox * oc;
            tc_tap_range(ix0, dwl, in_w, kw, &kx_lo, &kx_hi);
            for (c0 = 0; c0 < oc; c0 += nb) {
                int32_t lanes[TC_CONV_BLOCK], lanes2[TC_CONV_BLOCK];
                int32_t j, ky, kx, t;
                nb = oc - c0 >= TC_CONV_BLOCK ? TC_CONV_BLOCK : oc - c0;
                for (j = 0; j < TC_CONV_BLOCK; j++) {
                    lanes[j] = 0;
                    lanes2[j] = 0;
                }
                for (ky = ky_lo; ky < ky_hi; ky++) {
                    const int8_t *xrow = input + (int32_t)(iy0 + ky * dh) * in_w * in_c;
                    /* taps kx_lo..kx_hi-1 of this row: (kx, ci) pairs are consecutive in both
                     * the input (dil_w == 1) and the filter rows; walk them as one sequence */
                    for (kx = kx_lo; kx < kx_hi; kx++) {
                        const int8_t *x = xrow + (ix0 + kx * dwl) * in_c;
                        const int8_t *w = wt + ((ky * kw + kx) * in_c) * oc + c0;
                        if (nb == TC_CONV_BLOCK) {
                            for (t = 0; t + 1 < in_c; t += 2) {
                                const int16_t x0 = (int16_t)(x[t] + io), x1 = (int16_t)(x[t + 1] + io);
                                const int8_t *restrict w0 = w + t * oc;
                                const int8_t *restrict w1 = w0 + oc;
                                for (j = 0; j < TC_CONV_BLOCK; j++) {
                                    lanes[j] += (int32_t)((int16_t)w0[j] * x0);
                                }
                                for (j = 0; j < TC_CONV_BLOCK; j++) {
                                    lanes2[j] += (int32_t)((int16_t)w1[j] * x1);
                                }
                            }
                            if (t < in_c) {
                                const int16_t x0 = (int16_t)(x[t] + io);
                                const int8_t *restrict w0 = w + t * oc;
                                for (j = 0; j < TC_CONV_BLOCK; j++) {
                                    lanes[j] += (int32_t)((int16_t)w0[j] * x0);
                                }
                            }
                        } else {
                            for (t = 0; t < in_c; t++) {
                                const int32_t xv = x[t] + io;
                                const int8_t *wc = w + t * oc;
                                for (j = 0; j < nb; j++) {
                                    lanes[j] += (int32_t)wc[j] * xv;
                                }
                            }
                        }
                    }
                }
                for (j = 0; j < TC_CONV_BLOCK; j++) {
                    lanes[j] += lanes2[j];
                }
                if (bias != NULL) {
                    for (j = 0; j < nb; j++) {
                        lanes[j] += tc_bias_at(bias, p->bias_bits, c0 + j);
                    }
                }
                tc_requantize_lanes(lanes, nb, mult, shift, p->requant_per_channel, c0,
                                    p->output_offset, p->act_min, p->act_max, o + c0);
            }
        }
    }
}

#if defined(TC_ARCH_ARM_DSP) || defined(TC_ARCH_ARMV6M)
/* Arm: per pair of output positions (consecutive in the row range, across rows too) the
 * patch of inputs each window reads, in filter order [kh][kw][in_c] (taps outside the input
 * hold the input zero point), then every pair of output channels as one 2x2 block against the
 * int8 filters tc_conv2d_packed_decode() left in scratch. The patch is built once per position
 * pair and read by all out_c / 2 channel pairs.
 *  - DSP: the patch is int16 x + io in SXTB16 lane order, the two positions interleaved per
 *    group of four (p0 (x0,x2), p0 (x1,x3), p1 (x0,x2), p1 (x1,x3)); the filters are widened
 *    by SXTB16 in the loop; groups past flen hold 0 (the filter bytes they meet are the next
 *    channel's, times zero).
 *  - ARMv6-M: the patch is int8 x (two positions back to back); io * sum(w) comes from the
 *    channel sums; tc_v6m_dot2x2 does the products. */

#if defined(TC_ARCH_ARMV6M)
/* window of output position (oy, ox): patch element t = (ky*kw + kx)*in_c + ci, int8 */
static void arm_patch_s8(const tc_conv_packed_params *p, const int8_t *input, int32_t oy,
                         int32_t ox, int8_t *dst)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c, kh = p->k_h, kw = p->k_w;
    const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
    const int8_t zp = (int8_t)(-p->input_offset);
    int32_t ky, kx, ci;
    for (ky = 0; ky < kh; ky++) {
        const int32_t iy = iy0 + ky * p->dil_h;
        for (kx = 0; kx < kw; kx++) {
            const int32_t ix = ix0 + kx * p->dil_w;
            int8_t *d = dst + (ky * kw + kx) * in_c;
            if (iy >= 0 && iy < in_h && ix >= 0 && ix < in_w) {
                const int8_t *x = input + (iy * in_w + ix) * in_c;
                for (ci = 0; ci < in_c; ci++) {
                    d[ci] = x[ci];
                }
            } else {
                for (ci = 0; ci < in_c; ci++) {
                    d[ci] = zp;
                }
            }
        }
    }
}
#endif

#if defined(TC_ARCH_ARM_DSP)
/* lane-ordered int16 patch of position q (0 or 1) of the pair; ng groups of four */
static void dsp_patch(const tc_conv_packed_params *p, const int8_t *input, int32_t oy, int32_t ox,
                      int q, int32_t ng, uint32_t *pt)
{
    const int32_t in_c = p->in_c, flen = (int32_t)p->k_h * p->k_w * in_c;
    const uint32_t io2 = ((uint32_t)p->input_offset & 0xFFFFu) | ((uint32_t)p->input_offset << 16);
    int32_t g;
    uint32_t *d = pt + 2 * q;
    if ((in_c & 3) == 0 && p->dil_w == 1) { /* whole groups per tap: straight from the input */
        const int32_t in_h = p->in_h, in_w = p->in_w, kh = p->k_h, kw = p->k_w;
        const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
        int32_t ky, kx, j;
        for (ky = 0; ky < kh; ky++) {
            const int32_t iy = iy0 + ky * p->dil_h;
            for (kx = 0; kx < kw; kx++) {
                const int32_t ix = ix0 + kx;
                uint32_t *dd = d + 4 * (((ky * kw + kx) * in_c) >> 2);
                if (iy >= 0 && iy < in_h && ix >= 0 && ix < in_w) {
                    const int8_t *x = input + (iy * in_w + ix) * in_c;
                    for (j = 0; j < in_c; j += 4) {
                        const uint32_t v = tc_ld32(x + j);
                        dd[j] = __sxtab16(io2, v);
                        dd[j + 1] = tc_sxtab16_ror8(io2, v);
                    }
                } else {
                    for (j = 0; j < in_c; j += 4) {
                        dd[j] = 0;
                        dd[j + 1] = 0;
                    }
                }
            }
        }
        return;
    }
    { /* any depth: element by element, t -> int16 slot 8*(t/4) + 4q + {0, 2, 1, 3}[t % 4] */
        const int32_t in_h = p->in_h, in_w = p->in_w, kh = p->k_h, kw = p->k_w;
        const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
        const int32_t io = p->input_offset;
        int16_t *d16 = (int16_t *)(void *)d;
        int32_t ky, kx, ci, t = 0;
        for (ky = 0; ky < kh; ky++) {
            const int32_t iy = iy0 + ky * p->dil_h;
            for (kx = 0; kx < kw; kx++) {
                const int32_t ix = ix0 + kx * p->dil_w;
                const int inside = iy >= 0 && iy < in_h && ix >= 0 && ix < in_w;
                const int8_t *x = inside ? input + (iy * in_w + ix) * in_c : input;
                for (ci = 0; ci < in_c; ci++, t++) {
                    d16[8 * (t >> 2) + 2 * (t & 1) + ((t >> 1) & 1)] = (int16_t)(inside ? x[ci] + io : 0);
                }
            }
        }
        for (; t < 4 * ng; t++) {
            d16[8 * (t >> 2) + 2 * (t & 1) + ((t >> 1) & 1)] = 0;
        }
        (void)g;
        (void)flen;
    }
}

/* every output channel of a pair of positions from their lane-ordered patch pt (ng groups):
 * channel pairs as 2x2 blocks against the int8 filters (w1 = w0 + flen), then the prepared
 * requantization and two-byte stores per position (o1 == NULL: one position) */
TC_INLINE void dsp_patch_channels_body(const uint32_t *pt, const int8_t *w8, int32_t flen,
                                       int32_t ng, int32_t oc, const tc_rq *rq,
                                       const int32_t *bias, int32_t out_off, uint32_t min4,
                                       uint32_t max4, int8_t *o0, int8_t *o1, const int fast)
{
    int32_t c;
    for (c = 0; c < oc; c += 2) {
        const int32_t c1 = c + 1 < oc ? c + 1 : c;
        const int8_t *w0 = w8 + c * flen;
        const int32_t d = (c1 - c) * flen;
        const uint32_t *q = pt, *end = pt + 4 * ng;
        int32_t a0 = 0, a1 = 0, b0, b1;
        if (bias != NULL) {
            a0 = bias[c];
            a1 = bias[c1];
        }
        b0 = a0;
        b1 = a1;
        while (q != end) {
            const uint32_t v0 = tc_ld32(w0), v1 = tc_ld32(w0 + d);
            const uint32_t e0 = __sxtb16(v0), f0 = tc_sxtb16_ror8(v0);
            const uint32_t e1 = __sxtb16(v1), f1 = tc_sxtb16_ror8(v1);
            a0 = __smlad(q[0], e0, a0);
            a0 = __smlad(q[1], f0, a0);
            a1 = __smlad(q[0], e1, a1);
            a1 = __smlad(q[1], f1, a1);
            b0 = __smlad(q[2], e0, b0);
            b0 = __smlad(q[3], f0, b0);
            b1 = __smlad(q[2], e1, b1);
            b1 = __smlad(q[3], f1, b1);
            q += 4;
            w0 += 4;
        }
        if (c1 != c) {
            tc_store2_s8(tc_rq_apply_sel(rq + c, a0, fast), tc_rq_apply_sel(rq + c1, a1, fast),
                         out_off, min4, max4, o0 + c);
            if (o1 != NULL) {
                tc_store2_s8(tc_rq_apply_sel(rq + c, b0, fast), tc_rq_apply_sel(rq + c1, b1, fast),
                             out_off, min4, max4,
                             o1 + c);
            }
        } else { /* odd last channel */
            const int32_t amin = (int8_t)min4, amax = (int8_t)max4;
            int32_t v = __ssat(tc_rq_apply_sel(rq + c, a0, fast) + out_off, 8);
            o0[c] = (int8_t)TC_MIN(TC_MAX(v, amin), amax);
            if (o1 != NULL) {
                v = __ssat(tc_rq_apply_sel(rq + c, b0, fast) + out_off, 8);
                o1[c] = (int8_t)TC_MIN(TC_MAX(v, amin), amax);
            }
        }
    }
}

/* the body above, specialized for tables whose channels all take tc_rq_apply_fast */
static TC_NOINLINE void dsp_patch_channels(const uint32_t *pt, const int8_t *w8, int32_t flen,
                                           int32_t ng, int32_t oc, const tc_rq *rq,
                                           const int32_t *bias, int32_t out_off, uint32_t min4,
                                           uint32_t max4, int8_t *o0, int8_t *o1, int fast)
{
    if (fast) {
        dsp_patch_channels_body(pt, w8, flen, ng, oc, rq, bias, out_off, min4, max4, o0, o1, 1);
    } else {
        dsp_patch_channels_body(pt, w8, flen, ng, oc, rq, bias, out_off, min4, max4, o0, o1, 0);
    }
}
#endif

static void conv_shallow_arm(const tc_conv_packed_params *p, const int8_t *input,
                             const void *bias, const int32_t *mult, const int8_t *shift,
                             int32_t oy_begin, int32_t oy_end, int8_t *output, int8_t *scratch)
{
    const int32_t out_w = p->out_w, oc = p->out_c;
    const int32_t flen = (int32_t)p->k_h * p->k_w * p->in_c;
    const int32_t ng = (flen + 3) >> 2;
    const int32_t io = p->input_offset;
    const int32_t out_off = p->output_offset, amin = p->act_min, amax = p->act_max;
    const int per_ch = p->requant_per_channel;
    int32_t *flag = tc_scratch_s32(scratch);
    const int32_t *wsum = flag + 1; /* ARMv6-M; DSP: the prepared requantization */
    const int8_t *w8 = (const int8_t *)(wsum + 3 * oc);
    int8_t *patch = (int8_t *)(void *)(wsum + 3 * oc) + ((flen * oc + 3) & ~3);
    const int32_t npos = (oy_end - oy_begin) * out_w;
    int32_t bstage[TC_BIAS_STAGE];
    const int32_t *b32 = tc_bias_stage(bias, p->bias_bits, oc, bstage); /* NULL: blocks */
    int32_t pos, oy = oy_begin, ox = 0;
#if defined(TC_ARCH_ARM_DSP)
    tc_rq *rq = (tc_rq *)(void *)(flag + 1);
    const uint32_t min4 = ((uint32_t)amin & 0xFFu) * 0x01010101u;
    const uint32_t max4 = ((uint32_t)amax & 0xFFu) * 0x01010101u;
    if (!tc_rq_table_ready((uint32_t)*flag)) { /* first rows call after the decode */
        *flag = (int32_t)tc_rq_prepare_n(mult, shift, per_ch, 0, oc, rq);
    }
    (void)io;
    (void)wsum;
#endif

    for (pos = 0; pos < npos; pos += 2) {
        const int two = pos + 1 < npos;
        const int32_t oy1 = ox + 1 < out_w ? oy : oy + 1, ox1 = ox + 1 < out_w ? ox + 1 : 0;
        int8_t *o0 = output + pos * oc;
#if defined(TC_ARCH_ARM_DSP)
        uint32_t *pt = (uint32_t *)(void *)patch;
        dsp_patch(p, input, oy, ox, 0, ng, pt);
        dsp_patch(p, input, two ? oy1 : oy, two ? ox1 : ox, 1, ng, pt);
        if (b32 != NULL) {
            dsp_patch_channels(pt, w8, flen, ng, oc, rq, b32, out_off, min4, max4, o0,
                               two ? o0 + oc : NULL, (uint32_t)*flag == TC_RQ_READY_FAST);
        } else { /* more channels than the stage, stored narrower: blocks of staged biases */
            int32_t cb;
            for (cb = 0; cb < oc; cb += TC_BIAS_STAGE) {
                const int32_t nb = TC_MIN(TC_BIAS_STAGE, oc - cb);
                tc_bias_n(bias, p->bias_bits, cb, nb, bstage);
                dsp_patch_channels(pt, w8 + cb * flen, flen, ng, nb, rq + cb, bstage, out_off, min4, max4,
                                   o0 + cb, two ? o0 + oc + cb : NULL, (uint32_t)*flag == TC_RQ_READY_FAST);
            }
        }
#else
        int32_t c;
        (void)ng;
        arm_patch_s8(p, input, oy, ox, patch);
        arm_patch_s8(p, input, two ? oy1 : oy, two ? ox1 : ox, patch + flen);
        for (c = 0; c < oc; c += 2) {
            const int32_t c1 = c + 1 < oc ? c + 1 : c;
            const int32_t q0 = per_ch ? c : 0, q1 = per_ch ? c1 : 0;
            int32_t b0 = b32 != NULL ? b32[c] : tc_bias_cold(bias, p->bias_bits, c);
            int32_t b1 = b32 != NULL ? b32[c1] : tc_bias_cold(bias, p->bias_bits, c1);
            int32_t acc[4] = {0, 0, 0, 0};
            tc_v6m_dot2x2(patch, patch + flen, w8 + c * flen, w8 + c1 * flen, flen, acc);
            b0 += io * wsum[c];
            b1 += io * wsum[c1];
            o0[c] = tc_requantize(acc[0] + b0, mult[q0], shift[q0], out_off, amin, amax);
            if (c1 != c) {
                o0[c1] = tc_requantize(acc[1] + b1, mult[q1], shift[q1], out_off, amin, amax);
            }
            if (two) {
                o0[oc + c] = tc_requantize(acc[2] + b0, mult[q0], shift[q0], out_off, amin, amax);
                if (c1 != c) {
                    o0[oc + c1] = tc_requantize(acc[3] + b1, mult[q1], shift[q1], out_off, amin, amax);
                }
            }
        }
#endif
        oy = two ? oy1 : oy;
        ox = two ? ox1 : ox;
        if (++ox == out_w) {
            ox = 0;
            oy++;
        }
    }
}
#endif

void tc_conv2d_packed_rows(const tc_conv_packed_params *p, const int8_t *input,
                           const void *bias, const int32_t *mult, const int8_t *shift,
                           int32_t oy_begin, int32_t oy_end, int8_t *output, int8_t *scratch)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_w = p->out_w, oc = p->out_c;
    const int32_t kh = p->k_h, kw = p->k_w;
    const int32_t sh = p->stride_h, sw = p->stride_w, dh = p->dil_h, dwl = p->dil_w;
    const int32_t io = p->input_offset;
    const int16_t *wt = (const int16_t *)(void *)tc_scratch_s32(scratch);
    int32_t oy;

#if defined(TC_ARCH_ARM_DSP) || defined(TC_ARCH_ARMV6M)
    conv_shallow_arm(p, input, bias, mult, shift, oy_begin, oy_end, output, scratch);
    return;
#endif
#if TC_CONV_PAIRS
    if (tc_conv_pairs8(p)) {
        conv_shallow_avx2(p, input, bias, mult, shift, oy_begin, oy_end, output, wt, 1);
        return;
    }
#endif
#if TC_CONV_PAIRS
    if (tc_conv_shallow_mode(p) == 2 && p->dil_w == 1 && __builtin_cpu_supports("avx2")) {
        conv_shallow_s8_avx2(p, input, bias, mult, shift, oy_begin, oy_end, output,
                             (const int8_t *)(const void *)wt);
        return;
    }
#endif
    if (tc_conv_shallow_mode(p) == 2) {
        conv_shallow_s8(p, input, bias, mult, shift, oy_begin, oy_end, output,
                        (const int8_t *)(const void *)wt);
        return;
    }
#if TC_CONV_PAIRS
    if (__builtin_cpu_supports("avx2")) {
        conv_shallow_avx2(p, input, bias, mult, shift, oy_begin, oy_end, output, wt, 0);
        return;
    }
    conv_shallow_sse2(p, input, bias, mult, shift, oy_begin, oy_end, output, wt);
    return;
#endif
    for (oy = oy_begin; oy < oy_end; oy++) {
        const int32_t iy0 = oy * sh - p->pad_top;
        int32_t ky_lo, ky_hi, ox;
        int8_t *orow = output + (oy - oy_begin) * out_w * oc;
        tc_tap_range(iy0, dh, in_h, kh, &ky_lo, &ky_hi);
        for (ox = 0; ox < out_w; ox++) {
            const int32_t ix0 = ox * sw - p->pad_left;
            int32_t kx_lo, kx_hi, c0, nb;
            int8_t *o = orow + ox * oc;
            tc_tap_range(ix0, dwl, in_w, kw, &kx_lo, &kx_hi);
            for (c0 = 0; c0 < oc; c0 += nb) {
                /* two accumulator sets (even / odd input channels): two independent chains */
                int32_t lanes[TC_CONV_BLOCK], lanes2[TC_CONV_BLOCK];
                int32_t j, ky, kx, ci;
                /* blocks of 16 channels, then 8, then the rest */
                nb = oc - c0 >= TC_CONV_BLOCK ? TC_CONV_BLOCK : oc - c0 >= 8 ? 8 : oc - c0;
                for (j = 0; j < TC_CONV_BLOCK; j++) {
                    lanes[j] = 0;
                    lanes2[j] = 0;
                }
                for (ky = ky_lo; ky < ky_hi; ky++) {
                    const int8_t *xrow = input + (int32_t)(iy0 + ky * dh) * in_w * in_c;
                    for (kx = kx_lo; kx < kx_hi; kx++) {
                        const int8_t *x = xrow + (ix0 + kx * dwl) * in_c;
                        const int16_t *w = wt + ((ky * kw + kx) * in_c) * oc + c0;
                        if (nb == TC_CONV_BLOCK) {
                            for (ci = 0; ci + 1 < in_c; ci += 2) {
                                const int16_t x0 = (int16_t)(x[ci] + io), x1 = (int16_t)(x[ci + 1] + io);
                                const int16_t *restrict w0 = w + ci * oc;
                                const int16_t *restrict w1 = w0 + oc;
                                for (j = 0; j < TC_CONV_BLOCK; j++) {
                                    lanes[j] += (int32_t)w0[j] * x0;
                                }
                                for (j = 0; j < TC_CONV_BLOCK; j++) {
                                    lanes2[j] += (int32_t)w1[j] * x1;
                                }
                            }
                            if (ci < in_c) {
                                const int16_t x0 = (int16_t)(x[ci] + io);
                                const int16_t *restrict w0 = w + ci * oc;
                                for (j = 0; j < TC_CONV_BLOCK; j++) {
                                    lanes[j] += (int32_t)w0[j] * x0;
                                }
                            }
                        } else if (nb == 8) {
                            for (ci = 0; ci < in_c; ci++) {
                                const int16_t xv = (int16_t)(x[ci] + io);
                                const int16_t *restrict wc = w + ci * oc;
                                for (j = 0; j < 8; j++) {
                                    lanes[j] += (int32_t)wc[j] * xv;
                                }
                            }
                        } else {
                            for (ci = 0; ci < in_c; ci++) {
                                const int16_t xv = (int16_t)(x[ci] + io);
                                const int16_t *wc = w + ci * oc;
                                for (j = 0; j < nb; j++) {
                                    lanes[j] += (int32_t)wc[j] * xv;
                                }
                            }
                        }
                    }
                }
                for (j = 0; j < TC_CONV_BLOCK; j++) {
                    lanes[j] += lanes2[j];
                }
                if (bias != NULL) {
                    for (j = 0; j < nb; j++) {
                        lanes[j] += tc_bias_at(bias, p->bias_bits, c0 + j);
                    }
                }
                tc_requantize_lanes(lanes, nb, mult, shift, p->requant_per_channel, c0,
                                    p->output_offset, p->act_min, p->act_max, o + c0);
            }
        }
    }
}

