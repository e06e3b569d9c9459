"""graze_trace: mark a Python program's own phases in a `graze submit --trace` run.

    import graze_trace

    with graze_trace.region("compute"):
        ...

    @graze_trace.region("exchange")
    def exchange(comm): ...

In a traced run graze preloads its PMPI tracer into every rank; `region` calls the tracer's
`graze_trace_region_begin` / `graze_trace_region_end` (docs/TRACE_FORMAT.md, user regions).
When the tracer is not loaded (an untraced run, or no graze at all) `region` does nothing.
Regions may nest; names are UTF-8, cut to 255 bytes by the tracer.
"""

import contextlib
import ctypes

__all__ = ["region", "enabled"]


def _lookup():
    try:
        process = ctypes.CDLL(None)  # the global scope: the preloaded tracer is in it
        begin = process.graze_trace_region_begin
        end = process.graze_trace_region_end
    except (OSError, AttributeError):
        return None, None
    begin.argtypes = [ctypes.c_char_p]
    begin.restype = None
    end.argtypes = [ctypes.c_char_p]
    end.restype = None
    return begin, end


_begin, _end = _lookup()


def enabled():
    """True when the graze tracer is loaded into this process."""
    return _begin is not None


class region(contextlib.ContextDecorator):
    """A user region: a context manager, or a decorator for a whole function."""

    def __init__(self, name):
        if not isinstance(name, str) or not name:
            raise ValueError("graze_trace.region needs a non-empty name, got %r" % (name,))
        self._name = name.encode("utf-8")

    def __enter__(self):
        if _begin is not None:
            _begin(self._name)
        return self

    def __exit__(self, *exc):
        if _end is not None:
            _end(self._name)
        return False
