/* MEAN over any subset of up to 4 axes, int8 (see tc_kernels.h). */
#include "tc_kernels.h"

void tc_mean_s8(const tc_mean_params *p, const int8_t *in, int8_t *out)
{
    /* output dims (1 where reduced) and the reduced window sizes */
    const int32_t n0 = p->r0 ? 1 : p->d0, n1 = p->r1 ? 1 : p->d1;
    const int32_t n2 = p->r2 ? 1 : p->d2, n3 = p->r3 ? 1 : p->d3;
    const int32_t k0 = p->r0 ? p->d0 : 1, k1 = p->r1 ? p->d1 : 1;
    const int32_t k2 = p->r2 ? p->d2 : 1, k3 = p->r3 ? p->d3 : 1;
    const int32_t s2 = p->d3, s1 = p->d2 * s2, s0 = p->d1 * s1;
    int32_t o0, o1, o2, o3, j0, j1, j2, j3;
    for (o0 = 0; o0 < n0; ++o0) {
        for (o1 = 0; o1 < n1; ++o1) {
            for (o2 = 0; o2 < n2; ++o2) {
                for (o3 = 0; o3 < n3; ++o3) {
                    int32_t sum = 0, v;
                    for (j0 = 0; j0 < k0; ++j0) {
                        for (j1 = 0; j1 < k1; ++j1) {
                            for (j2 = 0; j2 < k2; ++j2) {
                                const int8_t *row = in + (o0 + j0) * s0 + (o1 + j1) * s1 + (o2 + j2) * s2 + o3;
                                for (j3 = 0; j3 < k3; ++j3) {
                                    sum += row[j3];
                                }
                            }
                        }
                    }
                    v = tc_mul_by_quant_mult(sum - p->input_zero_point * p->count, p->multiplier, p->shift) +
                        p->output_zero_point;
                    v = TC_MAX(v, -128);
                    v = TC_MIN(v, 127);
                    *out++ = (int8_t)v;
                }
            }
        }
    }
}
