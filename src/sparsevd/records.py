"""Run records: the folder layout, provenance (git SHA, versions, device), reading final.json and
publishing a finished run's record under results/runs in one atomic step."""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from .io import RecordError

RECORD_FILES = ("final.json", "metrics.jsonl", "config.yaml")
CHECKPOINT = "checkpoint.pt"
CODE_PATHS = ("src", "scripts", "configs", "pyproject.toml")  # what a run's result depends on
_LOADED_GIT: dict | None = None


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
