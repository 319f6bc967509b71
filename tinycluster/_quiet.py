"""Keep TensorFlow's C++ start-up chatter off the user's terminal.

TensorFlow prints absl/cuda messages on file descriptor 2 while it is imported, before any
log level applies; they would bury tinycluster's one-line errors. The import is done with
fd 2 pointed at /dev/null (Python-level warnings are unaffected afterwards).
"""
import contextlib
import os
import sys


@contextlib.contextmanager
def stderr_silenced():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with stderr_silenced():
        import tensorflow

    return tensorflow
