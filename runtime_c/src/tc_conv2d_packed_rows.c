/*
 * tc_conv2d_packed_rows: output rows [oy_begin, oy_end) of a shallow conv layer from the
 * filters tc_conv2d_packed_decode() left in scratch: each output position accumulates 16 (then
 * 8 / 4) output channels at a time over the valid taps, in register lanes, then requantizes the
 * block (tc_requantize_lanes). x86 hosts: pmaddwd over input-channel pairs.
 */
#include "tc_packed_internal.h"

#if TC_CONV_PAIRS
#include <emmintrin.h>
/* x86 hosts: shallow filters stored as input-channel pairs, [kh*kw][in_c/2][oc][2] int16, so
 * one pmaddwd multiplies 4 output channels by two input channels (broadcast pair) and adds the
 * two products: 8 multiply-accumulates per instruction. */

static void conv_shallow_sse2(const tc_conv_packed_params *p, const int8_t *input,
                              const int32_t *bias, const int32_t *mult, const int8_t *shift,
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
                        lanes[j] += bias[c0 + j];
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
                            const int32_t *bias, const int32_t *mult, const int8_t *shift,
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
                        lanes[j] += bias[c0 + j];
                    }
                }
                tc_requantize_lanes(lanes, nb, mult, shift, p->requant_per_channel, c0,
                                    p->output_offset, p->act_min, p->act_max, o + c0);
            }
        }
    }
}

void tc_conv2d_packed_rows(const tc_conv_packed_params *p, const int8_t *input,
                           const int32_t *bias, const int32_t *mult, const int8_t *shift,
                           int32_t oy_begin, int32_t oy_end, int8_t *output, int8_t *scratch)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_w = p->out_w, oc = p->out_c;
    const int32_t kh = p->k_h, kw = p->k_w;
    const int32_t sh = p->stride_h, sw = p->stride_w, dh = p->dil_h, dwl = p->dil_w;
    const int32_t io = p->input_offset;
    const int16_t *wt = (const int16_t *)(void *)tc_scratch_s32(scratch);
    int32_t oy;

    if (tc_conv_shallow_mode(p) == 2) {
        conv_shallow_s8(p, input, bias, mult, shift, oy_begin, oy_end, output,
                        (const int8_t *)(const void *)wt);
        return;
    }
#if TC_CONV_PAIRS
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
                        lanes[j] += bias[c0 + j];
                    }
                }
                tc_requantize_lanes(lanes, nb, mult, shift, p->requant_per_channel, c0,
                                    p->output_offset, p->act_min, p->act_max, o + c0);
            }
        }
    }
}

