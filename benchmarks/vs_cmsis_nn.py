"""tinycluster's packed-weight kernels vs CMSIS-NN, side by side, on Cortex-M (unicorn counts).

    .venv/bin/python benchmarks/vs_cmsis_nn.py                      # everything (~10 min)
    .venv/bin/python benchmarks/vs_cmsis_nn.py --only fc --cores m4 --bits 4   # one kernel, one core
    .venv/bin/python benchmarks/vs_cmsis_nn.py --only models --models kws

What it does, in one run:
1. unpacks ../shared/third_party/CMSIS-NN-99f736a.tar.gz into the build cache (never into the
   repository) and compiles CMSIS-NN's s8/s4 convolution, depthwise and fully-connected sources;
2. builds, for each core, one bare-metal ELF holding our runtime (with its Arm fast paths),
   CMSIS-NN and benchmarks/cmsis_glue.c, plus one C function per measured layer of ours, whose
   body is exactly what the code generator emits for that layer (the layer's constants as
   `static const` data, the kernel call), compiled with the board profile's flags
   (arm-none-eabi-gcc, -mcpu, -O2; rp2040 stands for the Cortex-M0+);
3. runs every layer in unicorn on the same seeded int8 input: ours at index widths 2..8 and
   codebook layouts per-tensor / shared / per-channel, CMSIS-NN s8 and s4 (the kernels TFLite
   Micro calls: arm_fully_connected_s8, arm_convolve_wrapper_s8, arm_depthwise_conv_wrapper_s8
   and their s4 forms) and counts executed instructions, the instruction mix and estimated
   cycles (tinycluster/builders/cycles.py) and the stack each call writes;
4. checks outputs byte for byte: every layer of ours against CMSIS-NN s8 run on the same
   effective int8 weights (both follow TFLite's reference arithmetic), and ours at 4 bits with
   the identity codebook [-8..7] against CMSIS-NN s4 on the same int4 weights;
5. prints one table (instructions per MAC and estimated cycles per MAC per core), the whole
   model sums over every conv/depthwise/FC layer of the four shared models at 4 bits, and the
   must-show checks of issue 10 as PASS/FAIL lines with their figures.

MACs count multiply-accumulates of the layer (FC in*out, conv out_h*out_w*out_c*k_h*k_w*in_c,
depthwise out_h*out_w*out_c*k_h*k_w), as TFLite's profilers do.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tinycluster.boards import load_board  # noqa: E402
from tinycluster.builders import kernel_elf as KE  # noqa: E402
from tinycluster.builders.board import cross_cflags  # noqa: E402
from tinycluster.emit_context import EmitContext  # noqa: E402
from tinycluster.ir import Clustering, Graph, Node, QuantParams, Tensor  # noqa: E402
from tinycluster.ops import _packed_common as pc  # noqa: E402
from tinycluster.ops import get_handler  # noqa: E402
from tinycluster.paths import RUNTIME_INCLUDE  # noqa: E402

CMSIS_TAR = (REPO / ".." / "shared" / "third_party" / "CMSIS-NN-99f736a.tar.gz").resolve()
MODELS_DIR = (REPO / ".." / "shared" / "models").resolve()
GLUE = Path(__file__).resolve().parent / "cmsis_glue.c"

CORES = {"m4": "cortex-m4", "m7": "cortex-m7", "m33": "cortex-m33", "m0plus": "rp2040"}
CORE_LABEL = {"m4": "M4", "m7": "M7", "m33": "M33", "m0plus": "M0+"}
SHAPES = {
    "fc": dict(kind="fc", label="FC 640->128", n_in=640, n_out=128),
    "pw": dict(kind="conv", label="1x1 conv 25x5x64->64", h=25, w=5, cin=64, cout=64, k=1, padding="VALID"),
    "dw": dict(kind="dw", label="depthwise 3x3 25x5x64", h=25, w=5, c=64, k=3, padding="SAME"),
    "conv3": dict(kind="conv", label="3x3 conv 32x32x16->16", h=32, w=32, cin=16, cout=16, k=3, padding="SAME"),
}
MODELS = {"kws": "kws_ref_model.tflite", "resnet8": "pretrainedResnet_quant.tflite", "vww": "vww_96_int8.tflite",
          "ad01": "ad01_int8.tflite"}
LAYOUTS = ("per-tensor", "shared", "per-channel")
SHARED_GROUPS = 8
WEIGHTED_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")
KIND_OF_OP = {"FULLY_CONNECTED": "fc", "CONV_2D": "conv", "DEPTHWISE_CONV_2D": "dw"}
# the brief's CMSIS-NN figures (instructions per MAC, M4 / M0+), to check that this build reproduces them
BRIEF_CMSIS = {("fc", "s8"): (1.95, 6.19), ("fc", "s4"): (4.95, 7.79), ("pw", "s8"): (2.00, 7.56),
               ("dw", "s8"): (7.36, 35.6)}
BRIEF_MODELS = {"kws": (2.76, 10.83), "resnet8": (2.18, 7.25), "vww": (3.08, 11.57), "ad01": (2.18, 6.65)}
GUARD = 16


# ---------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------
@dataclass
class Case:
    id: str                 # C identifier suffix
    group: str              # shape key or model name
    impl: str               # "ours" | "cmsis-s8" | "cmsis-s4"
    kind: str               # fc | conv | dw
    graph: Graph
    node: Node
    weights: np.ndarray     # int8 weights CMSIS-NN runs on (effective weights of ours' variant), TFLite order
    bits: Optional[int] = None
    layout: str = ""
    profile: bool = True    # measured (False: run only for the byte-for-byte check)
    check_with: str = ""    # ours: id of the CMSIS case whose output must equal ours
    layer: str = ""         # model layer name
    scratch: Optional[int] = None  # kernel scratch granted (model layers: the plan's; None: the kernel's full size)
    flash_tables: int = 0   # flash pair table bytes granted (model layers: the plan's; synthetic layers: none)
    result: dict = field(default_factory=dict)

    @property
    def scratch_bytes(self) -> int:
        if self.scratch is not None:
            return self.scratch
        h = get_handler(self.node.op)
        if hasattr(h, "scratch_levels"):  # optional scratch: the fastest level, where it pays at all
            levels = h.scratch_levels(self.node, self.graph)
            return int(levels[0]) if levels else 0
        return int(h.scratch_bytes(self.node, self.graph))

    @property
    def macs(self) -> int:
        return int(get_handler(self.node.op).macs(self.node, self.graph))


def _q(scale, zp=0):
    return QuantParams(np.atleast_1d(np.asarray(scale, np.float32)), np.atleast_1d(np.asarray(zp, np.int64)))


def synth_graph(key: str, seed: int = 0, w_rms: float = 45.0):
    """One layer of SHAPES[key] as graph IR (resolved), with its int8 weights and int32 bias.
    Activations: input zero point -128 (after a ReLU, as in the shared models), RELU on conv and
    depthwise; per-channel weight scales on conv/depthwise, per-tensor on FC (as TFLite converts)."""
    s = SHAPES[key]
    rng = np.random.default_rng(seed)
    in_s, in_zp = 0.02, -128
    if s["kind"] == "fc":
        n_in, n_out = s["n_in"], s["n_out"]
        in_shape, w_shape, out_shape = (1, n_in), (n_out, n_in), (1, n_out)
        w_scale = np.float32(0.004)
        taps, n_ch, axis = n_in, n_out, 0
        attrs = {"activation": "NONE", "keep_num_dims": False, "weights_format": 0}
        op = "FULLY_CONNECTED"
    else:
        k = s["k"]
        h, w = s["h"], s["w"]
        if s["kind"] == "conv":
            cin, cout = s["cin"], s["cout"]
            w_shape, taps, axis, op = (cout, k, k, cin), k * k * cin, 0, "CONV_2D"
        else:
            cin = cout = s["c"]
            w_shape, taps, axis, op = (1, k, k, cout), k * k, 3, "DEPTHWISE_CONV_2D"
        oh, ow = pc.out_size(s["padding"], h, k, 1, 1), pc.out_size(s["padding"], w, k, 1, 1)
        in_shape, out_shape, n_ch = (1, h, w, cin), (1, oh, ow, cout), cout
        w_scale = rng.uniform(0.002, 0.006, size=n_ch).astype(np.float32)
        attrs = {"padding": s["padding"], "stride_h": 1, "stride_w": 1, "dil_h": 1, "dil_w": 1, "activation": "RELU"}
        if op == "DEPTHWISE_CONV_2D":
            attrs["depth_multiplier"] = 1
    W = np.clip(np.round(rng.normal(0, 45, size=w_shape)), -127, 127).astype(np.int8)
    # |x - zp| is ~128 on average with zp = -128: the accumulators spread ~150 * w_rms * sqrt(taps)
    acc_std = float(in_s) * float(np.mean(w_scale)) * np.sqrt(taps) * 150 * w_rms
    out_s, out_zp = 2 * acc_std / 127, (-128 if op != "FULLY_CONNECTED" else 0)
    bias = rng.integers(-(1 << 12), 1 << 12, size=n_ch).astype(np.int32)
    tensors = [Tensor(0, "input", in_shape, "int8", _q(in_s, in_zp)),
               Tensor(1, "weights", w_shape, "int8", QuantParams(np.atleast_1d(w_scale), np.zeros(np.size(w_scale), np.int64), axis),
                      data=W),
               Tensor(2, "bias", (n_ch,), "int32", QuantParams(np.atleast_1d(in_s * w_scale).astype(np.float32),
                                                                np.zeros(np.size(w_scale), np.int64)), data=bias),
               Tensor(3, "output", out_shape, "int8", _q(out_s, out_zp))]
    node = Node(0, op, [0, 1, 2], [3], attrs=attrs, name=f"{key}")
    g = Graph(tensors, [node], [0], [3], name=key)
    get_handler(op).resolve(node, g)
    return g, node, W, axis, n_ch


def clustering_for(W, axis, n_ch, bits, layout, rng) -> Clustering:
    """Random indices, codebooks drawn from the layer's own weight values (kernel speed does not
    depend on the values; drawing them from W keeps the outputs in range)."""
    k = 1 << bits
    idx = rng.integers(0, k, size=W.shape)
    pool = np.unique(W.astype(np.int64))

    def codebook():  # centred: random indices over a skewed codebook would saturate every output
        cb = rng.choice(pool, size=k, replace=pool.size < k)
        return np.sort(np.clip(cb - int(np.round(cb.mean())), -127, 127)).astype(np.int8)

    if layout == "per-tensor":
        return Clustering(idx, codebook()[None, :], bits, None, granularity="per-tensor")
    n_cb = n_ch if layout == "per-channel" else SHARED_GROUPS
    cbs = np.stack([codebook() for _ in range(n_cb)])
    cmap = np.arange(n_ch) if layout == "per-channel" else rng.integers(0, n_cb, size=n_ch)
    return Clustering(idx, cbs, bits, axis, codebook_of_channel=cmap,
                      granularity="per-channel" if layout == "per-channel" else "shared")


def effective_weights(graph, node) -> np.ndarray:
    t = graph.tensors[node.inputs[1]]
    return (t.clustering.values() if t.clustering is not None else np.asarray(t.data)).astype(np.int8)


def shape_cases(key, bits_list, layouts, seed=0) -> list:
    cases = []
    g, node, W, axis, n_ch = synth_graph(key, seed)
    kind = SHAPES[key]["kind"]
    cases.append(Case(f"{key}_s8", key, "cmsis-s8", kind, g, node, W))
    # CMSIS-NN s4 on int4 weights, and ours with the identity 4-bit codebook on the same weights
    g4, n4, _, _, _ = synth_graph(key, seed, w_rms=4.6)
    W4 = np.random.default_rng(seed + 7).integers(-8, 8, size=W.shape).astype(np.int8)
    g4.tensors[1].clustering = Clustering((W4.astype(np.int64) + 8), np.arange(-8, 8, dtype=np.int8)[None, :], 4,
                                          None, granularity="per-tensor")
    cases.append(Case(f"{key}_s4", key, "cmsis-s4", kind, g4, n4, W4))
    cases.append(Case(f"{key}_id4", key, "ours", kind, g4, n4, W4, bits=4, layout="identity", profile=False,
                      check_with=f"{key}_s4"))
    rng = np.random.default_rng(seed + 1)
    for bits in bits_list:
        for layout in (["raw"] if bits == 8 else layouts):
            gv, nv, _, _, _ = synth_graph(key, seed)
            if bits == 8:  # an 8-bit layer is emitted raw (the int8 weights themselves)
                gv.tensors[1].clustering = Clustering(W.astype(np.int64) + 128,
                                                      np.arange(-128, 128, dtype=np.int8)[None, :], 8, None)
            else:
                gv.tensors[1].clustering = clustering_for(W, axis, n_ch, bits, layout, rng)
            cid = f"{key}_b{bits}_{layout.replace('-', '')}"
            twin = f"{key}_s8" if bits == 8 else f"{cid}_s8twin"
            cases.append(Case(cid, key, "ours", kind, gv, nv, effective_weights(gv, nv), bits=bits, layout=layout,
                              check_with=twin))
            if bits != 8:
                cases.append(Case(f"{cid}_s8twin", key, "cmsis-s8", kind, gv, nv, effective_weights(gv, nv),
                                  profile=False))
    return cases


def model_cases(name, bits=4) -> list:
    import tinycluster
    path = MODELS_DIR / MODELS[name]
    if not path.exists():
        raise SystemExit(f"shared model {path} missing")
    cm = tinycluster.compile(path, bits=bits)
    g = cm.graph
    cases = []
    for node in g.nodes:
        if node.op not in WEIGHTED_OPS:
            continue
        kind = KIND_OF_OP[node.op]
        t = g.tensors[node.inputs[1]]
        if kind == "conv" and node.params["filter_in_c"] != node.params["in_c"]:
            raise SystemExit(f"{name}: grouped conv layer {node.name}: not handled by this benchmark's CMSIS glue")
        W = effective_weights(g, node)
        lay = pc.packed_layout(node, g, t, get_handler(node.op).weight_channel_axis,
                               int(t.shape[get_handler(node.op).weight_channel_axis]))
        layout = "raw" if lay.raw else ("per-tensor" if lay.stride == 0 else
                                         "shared" if lay.cmap is not None else "per-channel")
        cid = f"{name}_n{node.index}"
        cases.append(Case(f"{cid}_s8", name, "cmsis-s8", kind, g, node, W, layer=node.name))
        cases.append(Case(cid, name, "ours", kind, g, node, W, bits=lay.bits, layout=layout, check_with=f"{cid}_s8",
                          layer=node.name, scratch=int(cm.plan.scratch_size.get(node.index, 0)),
                          flash_tables=int(cm.plan.flash_tables.get(node.index, 0))))
    return cases


# ---------------------------------------------------------------------------------------------
# C for ours: what the generator emits for each layer
# ---------------------------------------------------------------------------------------------
def ours_c(cases, board) -> str:
    out = ["/* generated by benchmarks/vs_cmsis_nn.py: one function per layer, body as emitted */",
           "#include <stdint.h>", '#include "tc_kernels.h"', ""]
    for c in cases:
        if c.impl != "ours":
            continue
        ctx = EmitContext(prefix=f"b_{c.id}", graph=c.graph, **board.emit_options())
        ctx.tensor_exprs = {c.node.inputs[0]: "in", c.node.outputs[0]: "out"}
        # the scratch as the model's plan grants it: none (NULL) where the kernel's is optional
        # and the arena has no room for it
        ctx.scratch_exprs = {c.node.index: "scratch"} if c.scratch_bytes > 0 else {}
        ctx.scratch_sizes = {c.node.index: c.scratch_bytes}
        ctx.flash_tables = {c.node.index: c.flash_tables} if c.flash_tables else {}
        ctx.current_node = c.node
        lines = get_handler(c.node.op).emit(c.node, ctx)
        out += [d.text for d in ctx.decls]
        out.append(f"void tcb_{c.id}(const int8_t *in, int8_t *out, int8_t *scratch);")
        out.append(f"void tcb_{c.id}(const int8_t *in, int8_t *out, int8_t *scratch)\n{{")
        out.append("    (void)scratch;")
        out += ["    " + ln for ln in lines]
        out.append("}\n")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# CMSIS-NN build
# ---------------------------------------------------------------------------------------------
def cmsis_tree() -> Path:
    if not CMSIS_TAR.exists():
        raise SystemExit(f"{CMSIS_TAR} missing (see ../shared/third_party/README.md)")
    digest = hashlib.sha256(CMSIS_TAR.read_bytes()).hexdigest()[:12]
    root = KE.cache_dir() / f"cmsis-nn-{digest}"
    if not (root / ".complete").exists():
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(CMSIS_TAR) as tf:
            tf.extractall(root, filter="data")
        (root / ".complete").touch()
    hits = list(root.glob("*/Include/arm_nnfunctions.h"))
    if not hits:
        raise SystemExit(f"{CMSIS_TAR}: no Include/arm_nnfunctions.h inside")
    return hits[0].parent.parent


CMSIS_DEFINES = []  # --cmsis-define: extra -D for CMSIS-NN and the glue (e.g. CMSIS_NN_USE_REQUANTIZE_INLINE_ASSEMBLY)


def _cmsis_int8_source(name: str) -> bool:
    """The int8 / int4 sources (and what they call); float, int16-only, LSTM, SVDF, batch matmul
    and transpose conv are not needed."""
    if any(t in name for t in ("f16", "f32", "flt", "lstm", "svdf", "batch_matmul", "transpose", "s16_s16", "_s64")):
        return False
    return not (name.endswith("_s16.c") and "_s8_s16" not in name and "_s4_s16" not in name)


def cmsis_library(board) -> tuple:
    top = cmsis_tree()
    srcs = []
    for sub in ("ConvolutionFunctions", "FullyConnectedFunctions", "NNSupportFunctions"):
        srcs += sorted(p for p in (top / "Source" / sub).glob("*.c") if _cmsis_int8_source(p.name))
    # the same code generation flags as ours (board cflags + opt + sections); CMSIS-NN is not
    # written for -pedantic -Werror, which do not change code generation
    cflags = [*board.cflags, board.opt, "-ffunction-sections", "-fdata-sections", *CMSIS_DEFINES]
    objs = KE.compile_objects(srcs, cflags, [top / "Include"], f"cmsis-{board.name}")
    return KE.archive(objs, f"cmsisnn-{board.name}"), top / "Include"


def build_elf(cases, core, work: Path) -> Path:
    board = load_board(CORES[core])
    work.mkdir(parents=True, exist_ok=True)
    lib, cm_inc = cmsis_library(board)
    src = work / f"bench_ours_{board.name}.c"
    text = ours_c(cases, board)
    if not src.exists() or src.read_text() != text:
        src.write_text(text)
    ours_obj = KE.compile_objects([src], cross_cflags(board), [RUNTIME_INCLUDE], f"bench-{board.name}")
    glue_obj = KE.compile_objects([GLUE], [*board.cflags, board.opt, "-ffunction-sections", "-fdata-sections",
                                          *CMSIS_DEFINES],
                                  [cm_inc], f"glue-{board.name}")
    rt = KE.runtime_objects(board)
    keep = [f"tcb_{c.id}" for c in cases if c.impl == "ours"] + [
        f"cmb_{k}" for k in ("fc_s8", "fc_s4", "conv_s8", "conv_s4", "dw_s8", "dw_s4", "fc_bufsize",
                             "conv_s8_bufsize", "conv_s4_bufsize", "dw_s8_bufsize", "dw_s4_bufsize")]
    return KE.link(ours_obj + glue_obj, [KE.archive(rt, f"tc-{board.name}"), lib], board,
                   work / f"bench_{board.name}.elf", keep=keep)


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
def pack_s4(w: np.ndarray) -> bytes:
    v = (w.reshape(-1).astype(np.int64) & 0xF).astype(np.uint8)
    if v.size % 2:
        v = np.concatenate([v, np.zeros(1, np.uint8)])
    return (v[0::2] | (v[1::2] << 4)).astype(np.uint8).tobytes()


def cmsis_args(m, c: Case, in_addr, out_addr):
    """(function name, args address, scratch bytes) for a CMSIS-NN case."""
    g, node, p = c.graph, c.node, c.node.params
    n_ch = p["out_features"] if c.kind == "fc" else p["out_c"]
    bias = pc.bias_values(node, g, node.inputs[2] if len(node.inputs) > 2 else -1, n_ch)
    s4 = c.impl == "cmsis-s4"
    if s4:
        w_addr = m.put(pack_s4(c.weights))
    else:
        w_addr = m.put(np.ascontiguousarray(c.weights, np.int8))
    b_addr = 0 if bias is None else m.put(np.asarray(bias, np.int32))
    mult = np.asarray(p["mult"], np.int32)
    shift = np.asarray(p["shift"], np.int32)
    per_ch = int(p["requant_per_channel"])
    if c.kind != "fc" and mult.size == 1:
        mult, shift = np.repeat(mult, n_ch), np.repeat(shift, n_ch)
    m_addr, s_addr = m.put(mult), m.put(shift)
    if c.kind == "fc":
        dims = [p["batches"], 1, 1, p["in_features"], 1, 1, p["out_features"], 1, 1]
        geo = [1, 1, 0, 0, 1, 1, 1]
        per_ch = int(mult.size > 1)
    else:
        dims = [1, p["in_h"], p["in_w"], p["in_c"], p["out_h"], p["out_w"], p["out_c"], p["k_h"], p["k_w"]]
        geo = [p["stride_h"], p["stride_w"], p["pad_top"], p["pad_left"], p["dil_h"], p["dil_w"],
               p.get("depth_multiplier", 1)]
    q = [p["input_offset"], p.get("filter_offset", 0), p["output_offset"], p["act_min"], p["act_max"]]
    base = {"fc": "fc", "conv": "conv", "dw": "dw"}[c.kind]
    fn = f"cmb_{base}_{'s4' if s4 else 's8'}"
    args = [in_addr, w_addr, b_addr, out_addr, 0, 0, m_addr, s_addr, per_ch, *dims, *geo, *q]

    def blob():  # cmb_args: 32-bit fields (pointers are 32-bit on the target)
        return struct.pack("<" + "I" * len(args), *[int(v) & 0xFFFFFFFF for v in args])

    a_addr = m.put(blob())
    bs_fn = "cmb_fc_bufsize" if c.kind == "fc" else f"cmb_{base}_{'s4' if s4 else 's8'}_bufsize"
    m.call(bs_fn, a_addr)
    import unicorn.arm_const as A
    nscr = m.uc.reg_read(A.UC_ARM_REG_R0)
    nscr = nscr - (1 << 32) if nscr >= (1 << 31) else nscr
    scr = m.alloc(max(nscr, 4))
    args[4], args[5] = scr, nscr
    m.write(a_addr, blob())
    return fn, a_addr, max(int(nscr), 0)


def run_case(m, c: Case, x: np.ndarray, core: str) -> dict:
    m.reset_heap()
    n_out = int(np.prod(c.graph.tensors[c.node.outputs[0]].shape))
    in_addr = m.put(x)
    out_buf = m.alloc(n_out + 2 * GUARD)
    m.write(out_buf, bytes([0x5A]) * (n_out + 2 * GUARD))
    out_addr = out_buf + GUARD
    if c.impl == "ours":
        nscr = c.scratch_bytes
        scr = m.alloc(nscr + 1) + 1  # misaligned on purpose: the kernels accept any scratch alignment
        fn, args = f"tcb_{c.id}", (in_addr, out_addr, scr)
    else:
        fn, a_addr, nscr = cmsis_args(m, c, in_addr, out_addr)
        args = (a_addr,)
    t0 = time.perf_counter()
    res = {}
    if c.profile:
        n = m.call(fn, *args, profile=True, stack=True)
        est = m.estimate(load_board(CORES[core]).cpu)
        if est.instructions != n:
            raise SystemExit(f"internal: instruction mix total {est.instructions} != count {n} ({c.id}, {core})")
        res = dict(instructions=n, cycles=est.cycles, mix=est.to_dict()["mix"], taken=est.taken_branches,
                   stack=m.stack_used)
    else:
        m.call(fn, *args)
    raw = m.read(out_buf, n_out + 2 * GUARD)
    if raw[:GUARD] != bytes([0x5A]) * GUARD or raw[GUARD + n_out:] != bytes([0x5A]) * GUARD:
        raise SystemExit(f"{c.id} on {core}: the kernel wrote outside its output")
    res["output"] = raw[GUARD:GUARD + n_out]
    res["seconds"] = time.perf_counter() - t0
    res["macs"] = c.macs
    res["scratch"] = int(nscr)  # kernel scratch the call was given (bytes)
    return res


def run_core(cases, core, work, verbose=False) -> dict:
    t0 = time.perf_counter()
    elf = build_elf(cases, core, work)
    t_build = time.perf_counter() - t0
    m = KE.KernelMachine(elf, load_board(CORES[core]))
    inputs = {}
    results = {}
    for c in cases:
        shape = tuple(int(d) for d in c.graph.tensors[c.node.inputs[0]].shape)
        key = (c.group, c.layer or "", shape)
        if key not in inputs:
            h = int(hashlib.sha256(repr(key).encode()).hexdigest()[:8], 16)
            inputs[key] = np.random.default_rng(h).integers(-128, 128, size=shape).astype(np.int8)
        results[c.id] = run_case(m, c, inputs[key], core)
        if verbose:
            r = results[c.id]
            print(f"  {core} {c.id}: " + (f"{r['instructions'] / r['macs']:.2f} instr/MAC" if "instructions" in r else "run")
                  + f" ({r['seconds']:.1f} s)", flush=True)
    return {"results": results, "build_seconds": t_build, "run_seconds": time.perf_counter() - t0 - t_build,
            "elf": str(elf)}


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def _num(v, lim) -> str:
    """2 decimals, 3 where 2 would hide which side of the limit the value is on."""
    return f"{v:.3f}" if f"{v:.2f}" == f"{lim:.2f}" else f"{v:.2f}"


def per_mac(r, what="instructions"):
    return r[what] / r["macs"] if r and what in r else None


def fmt(v, nd=2):
    return "-" if v is None else f"{v:.{nd}f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cores", nargs="*", default=list(CORES), choices=list(CORES))
    ap.add_argument("--only", nargs="*", default=list(SHAPES) + ["models"], choices=list(SHAPES) + ["models"])
    ap.add_argument("--bits", nargs="*", type=int, default=[2, 3, 4, 5, 6, 7, 8])
    ap.add_argument("--layouts", nargs="*", default=list(LAYOUTS), choices=list(LAYOUTS))
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--work", default=str(REPO / "build" / "vs_cmsis_nn"),
                    help="build folder (per checkout: runs in two checkouts do not overwrite each other's ELFs)")
    ap.add_argument("--json", help="write every figure (per layer, per core) to this file")
    ap.add_argument("--cmsis-define", action="append", default=[], metavar="NAME[=VALUE]",
                    help="extra preprocessor define for CMSIS-NN (e.g. CMSIS_NN_USE_REQUANTIZE_INLINE_ASSEMBLY)")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    CMSIS_DEFINES[:] = [f"-D{d}" for d in a.cmsis_define]
    t_start = time.perf_counter()
    cases = []
    for key in SHAPES:
        if key in a.only:
            cases += shape_cases(key, sorted(set(a.bits)), a.layouts)
    if "models" in a.only:
        for name in a.models:
            cases += model_cases(name)
    by_id = {c.id: c for c in cases}
    runs = {}
    for core in a.cores:
        runs[core] = run_core(cases, core, Path(a.work), verbose=a.verbose)
        if a.verbose:
            print(f"{core}: build {runs[core]['build_seconds']:.1f} s, run {runs[core]['run_seconds']:.1f} s", flush=True)

    # byte-for-byte checks
    mismatches, checked = [], 0
    for core, run in runs.items():
        res = run["results"]
        for c in cases:
            if c.check_with:
                checked += 1
                if res[c.id]["output"] != res[c.check_with]["output"]:
                    mismatches.append(f"{core}:{c.id} != {c.check_with}")
    report(a, cases, by_id, runs, mismatches, checked)
    print(f"\n(total {time.perf_counter() - t_start:.0f} s)")
    if a.json:
        out = {"cores": {core: {"board": CORES[core], "build_seconds": r["build_seconds"],
                                "run_seconds": r["run_seconds"],
                                "cases": {cid: {k: v for k, v in rr.items() if k != "output"} | {
                                    "group": by_id[cid].group, "impl": by_id[cid].impl, "bits": by_id[cid].bits,
                                    "layout": by_id[cid].layout, "layer": by_id[cid].layer}
                                    for cid, rr in r["results"].items()}}
                         for core, r in runs.items()},
               "mismatches": mismatches, "checked": checked}
        Path(a.json).write_text(json.dumps(out, indent=1, default=float) + "\n")
    return 1 if mismatches else 0


def report(a, cases, by_id, runs, mismatches, checked):
    cores = list(runs)
    checks = []

    def r(core, cid):
        return runs[core]["results"].get(cid)

    # --- kernel table
    print("\n## Kernels: instructions per MAC (estimated cycles per MAC)\n")
    head = ("| shape | implementation | " + " | ".join(f"{CORE_LABEL[c]}" for c in cores)
            + " | stack (B, max) | scratch (B) |")
    print(head)
    print("|---|---|" + "---:|" * len(cores) + "---:|---:|")
    for key in SHAPES:
        rows = [c for c in cases if c.group == key and c.profile]
        for c in rows:
            name = {"cmsis-s8": "CMSIS-NN s8", "cmsis-s4": "CMSIS-NN s4"}.get(c.impl) or (
                f"ours {c.bits}-bit {c.layout}")
            cells = []
            for core in cores:
                rr = r(core, c.id)
                cells.append(f"{fmt(per_mac(rr))} ({fmt(per_mac(rr, 'cycles'))})")
            stack = max(r(core, c.id)["stack"] for core in cores)
            scratch = max(r(core, c.id).get("scratch", 0) for core in cores)  # the same on every core
            print(f"| {SHAPES[key]['label']} | {name} | " + " | ".join(cells) + f" | {stack} | {scratch:,} |")

    # --- models
    groups = [g for g in MODELS if any(c.group == g for c in cases)]
    if groups:
        print("\n## Whole models at 4 bits: every conv/depthwise/FC layer, summed "
              "(instructions per MAC (estimated cycles per MAC))\n")
        print("| model | layers | MACs | implementation | " + " | ".join(CORE_LABEL[c] for c in cores)
              + " | stack (B, deepest layer call) |")
        print("|---|---:|---:|---|" + "---:|" * len(cores) + "---:|")
        for g in groups:
            ours = [c for c in cases if c.group == g and c.impl == "ours"]
            cm = [c for c in cases if c.group == g and c.impl == "cmsis-s8"]
            macs = sum(c.macs for c in ours)
            for label, lst in (("CMSIS-NN s8", cm), ("ours 4-bit (auto layout)", ours)):
                cells = []
                for core in cores:
                    n = sum(r(core, c.id)["instructions"] for c in lst)
                    cy = sum(r(core, c.id)["cycles"] for c in lst)
                    cells.append(f"{n / macs:.2f} ({cy / macs:.2f})")
                stack = max(r(core, c.id)["stack"] for core in cores for c in lst)
                print(f"| {g} | {len(ours)} | {macs:,} | {label} | " + " | ".join(cells) + f" | {stack} |")

    # --- checks
    print("\n## Checks\n")

    def add(ok, text):
        checks.append(ok)
        print(f"{'PASS' if ok else 'FAIL'}  {text}")

    add(not mismatches, f"outputs byte for byte: ours == CMSIS-NN s8 on the same int8 weights, and ours 4-bit "
                        f"identity codebook == CMSIS-NN s4: {checked - len(mismatches)}/{checked} equal"
        + (f" (first: {mismatches[:3]})" if mismatches else ""))
    # CMSIS-NN as built here vs the figures in the brief (informational, not a must-show)
    notes = []
    for (key, impl), refs in BRIEF_CMSIS.items():
        cid = f"{key}_{impl}"
        if cid in by_id:
            notes += [(f"CMSIS-NN {impl} {SHAPES[key]['label']}", core, per_mac(r(core, cid)), ref)
                      for core, ref in zip(("m4", "m0plus"), refs) if core in runs]
    for g, refs in BRIEF_MODELS.items():
        cm = [c for c in cases if c.group == g and c.impl == "cmsis-s8"]
        if cm:
            macs = sum(c.macs for c in cm)
            notes += [(f"CMSIS-NN s8 {g} sum", core, sum(r(core, c.id)["instructions"] for c in cm) / macs, ref)
                      for core, ref in zip(("m4", "m0plus"), refs) if core in runs]
    for what, core, v, ref in notes:
        tag = "same" if abs(v - ref) <= 0.01 * ref + 0.005 else "DIFF"
        print(f"{tag:4}  {what} on {CORE_LABEL[core]}: {v:.2f} here, {ref} in the brief ({100 * (v / ref - 1):+.1f} %)")
    if notes:
        print()

    def ours(key, bits, layout, core):
        cid = f"{key}_b{bits}_{layout.replace('-', '')}"
        return per_mac(r(core, cid)) if cid in by_id and core in runs else None

    def must(label, items):
        """items: [(text, value, limit)]: one PASS/FAIL line for a must-show of the issue."""
        items = [(t, v, lim) for t, v, lim in items if v is not None]
        if items:
            add(all(v <= lim for _, v, lim in items),
                f"{label}: " + ", ".join(f"{t} {_num(v, lim)}{'' if v <= lim else ' (> ' + format(lim, '.2f') + ')'}"
                                         for t, v, lim in items))

    dsp = [c for c in ("m4", "m7", "m33") if c in runs]
    lay_pt = [x for x in ("per-tensor", "shared") if x in a.layouts]
    must("FC 640->128 4-bit, per-tensor/shared codebook <= 2.45 instr/MAC (M4, M7, M33)",
         [(f"{CORE_LABEL[c]} {x}", ours("fc", 4, x, c), 2.45) for c in dsp for x in lay_pt])
    must("FC 640->128 4-bit, per-channel codebooks <= 4.0 (M4, M7, M33)",
         [(CORE_LABEL[c], ours("fc", 4, "per-channel", c), 4.0) for c in dsp if "per-channel" in a.layouts])
    must("1x1 conv 4-bit <= 2.5 (M4, M7, M33)",
         [(f"{CORE_LABEL[c]} {x}", ours("pw", 4, x, c), 2.5) for c in dsp for x in a.layouts])
    must("depthwise 3x3 4-bit <= 7.4 (M4, M7, M33)",
         [(f"{CORE_LABEL[c]} {x}", ours("dw", 4, x, c), 7.4) for c in dsp for x in a.layouts])
    if "conv3_s8" in by_id:
        must("3x3 conv 4-bit <= 1.25 x CMSIS-NN s8 (M4, M7, M33)",
             [(f"{CORE_LABEL[c]} {x}", ours("conv3", 4, x, c), 1.25 * per_mac(r(c, "conv3_s8")))
              for c in dsp for x in a.layouts])
    must("4-bit ahead of CMSIS-NN s4 on every shape (M4, M7, M33)",
         [(f"{CORE_LABEL[c]} {k} {x}", ours(k, 4, x, c), per_mac(r(c, f"{k}_s4")) - 1e-9)
          for c in dsp for k in SHAPES if f"{k}_s4" in by_id for x in a.layouts])
    if "m0plus" in runs:
        for key, lim, what in (("fc", 7.7, "FC 640->128"), ("pw", 9.4, "1x1 conv"), ("dw", 20.0, "depthwise 3x3")):
            must(f"M0+ {what} 4-bit <= {lim}", [(x, ours(key, 4, x, "m0plus"), lim) for x in a.layouts])
    for g in MODELS:
        ol = [c for c in cases if c.group == g and c.impl == "ours"]
        cl = [c for c in cases if c.group == g and c.impl == "cmsis-s8"]
        if ol:
            must(f"{g} at 4 bits <= 1.25 x the CMSIS-NN s8 sum over the same layers (ratio, M4 and M0+)",
                 [(CORE_LABEL[c], sum(r(c, x.id)["instructions"] for x in ol) / sum(r(c, x.id)["instructions"] for x in cl),
                   1.25) for c in ("m4", "m0plus") if c in runs])
    for key in ("fc", "pw"):
        for core in [c for c in ("m4",) if c in runs]:
            must(f"{SHAPES[key]['label']}: widths 2, 3, 5, 6 <= 1.5 x the 4-bit figure (M4; ratio)",
                 [(f"{b}-bit {x}", ours(key, b, x, core) / ours(key, 4, x, core), 1.5)
                  for x in a.layouts for b in (2, 3, 5, 6) if ours(key, b, x, core) and ours(key, 4, x, core)])
    worst = max((rr["stack"] for run in runs.values() for cid, rr in run["results"].items()
                 if "stack" in rr and by_id[cid].impl != "ours"), default=0)
    worst_ours = max((rr["stack"] for run in runs.values() for cid, rr in run["results"].items()
                      if "stack" in rr and by_id[cid].impl == "ours"), default=0)
    add(worst_ours <= 2048, f"stack per kernel call (ours, deepest over every layer and core): {worst_ours} B <= 2048 B "
                            f"(CMSIS-NN calls: {worst} B at most)")
    print("\nnot checked here: host >= 6x TFLM (benchmarks/host_vs_tflm.py), whole models bit-exact in QEMU "
          "(tinycluster run; tests/test_boards.py), Arm-path property tests (tests/test_arm_kernels.py, in CI)")
    n_fail = checks.count(False)
    print(f"\n{len(checks) - n_fail} PASS, {n_fail} FAIL")


if __name__ == "__main__":
    sys.exit(main())
