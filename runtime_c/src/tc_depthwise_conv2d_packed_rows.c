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
 * x86 hosts with AVX2 (multiplier 1): dw_rows_avx2, 16 channels per step in 16-bit products.
 * ARMv6-M: one channel at a time over the window (int8 filter, tc_v6m_dw_window); windows
 * inside the input add io * sum(w) once (channel sums from the decode) instead of io per tap;
 * the requantization parameters are prepared once per decode (tc_rq table in scratch, as on
 * DSP cores; tc_rq_apply takes the high product from the 16x16 MULS form).
 */
#include "tc_packed_internal.h"

#define TC_DW_BLOCK 16

static void dw_rows_portable(const tc_dw_packed_params *p, const int8_t *input,
                             const void *bias, const int32_t *mult, const int8_t *shift,
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
                        lanes[j] = tc_bias_at(bias, p->bias_bits, j & 7);
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
                        lanes[j] += tc_bias_at(bias, p->bias_bits, c0 + j);
                    }
                }
                tc_requantize_lanes(lanes, nb, mult, shift, p->requant_per_channel, c0,
                                    p->output_offset, p->act_min, p->act_max, o + c0);
            }
        }
    }
}

#if defined(TC_ARCH_ARM_DSP)
/* DSP cores: per output position and chunk of up to TC_DW_CHUNK channels, first the sums of
 * every group of four channels (dsp_dw_sums: few live values, so the taps stay in registers),
 * then their requantization four channels at a time (dsp_dw_requant: SSAT, byte packing and
 * SIMD clamp, one word store per four outputs). */
#define TC_DW_CHUNK 64

/* one tap of four channels: input word at ptr, lane-ordered weight words w[2t], w[2t + 1] */
#define TC_DW_TAP(ptr, t)                                                                         \
    {                                                                                             \
        const uint32_t v_ = tc_ld32(ptr);                                                         \
        const uint32_t xe_ = __sxtab16(io2, v_), xo_ = tc_sxtab16_ror8(io2, v_);                  \
        a0 = __smlabb((int32_t)xe_, (int32_t)w[2 * (t)], a0);                                     \
        a2 = __smlatt((int32_t)xe_, (int32_t)w[2 * (t)], a2);                                     \
        a1 = __smlabb((int32_t)xo_, (int32_t)w[2 * (t) + 1], a1);                                 \
        a3 = __smlatt((int32_t)xo_, (int32_t)w[2 * (t) + 1], a3);                                 \
    }

/* one group of four channels over a full 3x3 window: one pointer walks the window (s to the
 * next tap of a row, rr from a row's last tap to the next row's first), each tap's loads held
 * next to its multiply-accumulates (TC_AFTER): 9 instructions per tap, nothing spilled */
TC_INLINE void dsp_dw3x3_group(const int8_t *pk, int32_t s, int32_t rr, const uint32_t *w,
                               uint32_t io2, int32_t *p0, int32_t *p1, int32_t *p2, int32_t *p3)
{
    int32_t a0 = *p0, a1 = *p1, a2 = *p2, a3 = *p3;
    int32_t ky;
    for (ky = 0; ky < 3; ky++) {
        TC_DW_TAP(pk, 0)
        pk += s;
        TC_AFTER(pk, a3);
        TC_DW_TAP(pk, 1)
        pk += s;
        TC_AFTER(pk, a3);
        TC_DW_TAP(pk, 2)
        pk += rr;
        TC_AFTER(pk, a3);
        w += 6;
        TC_AFTER(w, a3);
    }
    *p0 = a0;
    *p1 = a1;
    *p2 = a2;
    *p3 = a3;
}

/* sums of ng groups of four channels at one position into acc[4 * ng] (bias included): x is
 * the input at the window's first valid tap (channel 0 of the chunk), s the input distance
 * between taps of a row, r between rows; rows x cols valid taps from tap t0 of each group's
 * block of ntaps (kw per filter row) lane-ordered weight pairs */
static TC_NOINLINE void dsp_dw_sums(const int8_t *x, int32_t s, int32_t r, const int16_t *wt,
                                    int32_t ntaps, int32_t kw, int32_t t0, int32_t rows,
                                    int32_t cols, int32_t ng, uint32_t io2, const int32_t *bias,
                                    int32_t *acc)
{
    int32_t g;
    for (g = 0; g < ng; g++) {
        const uint32_t *wg = (const uint32_t *)(const void *)(wt + 4 * g * ntaps);
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        if (bias != NULL) {
            a0 = bias[4 * g];
            a1 = bias[4 * g + 1];
            a2 = bias[4 * g + 2];
            a3 = bias[4 * g + 3];
        }
        if (rows == 3 && cols == 3 && kw == 3) { /* a full 3x3 window */
            dsp_dw3x3_group(x + 4 * g, s, r - 2 * s, wg, io2, &a0, &a1, &a2, &a3);
        } else if (kw == 3 && cols >= 2) { /* 3x3 windows cut by the padding: rows of 2 or 3 */
            const int8_t *pk = x + 4 * g;
            const uint32_t *w = wg + 2 * t0;
            int32_t ky;
            for (ky = 0; ky < rows; ky++) {
                const int8_t *q = pk + s;
                TC_DW_TAP(pk, 0)
                TC_DW_TAP(q, 1)
                if (cols == 3) {
                    q += s;
                    TC_DW_TAP(q, 2)
                }
                pk += r;
                w += 6;
            }
        } else {
            int32_t ky, kx;
            for (ky = 0; ky < rows; ky++) {
                const int8_t *pk = x + ky * r + 4 * g;
                const uint32_t *w = wg + 2 * (t0 + ky * kw);
                for (kx = 0; kx < cols; kx++) {
                    TC_DW_TAP(pk, kx)
                    pk += s;
                }
            }
        }
        acc[4 * g] = a0;
        acc[4 * g + 1] = a1;
        acc[4 * g + 2] = a2;
        acc[4 * g + 3] = a3;
    }
}
#undef TC_DW_TAP

/* out[j] = tc_requantize(acc[j], ...) for 4 * ng channels, parameters prepared in q[] (fast:
 * every channel takes tc_rq_apply_fast) */
TC_INLINE void dsp_dw_requant_body(const int32_t *acc, int32_t ng, const tc_rq *q,
                                   int32_t out_off, uint32_t min4, uint32_t max4, int8_t *out,
                                   const int fast)
{
    int32_t g;
    for (g = 0; g < ng; g++) {
        tc_store4_s8(tc_rq_apply_sel(q, acc[0], fast), tc_rq_apply_sel(q + 1, acc[1], fast),
                     tc_rq_apply_sel(q + 2, acc[2], fast), tc_rq_apply_sel(q + 3, acc[3], fast),
                     out_off, min4, max4, out);
        acc += 4;
        q += 4;
        out += 4;
    }
}

static TC_NOINLINE void dsp_dw_requant(const int32_t *acc, int32_t ng, const tc_rq *q,
                                       int32_t out_off, uint32_t min4, uint32_t max4, int8_t *out,
                                       int fast)
{
    if (fast) {
        dsp_dw_requant_body(acc, ng, q, out_off, min4, max4, out, 1);
    } else {
        dsp_dw_requant_body(acc, ng, q, out_off, min4, max4, out, 0);
    }
}

static void dw_rows_dsp(const tc_dw_packed_params *p, const int8_t *input, const void *bias,
                        const int32_t *mult, const int8_t *shift, int32_t oy_begin,
                        int32_t oy_end, int8_t *output, const int16_t *filt, tc_rq *rq)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_w = p->out_w, oc = p->out_c;
    const int32_t kh = p->k_h, kw = p->k_w, ntaps = kh * kw;
    const int32_t sh = p->stride_h, sw = p->stride_w, dh = p->dil_h, dwl = p->dil_w;
    const int32_t io = p->input_offset;
    const uint32_t io2 = ((uint32_t)io & 0xFFFFu) | ((uint32_t)io << 16);
    const int32_t out_off = p->output_offset, amin = p->act_min, amax = p->act_max;
    const uint32_t min4 = ((uint32_t)amin & 0xFFu) * 0x01010101u;
    const uint32_t max4 = ((uint32_t)amax & 0xFFu) * 0x01010101u;
    const int per_ch = p->requant_per_channel;
    const int32_t c4 = oc & ~3, tail = oc - c4;
    const int32_t xstep = dwl * in_c, ystep = dh * in_w * in_c;
    const int16_t *ftail = filt + c4 * ntaps; /* [tap][tail] */
    int32_t acc[TC_DW_CHUNK], bstage[TC_BIAS_STAGE];
    const int32_t *b32 = tc_bias_stage(bias, p->bias_bits, oc, bstage); /* NULL: per chunk */
    int32_t oy;

    uint32_t *flag = (uint32_t *)(void *)rq - 1;
    int fast;

    if (!tc_rq_table_ready(*flag)) { /* first rows call after the decode */
        *flag = tc_rq_prepare_n(mult, shift, per_ch, 0, c4, rq);
    }
    fast = *flag == TC_RQ_READY_FAST;
    for (oy = oy_begin; oy < oy_end; oy++) {
        const int32_t iy0 = oy * sh - p->pad_top;
        int32_t ky_lo, ky_hi, ox;
        int8_t *orow = output + (oy - oy_begin) * out_w * oc;
        tc_tap_range(iy0, dh, in_h, kh, &ky_lo, &ky_hi);
        for (ox = 0; ox < out_w; ox++) {
            const int32_t ix0 = ox * sw - p->pad_left;
            int32_t kx_lo, kx_hi, rows, cols, c0, c;
            int8_t *o = orow + ox * oc;
            const int8_t *xw;
            tc_tap_range(ix0, dwl, in_w, kw, &kx_lo, &kx_hi);
            rows = ky_hi - ky_lo;
            cols = kx_hi - kx_lo;
            if (rows <= 0 || cols <= 0) {
                rows = cols = 0;
            }
            xw = input + ((iy0 + ky_lo * dh) * in_w + ix0 + kx_lo * dwl) * in_c;
            for (c0 = 0; c0 < c4; c0 += TC_DW_CHUNK) {
                const int32_t ng = TC_MIN(TC_DW_CHUNK, c4 - c0) >> 2;
                if (b32 == NULL) { /* more channels than the stage, stored narrower */
                    tc_bias_n(bias, p->bias_bits, c0, 4 * ng, bstage);
                }
                dsp_dw_sums(xw + c0, xstep, ystep, filt + c0 * ntaps, ntaps, kw, ky_lo * kw + kx_lo,
                            rows, cols, ng, io2, b32 != NULL ? b32 + c0 : bstage, acc);
                dsp_dw_requant(acc, ng, rq + c0, out_off, min4, max4, o + c0, fast);
            }
            for (c = c4; c < oc; c++) { /* tail channels, natural order */
                int32_t a = tc_bias_at(bias, p->bias_bits, c), ky, kx;
                const int32_t k = per_ch ? c : 0;
                for (ky = 0; ky < rows; ky++) {
                    for (kx = 0; kx < cols; kx++) {
                        a += (xw[ky * ystep + kx * xstep + c] + io) *
                             ftail[((ky_lo + ky) * kw + kx_lo + kx) * tail + (c - c4)];
                    }
                }
                o[c] = tc_requantize(a, mult[k], shift[k], out_off, amin, amax);
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

/* out[j] = tc_requantize(acc[j] + bias[j], ...) for n channels, parameters prepared in q[] */
static TC_NOINLINE void v6m_dw_requant(const int32_t *acc, const int32_t *bias, int32_t n,
                                       const tc_rq *q, int32_t out_off, int32_t amin, int32_t amax,
                                       int8_t *out)
{
    int32_t j;
    for (j = 0; j < n; j++) {
        int32_t v = tc_rq_apply(q + j, acc[j] + (bias != NULL ? bias[j] : 0)) + out_off;
        v = v < amin ? amin : v;
        out[j] = (int8_t)(v > amax ? amax : v);
    }
}

static void dw_rows_v6m(const tc_dw_packed_params *p, const int8_t *input, const void *bias,
                        const int32_t *mult, const int8_t *shift, int32_t oy_begin,
                        int32_t oy_end, int8_t *output, const int32_t *wsum, tc_rq *rq)
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
    int32_t bstage[TC_BIAS_STAGE];
    const int32_t *b32 = tc_bias_stage(bias, p->bias_bits, oc, bstage); /* NULL: per chunk */
    int32_t oy;

    if (!tc_rq_table_ready(((uint32_t *)(void *)rq)[-1])) { /* first rows call after the decode */
        ((uint32_t *)(void *)rq)[-1] = tc_rq_prepare_n(mult, shift, per_ch, 0, oc, rq);
    }

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
                if (b32 == NULL) { /* more channels than the stage, stored narrower */
                    tc_bias_n(bias, p->bias_bits, c0, n, bstage);
                }
                v6m_dw_requant(acc, b32 != NULL ? b32 + c0 : bstage, n, rq + c0, out_off, amin, amax,
                               o + c0);
            }
            o += oc;
        }
    }
}
#endif

#if defined(TC_HOST_X86_SIMD)
#include "tc_requant_avx2.h"
/* x86 hosts with AVX2 (run-time check), depth multiplier 1, the portable filter layout: per
 * position and block of 16 channels, per tap one 16-byte input load widened with the input
 * offset added (VPMOVSXBW, VPADDW) and one VPMULLW against the int16 filter row: |w| <= 128 and
 * |x + io| <= 255, so every product is exact in 16 bits; the products are widened into two
 * int32 accumulators. Bias, requantization (tc_requant_avx2.h) and a 16-byte store per block;
 * 8-channel blocks take the 128-bit form, the last < 8 channels the scalar one. 8-channel
 * stride-1 layers take two positions per 16-lane block (the filter duplicated to 16 lanes, as
 * the portable path). */
__attribute__((target("avx2"), always_inline)) static inline void dw_avx2_tap16(const int8_t *x, const int16_t *f,
                                                                               __m256i iov, __m256i *a0, __m256i *a1)
{
    const __m256i xv = _mm256_add_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)x)), iov);
    const __m256i pr = _mm256_mullo_epi16(xv, _mm256_loadu_si256((const __m256i *)(const void *)f));
    *a0 = _mm256_add_epi32(*a0, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(pr)));
    *a1 = _mm256_add_epi32(*a1, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(pr, 1)));
}

__attribute__((target("avx2"))) static void dw_rows_avx2(const tc_dw_packed_params *p, const int8_t *input,
                                                        const void *bias, const int32_t *mult,
                                                        const int8_t *shift, int32_t oy_begin, int32_t oy_end,
                                                        int8_t *output, int8_t *scratch)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_w = p->out_w, oc = p->out_c;
    const int32_t kh = p->k_h, kw = p->k_w;
    const int32_t sh = p->stride_h, sw = p->stride_w, dh = p->dil_h, dwl = p->dil_w;
    const int32_t io = p->input_offset;
    const int32_t out_off = p->output_offset, amin = p->act_min, amax = p->act_max;
    const int pc = p->requant_per_channel;
    const int16_t *filt = (const int16_t *)(void *)tc_scratch_s32(scratch);
    const int pairs = tc_dw_pairs(p);
    const int16_t *f2 = filt + kh * kw * oc; /* [ntaps][16] when pairs */
    const __m256i iov = _mm256_set1_epi16((int16_t)io);
    int32_t oy;

    for (oy = oy_begin; oy < oy_end; oy++) {
        const int32_t iy0 = oy * sh - p->pad_top;
        int32_t ky_lo, ky_hi, ox;
        int8_t *orow = output + (oy - oy_begin) * out_w * oc;
        tc_tap_range(iy0, dh, in_h, kh, &ky_lo, &ky_hi);
        for (ox = 0; ox < out_w; ox++) {
            const int32_t ix0 = ox * sw - p->pad_left;
            int32_t kx_lo, kx_hi, ky, kx, c0 = 0;
            int8_t *o = orow + ox * oc;
            tc_tap_range(ix0, dwl, in_w, kw, &kx_lo, &kx_hi);
            if (pairs && ox + 1 < out_w) {
                int32_t kx_lo2, kx_hi2;
                tc_tap_range(ix0 + 1, dwl, in_w, kw, &kx_lo2, &kx_hi2);
                if (kx_lo2 == kx_lo && kx_hi2 == kx_hi) { /* positions ox and ox + 1 together */
                    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256(), b;
                    tc_rq8 rq;
                    for (ky = ky_lo; ky < ky_hi; ky++) {
                        const int8_t *xrow = input + (int32_t)(iy0 + ky * dh) * in_w * 8;
                        for (kx = kx_lo; kx < kx_hi; kx++) {
                            dw_avx2_tap16(xrow + (ix0 + kx * dwl) * 8, f2 + (ky * kw + kx) * 16, iov, &a0, &a1);
                        }
                    }
                    b = tc_bias8_avx2(bias, p->bias_bits, 0);
                    tc_rq8_prepare(&rq, mult, shift, pc);
                    tc_rq8_store16(tc_rq8_apply(&rq, _mm256_add_epi32(a0, b), out_off, amin, amax),
                                   tc_rq8_apply(&rq, _mm256_add_epi32(a1, b), out_off, amin, amax), o);
                    ox++;
                    continue;
                }
            }
            for (; c0 + 16 <= oc; c0 += 16) {
                __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
                tc_rq8 r0, r1;
                for (ky = ky_lo; ky < ky_hi; ky++) {
                    const int8_t *xrow = input + (int32_t)(iy0 + ky * dh) * in_w * in_c + c0;
                    const int16_t *frow = filt + ky * kw * oc + c0;
                    for (kx = kx_lo; kx < kx_hi; kx++) {
                        dw_avx2_tap16(xrow + (ix0 + kx * dwl) * in_c, frow + kx * oc, iov, &a0, &a1);
                    }
                }
                if (bias != NULL) {
                    a0 = _mm256_add_epi32(a0, tc_bias8_avx2(bias, p->bias_bits, c0));
                    a1 = _mm256_add_epi32(a1, tc_bias8_avx2(bias, p->bias_bits, c0 + 8));
                }
                tc_rq8_prepare(&r0, pc ? mult + c0 : mult, pc ? shift + c0 : shift, pc);
                tc_rq8_prepare(&r1, pc ? mult + c0 + 8 : mult, pc ? shift + c0 + 8 : shift, pc);
                tc_rq8_store16(tc_rq8_apply(&r0, a0, out_off, amin, amax), tc_rq8_apply(&r1, a1, out_off, amin, amax),
                               o + c0);
            }
            for (; c0 + 8 <= oc; c0 += 8) {
                __m256i a = _mm256_setzero_si256();
                tc_rq8 r;
                for (ky = ky_lo; ky < ky_hi; ky++) {
                    const int8_t *xrow = input + (int32_t)(iy0 + ky * dh) * in_w * in_c + c0;
                    const int16_t *frow = filt + ky * kw * oc + c0;
                    for (kx = kx_lo; kx < kx_hi; kx++) {
                        const __m128i xv = _mm_add_epi16(
                            _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(const void *)(xrow + (ix0 + kx * dwl) * in_c))),
                            _mm256_castsi256_si128(iov));
                        const __m128i pr = _mm_mullo_epi16(xv, _mm_loadu_si128((const __m128i *)(const void *)(frow + kx * oc)));
                        a = _mm256_add_epi32(a, _mm256_cvtepi16_epi32(pr));
                    }
                }
                if (bias != NULL) {
                    a = _mm256_add_epi32(a, tc_bias8_avx2(bias, p->bias_bits, c0));
                }
                tc_rq8_prepare(&r, pc ? mult + c0 : mult, pc ? shift + c0 : shift, pc);
                tc_rq8_store8(tc_rq8_apply(&r, a, out_off, amin, amax), o + c0);
            }
            for (; c0 < oc; c0++) {
                int32_t acc = tc_bias_at(bias, p->bias_bits, c0);
                for (ky = ky_lo; ky < ky_hi; ky++) {
                    const int8_t *xrow = input + (int32_t)(iy0 + ky * dh) * in_w * in_c + c0;
                    const int16_t *frow = filt + ky * kw * oc + c0;
                    for (kx = kx_lo; kx < kx_hi; kx++) {
                        acc += (int32_t)frow[kx * oc] * ((int32_t)xrow[(ix0 + kx * dwl) * in_c] + io);
                    }
                }
                o[c0] = tc_requantize(acc, mult[pc ? c0 : 0], shift[pc ? c0 : 0], out_off, amin, amax);
            }
        }
    }
}
#endif

void tc_depthwise_conv2d_packed_rows(const tc_dw_packed_params *p, const int8_t *input,
                                     const void *bias, const int32_t *mult,
                                     const int8_t *shift, int32_t oy_begin, int32_t oy_end,
                                     int8_t *output, int8_t *scratch)
{
#if defined(TC_ARCH_ARM_DSP)
    if (tc_dw_layout(p) == TC_DW_DSP) {
        int8_t *base = (int8_t *)(void *)tc_scratch_s32(scratch);
        dw_rows_dsp(p, input, bias, mult, shift, oy_begin, oy_end, output,
                    (const int16_t *)(void *)base, (tc_rq *)(void *)(base + tc_dw_filter_bytes(p) + 4));
        return;
    }
#elif defined(TC_ARCH_ARMV6M)
    if (tc_dw_layout(p) == TC_DW_V6M) {
        int8_t *base = (int8_t *)(void *)tc_scratch_s32(scratch);
        dw_rows_v6m(p, input, bias, mult, shift, oy_begin, oy_end, output, (const int32_t *)(void *)base,
                    (tc_rq *)(void *)(base + tc_dw_filter_bytes(p) + 4));
        return;
    }
#elif defined(TC_HOST_X86_SIMD)
    if (p->depth_multiplier == 1 && __builtin_cpu_supports("avx2")) {
        dw_rows_avx2(p, input, bias, mult, shift, oy_begin, oy_end, output, scratch);
        return;
    }
#endif
    dw_rows_portable(p, input, bias, mult, shift, oy_begin, oy_end, output, scratch);
}
