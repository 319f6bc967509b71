/*
 * tc_depthwise_conv2d_packed_decode: the whole depthwise filter [k_h][k_w][out_c] from packed
 * indices into scratch (per-channel codebooks: raw indices first, then one lookup per weight
 * with its channel's codebook), in the layout the selected rows path reads (tc_dw_layout()):
 *  - portable: int16 [tap][out_c]; for 8-channel stride-1 layers also the filter duplicated
 *    to 16 lanes (see tc_dw_pairs());
 *  - ARMv7E-M DSP: int16, per group of four channels its taps contiguous, [group][tap][4] in
 *    SXTB16 lane order (c0, c2), (c1, c3) (matching the input word (x0, x1, x2, x3) ->
 *    (x0, x2), (x1, x3)), then the out_c % 4 tail channels as [tap][tail];
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
        } else if (layout == TC_DW_DSP) { /* element (tap, c) to its group block or the tail */
            static const uint8_t lane[4] = {0, 2, 1, 3};
            const int32_t c4 = oc & ~3, tail = oc - c4;
            int32_t tap = i / oc, cc = c;
            t = 0;
            while (t < n) {
                if ((cc & 3) == 0 && cc + 4 <= c4 && t + 4 <= n) { /* a whole group of four */
                    int16_t *d = filt + (cc >> 2) * 4 * ntaps + tap * 4;
                    d[0] = tmp[t];
                    d[2] = tmp[t + 1];
                    d[1] = tmp[t + 2];
                    d[3] = tmp[t + 3];
                    t += 4;
                    cc += 4;
                } else {
                    filt[cc < c4 ? (cc >> 2) * 4 * ntaps + tap * 4 + lane[cc & 3]
                                 : c4 * ntaps + tap * tail + (cc - c4)] = tmp[t];
                    t++;
                    cc++;
                }
                if (cc == oc) {
                    cc = 0;
                    tap++;
                }
            }
        } else {
            for (t = 0; t < n; t++) {
                filt[i + t] = tmp[t];
            }
        }
        c = (c + n) % oc;
    }

    /* the next rows call prepares the requantization table again (tc_dw_filter_bytes) */
    *(uint32_t *)(void *)((int8_t *)(void *)base + tc_dw_filter_bytes(p)) = 0;
    if (layout == TC_DW_V6M) {
        for (c = 0; c < oc; c++) {
            int32_t s = 0;
            for (t = 0; t < ntaps; t++) {
                s += w8[t * oc + c];
            }
            base[c] = s;
        }
    } else if (layout == TC_DW_PORTABLE && tc_dw_pairs(p)) {
        int16_t *f2 = filt + total; /* [ntaps][16] */
        int32_t j;
        for (t = 0; t < ntaps; t++) {
            for (j = 0; j < 16; j++) {
                f2[t * 16 + j] = filt[t * 8 + (j & 7)];
            }
        }
    }
}
