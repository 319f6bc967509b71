/*
 * tc_depthwise_conv2d_packed_rows: output rows [oy_begin, oy_end) of a depthwise conv from the
 * filter tc_depthwise_conv2d_packed_decode() left in scratch. Each output position runs over
 * blocks of 16 channels (then 8, then the rest), accumulating w[c] * (x[c] + io) over the valid
 * taps in register lanes (a SIMD-friendly fixed-width loop for depth_multiplier 1), then
 * requantizes the block; 8-channel stride-1 layers take two positions per 16-lane block.
 */
#include "tc_packed_internal.h"

#define TC_DW_BLOCK 16

void tc_depthwise_conv2d_packed_rows(const tc_dw_packed_params *p, const int8_t *input,
                                     const int32_t *bias, const int32_t *mult,
                                     const int8_t *shift, int32_t oy_begin, int32_t oy_end,
                                     int8_t *output, int8_t *scratch)
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
