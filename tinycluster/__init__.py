"""tinycluster: weight-clustered neural networks as plain C99 for microcontrollers."""
import os as _os

__version__ = "0.1.0"

# Clustering uses numpy on small arrays; a multi-threaded BLAS would only leave threads
# spinning that steal a core from the host build and the TFLite Micro reference (both
# single-threaded), skewing `verify`'s timings. Only applies if numpy is not loaded yet.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .api import CompiledModel, compile  # noqa: E402,F401
