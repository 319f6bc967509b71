/*
 * tc_conv2d_packed_decode: for shallow conv layers (tc_conv_is_shallow()), decode every filter
 * once into scratch, transposed for channel-vectorized accumulation ([kh*kw*in_c][out_c] int16,
 * or input-channel pairs [kh*kw][in_c/2][out_c][2] on x86 hosts; on Arm cores the int32 weight sum of
 * each channel, then int8 [out_c][kh*kw*in_c]); tc_conv2d_packed_rows() then
 * computes any row range from it. Deep layers decode one filter at a time inside
 * tc_conv2d_packed() instead: this returns 0 for them and does nothing.
 */
#include "tc_packed_internal.h"

int32_t tc_conv2d_packed_decode(const tc_conv_packed_params *p, const uint8_t *packed,
                                const int8_t *codebooks, const uint8_t *codebook_map,
                                int8_t *scratch)
{
    const int32_t in_c = p->in_c, oc = p->out_c;
    const int32_t kh = p->k_h, kw = p->k_w;
    const int32_t flen = kh * kw * in_c;
    const int32_t npairs = (in_c + 1) / 2;
    const int mode = tc_conv_shallow_mode(p);
    const int pairs8 = tc_conv_pairs8(p);
    int16_t *wt = (int16_t *)(void *)tc_scratch_s32(scratch);
    int8_t *wt8 = (int8_t *)(void *)wt;
    int8_t *tmp = mode == 1 ? (int8_t *)(void *)(wt + kh * kw * 2 * npairs * oc) /* one filter */
                            : wt8 + flen * oc;
    int32_t c;

    if (mode == 0) {
        return 0;
    }
#if defined(TC_ARCH_ARM_DSP) || defined(TC_ARCH_ARMV6M)
    { /* Arm (tc_conv_shallow_arm_bytes): flag cleared (the rows call prepares the requantization
       * again), channel sums, then the filters as int8 [oc][flen] */
        int32_t *flag = tc_scratch_s32(scratch);
        int32_t *wsum = flag + 1;
        int8_t *w = (int8_t *)(void *)(wsum + 3 * oc);
        *flag = 0;
        for (c = 0; c < oc; c++) {
            const int32_t cbi = codebook_map != NULL ? codebook_map[c] : c;
            const int8_t *cb = codebooks != NULL ? codebooks + (int32_t)p->codebook_stride * cbi : NULL;
            int32_t t, s = 0;
            tc_unpack_lut(packed, (uint32_t)c * (uint32_t)flen * p->bits, p->bits, cb, flen, w + c * flen);
            for (t = 0; t < flen; t++) {
                s += w[c * flen + t];
            }
            wsum[c] = s;
        }
        (void)wt8;
        (void)tmp;
        (void)npairs;
        (void)pairs8;
        return 1;
    }
#endif
    for (c = 0; c < oc; c++) {
        const int32_t cbi = codebook_map != NULL ? codebook_map[c] : c;
        const int8_t *cb = codebooks != NULL ? codebooks + (int32_t)p->codebook_stride * cbi : NULL;
        int32_t t;
        tc_unpack_lut(packed, (uint32_t)c * (uint32_t)flen * p->bits, p->bits, cb, flen, tmp);
        if (mode == 2 && pairs8) { /* int8 [kh*kw][in_c / 2][oc][2] (x86 AVX2, even in_c) */
            for (t = 0; t < flen; t++) {
                const int32_t tap = t / in_c, ci = t - tap * in_c;
                wt8[((tap * npairs + ci / 2) * oc + c) * 2 + (ci & 1)] = tmp[t];
            }
        } else if (mode == 2) { /* int8 [kh*kw*in_c][oc] */
            for (t = 0; t < flen; t++) {
                wt8[t * oc + c] = tmp[t];
            }
        } else if (TC_CONV_PAIRS) { /* [kh*kw][in_c / 2][oc][2], odd in_c padded with zero */
            int32_t tap;
            for (tap = 0; tap < kh * kw; tap++) {
                int32_t ci;
                for (ci = 0; ci < 2 * npairs; ci++) {
                    wt[((tap * npairs + ci / 2) * oc + c) * 2 + (ci & 1)] =
                        ci < in_c ? tmp[tap * in_c + ci] : 0;
                }
            }
        } else {
            for (t = 0; t < flen; t++) {
                wt[t * oc + c] = tmp[t];
            }
        }
    }
    return 1;
}
