/*
 * tc_depthwise_conv2d_packed_decode: the whole depthwise filter [k_h][k_w][out_c] from packed
 * indices into scratch, as int16 (per-channel codebooks: raw indices first, then one lookup
 * per weight with its channel's codebook); for 8-channel stride-1 layers also the filter
 * duplicated to 16 lanes (see tc_dw_pairs()).
 */
#include "tc_packed_internal.h"

void tc_depthwise_conv2d_packed_decode(const tc_dw_packed_params *p, const uint8_t *packed,
                                       const int8_t *codebooks, const uint8_t *codebook_map,
                                       int8_t *scratch)
{
    const int32_t oc = p->out_c;
    const int32_t ntaps = (int32_t)p->k_h * p->k_w;
    const int32_t total = ntaps * oc;
    int16_t *filt = (int16_t *)(void *)tc_scratch_s32(scratch);
    int32_t c;

    if (p->codebook_stride == 0) {
        tc_unpack_lut16(packed, 0, p->bits, codebooks, total, filt);
    } else {
        /* per-channel codebooks: raw indices, then each weight through its channel's codebook */
        int8_t tmp[TC_UNPACK_CHUNK];
        int32_t i, t;
        c = 0;
        for (i = 0; i < total; i += TC_UNPACK_CHUNK) {
            const int32_t n = TC_MIN(TC_UNPACK_CHUNK, total - i);
            tc_unpack_lut(packed, (uint32_t)i * p->bits, p->bits, NULL, n, tmp);
            if (codebook_map == NULL) {
                const int32_t stride = p->codebook_stride;
                for (t = 0; t < n; t++) {
                    filt[i + t] = codebooks[stride * c + (uint8_t)tmp[t]];
                    c = c + 1 == oc ? 0 : c + 1;
                }
            } else {
                for (t = 0; t < n; t++) {
                    filt[i + t] = codebooks[(int32_t)p->codebook_stride * codebook_map[c] + (uint8_t)tmp[t]];
                    c = c + 1 == oc ? 0 : c + 1;
                }
            }
        }
    }

    if (tc_dw_pairs(p)) {
        int16_t *f2 = filt + total; /* [ntaps][16] */
        int32_t t, j;
        for (t = 0; t < ntaps; t++) {
            for (j = 0; j < 16; j++) {
                f2[t * 16 + j] = filt[t * 8 + (j & 7)];
            }
        }
    }
}
