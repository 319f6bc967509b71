/* MUL, int8, broadcasting up to 4-D (see tc_kernels.h). */
#include "tc_kernels.h"

static int8_t tc_mul_one(const tc_mul_params *p, int32_t x1, int32_t x2)
{
    return tc_requantize((x1 + p->input1_offset) * (x2 + p->input2_offset), p->output_multiplier,
                         p->output_shift, p->output_offset, p->act_min, p->act_max);
}

void tc_mul_s8(const tc_mul_params *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    const int32_t d[4] = {p->d0, p->d1, p->d2, p->d3};
    tc_bcast_rows r;
    int32_t i3;
    if ((p->a_bcast | p->b_bcast) == 0) {
        const int32_t n = p->d0 * p->d1 * p->d2 * p->d3;
        int32_t i;
        for (i = 0; i < n; ++i) {
            out[i] = tc_mul_one(p, in1[i], in2[i]);
        }
        return;
    }
    tc_bcast_rows_init(&r, d, p->a_bcast, p->b_bcast, in1, in2);
    while (tc_bcast_rows_next(&r)) {
        for (i3 = 0; i3 < d[3]; ++i3) {
            *out++ = tc_mul_one(p, r.a[i3 * r.as[3]], r.b[i3 * r.bs[3]]);
        }
    }
}
