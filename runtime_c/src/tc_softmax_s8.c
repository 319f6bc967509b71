/* SOFTMAX, int8 -> int8 (see tc_kernels.h). */
#include "tc_fixedpoint.h"
#include "tc_kernels.h"

#define TC_SOFTMAX_DIFF_BITS 5  /* scaled input difference: Q5.26 */
#define TC_SOFTMAX_ACCUM_BITS 12 /* sum of exps: Q12.19 */

static int32_t tc_softmax_exp(const tc_softmax_params *p, int32_t diff)
{
    const int32_t rescaled = tc_sat_rounding_doubling_high_mul(
        (int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
    return tc_fp_exp_on_negative_values(rescaled, TC_SOFTMAX_DIFF_BITS);
}

void tc_softmax_s8(const tc_softmax_params *p, const int8_t *in, int8_t *out)
{
    int32_t r, c;
    for (r = 0; r < p->outer; ++r) {
        const int8_t *x = in + r * p->depth;
        int8_t *y = out + r * p->depth;
        int32_t max_v = -128;
        int32_t sum = 0;
        int32_t recip;
        int bits_over_unit, exponent;
        for (c = 0; c < p->depth; ++c) {
            max_v = TC_MAX(max_v, (int32_t)x[c]);
        }
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_v;
            if (diff >= p->diff_min) {
                sum = tc_fp_add(sum, tc_fp_mul_pot(tc_softmax_exp(p, diff), -TC_SOFTMAX_ACCUM_BITS));
            }
        }
        recip = tc_fp_get_reciprocal(sum, TC_SOFTMAX_ACCUM_BITS, &bits_over_unit);
        exponent = bits_over_unit + 31 - 8;
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_v;
            if (diff >= p->diff_min) {
                const int32_t e = tc_softmax_exp(p, diff);
                int32_t v = tc_rounding_divide_by_pot(tc_fp_mul(recip, e), exponent) - 128;
                v = TC_MAX(v, -128);
                v = TC_MIN(v, 127);
                y[c] = (int8_t)v;
            } else {
                y[c] = -128;
            }
        }
    }
}
