/*
 * tc_depthwise_conv2d_packed: DEPTHWISE_CONV_2D (batch 1) on packed cluster indices.
 *
 * Decode once, reuse across positions: the whole filter [k_h][k_w][out_c] is decoded into
 * scratch at the start of the call (per-channel codebooks: raw indices first, then one
 * lookup per weight with its channel's codebook). Each output position accumulates all
 * channels at once over the valid taps (acc[c] += w[c] * (x[c] + io), a SIMD-friendly loop
 * over channels for depth_multiplier 1), then requantizes per channel.
 * Semantics: TFLite Micro reference_integer_ops::DepthwiseConvPerChannel.
 */
#include "tc_packed_internal.h"

int32_t tc_depthwise_conv2d_packed_get_buffer_size(const tc_dw_packed_params *p)
{
    return 3 + 4 * (int32_t)p->out_c + (int32_t)p->k_h * p->k_w * p->out_c;
}

void tc_depthwise_conv2d_packed(const tc_dw_packed_params *p, const int8_t *input,
                                const uint8_t *packed, const int8_t *codebooks,
                                const uint8_t *codebook_map, const int32_t *bias,
                                const int32_t *mult, const int8_t *shift,
                                int32_t oy_begin, int32_t oy_end, int8_t *output,
                                int8_t *scratch)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_w = p->out_w, oc = p->out_c;
    const int32_t kh = p->k_h, kw = p->k_w, dm = p->depth_multiplier;
    const int32_t sh = p->stride_h, sw = p->stride_w, dh = p->dil_h, dwl = p->dil_w;
    const int32_t io = p->input_offset;
    const int32_t ntaps = kh * kw;
    int32_t *acc = tc_scratch_s32(scratch);
    int8_t *filt = (int8_t *)(acc + oc);
    int32_t oy, c;

    if (p->codebook_stride == 0) {
        tc_unpack_lut(packed, 0, p->bits, codebooks, ntaps * oc, filt);
    } else {
        int32_t t;
        tc_unpack_lut(packed, 0, p->bits, NULL, ntaps * oc, filt);
        for (c = 0; c < oc; c++) {
            const int32_t cbi = codebook_map != NULL ? codebook_map[c] : c;
            const int8_t *cb = codebooks + (int32_t)p->codebook_stride * cbi;
            for (t = 0; t < ntaps; t++) {
                filt[t * oc + c] = cb[(uint8_t)filt[t * oc + c]];
            }
        }
    }

    for (oy = oy_begin; oy < oy_end; oy++) {
        const int32_t iy0 = oy * sh - p->pad_top;
        int32_t ky_lo, ky_hi, ox;
        int8_t *orow = output + (oy - oy_begin) * out_w * oc;
        tc_tap_range(iy0, dh, in_h, kh, &ky_lo, &ky_hi);
        for (ox = 0; ox < out_w; ox++) {
            const int32_t ix0 = ox * sw - p->pad_left;
            int32_t kx_lo, kx_hi, ky, kx;
            int8_t *o = orow + ox * oc;
            tc_tap_range(ix0, dwl, in_w, kw, &kx_lo, &kx_hi);
            if (bias != NULL) {
                for (c = 0; c < oc; c++) {
                    acc[c] = bias[c];
                }
            } else {
                for (c = 0; c < oc; c++) {
                    acc[c] = 0;
                }
            }
            for (ky = ky_lo; ky < ky_hi; ky++) {
                const int8_t *xrow = input + (int32_t)(iy0 + ky * dh) * in_w * in_c;
                for (kx = kx_lo; kx < kx_hi; kx++) {
                    const int8_t *x = xrow + (ix0 + kx * dwl) * in_c;
                    const int8_t *f = filt + (ky * kw + kx) * oc;
                    if (dm == 1) {
                        tc_mac_s8_offset(acc, f, x, io, oc);
                    } else {
                        int32_t ic, mm;
                        for (ic = 0; ic < in_c; ic++) {
                            const int32_t xv = (int32_t)x[ic] + io;
                            for (mm = 0; mm < dm; mm++) {
                                acc[ic * dm + mm] += (int32_t)f[ic * dm + mm] * xv;
                            }
                        }
                    }
                }
            }
            if (p->requant_per_channel) {
                for (c = 0; c < oc; c++) {
                    o[c] = tc_requantize(acc[c], mult[c], shift[c], p->output_offset,
                                         p->act_min, p->act_max);
                }
            } else {
                for (c = 0; c < oc; c++) {
                    o[c] = tc_requantize(acc[c], mult[0], shift[0], p->output_offset,
                                         p->act_min, p->act_max);
                }
            }
        }
    }
}
