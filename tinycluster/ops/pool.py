"""AVERAGE_POOL_2D and MAX_POOL_2D (int8, NHWC, SAME/VALID, fused activation): TFLite Micro's
pooling_common.cc Prepare and reference_integer_ops::AveragePool / MaxPool (no requantization:
the int8 kernels read and write raw values). Kernels: runtime_c/src/tc_avgpool_s8.c,
tc_maxpool_s8.c. One module: both ops share geometry, params and the reference loop."""
from __future__ import annotations

import numpy as np

from ..quantize import activation_range
from ._common import act_name, emit_call, f32, input_expr, int8_tensor, numel, op_error, padding_name
from .base import OpHandler, register

FIELDS = [(n, "int16_t") for n in ["batches", "in_h", "in_w", "channels", "out_h", "out_w", "filter_h", "filter_w",
                                    "stride_h", "stride_w", "pad_h", "pad_w", "act_min", "act_max"]]


def out_size(padding: str, size: int, filt: int, stride: int) -> int:
    if padding == "SAME":
        return (size + stride - 1) // stride
    return (size + stride - filt) // stride


def pad_amount(size: int, filt: int, stride: int, out: int) -> int:
    return max(0, ((out - 1) * stride + filt - size) // 2)


@register("AVERAGE_POOL_2D", "MAX_POOL_2D")
class PoolHandler(OpHandler):
    def parse(self, raw, graph):
        o = raw.options
        if o is None:
            return {"padding": "VALID", "stride_h": 1, "stride_w": 1, "filter_h": 1, "filter_w": 1,
                    "activation": "NONE"}
        return {"padding": padding_name(o.Padding()), "stride_h": int(o.StrideH()), "stride_w": int(o.StrideW()),
                "filter_h": int(o.FilterHeight()), "filter_w": int(o.FilterWidth()),
                "activation": act_name(o.FusedActivationFunction())}

    def resolve(self, node, graph):
        a = node.attrs
        x, sx, zx = int8_tensor(graph, node, node.inputs[0], "input")
        y, sy, zy = int8_tensor(graph, node, node.outputs[0], "output")
        if len(x.shape) != 4 or len(y.shape) != 4:
            raise op_error(node, graph, f"needs 4-D NHWC input and output, got {list(x.shape)} -> {list(y.shape)}")
        if a["padding"] not in ("SAME", "VALID"):
            raise op_error(node, graph, f"{a['padding']} is not supported (SAME or VALID)")
        for k in ("stride_h", "stride_w", "filter_h", "filter_w"):
            if int(a[k]) < 1:
                raise op_error(node, graph, f"{k} = {a[k]} must be >= 1")
        if a["activation"] not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
            raise op_error(node, graph, f"fused activation {a['activation']} is not supported")
        n, ih, iw, c = (int(d) for d in x.shape)
        fh, fw, sh, sw = int(a["filter_h"]), int(a["filter_w"]), int(a["stride_h"]), int(a["stride_w"])
        oh, ow = out_size(a["padding"], ih, fh, sh), out_size(a["padding"], iw, fw, sw)
        if oh < 1 or ow < 1:
            raise op_error(node, graph, f"filter {fh}x{fw} is larger than the {ih}x{iw} input with VALID padding")
        if tuple(int(d) for d in y.shape) != (n, oh, ow, c):
            raise op_error(node, graph, f"output shape {list(y.shape)} does not match the computed [{n}, {oh}, {ow}, {c}]")
        # TFLite Micro's PoolingPrepare: int8 pooling does not requantize, so it requires
        # |input scale - output scale| <= 1e-6 and equal zero points
        if abs(f32(sx) - f32(sy)) > 1.0e-6 or zx != zy:
            raise op_error(node, graph, f"input (scale {float(sx):.6g}, zero point {zx}) and output (scale "
                                        f"{float(sy):.6g}, zero point {zy}) quantization differ; int8 pooling needs "
                                        "them equal (as TFLite Micro)")
        if max(n, ih, iw, c, fh, fw, sh, sw) > 32767 or fh * fw >= 1 << 23 or n * ih * iw * c >= 1 << 31:
            raise op_error(node, graph, "dimensions beyond the kernel's 16-bit parameter range (32767)")
        lo, hi = activation_range(a["activation"], sy, zy)
        if lo > hi:
            raise op_error(node, graph, f"empty activation range [{lo}, {hi}] for {a['activation']}")
        node.params = dict(batches=n, in_h=ih, in_w=iw, channels=c, out_h=oh, out_w=ow, filter_h=fh, filter_w=fw,
                           stride_h=sh, stride_w=sw, pad_h=pad_amount(ih, fh, sh, oh),
                           pad_w=pad_amount(iw, fw, sw, ow), act_min=lo, act_max=hi)

    def emit(self, node, ctx):
        fn = "tc_avgpool_s8" if node.op == "AVERAGE_POOL_2D" else "tc_maxpool_s8"
        return emit_call(ctx, node, "tc_pool_params", FIELDS, node.params, fn,
                         [input_expr(ctx, node, 0), ctx.tensor(node.outputs[0])])

    def macs(self, node, graph):
        p = node.params
        return numel(graph.tensors[node.outputs[0]].shape) * p["filter_h"] * p["filter_w"]

    def reference(self, node, graph, inputs):
        """Loops over the filter taps (not the output positions): every tap gathers its input
        value for all output positions at once, masked where the window leaves the input."""
        p = node.params
        x = np.asarray(inputs[0]).astype(np.int64).reshape(p["batches"], p["in_h"], p["in_w"], p["channels"])
        oy = np.arange(p["out_h"]) * p["stride_h"] - p["pad_h"]
        ox = np.arange(p["out_w"]) * p["stride_w"] - p["pad_w"]
        shape = (p["batches"], p["out_h"], p["out_w"], p["channels"])
        acc = np.zeros(shape, np.int64) if node.op == "AVERAGE_POOL_2D" else np.full(shape, -128, np.int64)
        cnt = np.zeros((p["out_h"], p["out_w"]), np.int64)
        for ky in range(p["filter_h"]):
            yy = oy + ky
            vy = (yy >= 0) & (yy < p["in_h"])
            for kx in range(p["filter_w"]):
                xx = ox + kx
                vx = (xx >= 0) & (xx < p["in_w"])
                valid = vy[:, None] & vx[None, :]
                v = x[:, np.clip(yy, 0, p["in_h"] - 1)][:, :, np.clip(xx, 0, p["in_w"] - 1)]
                m = valid[None, :, :, None]
                if node.op == "MAX_POOL_2D":
                    acc = np.where(m, np.maximum(acc, v), acc)
                else:
                    acc += np.where(m, v, 0)
                cnt += valid
        if node.op == "AVERAGE_POOL_2D":
            c = np.maximum(cnt, 1)[None, :, :, None]
            acc = np.where(acc > 0, (acc + c // 2) // c, -((-(acc - c // 2)) // c))
        out = np.clip(acc, p["act_min"], p["act_max"]).astype(np.int8)
        return [out.reshape(graph.tensors[node.outputs[0]].shape)]
