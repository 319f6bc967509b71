"""Shared pieces of the packed-weight op handlers (conv_2d, depthwise_conv_2d, fully_connected).

Everything here runs at compile time: option parsing, TFLite's padding arithmetic, the
per-channel requantization parameters (TFLite Micro's Prepare), the packed weight layout
(indices, codebooks, codebook map) and the emission of the per-layer constants.
"""
from __future__ import annotations

import numpy as np

from ..errors import TinyClusterError
from ..packing import pack_indices
from ..quantize import activation_range, quantize_multiplier

ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
SUPPORTED_ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6")
PADDINGS = {0: "SAME", 1: "VALID"}


def fail(node, graph, msg: str):
    """Raise a one-line error; resolve_graph() prefixes it with the file, operator index and op."""
    raise TinyClusterError(msg)


def activation_name(code, raw=None) -> str:
    name = ACTIVATIONS.get(int(code), f"code {int(code)}")
    return name


def padding_name(code) -> str:
    return PADDINGS.get(int(code), f"code {int(code)}")


def check_activation(node, graph):
    act = node.attrs.get("activation", "NONE")
    if act not in SUPPORTED_ACTIVATIONS:
        fail(node, graph, f"fused activation {act} is not supported (supported: {', '.join(SUPPORTED_ACTIVATIONS)})")
    return act


def parse_bias_type(o) -> dict:
    """The options' quantized_bias_type (a TensorType; 0, FLOAT32, means unset), when the schema
    package knows the field."""
    f = getattr(o, "QuantizedBiasType", None)
    return {"quantized_bias_type": int(f())} if f is not None else {}


def check_bias_type(node, graph):
    """TFLite Micro converts quantized_bias_type when it parses the options and refuses unknown
    types; an int8 model's bias is int32 (2), or the field is unset (0)."""
    t = node.attrs.get("quantized_bias_type", 0)
    if t not in (0, 2):
        fail(node, graph, f"option quantized_bias_type is {t}; an int8 model's bias type is INT32 (2) or unset (0)")


# -- geometry (TFLite kernels/padding.h) ------------------------------------------------------

def out_size(padding: str, image: int, k: int, stride: int, dil: int) -> int:
    eff = (k - 1) * dil + 1
    if padding == "SAME":
        return (image + stride - 1) // stride
    return (image + stride - eff) // stride


def pad_before(stride: int, dil: int, in_size: int, k: int, out: int) -> int:
    """ComputePaddingWithOffset: the leading pad (the extra odd pixel goes to the end)."""
    eff = (k - 1) * dil + 1
    total = max((out - 1) * stride + eff - in_size, 0)
    return total // 2


# -- quantization --------------------------------------------------------------------------

def _check_scales(node, graph, t, what, scales):
    bad = [float(v) for v in np.asarray(scales, np.float32).reshape(-1) if not (np.isfinite(v) and v > 0)]
    if bad:
        fail(node, graph, f"{what} tensor '{t.name}' has scale {bad[0]!r}; scales must be finite and positive")


def io_quant(node, graph, tid, what):
    t = graph.tensors[tid]
    if t.dtype != "int8":
        fail(node, graph, f"{what} tensor '{t.name}' is {t.dtype}; only int8 activations are supported")
    q = t.quant
    if q is None or q.scale.size == 0:
        fail(node, graph, f"{what} tensor '{t.name}' has no quantization parameters (need a full-integer int8 model)")
    if q.scale.size != 1:
        fail(node, graph, f"{what} tensor '{t.name}' is quantized per channel; activations must be per tensor")
    _check_scales(node, graph, t, what, q.scale)
    zp = int(q.zero_point[0])
    if not -128 <= zp <= 127:
        fail(node, graph, f"{what} tensor '{t.name}' has zero point {zp} outside the int8 range [-128, 127]")
    return float(np.float32(q.scale[0])), zp


def filter_scales(node, graph, tid, n_channels):
    t = graph.tensors[tid]
    if t.dtype != "int8":
        fail(node, graph, f"weight tensor '{t.name}' is {t.dtype}; only int8 weights are supported")
    q = t.quant
    if q is None or q.scale.size == 0:
        fail(node, graph, f"weight tensor '{t.name}' has no quantization parameters")
    s = np.asarray(q.scale, dtype=np.float32).reshape(-1)
    if s.size not in (1, n_channels):
        fail(node, graph, f"weight tensor '{t.name}' has {s.size} scales for {n_channels} output channels")
    _check_scales(node, graph, t, "weight", s)
    return s


def check_symmetric_weights(node, graph, tid):
    """Conv and depthwise int8 weights are symmetric (TFLite's quantization spec: zero point 0);
    TFLite Micro's kernels ignore the weight zero point, so any other value is refused."""
    t = graph.tensors[tid]
    zp = np.asarray(t.quant.zero_point).reshape(-1)
    if zp.size and np.any(zp != 0):
        fail(node, graph, f"weight tensor '{t.name}' has zero point {int(zp[zp != 0][0])}; int8 "
                          f"{node.op} weights must be symmetric (zero point 0)")


def check_bias(node, graph, n_channels: int):
    """The optional bias (input 2): a constant int32 vector of one value per output channel."""
    tid = node.inputs[2] if len(node.inputs) > 2 else -1
    if tid < 0:
        return None
    t = graph.tensors[tid]
    if t.data is None:
        fail(node, graph, f"bias tensor '{t.name}' is not constant")
    if t.dtype != "int32":
        fail(node, graph, f"bias tensor '{t.name}' is {t.dtype}; int8 models need int32 biases")
    if t.data.size != n_channels:
        fail(node, graph, f"bias tensor '{t.name}' has {t.data.size} values for {n_channels} output channels")
    return t


def requant_params(in_scale: float, f_scales, out_scale: float, n_channels: int):
    """Per-channel (mult, shift) lists as TFLite Micro's PopulateConvolutionQuantizationParams
    computes them: effective = double(input_scale) * double(filter_scale[c]) / double(output_scale).
    Returns (mult, shift, per_channel); per_channel False when all channels agree (1 entry)."""
    mults, shifts = [], []
    for c in range(n_channels):
        fs = float(f_scales[c] if f_scales.size > 1 else f_scales[0])
        eff = float(in_scale) * fs / float(out_scale)
        m, s = quantize_multiplier(eff)
        mults.append(int(m))
        shifts.append(int(s))
    if len(set(zip(mults, shifts))) == 1:
        return mults[:1], shifts[:1], False
    return mults, shifts, True


def bias_values(node, graph, tid, n_channels):
    if tid is None or tid < 0:
        return None
    t = graph.tensors[tid]
    if t.data is None:
        fail(node, graph, f"bias tensor '{t.name}' is not constant")
    if t.dtype != "int32":
        fail(node, graph, f"bias tensor '{t.name}' is {t.dtype}; only int32 biases (int8 models) are supported")
    b = np.asarray(t.data).reshape(-1).astype(np.int64)
    if b.size != n_channels:
        fail(node, graph, f"bias tensor '{t.name}' has {b.size} values for {n_channels} output channels")
    return b


BIAS_WIDTHS = (16, 24, 32)  # bias_bits the kernels read (tc_bias_at() in tc_common.h)


def bias_bits_for(bias, widths=BIAS_WIDTHS) -> int:
    """The narrowest stored bias width of ``widths`` (16, 24 or 32 bits) that holds every value
    of ``bias`` (int32 values, as emitted); 32 for no bias."""
    if bias is None or np.asarray(bias).size == 0:
        return 32
    b = np.asarray(bias, np.int64)
    lo, hi = int(b.min()), int(b.max())
    for bits in widths:
        if -(1 << (bits - 1)) <= lo and hi < (1 << (bits - 1)):
            return bits
    raise ValueError(f"bias values [{lo}, {hi}] do not fit int32")


def bias_storage(bias, bits: int):
    """(C element type, values) of ``bias`` stored ``bits`` wide, as tc_bias_at() reads it:
    16 -> int16_t[], 24 -> uint8_t[3 * n] (little-endian two's complement), 32 -> int32_t[]."""
    b = np.asarray(bias, np.int64).reshape(-1)
    if bits < bias_bits_for(b):
        raise ValueError(f"bias values do not fit {bits} bits")
    if bits == 16:
        return "int16_t", b.astype(np.int16)
    if bits == 24:
        u = (b & 0xFFFFFF).astype(np.uint32)
        return "uint8_t", np.stack([u & 0xFF, (u >> 8) & 0xFF, u >> 16], axis=1).reshape(-1).astype(np.uint8)
    if bits == 32:
        return "int32_t", b.astype(np.int32)
    raise ValueError(f"bias width {bits} is not one of {BIAS_WIDTHS}")


def resolve_requant(node, graph, n_channels: int) -> dict:
    """The quantization part of a weighted op's Prepare, shared by conv, depthwise and FC:
    input/output zero points, per-channel (or per-tensor) multipliers and shifts, clamp range.
    Also returns the filter scales (``filter_scales``) for op-specific use."""
    in_s, in_zp = io_quant(node, graph, node.inputs[0], "input")
    out_s, out_zp = io_quant(node, graph, node.outputs[0], "output")
    fs = filter_scales(node, graph, node.inputs[1], n_channels)
    check_bias(node, graph, n_channels)
    mult, shift, per_ch = requant_params(in_s, fs, out_s, n_channels)
    act_min, act_max = act_range(node, graph, out_s, out_zp)
    return dict(input_offset=-in_zp, output_offset=out_zp, act_min=act_min, act_max=act_max,
                mult=mult, shift=shift, requant_per_channel=int(per_ch), filter_scales=fs)


def act_range(node, graph, out_scale, out_zp):
    act = check_activation(node, graph)
    return activation_range(act, out_scale, out_zp)


def check_range(node, graph, params: dict, limits: dict):
    for key, (lo, hi) in limits.items():
        v = int(params[key])
        if not lo <= v <= hi:
            fail(node, graph, f"{key} = {v} is outside the supported range [{lo}, {hi}]")


def wrap_int32(a):
    a = np.asarray(a, dtype=np.int64)
    return ((a + (1 << 31)) % (1 << 32)) - (1 << 31)


# -- packed weight layout --------------------------------------------------------------------

class PackedLayout:
    """What the C kernel needs to read one weight tensor.

    indices (flat, TFLite weight order), bits, codebooks (flat int8, `stride` entries apart),
    stride (0: one codebook), cmap (uint8 per output channel or None for identity), k.
    """

    def __init__(self, indices, bits, codebooks, stride, cmap, k):
        self.indices = indices
        self.bits = int(bits)
        self.codebooks = codebooks
        self.stride = int(stride)
        self.cmap = cmap
        self.k = int(k)

    @property
    def raw(self) -> bool:
        """No codebook: the 8-bit stream holds the int8 weights themselves."""
        return self.codebooks is None

    def codebook_array(self):
        """The codebooks as emitted (None for a raw layout): for widths <= 4 the kernels' SIMD
        decoders read 2^bits entries from the start of a codebook, so the array is padded at
        its end with 2^bits - k zeros (at most 15 bytes per layer; indices never select them)."""
        if self.raw:
            return None
        cb = np.asarray(self.codebooks, dtype=np.int8).reshape(-1)
        pad = (1 << self.bits) - self.k if self.bits <= 4 else 0
        if pad > 0:
            cb = np.concatenate([cb, np.zeros(pad, np.int8)])
        return cb

    def values(self, shape, channel_axis):
        """Effective int8 weights (for tests)."""
        idx = self.indices.reshape(shape)
        if self.raw:
            return idx.astype(np.uint8).view(np.int8)
        if self.stride == 0:
            return self.codebooks[: self.k][idx].astype(np.int8)
        idxc = np.moveaxis(idx, channel_axis, 0)
        out = np.empty(idxc.shape, np.int8)
        for c in range(idxc.shape[0]):
            cb = c if self.cmap is None else int(self.cmap[c])
            out[c] = self.codebooks[cb * self.stride: cb * self.stride + self.k][idxc[c]]
        return np.moveaxis(out, 0, channel_axis)


def raw_layout(values) -> PackedLayout:
    """8-bit layout without a codebook: the stream holds the int8 values (as uint8 bytes)."""
    v = np.asarray(values).astype(np.int8).reshape(-1)
    return PackedLayout(v.view(np.uint8).astype(np.int64), 8, None, 0, None, 256)


_CURRENT = object()


def packed_layout(node, graph, tensor, channel_axis: int, n_channels: int, cl=_CURRENT) -> PackedLayout:
    """The layout the kernels read (of ``cl``, by default ``tensor.clustering``). At 8 bits a
    codebook saves nothing (an index is as wide as a weight), so the effective weights are
    stored raw: no codebook SRAM, no lookups."""
    lay = _clustered_layout(node, graph, tensor, channel_axis, n_channels,
                            tensor.clustering if cl is _CURRENT else cl)
    if lay.bits == 8 and not lay.raw:
        return raw_layout(lay.values(tuple(int(d) for d in tensor.shape), channel_axis))
    return lay


def _clustered_layout(node, graph, tensor, channel_axis: int, n_channels: int, cl) -> PackedLayout:
    if cl is None:
        # no clustering: 8-bit per-tensor clustering of the int8 values themselves
        data = np.asarray(tensor.data).astype(np.int64)
        return PackedLayout((data + 128).reshape(-1), 8, np.arange(-128, 128, dtype=np.int8), 0, None, 256)
    bits = int(cl.bits)
    if not 1 <= bits <= 8:
        fail(node, graph, f"weight tensor '{tensor.name}' has index width {bits}; must be 1..8")
    idx = np.asarray(cl.indices).astype(np.int64)
    if tuple(idx.shape) != tuple(tensor.shape):
        fail(node, graph, f"clustering indices of '{tensor.name}' have shape {idx.shape}, tensor {tensor.shape}")
    cbs = np.asarray(cl.codebooks).astype(np.int8)
    if cbs.ndim != 2:
        cbs = cbs.reshape(1, -1)
    k = cbs.shape[1]
    if k > (1 << bits) or (idx.size and (idx.min() < 0 or idx.max() >= k)):
        fail(node, graph, f"clustering of '{tensor.name}' has indices outside its {k}-entry codebook")
    if cl.channel_axis is None or (cbs.shape[0] == 1 and (cl.codebook_of_channel is None
                                                            or not np.any(np.asarray(cl.codebook_of_channel)))):
        return PackedLayout(idx.reshape(-1), bits, cbs[0].copy(), 0, None, k)
    if cl.channel_axis != channel_axis:
        fail(node, graph, f"per-channel codebooks of '{tensor.name}' are on axis {cl.channel_axis}, "
                          f"the kernel selects codebooks by output channel (axis {channel_axis})")
    cmap = np.arange(n_channels) if cl.codebook_of_channel is None else np.asarray(cl.codebook_of_channel)
    cmap = cmap.astype(np.int64).reshape(-1)
    if cmap.size != n_channels or cmap.min() < 0 or cmap.max() >= cbs.shape[0]:
        fail(node, graph, f"codebook map of '{tensor.name}' does not match its {n_channels} channels")
    if cbs.shape[0] == n_channels and np.array_equal(cmap, np.arange(n_channels)):
        return PackedLayout(idx.reshape(-1), bits, cbs.reshape(-1).copy(), k, None, k)
    if cbs.shape[0] <= 256:
        return PackedLayout(idx.reshape(-1), bits, cbs.reshape(-1).copy(), k, cmap.astype(np.uint8), k)
    # more than 256 shared codebooks: the uint8 map cannot address them; give each channel its own
    return PackedLayout(idx.reshape(-1), bits, cbs[cmap].reshape(-1).copy(), k, None, k)


def bias_bits_of(struct_fields: list) -> int:
    """The bias_bits field of a packed kernel's params (the width the bias array is stored in)."""
    return int(next(v for n, _, v in struct_fields if n == "bias_bits"))


def emit_weight_consts(node, ctx, base: str, layout: PackedLayout, bias, mult, shift,
                       struct_ctype: str, struct_fields: list) -> dict:
    """Declare the per-layer constants once per node (emit_rows may be called for several row
    ranges); returns the C expressions of each argument (params: the struct identifier). The
    bias is stored as wide as the params' bias_bits say (the handlers set it to
    bias_bits_for(bias): the narrowest width that holds the layer's biases)."""
    cache = ctx.__dict__.setdefault("_tc_packed_consts", {})
    if node.index in cache:
        return cache[node.index]
    packed = np.frombuffer(pack_indices(layout.indices, layout.bits), dtype=np.uint8)
    names = {
        "packed": ctx.const_array(f"{base}_idx", "uint8_t", packed, role="indices"),
        "codebooks": ctx.codebook_array(f"{base}_cb", layout.codebook_array()) if not layout.raw else "NULL",
        "map": ctx.const_array(f"{base}_cbmap", "uint8_t", layout.cmap, role="other")
        if layout.cmap is not None else "NULL",
        "bias": ctx.const_array(f"{base}_bias", *bias_storage(bias, bias_bits_of(struct_fields)), role="bias")
        if bias is not None else "NULL",
        "mult": ctx.const_array(f"{base}_mult", "int32_t", mult, role="requant"),
        "shift": ctx.const_array(f"{base}_shift", "int8_t", shift, role="requant"),
        "params": ctx.const_struct(f"{base}_params", struct_ctype, struct_fields),
    }
    cache[node.index] = names
    return names


def weight_layout_of(node, graph, handler):
    """PackedLayout of a node's weight tensor (output channels from the handler's axis)."""
    w = graph.tensors[node.inputs[handler.weight_input]]
    axis = handler.weight_channel_axis
    return packed_layout(node, graph, w, axis, int(w.shape[axis])), w
