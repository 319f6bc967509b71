"""User-facing errors.

Every problem caused by the user's input (a bad file, an unsupported op, an
out-of-range option) is raised as :class:`TinyClusterError`. The CLI prints its
message on one line and exits non-zero; it never shows a traceback for these.
Messages should name the file, the op or layer, and what to do about it.
"""


class TinyClusterError(Exception):
    """An error the user can act on. ``str(err)`` is a complete one-line message."""


class UnsupportedOpError(TinyClusterError):
    pass


class VerificationError(TinyClusterError):
    pass
