/* Elementwise clamp: RELU6 (see tc_kernels.h). */
#include "tc_kernels.h"

void tc_clamp_s8(const tc_clamp_params *p, const int8_t *in, int8_t *out)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        int32_t v = in[i];
        v = TC_MAX(v, p->act_min);
        v = TC_MIN(v, p->act_max);
        out[i] = (int8_t)v;
    }
}
