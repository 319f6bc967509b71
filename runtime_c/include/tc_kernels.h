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
/* (section owned by the packed-kernel work; see docs/architecture.md) */

/* ===== Other ops (pooling, elementwise, activations, softmax, shape ops) ===== */
/* (section owned by the other-ops work; see docs/architecture.md) */

#ifdef __cplusplus
}
#endif
#endif /* TC_KERNELS_H */
