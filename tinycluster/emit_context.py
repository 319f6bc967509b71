"""EmitContext: what an op handler's emit step may ask of the C emitter.

Handlers never write C declarations themselves; they ask the context for them, so that
every constant is counted in the flash/SRAM report and every identifier is checked.
"""
from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import TinyClusterError
from .packing import pack_indices

C_RESERVED = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum",
    "extern", "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return",
    "short", "signed", "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void",
    "volatile", "while", "_Bool", "_Complex", "_Imaginary", "bool", "true", "false", "main", "NULL",
}
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

CTYPES = {
    "int8_t": (ctypes.c_int8, np.int8),
    "uint8_t": (ctypes.c_uint8, np.uint8),
    "int16_t": (ctypes.c_int16, np.int16),
    "uint16_t": (ctypes.c_uint16, np.uint16),
    "int32_t": (ctypes.c_int32, np.int32),
    "uint32_t": (ctypes.c_uint32, np.uint32),
}


def sanitize_identifier(name: str) -> str:
    """Turn any string into a valid, non-reserved C identifier (lower case)."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_").lower() or "model"
    s = re.sub(r"_+", "_", s)
    if s[0].isdigit():
        s = "m_" + s
    if s in C_RESERVED or s.startswith("tc_"):
        s = s + "_model"
    s = s[:40]
    check_identifier(s)
    return s


def check_identifier(s: str) -> str:
    if not IDENT_RE.match(s) or s in C_RESERVED:
        raise TinyClusterError(f"'{s}' is not a valid C identifier (must match {IDENT_RE.pattern} and not be a C keyword)")
    return s


def format_values(values, per_line: int = 16) -> str:
    vals = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return ",\n    ".join(lines)


@dataclass
class Decl:
    kind: str  # "flash" | "sram" (initialized mutable data)
    ident: str
    ctype: str
    text: str
    nbytes: int
    owner: str = ""  # node name, for the per-layer report
    role: str = ""  # "indices" | "codebook" | "bias" | "requant" | "params" | "tables" | "other"


@dataclass
class EmitContext:
    prefix: str
    graph: object
    codebook_placement: str = "sram"  # "sram" (initialized .data) or "flash" (const)
    flash_section: str = ""  # optional __attribute__((section(...))) for const index arrays
    sram_section: str = ""
    decls: list = field(default_factory=list)
    tensor_exprs: dict = field(default_factory=dict)  # tensor id -> C expression (set by the planner)
    scratch_exprs: dict = field(default_factory=dict)  # node index -> C expression of its scratch
    scratch_sizes: dict = field(default_factory=dict)  # node index -> bytes of its scratch (as planned)
    flash_tables: dict = field(default_factory=dict)  # node index -> bytes of its flash pair tables (planned)
    current_node: object = None
    _used: set = field(default_factory=set)

    # -- identifiers -------------------------------------------------------------------------
    def ident(self, base: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", base).strip("_").lower() or "x"
        name = f"{self.prefix}_{base}"
        cand, i = name, 1
        while cand in self._used:
            i += 1
            cand = f"{name}_{i}"
        check_identifier(cand)
        self._used.add(cand)
        return cand

    def _owner(self):
        n = self.current_node
        return n.name if n is not None else ""

    # -- constants -----------------------------------------------------------------------
    def const_array(self, base: str, ctype: str, values, role: str = "other") -> str:
        """A flash-resident `static const` array; returns its identifier."""
        _, npt = CTYPES[ctype]
        arr = np.asarray(values)
        info = np.iinfo(npt)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            bad = arr.min() if arr.min() < info.min else arr.max()
            raise TinyClusterError(f"constant {base} holds {int(bad)}, outside the range of {ctype} "
                                   f"[{info.min}, {info.max}]")
        arr = arr.astype(npt)
        ident = self.ident(base)
        n = max(arr.size, 1)
        body = format_values(arr) if arr.size else "0"
        sect = f" {self.flash_section}" if (self.flash_section and role == "indices") else ""
        text = f"static const {ctype} {ident}[{n}]{sect} = {{\n    {body}\n}};"
        self.decls.append(Decl("flash", ident, ctype, text, n * arr.itemsize, self._owner(), role))
        return ident

    def codebook_array(self, base: str, values) -> str:
        """Codebook entries (int8). Placement per ``codebook_placement``:
        "sram": initialized mutable data (.data: SRAM at run time, initial values in flash);
        "flash": const, read from flash."""
        arr = np.asarray(values).astype(np.int8)
        if self.codebook_placement == "flash":
            return self.const_array(base, "int8_t", arr, role="codebook")
        ident = self.ident(base)
        sect = f" {self.sram_section}" if self.sram_section else ""
        text = f"static int8_t {ident}[{arr.size}]{sect} = {{\n    {format_values(arr)}\n}};"
        self.decls.append(Decl("sram", ident, "int8_t", text, arr.size, self._owner(), "codebook"))
        return ident

    def packed_indices(self, tensor) -> str:
        """Pack tensor.clustering.indices (tensor layout order) into a flash array."""
        cl = tensor.clustering
        data = pack_indices(cl.indices.reshape(-1), cl.bits)
        return self.const_array(f"{tensor.name}_idx", "uint8_t", np.frombuffer(data, np.uint8), role="indices")

    def const_struct(self, base: str, ctype: str, fields: list, role: str = "params") -> str:
        """A `static const` pointer-free params struct.

        fields: [(name, c_scalar_type, value), ...] in the exact order of the C definition
        (used to compute sizeof with the C ABI's alignment rules).
        """
        for n, t, v in fields:  # every initializer must fit its field (the C is built with -Werror)
            info = np.iinfo(CTYPES[t][1])
            if not info.min <= int(v) <= info.max:
                raise TinyClusterError(f"parameter {n} = {int(v)} does not fit the {t} field of {ctype} "
                                       f"[{info.min}, {info.max}]")
        cfields = [(n, CTYPES[t][0]) for n, t, _ in fields]
        S = type("S", (ctypes.Structure,), {"_fields_": cfields})
        ident = self.ident(base)
        inits = ", ".join(f".{n} = {int(v)}" for n, _, v in fields)
        text = f"static const {ctype} {ident} = {{ {inits} }};"
        self.decls.append(Decl("flash", ident, ctype, text, ctypes.sizeof(S), self._owner(), role))
        return ident

    # -- buffers -------------------------------------------------------------------------
    def tensor(self, tid: int) -> str:
        """C expression for an activation tensor's data (int8_t *, or const for the model input)."""
        return self.tensor_exprs[tid]

    def scratch(self) -> str:
        """C expression (int8_t *) of this node's scratch buffer (sized by scratch_bytes)."""
        return self.scratch_exprs.get(self.current_node.index, "(int8_t *)0")

    def scratch_size(self, default: int) -> int:
        """Bytes of this node's scratch: as planned (scratch_sizes), else `default` where the node
        has a scratch buffer and 0 where it has none (NULL)."""
        idx = self.current_node.index
        if idx in self.scratch_sizes:
            return int(self.scratch_sizes[idx])
        return int(default) if idx in self.scratch_exprs else 0

    # -- accounting ----------------------------------------------------------------------
    def bytes_by(self, kind=None, role=None, owner=None) -> int:
        return sum(d.nbytes for d in self.decls
                   if (kind is None or d.kind == kind) and (role is None or d.role == role)
                   and (owner is None or d.owner == owner))
