/*
 * tc_conv2d_packed: CONV_2D (batch 1, optional groups) on packed cluster indices.
 *
 * Decode once, reuse across positions. Portable reference: for each output channel the filter
 * [k_h][k_w][filter_in_c] is decoded into scratch (as int16, see tc_packed_internal.h)
 * together with per-row prefix sums of its weights, then used for every output position of
 * the row range. The input offset is folded out of the dot products: sum over valid taps of
 * w*(x+io) = sum(w*x) + io*sum(w), where sum(w) over the valid taps comes from the prefix sums
 * (so padding needs no branch in the inner loop). With dil_w == 1 and no groups a filter row
 * is one contiguous dot product of (valid k_w) * in_c.
 *
 * Arm fast paths (one dispatch in tc_conv2d_packed(), tc_arch.h selects the family): the
 * filters of two output channels are decoded together and every dot product computes a 2x2
 * block (two output positions x two output channels), so each decoded weight is loaded once
 * per two positions and each input byte once per two channels.
 *  - ARMv7E-M / ARMv8-M with DSP (M4, M7, M33): the pair is stored as int16 in the lane order
 *    SXTB16 produces from four input bytes (x0, x1, x2, x3) -> (x0, x2), (x1, x3); the inner
 *    loop is LDR + 2 SXTB16 per position and 8 SMLAD per 16 multiply-accumulates, no PKHBT.
 *    Needs filter_in_c % 4 == 0 (each tap starts a group of four).
 *  - ARMv6-M (M0, M0+, RP2040): the pair as int8 (two filters back to back); one LDRSB per
 *    operand, MULS, ADD, four accumulators.
 * Both keep the input offset out of the inner loop (prefix sums, as the reference). DSP cores
 * requantize with the pair's parameters prepared once per channel pair (tc_rq_apply).
 * Semantics: TFLite Micro reference_integer_ops::ConvPerChannel.
 */
#include "tc_packed_internal.h"

int32_t tc_conv2d_packed_get_buffer_size(const tc_conv_packed_params *p)
{
    const int32_t kh = p->k_h, kw = p->k_w;
    const int mode = tc_conv_shallow_mode(p);
    if (mode != 0) {
        /* all filters at once: the largest of the portable form (mode 1: int16, input channels
         * rounded up to pairs, see conv_shallow_sse2; mode 2: int8) and the Arm form
         * (tc_conv_shallow_arm_bytes) */
        const int32_t pairs = ((int32_t)p->filter_in_c + 1) / 2;
        const int32_t flen = kh * kw * (int32_t)p->filter_in_c;
        const int32_t portable = mode == 1 ? 3 + 2 * kh * kw * 2 * pairs * p->out_c + flen
                                           : 3 + flen * (p->out_c + 1);
        return TC_MAX(portable, tc_conv_shallow_arm_bytes(p));
    }
    /* deep: prefix sums of two channels + two decoded filters as int16 (the Arm pair paths;
     * the portable path uses half of it). The same size on every target: the generated code
     * does not depend on the board. */
    return 3 + 8 * kh * (kw + 1) + 4 * kh * kw * (int32_t)p->filter_in_c;
}

/* Portable reference: one filter at a time, any geometry. */
static void conv_deep_portable(const tc_conv_packed_params *p, const int8_t *input,
                               const uint8_t *packed, const int8_t *codebooks,
                               const uint8_t *codebook_map, const void *bias,
                               const int32_t *mult, const int8_t *shift, int32_t oy_begin,
                               int32_t oy_end, int8_t *output, int8_t *scratch)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_w = p->out_w, out_c = p->out_c;
    const int32_t kh = p->k_h, kw = p->k_w, fic = p->filter_in_c;
    const int32_t sh = p->stride_h, sw = p->stride_w, dh = p->dil_h, dwl = p->dil_w;
    const int32_t io = p->input_offset;
    const int32_t flen = kh * kw * fic;
    const int32_t per_group = out_c / (in_c / fic);
    const int contiguous = dwl == 1 && fic == in_c;
    const int pointwise = kh == 1 && kw == 1 && sh == 1 && sw == 1 && p->pad_top == 0 &&
                          p->pad_left == 0 && out_w == in_w;
    const uint32_t bits = p->bits;
    int32_t *psum = tc_scratch_s32(scratch);
    int16_t *filt = (int16_t *)(void *)(psum + kh * (kw + 1));
    int32_t c;

    for (c = 0; c < out_c; c++) {
        const int32_t cbi = codebook_map != NULL ? codebook_map[c] : c;
        const int8_t *cb = codebooks != NULL ? codebooks + (int32_t)p->codebook_stride * cbi : NULL;
        const int32_t q = p->requant_per_channel ? c : 0;
        const int32_t m = mult[q], s = shift[q];
        const int32_t b0 = tc_bias_at(bias, p->bias_bits, c);
        const int8_t *in_c0 = input + (c / per_group) * fic;
        int8_t *out_c0 = output + c;
        int32_t ky, kx, oy;

        tc_unpack_lut16(packed, (uint32_t)c * (uint32_t)flen * bits, (uint8_t)bits, cb, flen, filt);
        for (ky = 0; ky < kh; ky++) {
            int32_t acc = 0;
            int32_t *ps = psum + ky * (kw + 1);
            ps[0] = 0;
            for (kx = 0; kx < kw; kx++) {
                if (io != 0) { /* io == 0 (offset folded into the bias): sums unused */
                    acc += tc_sum_s16(filt + (ky * kw + kx) * fic, fic);
                }
                ps[kx + 1] = acc;
            }
        }
        if (pointwise) { /* 1x1, stride 1, no padding: the row range is one run of positions */
            const int32_t npos = (oy_end - oy_begin) * out_w;
            const int8_t *xp = in_c0 + oy_begin * in_w * in_c;
            const int32_t b1 = b0 + io * psum[1];
            int32_t pos;
            for (pos = 0; pos < npos; pos++) {
                const int32_t acc = tc_dot_s16_s8(filt, xp + pos * in_c, fic) + b1;
                out_c0[pos * out_c] = tc_requantize(acc, m, s, p->output_offset, p->act_min,
                                                    p->act_max);
            }
            continue;
        }

        for (oy = oy_begin; oy < oy_end; oy++) {
            const int32_t iy0 = oy * sh - p->pad_top;
            int32_t ky_lo, ky_hi, ox;
            int8_t *orow = out_c0 + (oy - oy_begin) * out_w * out_c;
            tc_tap_range(iy0, dh, in_h, kh, &ky_lo, &ky_hi);
            for (ox = 0; ox < out_w; ox++) {
                const int32_t ix0 = ox * sw - p->pad_left;
                int32_t kx_lo, kx_hi;
                int32_t acc = 0, ws = 0;
                tc_tap_range(ix0, dwl, in_w, kw, &kx_lo, &kx_hi);
                if (kx_lo < kx_hi) {
                    for (ky = ky_lo; ky < ky_hi; ky++) {
                        const int8_t *xrow = in_c0 + (int32_t)(iy0 + ky * dh) * in_w * in_c;
                        const int16_t *frow = filt + ky * kw * fic;
                        const int32_t *ps = psum + ky * (kw + 1);
                        if (contiguous) {
                            acc += tc_dot_s16_s8(frow + kx_lo * fic, xrow + (ix0 + kx_lo) * in_c,
                                                 (kx_hi - kx_lo) * fic);
                        } else {
                            for (kx = kx_lo; kx < kx_hi; kx++) {
                                acc += tc_dot_s16_s8(frow + kx * fic, xrow + (ix0 + kx * dwl) * in_c,
                                                     fic);
                            }
                        }
                        ws += ps[kx_hi] - ps[kx_lo];
                    }
                }
                acc += io * ws + b0;
                orow[ox * out_c] = tc_requantize(acc, m, s, p->output_offset, p->act_min,
                                                 p->act_max);
            }
        }
    }
}

#if defined(TC_ARCH_ARM_DSP) || defined(TC_ARCH_ARMV6M)

#if defined(TC_ARCH_ARM_DSP)
/* Decoded pair: per group of four weights of the flattened filter, the words
 * (w0, w2)c0, (w1, w3)c0, (w0, w2)c1, (w1, w3)c1, so weight index t is word t. */
typedef uint32_t tc_pw;

TC_INLINE int arm_conv_applies(const tc_conv_packed_params *p)
{
    return (p->filter_in_c & 3) == 0;
}

static void arm_decode_pair(const uint8_t *packed, uint32_t bits, const int8_t *cb0,
                            const int8_t *cb1, int32_t c0, int32_t c1, int32_t flen, tc_pw *wb)
{
    int8_t tmp[TC_UNPACK_CHUNK];
    int half;
    for (half = 0; half < 2; half++) {
        const uint32_t c = (uint32_t)(half ? c1 : c0);
        const int8_t *cb = half ? cb1 : cb0;
        tc_pw *dst = wb + 2 * half;
        int32_t i, j;
        if (bits == 8 && cb == NULL) { /* raw int8 weights: straight into lane order */
            const int8_t *src = (const int8_t *)(const void *)packed + c * (uint32_t)flen;
            for (j = 0; j < flen; j += 4) {
                const uint32_t v = tc_ld32(src + j);
                dst[j] = __sxtb16(v);
                dst[j + 1] = tc_sxtb16_ror8(v);
            }
            continue;
        }
        if (bits == 4 && cb != NULL) {
            /* 4-bit: a filter starts on a byte (flen % 4 == 0); two bytes hold the indices of one
             * group of four, low nibble first; the codebook holds 16 entries (padded) */
            const uint8_t *src = packed + c * (uint32_t)flen / 2u;
            for (j = 0; j < flen; j += 4) {
                const uint32_t v = tc_ld16(src + j / 2);
                const int32_t w0 = cb[v & 15u], w1 = cb[(v >> 4) & 15u];
                const int32_t w2 = cb[(v >> 8) & 15u], w3 = cb[v >> 12];
                dst[j] = (uint32_t)tc_pkhbt16(w0, w2);
                dst[j + 1] = (uint32_t)tc_pkhbt16(w1, w3);
            }
            continue;
        }
        for (i = 0; i < flen; i += TC_UNPACK_CHUNK) {
            const int32_t n = TC_MIN(TC_UNPACK_CHUNK, flen - i);
            tc_unpack_lut(packed, (c * (uint32_t)flen + (uint32_t)i) * bits, (uint8_t)bits, cb, n,
                          tmp);
            for (j = 0; j < n; j += 4) {
                const uint32_t v = tc_ld32(tmp + j);
                dst[i + j] = __sxtb16(v);
                dst[i + j + 1] = tc_sxtb16_ror8(v);
            }
        }
    }
}

/* sum of the weights of channel `half` over one tap (fic weights starting at w) */
static int32_t arm_tap_sum(const tc_pw *w, int32_t fic, int half)
{
    int32_t s = 0, g;
    for (g = 0; g < fic; g += 4) {
        s = __smlad(w[g + 2 * half], 0x00010001u, s);
        s = __smlad(w[g + 2 * half + 1], 0x00010001u, s);
    }
    return s;
}

/* acc[0] += c0.xa, acc[1] += c1.xa, acc[2] += c0.xb, acc[3] += c1.xb over n weights (n % 4
 * == 0) starting at w; xb = xa + d. */
static TC_NOINLINE void arm_dot2x2(const int8_t *xa, int32_t d, const tc_pw *w, int32_t wstride,
                          int32_t n, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], b0 = acc[2], b1 = acc[3];
    const int8_t *end = xa + n;
    (void)wstride;
    while (xa != end) {
        const uint32_t va = tc_ld32(xa), vb = tc_ld32(xa + d);
        const uint32_t ae = __sxtb16(va), ao = tc_sxtb16_ror8(va);
        const uint32_t be = __sxtb16(vb), bo = tc_sxtb16_ror8(vb);
        a0 = __smlad(ae, w[0], a0);
        a0 = __smlad(ao, w[1], a0);
        b0 = __smlad(be, w[0], b0);
        b0 = __smlad(bo, w[1], b0);
        a1 = __smlad(ae, w[2], a1);
        a1 = __smlad(ao, w[3], a1);
        b1 = __smlad(be, w[2], b1);
        b1 = __smlad(bo, w[3], b1);
        xa += 4;
        w += 4;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = b0;
    acc[3] = b1;
}

/* acc[0] += c0.xa, acc[1] += c1.xa */
static TC_NOINLINE void arm_dot1x2(const int8_t *xa, const tc_pw *w, int32_t wstride, int32_t n,
                          int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1];
    const int8_t *end = xa + n;
    (void)wstride;
    while (xa != end) {
        const uint32_t va = tc_ld32(xa);
        const uint32_t ae = __sxtb16(va), ao = tc_sxtb16_ror8(va);
        a0 = __smlad(ae, w[0], a0);
        a0 = __smlad(ao, w[1], a0);
        a1 = __smlad(ae, w[2], a1);
        a1 = __smlad(ao, w[3], a1);
        xa += 4;
        w += 4;
    }
    acc[0] = a0;
    acc[1] = a1;
}

#else /* TC_ARCH_ARMV6M */
/* Decoded pair: the two int8 filters back to back (channel c1 at + flen). */
typedef int8_t tc_pw;

TC_INLINE int arm_conv_applies(const tc_conv_packed_params *p)
{
    (void)p;
    return 1;
}

static void arm_decode_pair(const uint8_t *packed, uint32_t bits, const int8_t *cb0,
                            const int8_t *cb1, int32_t c0, int32_t c1, int32_t flen, tc_pw *wb)
{
    tc_unpack_lut(packed, (uint32_t)c0 * (uint32_t)flen * bits, (uint8_t)bits, cb0, flen, wb);
    tc_unpack_lut(packed, (uint32_t)c1 * (uint32_t)flen * bits, (uint8_t)bits, cb1, flen, wb + flen);
}

static int32_t arm_tap_sum(const tc_pw *w, int32_t fic, int half)
{
    int32_t s = 0, i;
    (void)half; /* the caller passes the channel's own filter */
    for (i = 0; i < fic; i++) {
        s += w[i];
    }
    return s;
}

TC_INLINE void arm_dot2x2(const int8_t *xa, int32_t d, const tc_pw *w, int32_t wstride,
                          int32_t n, int32_t *acc)
{
    tc_v6m_dot2x2(xa, xa + d, w, w + wstride, n, acc);
}

TC_INLINE void arm_dot1x2(const int8_t *xa, const tc_pw *w, int32_t wstride, int32_t n,
                          int32_t *acc)
{
    tc_v6m_dot1x2(xa, w, w + wstride, n, acc);
}
#endif

/* pointer to weight index t of the decoded pair, and the distance to channel c1's filter */
#if defined(TC_ARCH_ARM_DSP)
#define PW_STRIDE(flen) 0
#define PW_SUM(wb, flen, t, fic, half) arm_tap_sum((wb) + (t), (fic), (half))
#else
#define PW_STRIDE(flen) (flen)
#define PW_SUM(wb, flen, t, fic, half) arm_tap_sum((wb) + (half) * (flen) + (t), (fic), (half))
#endif

/* tc_requantize() of one output of channel `ch` (0 or 1 of the pair): DSP cores with the
 * channel's prepared parameters (tc_rq_apply: one SMLAL and four ALU ops instead of the general
 * form); ARMv6-M keeps tc_requantize itself (at -Os it does better here) */
TC_INLINE int8_t arm_rq_clamp(const tc_rq *q, int32_t acc, int32_t out_off, int32_t amin,
                              int32_t amax)
{
    int32_t v = tc_rq_apply(q, acc) + out_off;
    v = TC_MAX(v, amin);
    return (int8_t)TC_MIN(v, amax);
}
#if defined(TC_ARCH_ARM_DSP)
#define ARM_RQ(acc, ch) arm_rq_clamp(&rq##ch, (acc), out_off, amin, amax)
#else
#define ARM_RQ(acc, ch) tc_requantize((acc), m##ch, s##ch, out_off, amin, amax)
#endif

static void conv_deep_arm(const tc_conv_packed_params *p, const int8_t *input,
                          const uint8_t *packed, const int8_t *codebooks,
                          const uint8_t *codebook_map, const void *bias, const int32_t *mult,
                          const int8_t *shift, int32_t oy_begin, int32_t oy_end, int8_t *output,
                          int8_t *scratch)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_w = p->out_w, out_c = p->out_c;
    const int32_t kh = p->k_h, kw = p->k_w, fic = p->filter_in_c;
    const int32_t sh = p->stride_h, sw = p->stride_w, dh = p->dil_h, dwl = p->dil_w;
    const int32_t io = p->input_offset;
    const int32_t out_off = p->output_offset, amin = p->act_min, amax = p->act_max;
    const int32_t flen = kh * kw * fic;
    const int32_t per_group = out_c / (in_c / fic);
    const int contiguous = dwl == 1 && fic == in_c;
    /* 1x1 without padding: every position has its one tap, sw * in_c bytes after the last */
    const int onebyone = kh == 1 && kw == 1 && p->pad_top == 0 && p->pad_left == 0;
    const int pointwise = onebyone && sh == 1 && sw == 1 && out_w == in_w; /* rows contiguous */
    const int32_t ws = PW_STRIDE(flen);
    int32_t *psum = tc_scratch_s32(scratch); /* [2][kh][kw + 1] */
    tc_pw *wb = (tc_pw *)(void *)(psum + 2 * kh * (kw + 1));
    int32_t c;

    for (c = 0; c < out_c; c += 2) {
        const int32_t c1 = c + 1 < out_c ? c + 1 : c;
        const int8_t *cb0 = NULL, *cb1 = NULL;
        const int32_t q0 = p->requant_per_channel ? c : 0, q1 = p->requant_per_channel ? c1 : 0;
        const int32_t b0 = tc_bias_cold(bias, p->bias_bits, c), b1 = tc_bias_cold(bias, p->bias_bits, c1);
        const int8_t *in0 = input + (c / per_group) * fic;
        const int has1 = c1 != c;
        const int32_t m0 = mult[q0], s0 = shift[q0], m1 = mult[q1], s1 = shift[q1];
        tc_rq rq0, rq1;
        int32_t oy;

        if (codebooks != NULL) {
            const int32_t stride = p->codebook_stride;
            cb0 = codebooks + stride * (codebook_map != NULL ? codebook_map[c] : c);
            cb1 = codebooks + stride * (codebook_map != NULL ? codebook_map[c1] : c1);
        }
        tc_rq_prepare(m0, s0, &rq0);
        tc_rq_prepare(m1, s1, &rq1);
        (void)rq0;
        (void)rq1;
        arm_decode_pair(packed, p->bits, cb0, cb1, c, c1, flen, wb);
        {
            int half, ky, kx;
            for (half = 0; half < 2; half++) {
                for (ky = 0; ky < kh; ky++) {
                    int32_t *ps = psum + (half * kh + ky) * (kw + 1);
                    int32_t acc = 0;
                    ps[0] = 0;
                    for (kx = 0; kx < kw; kx++) {
                        if (io != 0) {
                            acc += PW_SUM(wb, flen, (ky * kw + kx) * fic, fic, half);
                        }
                        ps[kx + 1] = acc;
                    }
                }
            }
        }

        if (onebyone) { /* runs of positions d bytes apart: the whole row range (pointwise), or
                         * each output row (strided 1x1) */
            const int32_t nruns = pointwise ? 1 : oy_end - oy_begin;
            const int32_t npos = pointwise ? (oy_end - oy_begin) * out_w : out_w;
            const int32_t d = sw * in_c;
            const int32_t bb0 = b0 + io * psum[1], bb1 = b1 + io * psum[kh * (kw + 1) + 1];
            int32_t r;
            for (r = 0; r < nruns; r++) {
                const int8_t *xp = in0 + (oy_begin + r) * sh * in_w * in_c;
                int8_t *o = output + r * out_w * out_c + c;
                int32_t pos;
                for (pos = 0; pos + 1 < npos; pos += 2) {
                    int32_t acc[4] = {bb0, bb1, bb0, bb1};
                    arm_dot2x2(xp, d, wb, ws, fic, acc);
                    o[0] = ARM_RQ(acc[0], 0);
                    o[out_c] = ARM_RQ(acc[2], 0);
                    if (has1) {
                        o[1] = ARM_RQ(acc[1], 1);
                        o[out_c + 1] = ARM_RQ(acc[3], 1);
                    }
                    xp += 2 * d;
                    o += 2 * out_c;
                }
                if (pos < npos) {
                    int32_t acc[2] = {bb0, bb1};
                    arm_dot1x2(xp, wb, ws, fic, acc);
                    o[0] = ARM_RQ(acc[0], 0);
                    if (has1) {
                        o[1] = ARM_RQ(acc[1], 1);
                    }
                }
            }
            continue;
        }

        for (oy = oy_begin; oy < oy_end; oy++) {
            const int32_t iy0 = oy * sh - p->pad_top;
            int32_t ky_lo, ky_hi, ox, ky, kx;
            int8_t *orow = output + (oy - oy_begin) * out_w * out_c + c;
            tc_tap_range(iy0, dh, in_h, kh, &ky_lo, &ky_hi);
            for (ox = 0; ox < out_w;) {
                const int32_t ix0 = ox * sw - p->pad_left;
                int32_t kx_lo, kx_hi, two = 0, wsum0 = 0, wsum1 = 0;
                int32_t acc[4] = {0, 0, 0, 0};
                int8_t *o = orow + ox * out_c;
                tc_tap_range(ix0, dwl, in_w, kw, &kx_lo, &kx_hi);
                if (ox + 1 < out_w) { /* two positions when they see the same taps */
                    int32_t lo2, hi2;
                    tc_tap_range(ix0 + sw, dwl, in_w, kw, &lo2, &hi2);
                    two = lo2 == kx_lo && hi2 == kx_hi;
                }
                if (kx_lo < kx_hi) {
                    for (ky = ky_lo; ky < ky_hi; ky++) {
                        const int8_t *xrow = in0 + ((iy0 + ky * dh) * in_w + ix0) * in_c;
                        const int32_t t0 = ky * kw * fic;
                        if (io != 0) {
                            const int32_t *ps = psum + ky * (kw + 1);
                            wsum0 += ps[kx_hi] - ps[kx_lo];
                            wsum1 += ps[kh * (kw + 1) + kx_hi] - ps[kh * (kw + 1) + kx_lo];
                        }
                        if (contiguous) {
                            const int8_t *xa = xrow + kx_lo * in_c;
                            const int32_t n = (kx_hi - kx_lo) * fic;
                            if (two) {
                                arm_dot2x2(xa, sw * in_c, wb + t0 + kx_lo * fic, ws, n, acc);
                            } else {
                                arm_dot1x2(xa, wb + t0 + kx_lo * fic, ws, n, acc);
                            }
                        } else {
                            for (kx = kx_lo; kx < kx_hi; kx++) {
                                const int8_t *xa = xrow + kx * dwl * in_c;
                                if (two) {
                                    arm_dot2x2(xa, sw * in_c, wb + t0 + kx * fic, ws, fic, acc);
                                } else {
                                    arm_dot1x2(xa, wb + t0 + kx * fic, ws, fic, acc);
                                }
                            }
                        }
                    }
                }
                wsum0 = b0 + io * wsum0;
                wsum1 = b1 + io * wsum1;
                o[0] = ARM_RQ(acc[0] + wsum0, 0);
                if (has1) {
                    o[1] = ARM_RQ(acc[1] + wsum1, 1);
                }
                if (two) {
                    o[out_c] = ARM_RQ(acc[2] + wsum0, 0);
                    if (has1) {
                        o[out_c + 1] = ARM_RQ(acc[3] + wsum1, 1);
                    }
                }
                ox += two ? 2 : 1;
            }
        }
    }
}
#endif /* Arm */

#if defined(TC_HOST_X86_SIMD)
#include "tc_requant_avx2.h"
/* x86 hosts with AVX2 (run-time check): two output channels per decoded block (int16, natural
 * order), every filter row of a position as one run against both: the input widened 16 bytes
 * at a time (VPMOVSXBW), two VPMADDWD per position; the input offset stays out of the loop
 * (prefix sums, as the reference). Runs of four positions of a row with the same valid taps
 * (every position of a 1x1 layer, the interior of padded ones) share each weight load: a 4x2
 * block of eight accumulators, reduced into one register and requantized eight lanes at once
 * (tc_requantize_lanes); the other positions take the one-position loop. */

/* the 4x2 block: positions x0..x3 (same taps) against the two filters u0, u1; named fields (not
 * arrays), so that the accumulators stay in registers */
typedef struct {
    __m256i a0, a1, a2, a3, a4, a5, a6, a7; /* position j, channel h: a(2j + h) */
    int32_t t0, t1, t2, t3, t4, t5, t6, t7; /* the same for the scalar tails */
} tc_acc4x2;

__attribute__((target("avx2"), always_inline)) static inline void avx2_dot4x2(
    const int8_t *x0, const int8_t *x1, const int8_t *x2, const int8_t *x3, const int16_t *u0,
    const int16_t *u1, int32_t n, tc_acc4x2 *k)
{
    __m256i a0 = k->a0, a1 = k->a1, a2 = k->a2, a3 = k->a3, a4 = k->a4, a5 = k->a5, a6 = k->a6, a7 = k->a7;
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i v0 = _mm256_loadu_si256((const __m256i *)(const void *)(u0 + i));
        const __m256i v1 = _mm256_loadu_si256((const __m256i *)(const void *)(u1 + i));
        __m256i xv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(x0 + i)));
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(xv, v0));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(xv, v1));
        xv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(x1 + i)));
        a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(xv, v0));
        a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(xv, v1));
        xv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(x2 + i)));
        a4 = _mm256_add_epi32(a4, _mm256_madd_epi16(xv, v0));
        a5 = _mm256_add_epi32(a5, _mm256_madd_epi16(xv, v1));
        xv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(x3 + i)));
        a6 = _mm256_add_epi32(a6, _mm256_madd_epi16(xv, v0));
        a7 = _mm256_add_epi32(a7, _mm256_madd_epi16(xv, v1));
    }
    k->a0 = a0, k->a1 = a1, k->a2 = a2, k->a3 = a3, k->a4 = a4, k->a5 = a5, k->a6 = a6, k->a7 = a7;
    for (; i < n; i++) {
        k->t0 += x0[i] * u0[i];
        k->t1 += x0[i] * u1[i];
        k->t2 += x1[i] * u0[i];
        k->t3 += x1[i] * u1[i];
        k->t4 += x2[i] * u0[i];
        k->t5 += x2[i] * u1[i];
        k->t6 += x3[i] * u0[i];
        k->t7 += x3[i] * u1[i];
    }
}

/* the block summed into lanes (p0c0, p0c1, p1c0, ..., p3c1) */
__attribute__((target("avx2"), always_inline)) static inline __m256i avx2_reduce4x2(const tc_acc4x2 *k)
{
    const __m256i h01 = _mm256_hadd_epi32(_mm256_hadd_epi32(k->a0, k->a1), _mm256_hadd_epi32(k->a2, k->a3));
    const __m256i h23 = _mm256_hadd_epi32(_mm256_hadd_epi32(k->a4, k->a5), _mm256_hadd_epi32(k->a6, k->a7));
    /* per 128-bit half: (p0c0, p0c1, p1c0, p1c1) partial sums of that half */
    const __m128i s01 = _mm_add_epi32(_mm256_castsi256_si128(h01), _mm256_extracti128_si256(h01, 1));
    const __m128i s23 = _mm_add_epi32(_mm256_castsi256_si128(h23), _mm256_extracti128_si256(h23, 1));
    return _mm256_add_epi32(_mm256_inserti128_si256(_mm256_castsi128_si256(s01), s23, 1),
                            _mm256_setr_epi32(k->t0, k->t1, k->t2, k->t3, k->t4, k->t5, k->t6, k->t7));
}
__attribute__((target("avx2"))) static void conv_deep_avx2(
    const tc_conv_packed_params *p, const int8_t *input, const uint8_t *packed,
    const int8_t *codebooks, const uint8_t *codebook_map, const void *bias, const int32_t *mult,
    const int8_t *shift, int32_t oy_begin, int32_t oy_end, int8_t *output, int8_t *scratch)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_w = p->out_w, out_c = p->out_c;
    const int32_t kh = p->k_h, kw = p->k_w, fic = p->filter_in_c;
    const int32_t sh = p->stride_h, sw = p->stride_w, dh = p->dil_h, dwl = p->dil_w;
    const int32_t io = p->input_offset;
    const int32_t out_off = p->output_offset, amin = p->act_min, amax = p->act_max;
    const int32_t flen = kh * kw * fic;
    const int32_t per_group = out_c / (in_c / fic);
    const int contiguous = dwl == 1 && fic == in_c;
    const uint32_t bits = p->bits;
    int32_t *psum = tc_scratch_s32(scratch); /* [2][kh][kw + 1] */
    int16_t *w0 = (int16_t *)(void *)(psum + 2 * kh * (kw + 1));
    int16_t *w1 = w0 + flen;
    int32_t c;

    for (c = 0; c < out_c; c += 2) {
        const int32_t c1 = c + 1 < out_c && (c + 1) / per_group == c / per_group ? c + 1 : c;
        const int32_t q0 = p->requant_per_channel ? c : 0, q1 = p->requant_per_channel ? c1 : 0;
        const int32_t b0 = tc_bias_at(bias, p->bias_bits, c), b1 = tc_bias_at(bias, p->bias_bits, c1);
        const int8_t *in0 = input + (c / per_group) * fic;
        const int32_t m8[8] = {mult[q0], mult[q1], mult[q0], mult[q1], mult[q0], mult[q1], mult[q0], mult[q1]};
        const int8_t s8[8] = {shift[q0], shift[q1], shift[q0], shift[q1],
                              shift[q0], shift[q1], shift[q0], shift[q1]};
        tc_rq8 rq;
        int32_t half, ky, kx, oy;
        tc_rq8_prepare(&rq, m8, s8, 1);
        for (half = 0; half < 2; half++) {
            const int32_t cc = half ? c1 : c;
            const int32_t cbi = codebook_map != NULL ? codebook_map[cc] : cc;
            const int8_t *cb = codebooks != NULL ? codebooks + (int32_t)p->codebook_stride * cbi : NULL;
            int16_t *w = half ? w1 : w0;
            tc_unpack_lut16(packed, (uint32_t)cc * (uint32_t)flen * bits, (uint8_t)bits, cb, flen, w);
            for (ky = 0; ky < kh; ky++) {
                int32_t *ps = psum + (half * kh + ky) * (kw + 1), acc = 0;
                ps[0] = 0;
                for (kx = 0; kx < kw; kx++) {
                    if (io != 0) {
                        acc += tc_sum_s16(w + (ky * kw + kx) * fic, fic);
                    }
                    ps[kx + 1] = acc;
                }
            }
        }
        for (oy = oy_begin; oy < oy_end; oy++) {
            const int32_t iy0 = oy * sh - p->pad_top;
            int32_t ky_lo, ky_hi, ox;
            int8_t *orow = output + (oy - oy_begin) * out_w * out_c;
            tc_tap_range(iy0, dh, in_h, kh, &ky_lo, &ky_hi);
            for (ox = 0; ox < out_w; ox++) {
                const int32_t ix0 = ox * sw - p->pad_left;
                int32_t kx_lo, kx_hi, s0 = 0, s1 = 0, ws0 = 0, ws1 = 0;
                __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
                if (ox + 4 <= out_w && ky_lo < ky_hi) { /* a 4x2 block when all four share the taps */
                    int32_t lo3, hi3;
                    tc_tap_range(ix0, dwl, in_w, kw, &kx_lo, &kx_hi);
                    tc_tap_range(ix0 + 3 * sw, dwl, in_w, kw, &lo3, &hi3);
                    if (kx_lo == lo3 && kx_hi == hi3 && kx_lo < kx_hi) {
                        /* the taps are monotone in ox: the first and the last agreeing suffices */
                        tc_acc4x2 k;
                        int32_t j;
                        int8_t o8[8];
                        k.a0 = k.a1 = k.a2 = k.a3 = k.a4 = k.a5 = k.a6 = k.a7 = _mm256_setzero_si256();
                        k.t0 = k.t1 = k.t2 = k.t3 = k.t4 = k.t5 = k.t6 = k.t7 = 0;
                        for (ky = ky_lo; ky < ky_hi; ky++) {
                            const int8_t *xrow = in0 + ((iy0 + ky * dh) * in_w + ix0) * in_c;
                            const int32_t t0 = ky * kw * fic, xs = sw * in_c;
                            const int32_t *ps = psum + ky * (kw + 1);
                            int32_t segs = contiguous ? 1 : kx_hi - kx_lo, sg;
                            ws0 += ps[kx_hi] - ps[kx_lo];
                            ws1 += ps[kh * (kw + 1) + kx_hi] - ps[kh * (kw + 1) + kx_lo];
                            for (sg = 0; sg < segs; sg++) {
                                const int32_t kx = kx_lo + sg;
                                const int8_t *x = contiguous ? xrow + kx_lo * in_c : xrow + kx * dwl * in_c;
                                avx2_dot4x2(x, x + xs, x + 2 * xs, x + 3 * xs, w0 + t0 + kx * fic,
                                            w1 + t0 + kx * fic, contiguous ? (kx_hi - kx_lo) * fic : fic,
                                            &k);
                            }
                        }
                        {
                            const __m256i add = _mm256_setr_epi32(
                                b0 + io * ws0, b1 + io * ws1, b0 + io * ws0, b1 + io * ws1,
                                b0 + io * ws0, b1 + io * ws1, b0 + io * ws0, b1 + io * ws1);
                            tc_rq8_store8(tc_rq8_apply(&rq, _mm256_add_epi32(avx2_reduce4x2(&k), add),
                                                       out_off, amin, amax),
                                          o8);
                        }
                        for (j = 0; j < 4; j++) {
                            orow[(ox + j) * out_c + c] = o8[2 * j];
                            if (c1 != c) {
                                orow[(ox + j) * out_c + c1] = o8[2 * j + 1];
                            }
                        }
                        ox += 3;
                        continue;
                    }
                }
                tc_tap_range(ix0, dwl, in_w, kw, &kx_lo, &kx_hi);
                for (ky = ky_lo; ky < ky_hi && kx_lo < kx_hi; ky++) {
                    const int8_t *xrow = in0 + ((iy0 + ky * dh) * in_w + ix0) * in_c;
                    const int32_t t0 = ky * kw * fic;
                    const int32_t *ps = psum + ky * (kw + 1);
                    int32_t segs = contiguous ? 1 : kx_hi - kx_lo, sg;
                    ws0 += ps[kx_hi] - ps[kx_lo];
                    ws1 += ps[kh * (kw + 1) + kx_hi] - ps[kh * (kw + 1) + kx_lo];
                    for (sg = 0; sg < segs; sg++) {
                        const int32_t kx = kx_lo + sg;
                        const int8_t *x = contiguous ? xrow + kx_lo * in_c : xrow + kx * dwl * in_c;
                        const int16_t *u0 = w0 + t0 + kx * fic, *u1 = w1 + t0 + kx * fic;
                        const int32_t n = contiguous ? (kx_hi - kx_lo) * fic : fic;
                        int32_t i = 0;
                        for (; i + 16 <= n; i += 16) {
                            const __m256i xv =
                                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(x + i)));
                            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(
                                                          xv, _mm256_loadu_si256((const __m256i *)(const void *)(u0 + i))));
                            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(
                                                          xv, _mm256_loadu_si256((const __m256i *)(const void *)(u1 + i))));
                        }
                        for (; i < n; i++) {
                            s0 += x[i] * u0[i];
                            s1 += x[i] * u1[i];
                        }
                    }
                }
                { /* horizontal sums of both channels at once */
                    const __m256i h = _mm256_hadd_epi32(a0, a1); /* a0 pairs, a1 pairs per lane */
                    const __m128i q = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
                    s0 += _mm_cvtsi128_si32(q) + _mm_extract_epi32(q, 1);
                    s1 += _mm_extract_epi32(q, 2) + _mm_extract_epi32(q, 3);
                }
                orow[ox * out_c + c] =
                    tc_requantize(s0 + b0 + io * ws0, mult[q0], shift[q0], out_off, amin, amax);
                if (c1 != c) {
                    orow[ox * out_c + c1] =
                        tc_requantize(s1 + b1 + io * ws1, mult[q1], shift[q1], out_off, amin, amax);
                }
            }
        }
        if (c1 == c) {
            c--; /* the next pair starts at c + 1 (group boundary or the last channel) */
        }
    }
}
#endif

void tc_conv2d_packed(const tc_conv_packed_params *p, const int8_t *input,
                      const uint8_t *packed, const int8_t *codebooks,
                      const uint8_t *codebook_map, const void *bias,
                      const int32_t *mult, const int8_t *shift,
                      int32_t oy_begin, int32_t oy_end, int8_t *output, int8_t *scratch)
{
    if (tc_conv2d_packed_decode(p, packed, codebooks, codebook_map, scratch)) { /* shallow */
        tc_conv2d_packed_rows(p, input, bias, mult, shift, oy_begin, oy_end, output, scratch);
        return;
    }
#if defined(TC_ARCH_ARM_DSP) || defined(TC_ARCH_ARMV6M)
    /* pairs of output channels must read the same input channels (one group) */
    if (arm_conv_applies(p) && (p->filter_in_c == p->in_c ||
                                ((p->out_c / (p->in_c / p->filter_in_c)) & 1) == 0)) {
        conv_deep_arm(p, input, packed, codebooks, codebook_map, bias, mult, shift, oy_begin,
                      oy_end, output, scratch);
        return;
    }
#endif
#if defined(TC_HOST_X86_SIMD)
    if (__builtin_cpu_supports("avx2")) {
        conv_deep_avx2(p, input, packed, codebooks, codebook_map, bias, mult, shift, oy_begin,
                       oy_end, output, scratch);
        return;
    }
#endif
    conv_deep_portable(p, input, packed, codebooks, codebook_map, bias, mult, shift, oy_begin,
                       oy_end, output, scratch);
}
