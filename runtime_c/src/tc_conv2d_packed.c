/*
 * tc_conv2d_packed: CONV_2D (batch 1, optional groups) on packed cluster indices.
 *
 * Decode once, reuse across positions: for each output channel the filter
 * [k_h][k_w][filter_in_c] is decoded into scratch (as int16, see tc_packed_internal.h)
 * together with per-row prefix sums of its weights, then used for every output position of
 * the row range. The input offset is
 * folded out of the dot products: sum over valid taps of w*(x+io) = sum(w*x) + io*sum(w),
 * where sum(w) over the valid taps comes from the prefix sums (so padding needs no branch
 * in the inner loop). With dil_w == 1 and no groups a filter row is one contiguous dot
 * product of (valid k_w) * in_c.
 * Semantics: TFLite Micro reference_integer_ops::ConvPerChannel.
 */
#include "tc_packed_internal.h"

int32_t tc_conv2d_packed_get_buffer_size(const tc_conv_packed_params *p)
{
    const int32_t kh = p->k_h, kw = p->k_w;
    const int mode = tc_conv_shallow_mode(p);
    if (mode == 1) { /* int16, input channels rounded up to pairs (see conv_shallow_sse2) */
        const int32_t pairs = ((int32_t)p->filter_in_c + 1) / 2;
        return 3 + 2 * kh * kw * 2 * pairs * p->out_c + kh * kw * (int32_t)p->filter_in_c;
    }
    if (mode == 2) { /* int8 */
        return 3 + kh * kw * (int32_t)p->filter_in_c * (p->out_c + 1);
    }
    return 3 + 4 * kh * (kw + 1) + 2 * kh * kw * (int32_t)p->filter_in_c;
}

void tc_conv2d_packed(const tc_conv_packed_params *p, const int8_t *input,
                      const uint8_t *packed, const int8_t *codebooks,
                      const uint8_t *codebook_map, const int32_t *bias,
                      const int32_t *mult, const int8_t *shift,
                      int32_t oy_begin, int32_t oy_end, int8_t *output, int8_t *scratch)
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
    int32_t *psum;
    int16_t *filt;
    int32_t c;

    if (tc_conv2d_packed_decode(p, packed, codebooks, codebook_map, scratch)) { /* shallow */
        tc_conv2d_packed_rows(p, input, bias, mult, shift, oy_begin, oy_end, output, scratch);
        return;
    }
    psum = tc_scratch_s32(scratch);
    filt = (int16_t *)(void *)(psum + kh * (kw + 1));
    for (c = 0; c < out_c; c++) {
        const int32_t cbi = codebook_map != NULL ? codebook_map[c] : c;
        const int8_t *cb = codebooks != NULL ? codebooks + (int32_t)p->codebook_stride * cbi : NULL;
        const int32_t q = p->requant_per_channel ? c : 0;
        const int32_t m = mult[q], s = shift[q];
        const int32_t b0 = bias != NULL ? bias[c] : 0;
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
                                acc += tc_dot_s16_s8(frow + kx * fic, xrow + (ix0 + kx * dwl) * in_c, fic);
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
