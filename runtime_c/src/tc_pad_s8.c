/* PAD (constant), int8, up to 4-D (see tc_kernels.h). */
#include <string.h>

#include "tc_kernels.h"

void tc_pad_s8(const tc_pad_params *p, const int8_t *in, int8_t *out)
{
    const int32_t o1 = p->pad_b1 + p->in_d1 + p->pad_a1;
    const int32_t o2 = p->pad_b2 + p->in_d2 + p->pad_a2;
    const int32_t o3 = p->pad_b3 + p->in_d3 + p->pad_a3;
    const int32_t o0 = p->pad_b0 + p->in_d0 + p->pad_a0;
    const int8_t pv = (int8_t)p->pad_value;
    int32_t i0, i1, i2;
    for (i0 = 0; i0 < o0; ++i0) {
        const int32_t x0 = i0 - p->pad_b0;
        for (i1 = 0; i1 < o1; ++i1) {
            const int32_t x1 = i1 - p->pad_b1;
            for (i2 = 0; i2 < o2; ++i2) {
                const int32_t x2 = i2 - p->pad_b2;
                if (x0 < 0 || x0 >= p->in_d0 || x1 < 0 || x1 >= p->in_d1 || x2 < 0 || x2 >= p->in_d2) {
                    memset(out, pv, (size_t)o3);
                } else {
                    const int8_t *src = in + ((x0 * p->in_d1 + x1) * p->in_d2 + x2) * p->in_d3;
                    memset(out, pv, (size_t)p->pad_b3);
                    memcpy(out + p->pad_b3, src, (size_t)p->in_d3);
                    memset(out + p->pad_b3 + p->in_d3, pv, (size_t)p->pad_a3);
                }
                out += o3;
            }
        }
    }
}
