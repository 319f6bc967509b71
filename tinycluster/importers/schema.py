"""The TFLite schema's object API (read a model into mutable Python objects, write it back).

The read-only ``tflite`` package parses models for the importer; changing a model's structure
(new vector lengths, new tensors, fuzzing mutations) needs the object API, which the flatbuffers
code generator emits as ``ModelT``. ``tflite_micro`` (a core dependency: it is also the reference
interpreter of ``verify``) ships that generated module; this is the one place that imports it.
"""
from __future__ import annotations

from ..errors import TinyClusterError


def schema():
    """The generated schema module (``ModelT``, ``TensorT``, ``BuiltinOperator``, ...)."""
    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    except ImportError as e:  # pragma: no cover - tflite-micro is a core dependency
        raise TinyClusterError("the TFLite schema's object API needs the 'tflite-micro' package "
                               f"(pip install tflite-micro): {e}") from None
    return s


def read_model_t(data: bytes, source: str = "model"):
    """``ModelT`` of a .tflite held in ``data``; a one-line error if it does not parse."""
    s = schema()
    try:
        return s.ModelT.InitFromPackedBuf(bytes(data), 0)
    except Exception as e:  # flatbuffers raises anything from struct.error to IndexError
        raise TinyClusterError(f"{source}: not a readable TFLite flatbuffer ({type(e).__name__})") from None


def write_model_t(model_t) -> bytes:
    """Serialize a ``ModelT`` with the TFLite file identifier."""
    import flatbuffers

    b = flatbuffers.Builder(1 << 16)
    b.Finish(model_t.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())
