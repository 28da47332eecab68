import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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


def run_config(*overrides: str):
    """The validated, typed config that ``scripts/train.py <overrides>`` would run."""
    from sparsevd.config import compose
    return compose(*overrides, config_dir=str(REPO / "configs"))


def tiny_train_config(epochs: int, **trainer):
    """A short plain run for the trainer tests: constant LR, no KL warm-up delay, batches of 50."""
    extra = [f"trainer.{k}={v}" for k, v in trainer.items()]
    return run_config(f"trainer.epochs={epochs}", "trainer.batch_size=50", "trainer.progress=false",
                      "optim.schedule=constant", "kl.start=0", *extra)
