/*
 * tc_fully_connected_packed: FULLY_CONNECTED on packed cluster indices.
 *
 * Per output row: decode the row in chunks of TC_FC_CHUNK weights into an int16 stack
 * buffer (fast paths per width, and for 4-bit rows a byte -> int16 weight-pair table so one
 * byte load yields two weights), then an int16 x int8 dot product with the input. The input offset is folded
 * out of the inner loop: sum(w*(x+io)) = sum(w*x) + io*sum(w), sum(w) accumulated per
 * chunk; the generated code passes input_offset 0 and folds io*sum(w) into the bias at
 * compile time (ops/fully_connected.py), which skips that sum. Batches > 1 decode each row once per batch (no scratch needed).
 * Semantics: TFLite Micro reference_integer_ops FullyConnected / FullyConnectedPerChannel.
 */
#include <string.h>

#include "tc_packed_internal.h"

#define TC_FC_CHUNK 128

int32_t tc_fully_connected_packed_get_buffer_size(const tc_fc_packed_params *p)
{
    (void)p;
    return 0;
}

static void fc_build_pairs(int16_t pairs[256][2], const int8_t *cb, int32_t k)
{
    int16_t c16[16];
    int32_t hi, lo;
    for (lo = 0; lo < 16; lo++) {
        c16[lo] = lo < k ? cb[lo] : 0;
    }
    for (hi = 0; hi < 16; hi++) {
        for (lo = 0; lo < 16; lo++) {
            pairs[hi * 16 + lo][0] = c16[lo];
            pairs[hi * 16 + lo][1] = c16[hi];
        }
    }
}

static void fc_decode_pairs(const uint8_t *restrict p, const int16_t pairs[256][2], int32_t n,
                            int16_t *restrict out)
{
    const int32_t full = n >> 1;
    int32_t i;
    for (i = 0; i < full; i++) {
        memcpy(out + 2 * i, pairs[p[i]], sizeof pairs[0]);
    }
    if (n & 1) {
        out[n - 1] = pairs[p[full]][0];
    }
}

void tc_fully_connected_packed(const tc_fc_packed_params *p, const int8_t *input,
                               const uint8_t *packed, const int8_t *codebooks,
                               const uint8_t *codebook_map, const int32_t *bias,
                               const int32_t *mult, const int8_t *shift, int8_t *output)
{
    const int32_t in = p->in_features;
    const int32_t out_f = p->out_features;
    const uint32_t bits = p->bits;
    const int32_t io = p->input_offset;
    const int32_t fo = p->filter_offset;
    /* 4-bit rows all start on a byte boundary when in_features is even; the pair table is
     * built once per call for a per-tensor codebook. (x86 hosts: the SSSE3 decoder in
     * tc_unpack_lut is faster still.) */
#ifdef TC_HOST_X86_SIMD
    const int use_pairs = 0;
#else
    const int use_pairs = bits == 4 && (in & 1) == 0 && p->codebook_stride == 0;
#endif
    int16_t buf[TC_FC_CHUNK];
    int16_t pairs[256][2];
    const int8_t *pairs_cb = NULL;
    int32_t b, c;

    for (b = 0; b < p->batches; b++) {
        const int8_t *x = input + (int32_t)b * in;
        int8_t *y = output + (int32_t)b * out_f;
        int64_t xsum = 0;
        if (fo != 0) {
            int32_t i;
            for (i = 0; i < in; i++) {
                xsum += x[i];
            }
        }
        for (c = 0; c < out_f; c++) {
            const int32_t cbi = codebook_map != NULL ? codebook_map[c] : c;
            const int8_t *cb = codebooks + (int32_t)p->codebook_stride * cbi;
            const uint32_t row_bit = (uint32_t)c * (uint32_t)in * bits;
            const int32_t q = p->requant_per_channel ? c : 0;
            int32_t acc = 0, ws = 0, i;
            int64_t total;
            if (use_pairs && cb != pairs_cb) {
                fc_build_pairs(pairs, cb, p->codebook_size);
                pairs_cb = cb;
            }
            for (i = 0; i < in; i += TC_FC_CHUNK) {
                const int32_t n = TC_MIN(TC_FC_CHUNK, in - i);
                if (use_pairs) {
                    fc_decode_pairs(packed + (row_bit >> 3) + (i >> 1),
                                    (const int16_t(*)[2])pairs, n, buf);
                } else {
                    tc_unpack_lut16(packed, row_bit + (uint32_t)i * bits, (uint8_t)bits, cb, n, buf);
                }
                acc += tc_dot_s16_s8(buf, x + i, n);
                if (io != 0) {
                    ws += tc_sum_s16(buf, n);
                }
            }
            /* sum((w+fo)*(x+io)) = sum(w*x) + io*sum(w) + fo*sum(x+io); wraps like int32 */
            total = (int64_t)acc + (int64_t)io * ws;
            if (fo != 0) {
                total += (int64_t)fo * (xsum + (int64_t)in * io);
            }
            if (bias != NULL) {
                total += bias[c];
            }
            y[c] = tc_requantize((int32_t)(uint32_t)(uint64_t)total, mult[q], shift[q],
                                 p->output_offset, p->act_min, p->act_max);
        }
    }
}
