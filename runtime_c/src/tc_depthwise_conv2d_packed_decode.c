/*
 * tc_depthwise_conv2d_packed_decode: the whole depthwise filter [k_h][k_w][out_c] from packed
 * indices into scratch (per-channel codebooks: raw indices first, then one lookup per weight
 * with its channel's codebook), in the layout the selected rows path reads (tc_dw_layout()):
 *  - portable: int16 [tap][out_c]; for 8-channel stride-1 layers also the filter duplicated
 *    to 16 lanes (see tc_dw_pairs());
 *  - ARMv7E-M DSP: int16 [tap][out_c] with each group of four channels in SXTB16 lane order
 *    (c0, c2), (c1, c3), matching the input word (x0, x1, x2, x3) -> (x0, x2), (x1, x3);
 *  - ARMv6-M: the int32 sum of each channel's weights, then the filter as int8 [tap][out_c].
 */
#include "tc_packed_internal.h"

void tc_depthwise_conv2d_packed_decode(const tc_dw_packed_params *p, const uint8_t *packed,
                                       const int8_t *codebooks, const uint8_t *codebook_map,
                                       int8_t *scratch)
{
    const int32_t oc = p->out_c;
    const int32_t ntaps = (int32_t)p->k_h * p->k_w;
    const int32_t total = ntaps * oc;
    const int layout = tc_dw_layout(p);
    int32_t *base = tc_scratch_s32(scratch);
    int16_t *filt = (int16_t *)(void *)base;
    int8_t *w8 = (int8_t *)(void *)(base + oc); /* ARMv6-M layout: after the channel sums */
    int8_t tmp[TC_UNPACK_CHUNK];
    int32_t i, t, c = 0;

    for (i = 0; i < total; i += TC_UNPACK_CHUNK) {
        const int32_t n = TC_MIN(TC_UNPACK_CHUNK, total - i);
        if (p->codebook_stride == 0) {
            tc_unpack_lut(packed, (uint32_t)i * p->bits, p->bits, codebooks, n, tmp);
        } else { /* per-channel codebooks: raw indices, then each through its channel's */
            const int32_t stride = p->codebook_stride;
            int32_t cc = c;
            tc_unpack_lut(packed, (uint32_t)i * p->bits, p->bits, NULL, n, tmp);
            for (t = 0; t < n; t++) {
                const int32_t cbi = codebook_map != NULL ? codebook_map[cc] : cc;
                tmp[t] = codebooks[stride * cbi + (uint8_t)tmp[t]];
                cc = cc + 1 == oc ? 0 : cc + 1;
            }
        }
        if (layout == TC_DW_V6M) {
            for (t = 0; t < n; t++) {
                w8[i + t] = tmp[t];
            }
        } else {
            for (t = 0; t < n; t++) {
                filt[i + t] = tmp[t];
            }
        }
        c = (c + n) % oc;
    }

    if (layout == TC_DW_V6M) {
        for (c = 0; c < oc; c++) {
            int32_t s = 0;
            for (t = 0; t < ntaps; t++) {
                s += w8[t * oc + c];
            }
            base[c] = s;
        }
    } else if (layout == TC_DW_DSP) { /* groups of four channels into SXTB16 lane order */
        const int32_t groups = oc >> 2;
        for (t = 0; t < ntaps; t++) {
            int16_t *f = filt + t * oc;
            int32_t g;
            for (g = 0; g < groups; g++) {
                const int16_t w1 = f[4 * g + 1];
                f[4 * g + 1] = f[4 * g + 2];
                f[4 * g + 2] = w1;
            }
        }
    } else if (tc_dw_pairs(p)) {
        int16_t *f2 = filt + total; /* [ntaps][16] */
        int32_t j;
        for (t = 0; t < ntaps; t++) {
            for (j = 0; j < 16; j++) {
                f2[t * 16 + j] = filt[t * 8 + (j & 7)];
            }
        }
    }
}
