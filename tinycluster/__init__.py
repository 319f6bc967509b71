"""tinycluster: weight-clustered neural networks as plain C99 for microcontrollers."""
__version__ = "0.1.0"

from .api import CompiledModel, compile  # noqa: E402,F401
