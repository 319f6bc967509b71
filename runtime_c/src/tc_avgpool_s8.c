/* AVERAGE_POOL_2D, int8 NHWC (see tc_kernels.h). */
#include "tc_kernels.h"

void tc_avgpool_s8(const tc_pool_params *p, const int8_t *in, int8_t *out)
{
    int32_t b, oy, ox, c, fy, fx;
    const int32_t in_row = (int32_t)p->in_w * p->channels;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *img = in + b * (int32_t)p->in_h * in_row;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * (int32_t)p->stride_h - p->pad_h;
            const int32_t fy0 = TC_MAX(0, -y0);
            const int32_t fy1 = TC_MIN((int32_t)p->filter_h, (int32_t)p->in_h - y0);
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * (int32_t)p->stride_w - p->pad_w;
                const int32_t fx0 = TC_MAX(0, -x0);
                const int32_t fx1 = TC_MIN((int32_t)p->filter_w, (int32_t)p->in_w - x0);
                const int32_t count = (fy1 - fy0) * (fx1 - fx0);
                for (c = 0; c < p->channels; ++c) {
                    int32_t acc = 0;
                    for (fy = fy0; fy < fy1; ++fy) {
                        const int8_t *row = img + (y0 + fy) * in_row + c;
                        for (fx = fx0; fx < fx1; ++fx) {
                            acc += row[(x0 + fx) * (int32_t)p->channels];
                        }
                    }
                    if (count > 0) {
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    acc = TC_MAX(acc, p->act_min);
                    acc = TC_MIN(acc, p->act_max);
                    *out++ = (int8_t)acc;
                }
            }
        }
    }
}
