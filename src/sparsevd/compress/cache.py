"""A cache of what ``make compress`` measures per record, so that a re-run after one new record measures
that record only.

An entry is keyed by everything the measurement reads: the record's ``weights.safetensors`` and
``config.yaml`` (their bytes), the package's source files outside ``NOT_MEASURED`` (training, the report,
the benchmarks), the versions of torch, numpy, onnx and onnxruntime, and the data files the record's
config points at (their names, sizes and modification times). A change to any of them is a miss, and the
record is measured again; a change to the report's tables or sentences keeps every entry. Entries are JSON
files under ``$SPARSEVD_CACHE`` (default ``~/.cache/sparsevd``); deleting the folder, or
``scripts/compress.py --no-cache``, measures everything. An entry that cannot be read is measured again
and rewritten.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import yaml

from ..data import data_root, raw_folder
from .weights import weights_sha256

ENV_VAR = "SPARSEVD_CACHE"
PACKAGE = Path(__file__).resolve().parents[1]


def default_dir() -> Path:
    return Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "sparsevd").expanduser() / "compress"


# Folders the measurements never import (training, the report's tables and figures, the benchmarks): a
# change there keeps the entries. Every other source file of the package is part of the key.
NOT_MEASURED = ("train", "report", "bench")


# The libraries that run a measurement: the net (torch), the sweep's arrays (numpy), the ONNX file and its
# runtime. A new version of one of them is a miss.
LIBRARIES = ("torch", "numpy", "onnx", "onnxruntime")


def _version(name: str) -> str:
    try:
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return f"{name} absent"


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 over the package's Python sources that a measurement can run and the versions of
    ``LIBRARIES``: a change to either is a miss."""
    h = hashlib.sha256(" ".join(_version(name) for name in LIBRARIES).encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] in NOT_MEASURED:
            continue
        h.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def data_fingerprint(data: dict) -> list:
    """The data folder a config reads, and each file in it by name, size and modification time."""
    raw = raw_folder(data_root(data["root"]).resolve(), data["name"])
    files = sorted(raw.glob("*")) if raw.is_dir() else []
    return [str(raw)] + [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files if p.is_file()]


def record_key(kind: str, folder: Path) -> str:
    """The cache key of measurement ``kind`` on the record in ``folder``."""
    from ..config import upgrade_config  # as in weights.load_record: compress reads configs only here
    folder = Path(folder)
    config = (folder / "config.yaml").read_bytes()
    h = hashlib.sha256(f"{kind}\0{code_fingerprint()}\0{weights_sha256(folder)}\0".encode() + config)
    h.update(json.dumps(data_fingerprint(upgrade_config(yaml.safe_load(config))["data"])).encode())
    return h.hexdigest()


def cached(kind: str, folder: Path, measure: Callable[[], Any], cache_dir: Path | None) -> Any:
    """``measure()``'s JSON-able result for the record in ``folder``, read from ``cache_dir`` when an
    entry with the same key is there; ``cache_dir=None`` always measures and stores nothing."""
    if cache_dir is None:
        return measure()
    path = Path(cache_dir) / f"{kind}-{record_key(kind, folder)}.json"
    try:
        return json.loads(path.read_text())["value"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no entry, or one that cannot be trusted: measure again
    from ..io import RecordError, atomic_write_text
    value = measure()
    try:
        atomic_write_text(path, json.dumps({"record": str(folder), "value": value}))
    except RecordError as exc:  # a cache that cannot be written costs the next run time, never this one's result
        warnings.warn(f"not kept for the next run: {exc}", stacklevel=2)
    return value


__all__ = ["cached", "code_fingerprint", "data_fingerprint", "default_dir", "record_key", "ENV_VAR"]
