/* Elementwise requantize with clamp: RELU, int8 QUANTIZE (see tc_kernels.h). */
#include "tc_kernels.h"

void tc_requant_s8(const tc_requant_params *p, const int8_t *in, int8_t *out)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        out[i] = tc_requantize((int32_t)in[i] + p->input_offset, p->multiplier, p->shift,
                               p->output_offset, p->act_min, p->act_max);
    }
}
