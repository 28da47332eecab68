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
