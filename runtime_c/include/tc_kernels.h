/*
 * tinycluster runtime: every public kernel, its params struct and documented value ranges.
 *
 * Conventions (all kernels):
 *  - Tensors are int8, NHWC, batch 1 unless stated; pointers are never NULL unless stated.
 *  - Params structs are pointer-free (fixed-width integer fields only), so that the
 *    generated code can keep them as `static const` data whose size is the same on the
 *    host and on 32-bit targets. Data pointers are passed as arguments.
 *  - Offsets follow TFLite: input_offset = -input_zero_point, output_offset = output_zero_point.
 *  - Requantization: tc_requantize() from tc_common.h (mult int32 in [0, 2^31), shift in [-31, 30]).
 *  - Packed weights: indices into a codebook, `bits` bits each (1..8), stored as one
 *    LSB-first bitstream in TFLite's weight layout order (FC [out][in], conv [out][kh][kw][in],
 *    depthwise [1][kh][kw][out]): index i occupies bits [i*bits, (i+1)*bits) of the stream,
 *    bit j of the stream is bit (j % 8) of byte j / 8.
 *  - Caller-owned scratch: a kernel that needs scratch has `*_get_buffer_size()`.
 */
#ifndef TC_KERNELS_H
#define TC_KERNELS_H

#include "tc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ===== Packed-weight kernels (FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D) ===== */
/* (section owned by the packed-kernel work; see docs/architecture.md and docs/kernels.md)
 *
 * Weights arrive as three things:
 *  - packed:    the index bitstream described above (`bits` 1..8 bits per weight);
 *  - codebooks: int8 entries; the codebook of output channel c starts at
 *               codebooks + map(c) * codebook_stride, where map(c) = codebook_map[c] when
 *               codebook_map != NULL and map(c) = c otherwise (identity).
 *               codebook_stride == 0: one codebook for the whole tensor (map unused).
 *               Indices must be < the codebook length (codebook_size for FC). For
 *               bits <= 4 a kernel may read 2^bits entries from the start of any codebook
 *               (SIMD table lookups): pad the codebook array at its end to make them readable.
 *               codebooks == NULL (bits must be 8, codebook_stride 0): no lookup, the stream
 *               holds the int8 weights themselves (what the generator emits at 8 bits, where a
 *               codebook saves nothing).
 *  - requantization: mult[] (int32, [0, 2^31)) and shift[] (int8, [-31, 30]); index c when
 *               requant_per_channel == 1, index 0 for every channel when it is 0.
 *  - bias:      one value per output channel, stored p->bias_bits wide (tc_bias_at() in
 *               tc_common.h): 16 (int16_t[], values in [-32768, 32767]), 24 (3 bytes per value,
 *               little-endian two's complement, [-2^23, 2^23)) or 32 (int32_t[]); NULL: no bias.
 *               The generator picks the narrowest width that holds every bias of the layer
 *               (of 16 and 32 for FULLY_CONNECTED, which reads each bias once per output row);
 *               every kernel accepts all three.
 * Accumulation is int32 exactly as TFLite Micro's reference
 * integer kernels: acc = bias[c] + sum(w * (x + input_offset)), then tc_requantize().
 * Decoding: tc_unpack_lut() (fast paths when the stream position is byte aligned) and
 * tc_unpack_lut_generic() (any width, any bit position). */

/* Decode `count` indices starting at bit `bit_offset` of `packed` (bits 1..8) and write
 * codebook[index] to out[0..count). codebook == NULL: write the raw index (0..255, as
 * uint8 bits in the int8 output). Reads only the bytes that hold those indices.
 * When bit_offset % 8 == 0: byte-wise paths for bits 1, 2, 4, 8, groups of 8 indices for
 * 3, 5, 6, 7 (and SSSE3 table lookups for 2 and 4 bits on x86 hosts). */
void tc_unpack_lut(const uint8_t *packed, uint32_t bit_offset, uint8_t bits,
                   const int8_t *codebook, int32_t count, int8_t *out);
/* Same contract, generic bitstream reader for every width (the reference for the fast paths). */
void tc_unpack_lut_generic(const uint8_t *packed, uint32_t bit_offset, uint8_t bits,
                           const int8_t *codebook, int32_t count, int8_t *out);

/* FULLY_CONNECTED. input [batches][in_features], weights [out_features][in_features],
 * output [batches][out_features]. acc = bias[c] + sum((w + filter_offset) * (x + input_offset)). */
typedef struct {
    uint16_t in_features;     /* 1..65535 */
    uint16_t out_features;    /* 1..65535 */
    uint16_t batches;         /* rows: numel(input) / in_features, 1..65535 */
    uint16_t codebook_stride; /* 0 (per-tensor codebook) or >= codebook_size */
    uint16_t codebook_size;   /* entries per codebook, 1..256 */
    int16_t input_offset;     /* -input_zero_point, [-127, 128] */
    int16_t filter_offset;    /* -filter_zero_point, [-127, 128] (0 for symmetric weights) */
    int8_t output_offset;     /* output_zero_point, [-128, 127] */
    int8_t act_min;           /* activation clamp, act_min <= act_max */
    int8_t act_max;
    uint8_t bits;             /* index width 1..8 */
    uint8_t requant_per_channel; /* 0 or 1 */
    uint8_t tables;           /* pair tables the caller's scratch holds: 2 full, 1 compact, 0 none */
    uint8_t bias_bits;        /* width of the stored biases: 16, 24 or 32 (tc_bias_at) */
} tc_fc_packed_params;

/* Scratch (any alignment), for widths 1..6 and layers of in_features * out_features >=
 * 4 * 2^(2*bits) (otherwise 0), by p->tables (the kernel uses it where the tables pay: per-tensor
 * codebooks; per-channel codebooks with in_features >= 2 * 2^(2*bits), rebuilt per row; shared
 * codebooks with in_features >= 2 * 2^(2*bits), or rows taken codebook by codebook with
 * 2 * codebooks * 2^(2*bits) <= in_features * out_features, rebuilt per codebook; ARMv6-M and
 * portable builds not at 6 bits nor in that last case):
 *  2 (full): a pair table of 4 * 2^(2*bits) bytes and the input row widened to int16 pairs
 *    (2 * ceil4(in_features) bytes), + 3 bytes of alignment slack;
 *  1 (compact): two int8 tables of 2^(2*bits) bytes each (2 * 2^(2*bits) bytes, no slack);
 *  0: none.
 * The scratch is optional: with scratch == NULL (or tables 0) the kernel runs without tables
 * (slower; same output). The generated code grants the largest level the arena has room for at
 * that layer (planner.plan_memory). *_get_buffer_size() gives the bytes of p->tables' level.
 * pair_tables (may be NULL): the pair tables precomputed at compile time (flash), the same
 * table the DSP kernel would build in scratch, one per codebook (codebook g's at
 * pair_tables + g * 2^(2*bits)): word lo | hi << bits = (uint16)cb[lo] | (uint16)cb[hi] << 16
 * (cb[i] = 0 for i >= codebook_size). Only for widths 1..5 and per-tensor or shared codebooks
 * (codebook_stride == 0 or codebook_map != NULL); NULL otherwise. Cortex-M4/M7/M33 then build no
 * table (the scratch, when its level holds the widened input row, keeps serving for that);
 * ARMv6-M, x86 and portable builds ignore it (same output). The generated code passes it
 * only where the arena has no room for the full level, under the model's flash budget for
 * tables (docs/kernels.md, "Flash pair tables").
 * Stack: <= 0.75 KiB on Cortex-M (128-weight decode chunk, 16-row pass state), ~5.5 KiB on
 * x86 hosts (the input row prepared for AVX2, up to 2048 inputs). */
int32_t tc_fully_connected_packed_get_buffer_size(const tc_fc_packed_params *p);
void tc_fully_connected_packed(const tc_fc_packed_params *p, const int8_t *input,
                               const uint8_t *packed, const int8_t *codebooks,
                               const uint8_t *codebook_map, const uint32_t *pair_tables,
                               const void *bias, const int32_t *mult, const int8_t *shift,
                               int8_t *output, int8_t *scratch);

/* CONV_2D, batch 1. input [in_h][in_w][in_c], weights [out_c][k_h][k_w][filter_in_c]
 * (groups = in_c / filter_in_c; output channel c reads input channels
 * (c / (out_c / groups)) * filter_in_c + [0, filter_in_c)), output [out_h][out_w][out_c].
 * Computes output rows [oy_begin, oy_end); `output` points at row oy_begin. Reads only the
 * input rows those output rows need; `output` must not overlap input rows read by this call. */
typedef struct {
    uint16_t in_h, in_w, in_c;  /* 1..65535 */
    uint16_t out_w, out_c;      /* 1..65535 (out_h is the caller's row range) */
    uint16_t k_h, k_w;          /* 1..65535 */
    uint16_t filter_in_c;       /* divides in_c; (in_c / filter_in_c) divides out_c */
    uint16_t codebook_stride;   /* 0 (per-tensor codebook) or >= codebook length */
    int16_t input_offset;       /* -input_zero_point, [-127, 128] */
    uint8_t stride_h, stride_w; /* 1..255 */
    uint8_t dil_h, dil_w;       /* 1..255 */
    uint8_t pad_top, pad_left;  /* 0..255 (TFLite ComputePaddingHeightWidth) */
    int8_t output_offset;       /* output_zero_point */
    int8_t act_min, act_max;
    uint8_t bits;               /* 1..8 */
    uint8_t requant_per_channel;
    uint8_t bias_bits;          /* width of the stored biases: 16, 24 or 32 (tc_bias_at) */
} tc_conv_packed_params;

/* Scratch: one decoded filter as int16 (2*k_h*k_w*filter_in_c bytes) + k_h*(k_w+1) int32
 * partial weight sums, + 3 bytes of alignment slack (any scratch alignment is accepted).
 * Shallow filters (filter_in_c == in_c, and in_c < 8 or in_c < 32 with
 * k_h*k_w*in_c*out_c <= 4096) instead decode all filters once per call, as int16:
 * 3 + 2*k_h*k_w*filter_in_c*out_c + k_h*k_w*filter_in_c bytes. */
int32_t tc_conv2d_packed_get_buffer_size(const tc_conv_packed_params *p);
void tc_conv2d_packed(const tc_conv_packed_params *p, const int8_t *input,
                      const uint8_t *packed, const int8_t *codebooks,
                      const uint8_t *codebook_map, const void *bias,
                      const int32_t *mult, const int8_t *shift,
                      int32_t oy_begin, int32_t oy_end, int8_t *output, int8_t *scratch);
/* Shallow layers in two steps, for row-by-row callers: tc_conv2d_packed_decode() decodes all
 * filters into scratch and returns 1 (for deep layers it returns 0 and does nothing: they
 * decode one filter at a time inside tc_conv2d_packed()); tc_conv2d_packed_rows() then
 * computes row ranges of a shallow layer from that scratch (left untouched in between). */
int32_t tc_conv2d_packed_decode(const tc_conv_packed_params *p, const uint8_t *packed,
                                const int8_t *codebooks, const uint8_t *codebook_map,
                                int8_t *scratch);
void tc_conv2d_packed_rows(const tc_conv_packed_params *p, const int8_t *input,
                           const void *bias, const int32_t *mult, const int8_t *shift,
                           int32_t oy_begin, int32_t oy_end, int8_t *output, int8_t *scratch);

/* DEPTHWISE_CONV_2D, batch 1. input [in_h][in_w][in_c], weights [1][k_h][k_w][out_c],
 * out_c = in_c * depth_multiplier, output channel c reads input channel c / depth_multiplier.
 * Row range, output pointer and overlap rules as tc_conv2d_packed. */
typedef struct {
    uint16_t in_h, in_w, in_c;  /* 1..65535 */
    uint16_t out_w, out_c;      /* 1..65535 */
    uint16_t k_h, k_w;          /* 1..65535 */
    uint16_t depth_multiplier;  /* 1..65535, out_c == in_c * depth_multiplier */
    uint16_t codebook_stride;   /* 0 (per-tensor codebook) or >= codebook length */
    int16_t input_offset;       /* -input_zero_point, [-127, 128] */
    uint8_t stride_h, stride_w; /* 1..255 */
    uint8_t dil_h, dil_w;       /* 1..255 */
    uint8_t pad_top, pad_left;  /* 0..255 */
    int8_t output_offset;
    int8_t act_min, act_max;
    uint8_t bits;               /* 1..8 */
    uint8_t requant_per_channel;
    uint8_t bias_bits;          /* width of the stored biases: 16, 24 or 32 (tc_bias_at) */
} tc_dw_packed_params;

/* Scratch: the whole decoded filter as int16 (2*k_h*k_w*out_c bytes) + 3 bytes of
 * alignment slack; 8-channel layers with multiplier 1 and stride_w 1 add 32*k_h*k_w bytes
 * (the filter duplicated to 16 lanes: two output positions per block). */
int32_t tc_depthwise_conv2d_packed_get_buffer_size(const tc_dw_packed_params *p);
void tc_depthwise_conv2d_packed(const tc_dw_packed_params *p, const int8_t *input,
                                const uint8_t *packed, const int8_t *codebooks,
                                const uint8_t *codebook_map, const void *bias,
                                const int32_t *mult, const int8_t *shift,
                                int32_t oy_begin, int32_t oy_end, int8_t *output,
                                int8_t *scratch);
/* The same in two steps, for row-by-row callers: decode the filter into scratch once, then
 * compute row ranges from it (scratch must be left untouched in between). The one-call form
 * above is decode + rows. */
void tc_depthwise_conv2d_packed_decode(const tc_dw_packed_params *p, const uint8_t *packed,
                                       const int8_t *codebooks, const uint8_t *codebook_map,
                                       int8_t *scratch);
void tc_depthwise_conv2d_packed_rows(const tc_dw_packed_params *p, const int8_t *input,
                                     const void *bias, const int32_t *mult,
                                     const int8_t *shift, int32_t oy_begin, int32_t oy_end,
                                     int8_t *output, int8_t *scratch);

/* ===== Other ops (pooling, elementwise, activations, softmax, shape ops) ===== */
/* (section owned by the other-ops work; see docs/architecture.md)
 *
 * Integer semantics are TensorFlow Lite Micro's reference int8 kernels (the Prepare-time
 * float math is done in tinycluster/ops/<op>.py; these kernels see only integers).
 * Shapes of rank < 4 are extended to 4-D on the left (TFLite's RuntimeShape::ExtendedShape).
 * Every dimension / size field is >= 1 unless stated. "elementwise in place" below means
 * output may equal input (same pointer, same size): element i is written after it is read. */

/* ADD (int8, broadcasting up to 4-D, fused activation), TFLite's AddElementwise:
 *   a = (in1 + input1_offset) << left_shift, b = (in2 + input2_offset) << left_shift,
 *   a' = tc_mul_by_quant_mult(a, input1_multiplier, input1_shift), same for b',
 *   out = clamp(tc_mul_by_quant_mult(a' + b', output_multiplier, output_shift) + output_offset).
 * Broadcast geometry (ADD and MUL): output index (i0,i1,i2,i3) over d0..d3 reads
 * in1[i0*a_s0 + i1*a_s1 + i2*a_s2 + i3*a_s3], where a_sK = 0 when bit K of a_bcast is set
 * (input 1 has size 1 along dim K, broadcast to dK) and otherwise the product of input 1's
 * dims after K (dJ, or 1 where bit J is set); the same for in2 with b_bcast.
 * a_bcast == b_bcast == 0: both inputs have the output's shape (flat loop of d0*d1*d2*d3 elements).
 * Elementwise in place (output == in1) when in1 has the output's shape. */
typedef struct {
    int32_t d0, d1, d2, d3;         /* output dims, 1..2^31-1, product < 2^31 */
    int32_t input1_multiplier;      /* [0, 2^31) */
    int32_t input2_multiplier;      /* [0, 2^31) */
    int32_t output_multiplier;      /* [0, 2^31) */
    int16_t input1_offset;          /* -zero_point, [-127, 128] */
    int16_t input2_offset;          /* -zero_point, [-127, 128] */
    int8_t output_offset;           /* zero_point, [-128, 127] */
    int8_t left_shift;              /* 20 for int8 */
    int8_t input1_shift;            /* [-31, 0] */
    int8_t input2_shift;            /* [-31, 0] */
    int8_t output_shift;            /* [-31, 0] */
    int8_t act_min, act_max;        /* [-128, 127], act_min <= act_max */
    uint8_t a_bcast, b_bcast;       /* bit K: the input is broadcast along dim K (0..15) */
} tc_add_params;
void tc_add_s8(const tc_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);

/* MUL (int8, broadcasting up to 4-D as ADD, fused activation), TFLite's MulElementwise:
 *   out = clamp(tc_mul_by_quant_mult((in1 + input1_offset) * (in2 + input2_offset),
 *                                    output_multiplier, output_shift) + output_offset).
 * Elementwise in place (output == in1) when in1 has the output's shape. */
typedef struct {
    int32_t d0, d1, d2, d3;         /* output dims */
    int32_t output_multiplier;      /* [0, 2^31) */
    int16_t input1_offset;          /* -zero_point, [-127, 128] */
    int16_t input2_offset;          /* -zero_point, [-127, 128] */
    int8_t output_offset;           /* zero_point, [-128, 127] */
    int8_t output_shift;            /* [-31, 30] */
    int8_t act_min, act_max;        /* [-128, 127], act_min <= act_max */
    uint8_t a_bcast, b_bcast;       /* as tc_add_params */
} tc_mul_params;
void tc_mul_s8(const tc_mul_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);

/* AVERAGE_POOL_2D / MAX_POOL_2D, NHWC, int8, no requantization (as TFLite Micro).
 * Window of output (oy, ox) starts at input row oy*stride_h - pad_h, col ox*stride_w - pad_w
 * and is clipped to the input. Average: sum / count rounded half away from zero
 * ((sum +- count/2) / count, C division); max: largest int8. Then clamp [act_min, act_max]. */
typedef struct {
    int16_t batches;                /* 1..32767 */
    int16_t in_h, in_w, channels;   /* 1..32767, in_h * in_w * channels < 2^31 */
    int16_t out_h, out_w;           /* 1..32767 */
    int16_t filter_h, filter_w;     /* 1..32767, filter_h * filter_w < 2^23 */
    int16_t stride_h, stride_w;     /* 1..32767 */
    int16_t pad_h, pad_w;           /* 0..filter-1 (every window holds >= 1 input) */
    int16_t act_min, act_max;       /* [-128, 127] */
} tc_pool_params;
void tc_avgpool_s8(const tc_pool_params *p, const int8_t *in, int8_t *out);
void tc_maxpool_s8(const tc_pool_params *p, const int8_t *in, int8_t *out);

/* SOFTMAX over the last dimension, int8 -> int8 (output scale 1/256, zero point -128),
 * TFLite Micro's reference Softmax (gemmlowp fixed point: exp in Q5.26 input, Q12 sum,
 * reciprocal, RoundingDivideByPOT). Elementwise in place. */
typedef struct {
    int32_t outer;                  /* rows, 1..2^31-1 */
    int32_t depth;                  /* row length, 1..2^20 */
    int32_t input_multiplier;       /* [2^30, 2^31) */
    int32_t input_left_shift;       /* [0, 31] */
    int32_t diff_min;               /* <= 0 */
} tc_softmax_params;
void tc_softmax_s8(const tc_softmax_params *p, const int8_t *in, int8_t *out);

/* LOGISTIC, int8 -> int8 (output scale 1/256, zero point -128), TFLite's
 * reference_integer_ops::Logistic (gemmlowp logistic on Q4.27). Elementwise in place. */
typedef struct {
    int32_t size;                   /* elements */
    int32_t input_zero_point;       /* [-128, 127] */
    int32_t input_range_radius;     /* >= 0; |x - zp| >= radius saturates */
    int32_t input_multiplier;       /* [2^30, 2^31) */
    int32_t input_left_shift;       /* [-31, 30] (any value when radius == 0) */
} tc_logistic_params;
void tc_logistic_s8(const tc_logistic_params *p, const int8_t *in, int8_t *out);

/* TANH, int8 -> int8 (output scale 1/128, zero point 0), TFLite's
 * reference_integer_ops::Tanh (gemmlowp tanh on Q4.27). Fields as tc_logistic_params.
 * Elementwise in place. */
typedef struct {
    int32_t size;
    int32_t input_zero_point;
    int32_t input_range_radius;
    int32_t input_multiplier;
    int32_t input_left_shift;
} tc_tanh_params;
void tc_tanh_s8(const tc_tanh_params *p, const int8_t *in, int8_t *out);

/* Elementwise requantize with clamp: RELU and int8 -> int8 QUANTIZE.
 *   out = tc_requantize(in + input_offset, multiplier, shift, output_offset, act_min, act_max).
 * Elementwise in place. */
typedef struct {
    int32_t size;                   /* elements */
    int32_t input_offset;           /* -input zero point, [-127, 128] */
    int32_t output_offset;          /* output zero point, [-128, 127] */
    int32_t multiplier;             /* [0, 2^31) */
    int32_t shift;                  /* [-31, 30] */
    int32_t act_min, act_max;       /* [-128, 127] */
} tc_requant_params;
void tc_requant_s8(const tc_requant_params *p, const int8_t *in, int8_t *out);

/* Elementwise clamp (RELU6 in TFLite Micro: no requantization): out = min(max(in, lo), hi).
 * Elementwise in place. */
typedef struct {
    int32_t size;                   /* elements */
    int32_t act_min, act_max;       /* [-128, 127] */
} tc_clamp_params;
void tc_clamp_s8(const tc_clamp_params *p, const int8_t *in, int8_t *out);

/* PAD (constant), up to 4-D: output dim K = pad_bK + in_dK + pad_aK; positions outside
 * the input get pad_value (the output zero point for PAD). */
typedef struct {
    int32_t in_d0, in_d1, in_d2, in_d3;     /* input dims */
    int32_t pad_b0, pad_b1, pad_b2, pad_b3; /* padding before, >= 0 */
    int32_t pad_a0, pad_a1, pad_a2, pad_a3; /* padding after, >= 0 */
    int32_t pad_value;                      /* [-128, 127] */
} tc_pad_params;
void tc_pad_s8(const tc_pad_params *p, const int8_t *in, int8_t *out);

/* MEAN over any subset of the (4-D extended) axes, TFLite Micro's QuantizedMeanOrSum (used
 * for int8 even when input and output quantization are equal). For each output element,
 * sum = the int32 sum of the `count` reduced int8 inputs, then
 *   out = clamp(tc_mul_by_quant_mult(sum - input_zero_point * count, multiplier, shift)
 *               + output_zero_point),
 * multiplier/shift = input/output scale with 1/count folded in at prepare time.
 * Output order: the non-reduced dims in order (keep_dims or not: same bytes). */
typedef struct {
    int32_t d0, d1, d2, d3;         /* input dims */
    int32_t r0, r1, r2, r3;         /* 1: axis reduced, 0: kept */
    int32_t count;                  /* product of reduced dims, 1..2^23 */
    int32_t input_zero_point;       /* [-128, 127] */
    int32_t output_zero_point;      /* [-128, 127] */
    int32_t multiplier;             /* [0, 2^31) */
    int32_t shift;                  /* [-31, 30] */
} tc_mean_params;
void tc_mean_s8(const tc_mean_params *p, const int8_t *in, int8_t *out);

/* CONCATENATION, one call per input: copies `outer` rows of `in_inner` bytes from `in` to
 * out + row * out_inner + offset (int8 concatenation does no requantization in TFLM). */
typedef struct {
    int32_t outer;                  /* product of dims before the axis */
    int32_t in_inner;               /* input axis dim * product of dims after it */
    int32_t out_inner;              /* output axis dim * product of dims after it */
    int32_t offset;                 /* sum of earlier inputs' in_inner */
} tc_concat_params;
void tc_concat_s8(const tc_concat_params *p, const int8_t *in, int8_t *out);

/* Byte copy of `size` int8 elements (RESHAPE when the planner cannot alias). in and out
 * may be equal; they must not otherwise overlap. */
void tc_copy_s8(int32_t size, const int8_t *in, int8_t *out);

/* DEQUANTIZE int8 -> float32 (model outputs; the one kernel with float):
 * out = scale * (float)(in - zero_point), scale = the IEEE-754 float whose bits are scale_bits
 * (one float rounding: identical to TFLite's static_cast<float>(double(scale) * (in - zp))). */
typedef struct {
    int32_t size;                   /* elements */
    int32_t zero_point;             /* [-128, 127] */
    uint32_t scale_bits;            /* bits of a positive finite float32 */
} tc_dequantize_params;
void tc_dequantize_s8_f32(const tc_dequantize_params *p, const int8_t *in, float *out);

/* QUANTIZE float32 -> int8 (model inputs): out = clamp(round(in / scale) + zero_point),
 * float division, round half away from zero (TFLite's AffineQuantize; inputs with
 * |in / scale| >= 2^31 or NaN saturate here, which TFLite leaves undefined). */
typedef struct {
    int32_t size;                   /* elements */
    int32_t zero_point;             /* [-128, 127] */
    uint32_t scale_bits;            /* bits of a positive finite float32 */
} tc_quantize_params;
void tc_quantize_f32_s8(const tc_quantize_params *p, const float *in, int8_t *out);

#ifdef __cplusplus
}
#endif
#endif /* TC_KERNELS_H */
