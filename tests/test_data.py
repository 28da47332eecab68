import shutil

import pytest
import torch

from sparsevd.data import RAW_FILES, DataError, data_root, load_dataset, random_labels


def test_env_var_overrides_configured_root(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSEVD_DATA", str(tmp_path))
    assert data_root("data") == tmp_path
    monkeypatch.delenv("SPARSEVD_DATA")
    assert str(data_root("somewhere")) == "somewhere"


def test_loads_real_mnist_as_device_tensors(data_root, monkeypatch):
    monkeypatch.setenv("SPARSEVD_DATA", str(data_root))
    d = load_dataset("mnist", "ignored", "authors", train_size=1000)
    assert d.x_train.shape == (1000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.long
    # authors' preprocessing: x/256 minus the training mean image, so the train mean is ~0 per pixel
    assert d.x_train.mean(0).abs().max() < 1e-5
    s = load_dataset("mnist", "ignored", "standard", train_size=1000)
    assert abs(s.x_test.mean().item()) < 0.1 and abs(s.x_test.std().item() - 1) < 0.1
    f = load_dataset("fashion_mnist", "ignored", "authors", train_size=100)
    assert not torch.equal(f.x_test, d.x_test)


def test_missing_data_fails_with_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.delenv("SPARSEVD_DATA", raising=False)
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path / "nowhere")
    msg = str(err.value)
    assert "\n" not in msg and "SPARSEVD_DATA" in msg and "train-images-idx3-ubyte" in msg
    assert str(tmp_path / "nowhere") in msg and "urlopen" not in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_truncated_file_is_caught(data_root, tmp_path, monkeypatch):
    monkeypatch.delenv("SPARSEVD_DATA", raising=False)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in RAW_FILES:
        shutil.copy(data_root / "MNIST" / "raw" / name, raw / name)
    with open(raw / "train-images-idx3-ubyte", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(DataError, match="truncated"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("size", [0, -5, 60001])
def test_train_size_out_of_range(size):
    with pytest.raises(DataError, match="train_size"):
        load_dataset("mnist", "data", train_size=size)


def test_random_labels_are_fixed_and_leave_the_test_labels_alone(data_root, monkeypatch):
    monkeypatch.setenv("SPARSEVD_DATA", str(data_root))
    true = load_dataset("mnist", "ignored", val_size=1000)
    torch.manual_seed(1)  # the run's seed must not change the draw
    a = load_dataset("mnist", "ignored", val_size=1000, labels="random")
    torch.manual_seed(2)
    b = load_dataset("mnist", "ignored", train_size=500, val_size=2000, labels="random")
    assert torch.equal(a.y_test, true.y_test) and torch.equal(a.x_train, true.x_train)
    assert torch.equal(a.y_train[:500], b.y_train)  # each image keeps its label whatever the split
    assert torch.equal(torch.cat([a.y_train, a.y_val]), random_labels())
    assert torch.equal(b.y_val, random_labels()[-2000:])
    agree = (a.y_train == true.y_train).float().mean().item()
    assert 0.08 < agree < 0.12  # unrelated to the real labels: chance is 1 in 10
    counts = torch.bincount(a.y_train, minlength=10)
    assert counts.min() > 0.09 * len(a.y_train) and counts.max() < 0.11 * len(a.y_train)


def test_unknown_labels_option_fails_with_one_clear_line(data_root, monkeypatch):
    monkeypatch.setenv("SPARSEVD_DATA", str(data_root))
    with pytest.raises(DataError, match=r"unknown data.labels 'shuffled'; choose one of original, random") as err:
        load_dataset("mnist", "ignored", labels="shuffled")
    assert "\n" not in str(err.value)
