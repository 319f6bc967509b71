/* TANH, int8 -> int8 (see tc_kernels.h). */
#include "tc_fixedpoint.h"
#include "tc_kernels.h"

void tc_tanh_s8(const tc_tanh_params *p, const int8_t *in, int8_t *out)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t x = (int32_t)in[i] - p->input_zero_point;
        if (x <= -p->input_range_radius) {
            out[i] = -128;
        } else if (x >= p->input_range_radius) {
            out[i] = 127;
        } else {
            const int32_t q4 = tc_mul_by_quant_mult(x, p->input_multiplier, p->input_left_shift);
            int32_t v = tc_rounding_divide_by_pot(tc_fp_tanh(q4, 4), 31 - 7);
            v = TC_MAX(v, -128);
            v = TC_MIN(v, 127);
            out[i] = (int8_t)v;
        }
    }
}
