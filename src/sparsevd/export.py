"""``sparsevd.export``: call it to write a compact file, ``sparsevd.export.load`` (or ``sparsevd.load``) reads one.

    sparsevd.export(model, "net.svd")         # the writer, sparsevd.compress.export.export
    sparsevd.export(model, "net.onnx", format="onnx")   # the same network as ONNX (the onnx extra)
    net = sparsevd.load("net.svd")            # the reader, sparsevd.compress.reader.load
    from sparsevd.export import load          # the same reader

The name is a module that can be called, so the function and ``from sparsevd.export import ...``
never mean two different things.
"""
import sys
import types

from .compress.export import ExportError, ExportOptions, export as _export
from .compress.reader import ExportFormatError, load

__all__ = ["load", "ExportOptions", "ExportError", "ExportFormatError"]


class _CallableModule(types.ModuleType):
    def __call__(self, model, path, **kwargs) -> int:
        """Write ``model`` to ``path`` in the compact format (or ``format="onnx"``: as ONNX); returns the
        file's size in bytes (see :func:`sparsevd.compress.export.export` for the options)."""
        return _export(model, path, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
