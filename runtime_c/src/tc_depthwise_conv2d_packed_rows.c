/*
 * tc_depthwise_conv2d_packed_rows: output rows [oy_begin, oy_end) of a depthwise conv from the
 * filter tc_depthwise_conv2d_packed_decode() left in scratch (layout: tc_dw_layout()).
 *
 * Portable reference: each output position runs over blocks of 16 channels (then 8, then the
 * rest), accumulating w[c] * (x[c] + io) over the valid taps in register lanes (a
 * SIMD-friendly fixed-width loop for depth_multiplier 1), then requantizes the block;
 * 8-channel stride-1 layers take two positions per 16-lane block.
 * ARMv7E-M DSP (multiplier 1): four channels per step; one LDR of four input bytes, two
 * SXTAB16 that also add the input offset, one word pair of lane-ordered weights, four
 * SMLABB/SMLATT per tap.
 * ARMv6-M: one channel at a time over the window (int8 filter, tc_v6m_dw_window); windows
 * inside the input add io * sum(w) once (channel sums from the decode) instead of io per tap.
 */
#include "tc_packed_internal.h"

#define TC_DW_BLOCK 16

static void dw_rows_portable(const tc_dw_packed_params *p, const int8_t *input,
                             const int32_t *bias, const int32_t *mult, const int8_t *shift,
                             int32_t oy_begin, int32_t oy_end, int8_t *output, int8_t *scratch)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_w = p->out_w, oc = p->out_c;
    const int32_t kh = p->k_h, kw = p->k_w, dm = p->depth_multiplier;
    const int32_t sh = p->stride_h, sw = p->stride_w, dh = p->dil_h, dwl = p->dil_w;
    const int32_t io = p->input_offset;
    const int32_t ntaps = kh * kw;
    const int32_t total = ntaps * oc;
    const int16_t *filt = (const int16_t *)(void *)tc_scratch_s32(scratch);
    const int pairs = tc_dw_pairs(p);
    const int16_t *f2 = filt + total; /* [ntaps][16] when pairs */
    int32_t oy;

    for (oy = oy_begin; oy < oy_end; oy++) {
        const int32_t iy0 = oy * sh - p->pad_top;
        int32_t ky_lo, ky_hi, ox;
        int8_t *orow = output + (oy - oy_begin) * out_w * oc;
        tc_tap_range(iy0, dh, in_h, kh, &ky_lo, &ky_hi);
        for (ox = 0; ox < out_w; ox++) {
            const int32_t ix0 = ox * sw - p->pad_left;
            int32_t kx_lo, kx_hi, ky, kx, c0, nb;
            int8_t *o = orow + ox * oc;
            tc_tap_range(ix0, dwl, in_w, kw, &kx_lo, &kx_hi);
            if (pairs && ox + 1 < out_w) {
                int32_t kx_lo2, kx_hi2;
                tc_tap_range(ix0 + 1, dwl, in_w, kw, &kx_lo2, &kx_hi2);
                if (kx_lo2 == kx_lo && kx_hi2 == kx_hi) { /* positions ox and ox + 1 together */
                    int32_t lanes[16];
                    int32_t j;
                    for (j = 0; j < 16; j++) {
                        lanes[j] = bias != NULL ? bias[j & 7] : 0;
                    }
                    for (ky = ky_lo; ky < ky_hi; ky++) {
                        const int8_t *xrow = input + (int32_t)(iy0 + ky * dh) * in_w * 8;
                        for (kx = kx_lo; kx < kx_hi; kx++) {
                            const int8_t *restrict x = xrow + (ix0 + kx * dwl) * 8;
                            const int16_t *restrict f = f2 + (ky * kw + kx) * 16;
                            for (j = 0; j < 16; j++) {
                                lanes[j] += (int32_t)f[j] * (int16_t)(x[j] + io);
                            }
                        }
                    }
                    tc_requantize_lanes(lanes, 8, mult, shift, p->requant_per_channel, 0,
                                        p->output_offset, p->act_min, p->act_max, o);
                    tc_requantize_lanes(lanes + 8, 8, mult, shift, p->requant_per_channel, 0,
                                        p->output_offset, p->act_min, p->act_max, o + 8);
                    ox++;
                    continue;
                }
            }
            for (c0 = 0; c0 < oc; c0 += nb) {
                int32_t lanes[TC_DW_BLOCK];
                int32_t j;
                /* blocks of 16 channels, then 8, then the rest */
                nb = oc - c0 >= TC_DW_BLOCK ? TC_DW_BLOCK : oc - c0 >= 8 ? 8 : oc - c0;
                for (j = 0; j < TC_DW_BLOCK; j++) {
                    lanes[j] = 0;
                }
                if (nb == TC_DW_BLOCK && dm == 1) {
                    for (ky = ky_lo; ky < ky_hi; ky++) {
                        const int8_t *xrow = input + (int32_t)(iy0 + ky * dh) * in_w * in_c + c0;
                        const int16_t *frow = filt + ky * kw * oc + c0;
                        for (kx = kx_lo; kx < kx_hi; kx++) {
                            const int8_t *restrict x = xrow + (ix0 + kx * dwl) * in_c;
                            const int16_t *restrict f = frow + kx * oc;
                            for (j = 0; j < TC_DW_BLOCK; j++) {
                                lanes[j] += (int32_t)f[j] * (int16_t)(x[j] + io);
                            }
                        }
                    }
                } else if (nb == 8 && dm == 1) {
                    for (ky = ky_lo; ky < ky_hi; ky++) {
                        const int8_t *xrow = input + (int32_t)(iy0 + ky * dh) * in_w * in_c + c0;
                        const int16_t *frow = filt + ky * kw * oc + c0;
                        for (kx = kx_lo; kx < kx_hi; kx++) {
                            const int8_t *restrict x = xrow + (ix0 + kx * dwl) * in_c;
                            const int16_t *restrict f = frow + kx * oc;
                            int16_t xx[8]; /* two steps: the form -O2 vectorizes */
                            for (j = 0; j < 8; j++) {
                                xx[j] = (int16_t)(x[j] + io);
                            }
                            for (j = 0; j < 8; j++) {
                                lanes[j] += (int32_t)f[j] * xx[j];
                            }
                        }
                    }
                } else {
                    for (ky = ky_lo; ky < ky_hi; ky++) {
                        const int8_t *xrow = input + (int32_t)(iy0 + ky * dh) * in_w * in_c;
                        const int16_t *frow = filt + ky * kw * oc + c0;
                        for (kx = kx_lo; kx < kx_hi; kx++) {
                            const int8_t *x = xrow + (ix0 + kx * dwl) * in_c;
                            const int16_t *f = frow + kx * oc;
                            for (j = 0; j < nb; j++) {
                                lanes[j] += (int32_t)f[j] * ((int32_t)x[(c0 + j) / dm] + io);
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

#if defined(TC_ARCH_ARM_DSP)
/* SXTAB16 with its ROR #8 operand: a + (bytes 1 and 3 of x, sign-extended), two int16 lanes */
TC_INLINE uint32_t tc_sxtab16_ror8(uint32_t a, uint32_t x)
{
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}

static void dw_rows_dsp(const tc_dw_packed_params *p, const int8_t *input, const int32_t *bias,
                        const int32_t *mult, const int8_t *shift, int32_t oy_begin,
                        int32_t oy_end, int8_t *output, const int16_t *filt)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_w = p->out_w, oc = p->out_c;
    const int32_t kh = p->k_h, kw = p->k_w;
    const int32_t sh = p->stride_h, sw = p->stride_w, dh = p->dil_h, dwl = p->dil_w;
    const int32_t io = p->input_offset;
    const uint32_t io2 = ((uint32_t)io & 0xFFFFu) | ((uint32_t)io << 16);
    const int32_t out_off = p->output_offset, amin = p->act_min, amax = p->act_max;
    const int per_ch = p->requant_per_channel;
    const int32_t c4 = oc & ~3;
    const int32_t xstep = dwl * in_c;
    int32_t oy;

    for (oy = oy_begin; oy < oy_end; oy++) {
        const int32_t iy0 = oy * sh - p->pad_top;
        int32_t ky_lo, ky_hi, ox;
        int8_t *orow = output + (oy - oy_begin) * out_w * oc;
        tc_tap_range(iy0, dh, in_h, kh, &ky_lo, &ky_hi);
        for (ox = 0; ox < out_w; ox++) {
            const int32_t ix0 = ox * sw - p->pad_left;
            int32_t kx_lo, kx_hi, c;
            int8_t *o = orow + ox * oc;
            const int8_t *xpos;
            const int16_t *fpos;
            tc_tap_range(ix0, dwl, in_w, kw, &kx_lo, &kx_hi);
            xpos = input + ((iy0 + ky_lo * dh) * in_w + ix0 + kx_lo * dwl) * in_c;
            fpos = filt + (ky_lo * kw + kx_lo) * oc;
            for (c = 0; c < c4; c += 4) {
                int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, ky, kx;
                if (bias != NULL) {
                    a0 = bias[c];
                    a1 = bias[c + 1];
                    a2 = bias[c + 2];
                    a3 = bias[c + 3];
                }
                for (ky = ky_lo; ky < ky_hi; ky++) {
                    const int8_t *x = xpos + (ky - ky_lo) * dh * in_w * in_c + c;
                    const int16_t *f = fpos + (ky - ky_lo) * kw * oc + c;
                    for (kx = kx_lo; kx < kx_hi; kx++) {
                        const uint32_t v = tc_ld32(x);
                        const uint32_t xe = __sxtab16(io2, v), xo = tc_sxtab16_ror8(io2, v);
                        const uint32_t we = tc_ld32(f), wo = tc_ld32(f + 2);
                        a0 = __smlabb((int32_t)xe, (int32_t)we, a0);
                        a2 = __smlatt((int32_t)xe, (int32_t)we, a2);
                        a1 = __smlabb((int32_t)xo, (int32_t)wo, a1);
                        a3 = __smlatt((int32_t)xo, (int32_t)wo, a3);
                        x += xstep;
                        f += oc;
                    }
                }
                {
                    const int32_t q = per_ch ? c : 0, d = per_ch ? 1 : 0;
                    o[c] = tc_requantize(a0, mult[q], shift[q], out_off, amin, amax);
                    o[c + 1] = tc_requantize(a1, mult[q + d], shift[q + d], out_off, amin, amax);
                    o[c + 2] = tc_requantize(a2, mult[q + 2 * d], shift[q + 2 * d], out_off, amin,
                                             amax);
                    o[c + 3] = tc_requantize(a3, mult[q + 3 * d], shift[q + 3 * d], out_off, amin,
                                             amax);
                }
            }
            for (; c < oc; c++) { /* tail channels, natural order */
                int32_t acc = bias != NULL ? bias[c] : 0, ky, kx;
                const int32_t q = per_ch ? c : 0;
                for (ky = ky_lo; ky < ky_hi; ky++) {
                    const int8_t *x = xpos + (ky - ky_lo) * dh * in_w * in_c + c;
                    const int16_t *f = fpos + (ky - ky_lo) * kw * oc + c;
                    for (kx = kx_lo; kx < kx_hi; kx++) {
                        acc += (x[0] + io) * f[0];
                        x += xstep;
                        f += oc;
                    }
                }
                o[c] = tc_requantize(acc, mult[q], shift[q], out_off, amin, amax);
            }
        }
    }
}
#endif

#if defined(TC_ARCH_ARMV6M)
/* window sums of channels [c0, c0 + n) of one position into acc[] (multiplier 1, no
 * horizontal dilation: input and filter advance by out_c per tap); full windows add
 * io * sum(w) from the decode's channel sums, partial ones sum the weights they see */
static TC_NOINLINE void dw_v6m_sums(const int8_t *x, const int8_t *w, const int32_t *wsum,
                                    int32_t oc, int32_t span, int32_t rows, int32_t ystep,
                                    int32_t wrow, int full, int32_t io, int32_t n, int32_t *acc)
{
    int32_t j;
    if (full && span == 3 * oc && rows == 3) {
        for (j = 0; j < n; j++) {
            acc[j] = io * wsum[j];
        }
        tc_v6m_dw3x3(x, w, oc, ystep, n, acc);
        return;
    }
    for (j = 0; j < n; j++) {
        if (full) {
            acc[j] = io * wsum[j] + tc_v6m_dw_window(x + j, w + j, oc, span, rows, ystep, wrow, NULL);
        } else {
            int32_t ws;
            acc[j] = tc_v6m_dw_window(x + j, w + j, oc, span, rows, ystep, wrow, &ws);
            acc[j] += io * ws;
        }
    }
}

static void dw_rows_v6m(const tc_dw_packed_params *p, const int8_t *input, const int32_t *bias,
                        const int32_t *mult, const int8_t *shift, int32_t oy_begin,
                        int32_t oy_end, int8_t *output, const int32_t *wsum)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_w = p->out_w, oc = p->out_c;
    const int32_t kh = p->k_h, kw = p->k_w, dm = p->depth_multiplier;
    const int32_t sh = p->stride_h, sw = p->stride_w, dh = p->dil_h, dwl = p->dil_w;
    const int32_t io = p->input_offset;
    const int32_t out_off = p->output_offset, amin = p->act_min, amax = p->act_max;
    const int per_ch = p->requant_per_channel;
    const int8_t *w8 = (const int8_t *)(wsum + oc); /* [tap][oc] */
    const int32_t xstep = dwl * in_c, ystep = dh * in_w * in_c;
    const int same_step = dm == 1 && dwl == 1; /* input and filter advance by oc per tap */
    int32_t oy;

    for (oy = oy_begin; oy < oy_end; oy++) {
        const int32_t iy0 = oy * sh - p->pad_top;
        int32_t ky_lo, ky_hi, ox;
        int8_t *o = output + (oy - oy_begin) * out_w * oc;
        tc_tap_range(iy0, dh, in_h, kh, &ky_lo, &ky_hi);
        for (ox = 0; ox < out_w; ox++) {
            const int32_t ix0 = ox * sw - p->pad_left;
            int32_t kx_lo, kx_hi, c0, rows, cols;
            const int8_t *x;
            const int8_t *w;
            tc_tap_range(ix0, dwl, in_w, kw, &kx_lo, &kx_hi);
            rows = ky_hi - ky_lo;
            cols = kx_hi - kx_lo;
            x = input + ((iy0 + ky_lo * dh) * in_w + ix0 + kx_lo * dwl) * in_c;
            w = w8 + (ky_lo * kw + kx_lo) * oc;
            for (c0 = 0; c0 < oc; c0 += 16) {
                const int32_t n = TC_MIN(16, oc - c0);
                int32_t acc[16];
                int32_t j;
                if (rows <= 0 || cols <= 0) {
                    for (j = 0; j < n; j++) {
                        acc[j] = 0;
                    }
                } else if (same_step) {
                    dw_v6m_sums(x + c0, w + c0, wsum + c0, oc, cols * oc, rows, ystep, kw * oc,
                                rows == kh && cols == kw, io, n, acc);
                } else {
                    for (j = 0; j < n; j++) {
                        const int8_t *xc = x + (c0 + j) / dm;
                        int32_t a = 0, ky, kx;
                        for (ky = 0; ky < rows; ky++) {
                            for (kx = 0; kx < cols; kx++) {
                                a += (xc[ky * ystep + kx * xstep] + io) * w[(ky * kw + kx) * oc + c0 + j];
                            }
                        }
                        acc[j] = a;
                    }
                }
                if (bias != NULL) {
                    for (j = 0; j < n; j++) {
                        acc[j] += bias[c0 + j];
                    }
                }
                tc_requantize_lanes(acc, n, mult, shift, per_ch, c0, out_off, amin, amax, o + c0);
            }
            o += oc;
        }
    }
}
#endif

void tc_depthwise_conv2d_packed_rows(const tc_dw_packed_params *p, const int8_t *input,
                                     const int32_t *bias, const int32_t *mult,
                                     const int8_t *shift, int32_t oy_begin, int32_t oy_end,
                                     int8_t *output, int8_t *scratch)
{
#if defined(TC_ARCH_ARM_DSP)
    if (tc_dw_layout(p) == TC_DW_DSP) {
        dw_rows_dsp(p, input, bias, mult, shift, oy_begin, oy_end, output,
                    (const int16_t *)(void *)tc_scratch_s32(scratch));
        return;
    }
#elif defined(TC_ARCH_ARMV6M)
    if (tc_dw_layout(p) == TC_DW_V6M) {
        dw_rows_v6m(p, input, bias, mult, shift, oy_begin, oy_end, output, tc_scratch_s32(scratch));
        return;
    }
#endif
    dw_rows_portable(p, input, bias, mult, shift, oy_begin, oy_end, output, scratch);
}
