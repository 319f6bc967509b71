/* QUANTIZE float32 -> int8 (see tc_kernels.h). */
#include <string.h>

#include "tc_kernels.h"

void tc_quantize_f32_s8(const tc_quantize_params *p, const float *in, int8_t *out)
{
    float scale;
    int32_t i;
    memcpy(&scale, &p->scale_bits, sizeof scale);
    for (i = 0; i < p->size; ++i) {
        const float q = in[i] / scale;
        int32_t v;
        if (!(q == q)) {
            v = 0; /* NaN */
        } else if (q >= 2147483520.0f) {
            v = INT32_MAX;
        } else if (q <= -2147483520.0f) {
            v = INT32_MIN;
        } else {
            /* round half away from zero without libm: |q| < 2^31 here */
            const float ip = (float)(int32_t)q;
            const float frac = q - ip; /* exact */
            v = (int32_t)ip;
            if (frac >= 0.5f) {
                ++v;
            } else if (frac <= -0.5f) {
                --v;
            }
        }
        if (v > 127 - p->zero_point) {
            v = 127;
        } else if (v < -128 - p->zero_point) {
            v = -128;
        } else {
            v += p->zero_point;
        }
        out[i] = (int8_t)v;
    }
}
