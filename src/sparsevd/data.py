"""MNIST / Fashion-MNIST as whole tensors on the training device, batched by shuffled index.

The sets are tiny (47 MB as uint8), so one load beats a DataLoader with per-sample PIL
transforms by a wide margin and keeps the data on the GPU when there is one.
"""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch

DATASETS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
NUM_TRAIN, NUM_TEST, PIXELS = 60_000, 10_000, 28 * 28
# idx files: a 16-byte header then pixels, or an 8-byte header then labels.
RAW_FILES = {
    "train-images-idx3-ubyte": 16 + NUM_TRAIN * PIXELS,
    "train-labels-idx1-ubyte": 8 + NUM_TRAIN,
    "t10k-images-idx3-ubyte": 16 + NUM_TEST * PIXELS,
    "t10k-labels-idx1-ubyte": 8 + NUM_TEST,
}
PREPROCESSING = ("authors", "standard")
# data.labels: the dataset's own labels, or (Zhang et al. 2017; Sec. 5 of the paper) every training and
# validation label replaced by a class drawn uniformly from a generator seeded with RANDOM_LABELS_SEED,
# the same for every run seed. Test labels are never replaced.
LABELS = ("original", "random")
RANDOM_LABELS_SEED = 20170310
ENV_VAR = "SPARSEVD_DATA"


class DataError(RuntimeError):
    """Raised with a one-line, actionable message when the data cannot be read."""


@dataclass
class Dataset:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: torch.Tensor | None = None  # held out of the training images (data.val_size), else None
    y_val: torch.Tensor | None = None

    @property
    def num_train(self) -> int:
        return len(self.y_train)


def data_root(configured: str | os.PathLike) -> Path:
    """The data folder: ``$SPARSEVD_DATA`` when set, else the configured ``data.root``."""
    return Path(os.environ.get(ENV_VAR) or configured).expanduser()


def raw_folder(root: Path, name: str) -> Path:
    """Where torchvision keeps dataset ``name``'s idx files under the data folder ``root``."""
    return Path(root) / DATASETS[name] / "raw"


def check_raw_files(root: Path, name: str) -> None:
    """Fail with one clear line if an idx file is missing or has the wrong size (truncated)."""
    raw = raw_folder(root, name)
    for fname, size in RAW_FILES.items():
        path = raw / fname
        if path.exists() and path.stat().st_size != size:
            raise DataError(
                f"{path} has {path.stat().st_size} bytes, expected {size} (truncated or corrupt); "
                f"delete it and re-download, or point {ENV_VAR} at a good copy")


def _torchvision_set(root: Path, name: str, train: bool):
    import torchvision.datasets as tvd

    cls = getattr(tvd, DATASETS[name])
    try:
        # torchvision narrates each failed mirror on stdout; our one-line error says it all.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return cls(root=str(root), train=train, download=True)
    except Exception as exc:  # urllib/OSError/RuntimeError: all mean "not here and not fetchable"
        expected = ", ".join(RAW_FILES)
        raise DataError(
            f"{DATASETS[name]} not found in {raw_folder(root, name)} and could not be "
            f"downloaded ({type(exc).__name__}); put {expected} there, or set {ENV_VAR} to a folder "
            f"holding {DATASETS[name]}/raw/") from None


def preprocess(x_uint8: torch.Tensor, how: str, mean_image: torch.Tensor | None = None) -> torch.Tensor:
    """``authors``: pixels/256 minus the training mean image (their reader divides by 256);
    ``standard``: (pixels/255 - 0.1307) / 0.3081."""
    x = x_uint8.float().unsqueeze(1)
    if how == "authors":
        return x / 256.0 - mean_image
    if how == "standard":
        return (x / 255.0 - 0.1307) / 0.3081
    raise ValueError(f"data.preprocess must be one of {PREPROCESSING}, got {how!r}")


def _check_sizes(train_size, val_size) -> None:
    if not 0 <= int(val_size) < NUM_TRAIN:
        raise DataError(f"data.val_size={val_size} is out of range; use 0..{NUM_TRAIN - 1}")
    if train_size is not None and not 0 < int(train_size) <= NUM_TRAIN - val_size:
        raise DataError(f"data.train_size={train_size} is out of range; use 1..{NUM_TRAIN - val_size} or null for all")


def random_labels(n: int = NUM_TRAIN, classes: int = 10) -> torch.Tensor:
    """The fixed random labels of the ``n`` training images (``data.labels=random``), one per image
    in file order, so each image keeps its label whatever the seed, ``val_size`` or ``train_size``."""
    return torch.randint(classes, (n,), generator=torch.Generator().manual_seed(RANDOM_LABELS_SEED))


def _raw_sets(name: str, root, train_size, val_size, labels: str = "original"):
    """(train, val, test) as (uint8 images, labels) pairs, split as load_dataset documents."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose data=mnist or data=fashion_mnist")
    _check_sizes(train_size, val_size)
    root = data_root(root)
    check_raw_files(root, name)
    train, test = _torchvision_set(root, name, True), _torchvision_set(root, name, False)
    if labels not in LABELS:
        raise DataError(f"unknown data.labels {labels!r}; choose one of {', '.join(LABELS)}")
    targets = random_labels(len(train.targets)) if labels == "random" else train.targets
    cut = NUM_TRAIN - val_size
    x_train, y_train = train.data[:cut], targets[:cut]
    if train_size is not None:
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    return (x_train, y_train), (train.data[cut:], targets[cut:]), (test.data, test.targets)


def _mean_image(x_train_uint8: torch.Tensor) -> torch.Tensor:
    return x_train_uint8.float().div(256.0).mean(0, keepdim=True).unsqueeze(1)


def load_dataset(name: str, root: str | os.PathLike = "data", preprocessing: str = "authors",
                 train_size: int | None = None, device: str | torch.device = "cpu", val_size: int = 0,
                 labels: str = "original") -> Dataset:
    """Load a whole dataset as float tensors (N, 1, 28, 28) on ``device``.

    ``val_size`` holds out the last that many of the 60,000 training images as a validation set (a
    fixed split, the same for every seed); ``train_size`` then takes the first N of the rest. The
    authors' mean image is taken over the training images actually trained on. ``labels="random"``
    replaces the training and validation labels by :func:`random_labels`; the test labels stay.
    """
    if preprocessing not in PREPROCESSING:
        raise DataError(f"unknown data.preprocess {preprocessing!r}; choose one of {PREPROCESSING}")
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = _raw_sets(name, root, train_size, val_size, labels)
    mean_image = _mean_image(x_train)
    return Dataset(
        x_train=preprocess(x_train, preprocessing, mean_image).to(device),
        y_train=y_train.long().to(device),
        x_test=preprocess(x_test, preprocessing, mean_image).to(device),
        y_test=y_test.long().to(device),
        x_val=preprocess(x_val, preprocessing, mean_image).to(device) if val_size else None,
        y_val=y_val.long().to(device) if val_size else None,
    )


def raw_input(data_cfg: dict) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For raw images u = pixels / 255 in [0, 1]: (scale, mean) with preprocess(pixels) = scale * u - mean,
    and the raw test images and labels. ``data_cfg`` is a run's ``data`` config."""
    how = data_cfg["preprocess"]
    if how not in PREPROCESSING:
        raise DataError(f"unknown data.preprocess {how!r}; choose one of {PREPROCESSING}")
    (x_train, _), _, (x_test, y_test) = _raw_sets(data_cfg["name"], data_cfg["root"], data_cfg.get("train_size"),
                                                  data_cfg.get("val_size", 0))
    if how == "authors":
        scale, mean = 255.0 / 256.0, _mean_image(x_train)[0]
    else:
        scale, mean = 1.0 / 0.3081, torch.full((1, 1, 1), 0.1307 / 0.3081)
    return scale, mean, x_test.float().div(255.0).unsqueeze(1), y_test.long()
