/*
 * Glue between benchmarks/vs_cmsis_nn.py and CMSIS-NN (unpacked from ../shared/third_party at
 * run time, never copied here): one flat argument block per call, filled by Python in the
 * unicorn machine's RAM, turned into CMSIS-NN's params structs and passed to the kernels that
 * TensorFlow Lite Micro calls on Arm cores (cmsis_nn/{fully_connected,conv,depthwise_conv}.cc):
 * arm_fully_connected_s8 / _per_channel_s8 / _s4, arm_convolve_wrapper_s8 / _s4,
 * arm_depthwise_conv_wrapper_s8 / _s4.
 */
#include <stdint.h>
#include <stddef.h>
#include "arm_nnfunctions.h"

typedef struct {
    const int8_t *input;
    const int8_t *filter;      /* s8: int8 weights; s4: two int4 per byte, low nibble first */
    const int32_t *bias;       /* may be NULL */
    int8_t *output;
    void *scratch;
    int32_t scratch_size;
    int32_t *mult;             /* per output channel (conv, dw, per-channel FC) or [1] */
    int32_t *shift;
    int32_t per_channel;
    int32_t in_n, in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, ch_mult;
    int32_t input_offset, filter_offset, output_offset, act_min, act_max;
} cmb_args;

typedef struct {
    cmsis_nn_context ctx;
    cmsis_nn_dims input, filter, bias, output;
    cmsis_nn_per_channel_quant_params pc;
} cmb_common;

static void cmb_fill(const cmb_args *a, cmb_common *c, int kind)
{
    c->ctx.buf = a->scratch;
    c->ctx.size = a->scratch_size;
    c->input.n = a->in_n; c->input.h = a->in_h; c->input.w = a->in_w; c->input.c = a->in_c;
    c->output.n = a->in_n; c->output.h = a->out_h; c->output.w = a->out_w; c->output.c = a->out_c;
    c->bias.n = 1; c->bias.h = 1; c->bias.w = 1; c->bias.c = a->out_c;
    if (kind == 0) {          /* FC: filter n = accumulation depth, c = outputs */
        c->filter.n = a->in_c; c->filter.h = 1; c->filter.w = 1; c->filter.c = a->out_c;
    } else if (kind == 1) {   /* conv: [out_c][k_h][k_w][in_c] */
        c->filter.n = a->out_c; c->filter.h = a->k_h; c->filter.w = a->k_w; c->filter.c = a->in_c;
    } else {                  /* depthwise: [1][k_h][k_w][out_c] */
        c->filter.n = 1; c->filter.h = a->k_h; c->filter.w = a->k_w; c->filter.c = a->out_c;
    }
    c->pc.multiplier = a->mult;
    c->pc.shift = a->shift;
}

static void cmb_conv_params(const cmb_args *a, cmsis_nn_conv_params *p)
{
    p->input_offset = a->input_offset;
    p->output_offset = a->output_offset;
    p->stride.h = a->stride_h; p->stride.w = a->stride_w;
    p->padding.h = a->pad_h; p->padding.w = a->pad_w;
    p->dilation.h = a->dil_h; p->dilation.w = a->dil_w;
    p->activation.min = a->act_min; p->activation.max = a->act_max;
}

static void cmb_dw_params(const cmb_args *a, cmsis_nn_dw_conv_params *p)
{
    p->input_offset = a->input_offset;
    p->output_offset = a->output_offset;
    p->ch_mult = a->ch_mult;
    p->stride.h = a->stride_h; p->stride.w = a->stride_w;
    p->padding.h = a->pad_h; p->padding.w = a->pad_w;
    p->dilation.h = a->dil_h; p->dilation.w = a->dil_w;
    p->activation.min = a->act_min; p->activation.max = a->act_max;
}

static void cmb_fc_params(const cmb_args *a, cmsis_nn_fc_params *p)
{
    p->input_offset = a->input_offset;
    p->filter_offset = a->filter_offset;
    p->output_offset = a->output_offset;
    p->activation.min = a->act_min;
    p->activation.max = a->act_max;
}

/* ---- buffer sizes (called uncounted, before the measured call) ---- */
int32_t cmb_fc_bufsize(const cmb_args *a)
{
    cmb_common c;
    cmb_fill(a, &c, 0);
    return arm_fully_connected_s8_get_buffer_size(&c.filter);
}

int32_t cmb_conv_s8_bufsize(const cmb_args *a)
{
    cmb_common c;
    cmsis_nn_conv_params p;
    cmb_fill(a, &c, 1);
    cmb_conv_params(a, &p);
    return arm_convolve_wrapper_s8_get_buffer_size(&p, &c.input, &c.filter, &c.output);
}

int32_t cmb_conv_s4_bufsize(const cmb_args *a)
{
    cmb_common c;
    cmsis_nn_conv_params p;
    cmb_fill(a, &c, 1);
    cmb_conv_params(a, &p);
    return arm_convolve_wrapper_s4_get_buffer_size(&p, &c.input, &c.filter, &c.output);
}

int32_t cmb_dw_s8_bufsize(const cmb_args *a)
{
    cmb_common c;
    cmsis_nn_dw_conv_params p;
    cmb_fill(a, &c, 2);
    cmb_dw_params(a, &p);
    return arm_depthwise_conv_wrapper_s8_get_buffer_size(&p, &c.input, &c.filter, &c.output);
}

int32_t cmb_dw_s4_bufsize(const cmb_args *a)
{
    cmb_common c;
    cmsis_nn_dw_conv_params p;
    cmb_fill(a, &c, 2);
    cmb_dw_params(a, &p);
    return arm_depthwise_conv_wrapper_s4_get_buffer_size(&p, &c.input, &c.filter, &c.output);
}

/* ---- the measured calls ---- */
int32_t cmb_fc_s8(const cmb_args *a)
{
    cmb_common c;
    cmsis_nn_fc_params p;
    cmb_fill(a, &c, 0);
    cmb_fc_params(a, &p);
    if (a->per_channel) {
        return arm_fully_connected_per_channel_s8(&c.ctx, &p, &c.pc, &c.input, a->input, &c.filter, a->filter,
                                                  &c.bias, a->bias, &c.output, a->output);
    } else {
        cmsis_nn_per_tensor_quant_params q;
        q.multiplier = a->mult[0];
        q.shift = a->shift[0];
        return arm_fully_connected_s8(&c.ctx, &p, &q, &c.input, a->input, &c.filter, a->filter, &c.bias, a->bias,
                                      &c.output, a->output);
    }
}

int32_t cmb_fc_s4(const cmb_args *a)
{
    cmb_common c;
    cmsis_nn_fc_params p;
    cmsis_nn_per_tensor_quant_params q;
    cmb_fill(a, &c, 0);
    cmb_fc_params(a, &p);
    q.multiplier = a->mult[0];
    q.shift = a->shift[0];
    return arm_fully_connected_s4(&c.ctx, &p, &q, &c.input, a->input, &c.filter, a->filter, &c.bias, a->bias,
                                  &c.output, a->output);
}

int32_t cmb_conv_s8(const cmb_args *a)
{
    cmb_common c;
    cmsis_nn_conv_params p;
    cmb_fill(a, &c, 1);
    cmb_conv_params(a, &p);
    return arm_convolve_wrapper_s8(&c.ctx, &p, &c.pc, &c.input, a->input, &c.filter, a->filter, &c.bias, a->bias,
                                   &c.output, a->output);
}

int32_t cmb_conv_s4(const cmb_args *a)
{
    cmb_common c;
    cmsis_nn_conv_params p;
    cmb_fill(a, &c, 1);
    cmb_conv_params(a, &p);
    return arm_convolve_wrapper_s4(&c.ctx, &p, &c.pc, &c.input, a->input, &c.filter, a->filter, &c.bias, a->bias,
                                   &c.output, a->output);
}

int32_t cmb_dw_s8(const cmb_args *a)
{
    cmb_common c;
    cmsis_nn_dw_conv_params p;
    cmb_fill(a, &c, 2);
    cmb_dw_params(a, &p);
    return arm_depthwise_conv_wrapper_s8(&c.ctx, &p, &c.pc, &c.input, a->input, &c.filter, a->filter, &c.bias,
                                         a->bias, &c.output, a->output);
}

int32_t cmb_dw_s4(const cmb_args *a)
{
    cmb_common c;
    cmsis_nn_dw_conv_params p;
    cmb_fill(a, &c, 2);
    cmb_dw_params(a, &p);
    return arm_depthwise_conv_wrapper_s4(&c.ctx, &p, &c.pc, &c.input, a->input, &c.filter, a->filter, &c.bias,
                                         a->bias, &c.output, a->output);
}
