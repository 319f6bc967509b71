/*
 * tc_conv2d_packed: CONV_2D (batch 1, optional groups) on packed cluster indices.
 *
 * Decode once, reuse across positions: for each output channel the filter
 * [k_h][k_w][filter_in_c] is decoded into scratch together with per-row prefix sums of its
 * weights, then used for every output position of the row range. The input offset is
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
    return 3 + 4 * kh * (kw + 1) + kh * kw * (int32_t)p->filter_in_c;
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
    const uint32_t bits = p->bits;
    int32_t *psum = tc_scratch_s32(scratch);
    int8_t *filt = (int8_t *)(psum + kh * (kw + 1));
    int32_t c;

    for (c = 0; c < out_c; c++) {
        const int32_t cbi = codebook_map != NULL ? codebook_map[c] : c;
        const int8_t *cb = codebooks + (int32_t)p->codebook_stride * cbi;
        const int32_t q = p->requant_per_channel ? c : 0;
        const int32_t m = mult[q], s = shift[q];
        const int32_t b0 = bias != NULL ? bias[c] : 0;
        const int8_t *in_c0 = input + (c / per_group) * fic;
        int8_t *out_c0 = output + c;
        int32_t ky, kx, oy;

        tc_unpack_lut(packed, (uint32_t)c * (uint32_t)flen * bits, (uint8_t)bits, cb, flen, filt);
        for (ky = 0; ky < kh; ky++) {
            int32_t acc = 0;
            int32_t *ps = psum + ky * (kw + 1);
            ps[0] = 0;
            for (kx = 0; kx < kw; kx++) {
                const int8_t *f = filt + (ky * kw + kx) * fic;
                int32_t ci;
                for (ci = 0; ci < fic; ci++) {
                    acc += f[ci];
                }
                ps[kx + 1] = acc;
            }
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
                        const int8_t *frow = filt + ky * kw * fic;
                        const int32_t *ps = psum + ky * (kw + 1);
                        if (contiguous) {
                            acc += tc_dot_s8(frow + kx_lo * fic, xrow + (ix0 + kx_lo) * in_c,
                                             (kx_hi - kx_lo) * fic);
                        } else {
                            for (kx = kx_lo; kx < kx_hi; kx++) {
                                acc += tc_dot_s8(frow + kx * fic, xrow + (ix0 + kx * dwl) * in_c, fic);
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
