/* DEQUANTIZE int8 -> float32 (see tc_kernels.h). */
#include <string.h>

#include "tc_kernels.h"

void tc_dequantize_s8_f32(const tc_dequantize_params *p, const int8_t *in, float *out)
{
    float scale;
    int32_t i;
    memcpy(&scale, &p->scale_bits, sizeof scale);
    for (i = 0; i < p->size; ++i) {
        out[i] = scale * (float)((int32_t)in[i] - p->zero_point);
    }
}
