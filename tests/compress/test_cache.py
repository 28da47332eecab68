"""make compress's per-record cache: a hit skips the measurement, and anything the measurement reads
(weights, config, data files, the package's code) is a miss."""
import json
import shutil
import subprocess
import sys

import pytest
import yaml

from sparsevd.compress import cache
from sparsevd.compress.deploy import records_with_weights
from sparsevd.data import raw_folder

from conftest import REPO

RECORD = records_with_weights(REPO / "results" / "runs")[0]


@pytest.fixture
def record(tmp_path, monkeypatch):
    """A copy of a committed record, and a fake data folder that the key reads (never the images)."""
    folder = tmp_path / "runs" / RECORD.parent.name / "seed0"
    shutil.copytree(RECORD, folder)
    data = tmp_path / "data"
    name = yaml.safe_load((folder / "config.yaml").read_text())["data"]["name"]
    raw = raw_folder(data, name)
    raw.mkdir(parents=True)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"x" * 10)
    monkeypatch.setenv("SPARSEVD_DATA", str(data))
    return folder


class Counter:
    def __init__(self, value):
        self.calls, self.value = 0, value

    def __call__(self):
        self.calls += 1
        return self.value


def test_a_hit_skips_the_measurement_and_returns_the_same_value(record, tmp_path):
    measure = Counter([{"threshold": None, "test_error": 1.25, "compression": 12.5}, {"a": [1, 2]}])
    first = cache.cached("sweep", record, measure, tmp_path / "cache")
    again = cache.cached("sweep", record, measure, tmp_path / "cache")
    assert measure.calls == 1 and again == json.loads(json.dumps(first))
    assert cache.cached("stages", record, measure, tmp_path / "cache") and measure.calls == 2  # another kind
    cache.cached("sweep", record, measure, None)
    cache.cached("sweep", record, measure, None)
    assert measure.calls == 4  # no cache: always measured


@pytest.mark.parametrize("change", ["weights", "config", "data", "code", "library"])
def test_anything_the_measurement_reads_is_a_miss(record, tmp_path, monkeypatch, change):
    key, fingerprint = cache.record_key("sweep", record), cache.code_fingerprint
    if change == "weights":
        blob = bytearray((record / "weights.safetensors").read_bytes())
        blob[-1] ^= 1
        (record / "weights.safetensors").write_bytes(bytes(blob))
    elif change == "config":
        (record / "config.yaml").write_text((record / "config.yaml").read_text().replace("seed: 0", "seed: 9", 1)
                                            + "\n# changed\n")
    elif change == "data":
        raw = next((tmp_path / "data").glob("*/raw"))
        (raw / "t10k-labels-idx1-ubyte").write_bytes(b"y" * 11)
    elif change == "code":
        monkeypatch.setattr(cache, "code_fingerprint", lambda: "another version")
    else:  # a new onnxruntime changes what the ONNX file's error is measured with
        real = cache._version
        monkeypatch.setattr(cache, "_version", lambda name: "onnxruntime==99" if name == "onnxruntime" else real(name))
        cache.code_fingerprint.cache_clear()
    assert cache.record_key("sweep", record) != key
    assert cache.record_key("sweep", record) == cache.record_key("sweep", record)
    fingerprint.cache_clear()  # the next test fingerprints the real versions again


def test_an_unreadable_entry_is_measured_again_and_rewritten(record, tmp_path):
    measure = Counter({"rows": [1]})
    cache.cached("stages", record, measure, tmp_path / "cache")
    (entry,) = (tmp_path / "cache").glob("stages-*.json")
    entry.write_text('{"value": ')  # cut short
    assert cache.cached("stages", record, measure, tmp_path / "cache") == {"rows": [1]} and measure.calls == 2
    assert json.loads(entry.read_text())["value"] == {"rows": [1]}


def test_a_cache_that_cannot_be_written_still_gives_the_measurement(record, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.warns(UserWarning, match="not kept for the next run"):
        assert cache.cached("stages", record, Counter([1, 2]), blocked / "cache") == [1, 2]


def test_the_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "c"))
    assert cache.default_dir() == tmp_path / "c" / "compress"
    monkeypatch.delenv(cache.ENV_VAR)
    assert cache.default_dir().parts[-3:] == (".cache", "sparsevd", "compress")


def test_the_fingerprint_covers_the_measured_code_and_not_the_report(tmp_path, monkeypatch):
    package = tmp_path / "sparsevd"
    for rel in ("compress/deploy.py", "core/layers.py", "data.py", "report/versus.py", "train/run.py"):
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text("x = 1\n")
    monkeypatch.setattr(cache, "PACKAGE", package)

    def fingerprint():
        cache.code_fingerprint.cache_clear()
        return cache.code_fingerprint()
    before = fingerprint()
    (package / "report" / "versus.py").write_text("x = 2\n")
    (package / "train" / "run.py").write_text("x = 2\n")
    assert fingerprint() == before
    for rel in ("compress/deploy.py", "core/layers.py", "data.py"):
        (package / rel).write_text((package / rel).read_text() + "y = 0\n")
        assert fingerprint() != before
        before = fingerprint()
    cache.code_fingerprint.cache_clear()


def test_a_measurement_imports_nothing_the_fingerprint_leaves_out():
    """What a record's measurement runs (its net rebuilt from its config, exported, swept) loads no module
    of the folders whose changes keep the entries."""
    code = ("import sys; from sparsevd.compress import cache, deploy; from sparsevd.compress.weights import load_record; "
            f"load_record({str(RECORD)!r}); print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    loaded = {m.split(".")[1] for m in out.split() if m.startswith("sparsevd.")}
    assert {"compress", "core", "config"} <= loaded and not loaded & set(cache.NOT_MEASURED)
