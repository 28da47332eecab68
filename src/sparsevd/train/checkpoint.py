"""Checkpoints and resuming: writing and reading a run's checkpoint (plain tensors only), and which
run folder a training continues: an explicit one (checked against the config) or, with
``resume=auto``, the newest unfinished run of the same config."""
from __future__ import annotations

import hashlib
import io
from dataclasses import asdict
from pathlib import Path

import torch
import yaml

from ..config import Config, upgrade_config
from ..io import RecordError, atomic_write
from ..records import CHECKPOINT


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(Path(path), lambda f: torch.save(state, f))


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

# Keys that may differ between a run and its resumption without changing what is computed.
VOLATILE_KEYS = ("resume", "outputs", "logger", "device", "results", "data.root", "trainer.progress",
                 "trainer.compile", "trainer.threads")


def comparable(cfg: dict) -> dict:
    """The config without the keys that may change across a resume."""
    out = upgrade_config(cfg)
    for dotted in VOLATILE_KEYS:
        *parents, leaf = dotted.split(".")
        node = out
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return out


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}={va!r} (checkpoint) vs {vb!r} (now)")
    return out


def find_unfinished(outputs: Path, cfg: dict) -> Path | None:
    """The newest run folder under ``outputs`` with a checkpoint, no final.json and the same config."""
    want = comparable(cfg)
    candidates = []
    for ckpt in Path(outputs).rglob(CHECKPOINT):
        run_dir = ckpt.parent
        if (run_dir / "final.json").exists() or not (run_dir / "config.yaml").exists():
            continue
        try:
            saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        except yaml.YAMLError:
            continue
        if not _diff(comparable(saved), want):  # upgrade_config: a key added since still matches
            candidates.append((ckpt.stat().st_mtime, run_dir))
    return max(candidates)[1] if candidates else None


def resume_target(c: Config, run_dir: Path) -> tuple[bool, Path]:
    """(whether to resume, the run folder to use) for ``c.resume``: null, "auto" or a folder."""
    resume, cfg = c.resume, asdict(c)
    if resume == "auto":
        found = find_unfinished(Path(c.outputs), cfg)
        print(f"resume=auto: {'continuing ' + str(found) if found else 'no unfinished run of this config, starting fresh'}")
        return (True, found) if found else (False, run_dir)
    if not resume:
        return False, run_dir
    run_dir = Path(resume)
    if not (run_dir / "config.yaml").exists():
        raise RecordError(f"resume={resume}: no config.yaml there; pass the folder of an earlier run")
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    diff = _diff(comparable(saved), comparable(cfg))
    if diff:
        raise RecordError(f"resume={resume} was trained with a different config: {'; '.join(diff[:3])}; "
                          f"resume with the run's own overrides, or start a new run")
    if not (run_dir / CHECKPOINT).exists():
        raise RecordError(f"resume={run_dir}: no {CHECKPOINT} there (the run never finished an epoch); "
                          f"start a new run instead")
    return True, run_dir
