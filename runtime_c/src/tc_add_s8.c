/* ADD, int8, broadcasting up to 4-D (see tc_kernels.h). */
#include "tc_kernels.h"

static int8_t tc_add_one(const tc_add_params *p, int32_t x1, int32_t x2)
{
    const int32_t a = (int32_t)((uint32_t)(x1 + p->input1_offset) << p->left_shift);
    const int32_t b = (int32_t)((uint32_t)(x2 + p->input2_offset) << p->left_shift);
    const int32_t sa = tc_mul_by_quant_mult(a, p->input1_multiplier, p->input1_shift);
    const int32_t sb = tc_mul_by_quant_mult(b, p->input2_multiplier, p->input2_shift);
    return tc_requantize(sa + sb, p->output_multiplier, p->output_shift, p->output_offset,
                         p->act_min, p->act_max);
}

void tc_add_s8(const tc_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    int32_t i0, i1, i2, i3;
    if (!p->broadcast) {
        const int32_t n = p->d0 * p->d1 * p->d2 * p->d3;
        int32_t i;
        for (i = 0; i < n; ++i) {
            out[i] = tc_add_one(p, in1[i], in2[i]);
        }
        return;
    }
    for (i0 = 0; i0 < p->d0; ++i0) {
        for (i1 = 0; i1 < p->d1; ++i1) {
            for (i2 = 0; i2 < p->d2; ++i2) {
                const int8_t *a = in1 + i0 * p->a_s0 + i1 * p->a_s1 + i2 * p->a_s2;
                const int8_t *b = in2 + i0 * p->b_s0 + i1 * p->b_s1 + i2 * p->b_s2;
                for (i3 = 0; i3 < p->d3; ++i3) {
                    *out++ = tc_add_one(p, a[i3 * p->a_s3], b[i3 * p->b_s3]);
                }
            }
        }
    }
}
