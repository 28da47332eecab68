"""Run records: atomic writes, provenance, checkpoints, and the committed copy under results/runs.

Everything here writes to a temp file in the same folder and renames it into place, so a kill
at any moment leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

RECORD_FILES = ("final.json", "metrics.jsonl", "config.yaml")
CHECKPOINT = "checkpoint.pt"


class RecordError(RuntimeError):
    """A record or checkpoint that cannot be written or trusted; the message says what to do."""


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise RecordError(f"cannot write to {path.parent} ({exc.strerror}); "
                          f"make it writable or choose another folder") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; records are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda f: f.write(data))


def _finite_json(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise RecordError(f"refusing to write a non-finite number ({obj}) into a record")
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    return obj


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_finite_json(obj), indent=2, sort_keys=True) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(_finite_json(r), sort_keys=True) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


_LOADED_GIT: dict | None = None


CODE_PATHS = ("src", "scripts", "configs", "pyproject.toml")  # what a run's result depends on


def git_info(repo: Path | None = None) -> dict:
    """Commit SHA and whether the code differed from it (``dirty``: uncommitted changes under
    CODE_PATHS; new records, figures and docs do not count, so a sweep's later jobs stay clean).

    For this package's own repo the answer is taken once per process: a Hydra multirun runs every
    job on the code it imported first, even if HEAD moves during the sweep.
    """
    global _LOADED_GIT
    if repo is None:
        if _LOADED_GIT is None:
            _LOADED_GIT = git_info(Path(__file__).resolve().parents[2])
        return dict(_LOADED_GIT)
    repo = Path(repo)

    def git(*args):
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""
    try:
        sha = git("rev-parse", "HEAD") or None
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)) if sha else None
    except (OSError, subprocess.SubprocessError):
        sha, dirty = None, None
    return {"sha": sha, "dirty": dirty}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    import torchvision

    info = {
        "git": git_info(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "host": platform.node(),
    }
    return info


def save_checkpoint(path: Path, state: dict) -> None:
    _atomic_write(Path(path), lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict:
    """Load with ``weights_only=True``: a checkpoint from elsewhere can hold tensors, never code."""
    return read_checkpoint(path)[0]


def read_checkpoint(path: Path) -> tuple[dict, str]:
    """The checkpoint and the SHA-256 of the very bytes it was loaded from (one read, so they agree)."""
    path = Path(path)
    if not path.exists():
        raise RecordError(f"no checkpoint at {path}; pass resume=<run dir> of a run that saved one")
    raw = path.read_bytes()
    try:
        return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True), hashlib.sha256(raw).hexdigest()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecordError(f"refusing to load {path}: not a plain-tensor checkpoint ({first[:160]}); "
                          f"only checkpoints written by sparsevd can be resumed") from None


# The one migration step for configs of older records: options added since, with the value that
# reproduces those records, and options whose null once stood for a value.
ADDED_OPTIONS = {"data.val_size": 0, "method.clip_noise": None, "model.init_from": None, "optim.weight_decay": 0.0,
                 "method.log_alpha_clip": 8.0, "trainer.compile": False,
                 "method.kl_fit": "eq14", "data.labels": "original", "optim.log_sigma2_lr_scale": 1.0}
NULL_MEANT = {"method.log_alpha_clip": 8.0, "optim.weight_decay": 0.0}
REMOVED_OPTIONS = ("optim.name",)  # it only ever said adam


def upgrade_config(cfg: dict) -> dict:
    """A copy of a saved config in today's schema, every older record computing what it computed."""
    out = json.loads(json.dumps(cfg))
    for dotted, value in ADDED_OPTIONS.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node.setdefault(leaf, value)
        if node[leaf] is None and dotted in NULL_MEANT:
            node[leaf] = NULL_MEANT[dotted]
    for dotted in REMOVED_OPTIONS:
        group, leaf = dotted.split(".")
        out.get(group, {}).pop(leaf, None)
    return out


def record_dir(results_dir: Path, name: str, seed: int) -> Path:
    return Path(results_dir) / name / f"seed{seed}"


def read_final(path: Path) -> dict:
    """Parse a final.json with plain JSON, raising RecordError if it is corrupt or incomplete."""
    try:
        final = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RecordError(f"{path}: unreadable ({type(exc).__name__})") from None
    if not isinstance(final, dict) or "metrics" not in final or "config" not in final:
        raise RecordError(f"{path}: missing 'metrics' or 'config'")
    return final


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders in one step (Linux renameat2 RENAME_EXCHANGE), so `b` never goes missing."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        err = ctypes.get_errno()
        raise RecordError(f"could not replace {b} atomically ({os.strerror(err)}); the old record is untouched")


def publish(run_dir: Path, dest: Path, force: bool = False) -> Path:
    """Copy a finished run's record into ``dest`` (results/runs/<experiment>/seed<k>/).

    The copy is staged in a temp folder and swapped in, so ``dest`` is never half-written. An
    existing good record is only replaced when ``force`` is set.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    if (dest / "final.json").exists() and not force:
        raise RecordError(f"{dest} already holds a record; re-run with FORCE=1 "
                          f"(results.force=true) to replace it")
    extras = [f for f in ("arrays.npz", "weights.safetensors") if (run_dir / f).exists()]
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
        staging.chmod(0o755)  # mkdtemp makes 0700; records are meant to be shared
    except OSError as exc:
        raise RecordError(f"cannot write to {dest.parent} ({exc.strerror}); make it writable "
                          f"or set results.dir to another folder") from None
    try:
        for fname in (*RECORD_FILES, *extras):
            shutil.copy2(run_dir / fname, staging / fname)
        if not dest.exists():
            os.replace(staging, dest)
        else:
            _exchange(staging, dest)  # staging now holds the old record, removed below
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
