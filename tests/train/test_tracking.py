"""A real offline W&B run: the metrics we log are read back from its local .wandb file."""
import json
import re
import struct
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import REPO
from sparsevd.train.run import run

CONFIGS = REPO / "configs"
BLOCK, HEADER = 32768, 7  # W&B's transaction log uses the LevelDB log format


def read_wandb_records(path: Path):
    """Yield the protobuf Records in a .wandb file (LevelDB log: 32 KiB blocks, 7-byte headers)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1
    pos, pending = 7, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(pending)
            yield rec


def complete_records(log: Path, timeout: float = 60.0) -> list:
    """The file's records once W&B's writer has finished it (its exit record is last to land; on a
    loaded machine that can be a moment after run.finish() returns)."""
    import time
    start = time.time()
    while True:
        records = list(read_wandb_records(log))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.time() - start > timeout:
            return records
        time.sleep(0.2)


@pytest.mark.slow
def test_offline_wandb_run_contains_the_logged_metrics(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("SPARSEVD_DATA", str(data_root))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=["logger=wandb", "trainer.epochs=2", "data.train_size=1000",
                                          "trainer.progress=false", "name=wandb_test"])
    final = run(OmegaConf.to_container(cfg, resolve=True), tmp_path)
    (log,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    history, summary, run_info = [], {}, None
    for rec in complete_records(log):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.summary.update})
        elif kind == "run":
            run_info = rec.run
    assert [h["epoch"] for h in history] == [1, 2]
    last = history[-1]
    m = final["metrics"]
    assert last["test/error"] == pytest.approx(m["test_error"])
    assert last["test/compression"] == pytest.approx(m["compression"])
    assert last["train/kl_weight"] == m["kl_weight"] and last["train/lr"] == pytest.approx(m["lr"])
    assert {f"test/sparsity/{k}" for k in m["sparsity"]} <= set(last)
    assert {"train/ce", "train/kl"} <= set(last)
    assert last["train/revived"] == m["revived"] and last["train/newly_pruned"] == m["newly_pruned"]
    assert "train/revived" not in history[0]  # nothing to compare the first evaluation with
    assert summary["final/test/error"] == pytest.approx(m["test_error"])
    config = {i.key: json.loads(i.value_json) for i in run_info.config.update}
    assert config["model"]["name"] == "lenet300" and config["trainer"]["epochs"] == 2
    assert config["data"]["train_size"] == 1000
    assert run_info.run_group == "wandb_test" and run_info.project == "sparsevd"
    assert {"lenet300", "sparsevd", "mnist"} <= set(run_info.tags)


@pytest.mark.slow
def test_a_resumed_training_continues_the_same_wandb_run(tmp_path, data_root, monkeypatch):
    import sparsevd.train.run as run_module
    from sparsevd.train.checkpoint import load_checkpoint
    from sparsevd.train.trainer import Interrupted

    monkeypatch.setenv("SPARSEVD_DATA", str(data_root))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = OmegaConf.to_container(compose("train", overrides=[
            "logger=wandb", "trainer.epochs=2", "data.train_size=1000", "trainer.progress=false"]), resolve=True)
    real = run_module.summary_line

    def stop_at_epoch_2(row):  # an interruption after epoch 1's checkpoint
        if row["epoch"] == 2:
            raise Interrupted("SIGTERM")
        return real(row)
    monkeypatch.setattr(run_module, "summary_line", stop_at_epoch_2)
    with pytest.raises(Interrupted):
        run(cfg, tmp_path)
    run_id = load_checkpoint(tmp_path / "checkpoint.pt")["tracker_id"]
    monkeypatch.setattr(run_module, "summary_line", real)
    run({**cfg, "resume": str(tmp_path)}, tmp_path / "unused")
    segments = sorted((tmp_path / "wandb").glob("offline-run-*"))
    # wandb names a segment offline-run-<time>-<id>, adding -1 when both start in the same second
    assert len(segments) == 2 and all(re.search(rf"-{run_id}(-\d+)?$", p.name) for p in segments)
