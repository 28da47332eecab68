import json
import os
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs one worker per core: each worker, and every process a test starts, computes on one
    # thread, so that two workers' torch thread pools do not fight over the same cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "results" / "paper.yaml"


def mnist_root() -> Path | None:
    """Where real MNIST lives: $SPARSEVD_DATA, else ../shared/data beside the checkout, else data/."""
    for cand in (os.environ.get("SPARSEVD_DATA"), REPO.parent / "shared" / "data", REPO / "data"):
        if cand and (Path(cand) / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
            return Path(cand)
    return None


@pytest.fixture(scope="module")
def data_root() -> Path:
    root = mnist_root()
    if root is None:
        if os.environ.get("CI"):  # a CI without the data must fail, not pass without its end-to-end tests
            pytest.fail("real MNIST not found under $SPARSEVD_DATA, ../shared/data or data/ (CI=true)")
        pytest.skip("real MNIST not found; set SPARSEVD_DATA")
    return root


def record_id(folder) -> str:
    return f"{folder.parent.name}/{folder.name}"


def slow_after_first(values, ids):
    """``values`` as pytest params, all but the first marked slow: ``make test`` checks one case, ``make test-all``
    every case."""
    return [pytest.param(v, id=ids(v), marks=() if i == 0 else pytest.mark.slow) for i, v in enumerate(values)]


def script(name: str):
    """scripts/<name>.py as a module, to call its ``main(argv)`` in this process: what the command line does,
    without starting Python and torch again (the tests that check a whole process start one)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_config(*overrides: str):
    """The validated, typed config that ``scripts/train.py <overrides>`` would run."""
    from sparsevd.config import compose
    return compose(*overrides, config_dir=str(REPO / "configs"))


def tiny_train_config(epochs: int, **trainer):
    """A short plain run for the trainer tests: constant LR, no KL warm-up delay, batches of 50."""
    extra = [f"trainer.{k}={v}" for k, v in trainer.items()]
    return run_config(f"trainer.epochs={epochs}", "trainer.batch_size=50", "trainer.progress=false",
                      "optim.schedule=constant", "kl.start=0", *extra)


def fake_record(runs_dir, row, seed, error, compression, sparsity, epochs=200):
    d = runs_dir / row / f"seed{seed}"
    d.mkdir(parents=True)
    metrics = {"test_error": error, "compression": compression, "epoch": epochs, "kl_weight": 1.0, "lr": 0.0,
               "sparsity": dict(zip(["fc1", "fc2", "fc3"], sparsity))}
    final = {"name": row, "seed": seed, "metrics": metrics,
             "config": {"method": {"name": "dense" if "dense" in row else "sparsevd", "threshold": 3.0},
                        "trainer": {"epochs": epochs}}}
    (d / "final.json").write_text(json.dumps(final))
    (d / "metrics.jsonl").write_text(json.dumps({**metrics, "epoch": 1}) + "\n" + json.dumps(metrics) + "\n")
    edges = np.linspace(-8, 8, 81)
    np.savez(d / "arrays.npz", bin_edges=edges, **{"log_alpha_hist/fc1": np.ones(80, dtype=np.int64),
                                                   "inputs_kept/fc1": np.arange(784)})
    return d


def made_up_timing(seq_wall=600.0, par_wall=400.0):
    """A make reproduce-timing file as scripts/reproduce_timing.py writes it, with invented numbers."""
    from sparsevd.report.sentences import REPRODUCE_ROWS

    def runs(s_per_epoch, threads):
        return {row: {"s_per_epoch": s_per_epoch, "full_epochs": 200, "wall_s": 3 * s_per_epoch, "threads": threads,
                      "epochs": 3} for row in REPRODUCE_ROWS}
    return {"epochs": 3, "rows": list(REPRODUCE_ROWS),
            "machine": {"cpu": "Test CPU", "cores": 2, "cpu_count": 2, "commit": "abcdef0123456789"},
            "ways": {"sequential": {"command": "make reproduce EPOCHS=3 LAUNCHER=basic THREADS=2", "wall_s": seq_wall,
                                    "jobs": 1, "threads": 2, "runs": runs(10.0, 2)},
                     "default": {"command": "make reproduce EPOCHS=3", "wall_s": par_wall, "jobs": 2, "threads": 1,
                                 "runs": runs(12.0, 1)}}}
