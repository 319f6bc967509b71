/*
 * tc_depthwise_conv2d_packed: DEPTHWISE_CONV_2D (batch 1) on packed cluster indices.
 *
 * Decode once, reuse across positions: the whole filter [k_h][k_w][out_c] is decoded into
 * scratch (as int16) by tc_depthwise_conv2d_packed_decode(), then
 * tc_depthwise_conv2d_packed_rows() computes any row range from it; this function does both.
 * Generated row-by-row (in-place) code decodes once before the first row and reuses the
 * scratch for the following rows.
 * Semantics: TFLite Micro reference_integer_ops::DepthwiseConvPerChannel.
 */
#include "tc_packed_internal.h"

int32_t tc_depthwise_conv2d_packed_get_buffer_size(const tc_dw_packed_params *p)
{
    /* alignment slack, the decoded filter, the prepared requantization: flag + one per channel */
    return 3 + tc_dw_filter_bytes(p) + 4 + (int32_t)sizeof(tc_rq) * p->out_c;
}

void tc_depthwise_conv2d_packed(const tc_dw_packed_params *p, const int8_t *input,
                                const uint8_t *packed, const int8_t *codebooks,
                                const uint8_t *codebook_map, const void *bias,
                                const int32_t *mult, const int8_t *shift,
                                int32_t oy_begin, int32_t oy_end, int8_t *output,
                                int8_t *scratch)
{
    tc_depthwise_conv2d_packed_decode(p, packed, codebooks, codebook_map, scratch);
    tc_depthwise_conv2d_packed_rows(p, input, bias, mult, shift, oy_begin, oy_end, output, scratch);
}
