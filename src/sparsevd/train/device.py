"""Where and how a run computes: the device, its CPU threads, the allocator setting for CPU training,
and every RNG's state (seeded at the start, saved in each checkpoint, restored on resume)."""
from __future__ import annotations

import random

import numpy as np
import torch


class DeviceError(RuntimeError):
    """The requested device is not available; the message names the fix."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device=cuda but no CUDA device is visible; use device=cpu or device=auto")
    return torch.device(name)


def use_threads(threads: int | None) -> int:
    """Hold this process to ``threads`` CPU threads (null or 0: leave torch's default); returns the number
    torch now uses, which the record keeps.

    Runs that share a machine (``make reproduce`` starts cores // threads of them) each get their own
    threads instead of all of them contending for every core. The inter-op pool can only be sized before
    it first runs, so in a process that already used it (a reused worker) only the intra-op count changes.
    """
    if threads:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:
            pass
    return torch.get_num_threads()


def keep_freed_memory() -> None:
    """Stop glibc from returning each freed weight-sized buffer to the OS (Linux, CPU).

    Every training step allocates dozens of 1 MB temporaries; by default glibc serves them with
    fresh mmap()s, and the page faults on first touch cost more than the arithmetic (measured:
    the fused weight-noise pass drops from ~6 ms to ~2 ms on 2 cores). Results are unaffected.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "shuffle": generator.get_state(),
             "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
             "numpy_pos": int(np.random.get_state()[2]), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["shuffle"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
