"""The op-handler interface: one module per op, each with the same three steps.

    parse(raw, graph)    -> attrs dict   read the op's options from the imported model
    resolve(node, graph)                 check shapes/quantization, fill node.params with
                                         integer-only parameters (all float math happens here)
    emit(node, ctx)      -> [C stmts]    C statements for the invoke function; constants are
                                         declared through ctx (see EmitContext in emit.py)

plus ``reference(node, graph, inputs) -> [outputs]``: a numpy model of the C kernel, bit-exact,
used by the kernel tests and by the numpy graph executor.

Handlers register themselves with ``@register("OP_NAME", ...)``; every module in
``tinycluster/ops/`` is imported by ``tinycluster.ops`` so adding an op is adding a module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

_REGISTRY: dict = {}


@dataclass
class RawOp:
    """An operator as the importer saw it, before its handler parses it."""

    index: int
    op: str  # builtin name, e.g. "CONV_2D"
    inputs: list
    outputs: list
    options: Any = None  # the tflite package's options object (e.g. tflite.Conv2DOptions), or None
    source: str = ""  # model file (for messages)


class OpHandler:
    #: TFLite builtin names this handler serves (filled by @register)
    ops: tuple = ()
    #: index of the clusterable weight input (conv/dw/fc: 1), None for ops without weights
    weight_input: Optional[int] = None
    #: axis of the weight tensor that is the output channel (codebook selector for per-channel)
    weight_channel_axis: Optional[int] = None
    #: "none": output needs its own buffer; "elementwise": output may alias input 0 exactly
    #: (same size, element i of the output written only after element i of the input is read);
    #: "alias": output IS input 0 (no code, e.g. RESHAPE); "rows": supports emit_rows (row-range
    #: execution used by the planner for in-place conv with a ring buffer)
    inplace: str = "none"
    #: how many inputs the op takes (minimum, maximum), which of them may be absent (-1), and
    #: how many outputs it has: checked before ``resolve`` (:func:`check_operands`)
    n_inputs: tuple = (1, 1)
    optional_inputs: tuple = ()
    n_outputs: int = 1

    def parse(self, raw: RawOp, graph) -> dict:
        return {}

    def resolve(self, node, graph) -> None:
        pass

    def emit(self, node, ctx) -> list:
        raise NotImplementedError

    # True when the kernel also runs with a NULL scratch (its scratch only speeds it up): the
    # planner then grants scratch_bytes() only where the arena has room (planner.plan_memory)
    scratch_optional = False

    def scratch_bytes(self, node, graph) -> int:
        """Caller-owned scratch the kernel needs (mirrors the C *_get_buffer_size())."""
        return 0

    def macs(self, node, graph) -> int:
        return 0

    def reference(self, node, graph, inputs: list) -> list:
        raise NotImplementedError


def check_operands(handler: OpHandler, node, graph) -> None:
    """The operand counts and indices ``handler`` accepts (TFLite's NumInputs/NumOutputs checks),
    before its ``resolve`` reads them: a one-line error naming the rule otherwise."""
    from ..errors import TinyClusterError

    lo, hi = handler.n_inputs
    n = len(node.inputs)
    if not lo <= n <= hi:
        takes = f"{lo}" if lo == hi else f"{lo} to {hi}"
        raise TinyClusterError(f"has {n} inputs; {node.op} takes {takes}")
    for k, tid in enumerate(node.inputs):
        if tid < 0 and k not in handler.optional_inputs:
            raise TinyClusterError(f"input {k} is absent (-1), but {node.op} requires it")
    if len(node.outputs) != handler.n_outputs:
        raise TinyClusterError(f"has {len(node.outputs)} outputs; {node.op} has {handler.n_outputs}")


def register(*names):
    def deco(cls):
        inst = cls()
        inst.ops = tuple(names)
        for n in names:
            _REGISTRY[n] = inst
        return cls

    return deco


def get_handler(op: str) -> OpHandler:
    from ..errors import UnsupportedOpError

    if op not in _REGISTRY:
        raise UnsupportedOpError(f"unsupported op {op}; supported: {', '.join(supported_ops())}")
    return _REGISTRY[op]


def supported_ops():
    return sorted(_REGISTRY)
