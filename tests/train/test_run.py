"""End to end through scripts/train.py on real MNIST: records, resume after kill, SIGTERM."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, run_config
SMALL = ["model=lenet300", "method=sparsevd", "logger=none", "data.train_size=2000", "trainer.epochs=4", "trainer.compile=false",
         "kl.start=0", "kl.warmup=2", "trainer.progress=false"]


def train_cmd(run_dir, *overrides):
    return [sys.executable, "scripts/train.py", *overrides, f"hydra.run.dir={run_dir}"]


def run_train(run_dir, *overrides, data_root):
    env = {**os.environ, "SPARSEVD_DATA": str(data_root), "WANDB_MODE": "disabled"}
    return subprocess.run(train_cmd(run_dir, *overrides), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_one_epoch_on_10k_mnist_learns(tmp_path, data_root):
    proc = run_train(tmp_path, "model=lenet300", "method=sparsevd", "trainer.epochs=1", "trainer.compile=false",
                     "data.train_size=10000", "logger=none", "method.log_alpha_clip=10", "model.init=torch",
                     data_root=data_root)
    assert proc.returncode == 0, proc.stderr
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["metrics"]["test_error"] < 10.0
    assert set(final["metrics"]["sparsity"]) == {"fc1", "fc2", "fc3"}
    # the record's numbers are those of its own weights: rebuilt from weights.safetensors, the net agrees
    from sparsevd.compress.weights import load_record
    from sparsevd.core.metrics import stats
    model, _ = load_record(tmp_path)
    st = stats(model)
    assert final["metrics"]["compression"] == pytest.approx(st["compression"])
    assert final["metrics"]["nonzero"] == {k: v["nonzero"] for k, v in st["layers"].items()}
    assert 1.0 < final["metrics"]["compression"] < 1000.0  # one epoch at beta 0 prunes some weights, not all
    env = final["environment"]
    assert env["torch"].startswith("2.14.1") and env["threads"] >= 1 and "sha" in env["git"]
    assert final["config"]["data"]["train_size"] == 10000 and final["wall_time"] > 0
    assert "error" in proc.stdout and "compression" in proc.stdout and "sparsity" in proc.stdout
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["epoch"] == 1
    edges = np.load(tmp_path / "arrays.npz")["bin_edges"]  # the bins come from the layers: the clip reached the model
    assert edges[0] == -10 and edges[-1] == 10


def _metrics(run_dir):
    m = json.loads((Path(run_dir) / "final.json").read_text())["metrics"]
    return {k: v for k, v in m.items() if k != "time"}


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory, data_root):
    """One uninterrupted SMALL run, shared by the module's tests (copy it before changing it)."""
    run_dir = tmp_path_factory.mktemp("reference_run")
    proc = run_train(run_dir, *SMALL, data_root=data_root)
    assert proc.returncode == 0, proc.stderr
    return run_dir


@pytest.fixture(scope="module")
def reference_run(reference_dir):
    return _metrics(reference_dir)


def _wait_for_lines(path, n, proc, timeout=300):
    start = time.time()
    while time.time() - start < timeout and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {n} lines")


def kill_after_epochs(cmd, outputs, env, epochs=2):
    """Start ``cmd``, a run under ``outputs``, and SIGKILL it once it has logged ``epochs`` epochs; its run folder."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list(outputs.rglob("metrics.jsonl")):
        time.sleep(0.05)
    (run_dir,) = [p.parent for p in outputs.rglob("metrics.jsonl")]
    _wait_for_lines(run_dir / "metrics.jsonl", epochs, proc)
    proc.kill()
    proc.wait()
    return run_dir


@pytest.mark.slow
def test_kill_at_epoch_2_then_resume_gives_identical_final_metrics(tmp_path, data_root, reference_run):
    env = {**os.environ, "SPARSEVD_DATA": str(data_root), "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(train_cmd(tmp_path, *SMALL), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_lines(tmp_path / "metrics.jsonl", 2, proc)
    proc.kill()
    proc.wait()
    assert not (tmp_path / "final.json").exists()
    resumed = run_train(tmp_path / "ignored", *SMALL, f"resume={tmp_path}", data_root=data_root)
    assert resumed.returncode == 0, resumed.stderr
    assert _metrics(tmp_path) == reference_run
    segments = json.loads((tmp_path / "final.json").read_text())["segments"]
    assert len(segments) == 2 and segments[0]["from_epoch"] == 0 and segments[1]["from_epoch"] >= 1
    assert all("torch" in s and "git" in s for s in segments)


@pytest.mark.slow
def test_sigterm_checkpoints_mid_epoch_and_resume_matches(tmp_path, data_root, reference_run):
    env = {**os.environ, "SPARSEVD_DATA": str(data_root), "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(train_cmd(tmp_path, *SMALL), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_lines(tmp_path / "metrics.jsonl", 1, proc)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in err
    assert f"resume={tmp_path}" in err
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] >= 1 and state["step"] > 0 and state["part"]["perm"] is not None  # mid-epoch
    resumed = run_train(tmp_path / "ignored", *SMALL, f"resume={tmp_path}", data_root=data_root)
    assert resumed.returncode == 0, resumed.stderr
    assert _metrics(tmp_path) == reference_run


@pytest.mark.slow
def test_resume_with_a_different_model_is_refused(tmp_path, data_root, reference_dir):
    run_dir = shutil.copytree(reference_dir, tmp_path / "run")
    (run_dir / "final.json").unlink()
    other = run_train(tmp_path / "x", *SMALL, "model=lenet5", f"resume={run_dir}", data_root=data_root)
    assert other.returncode == 2 and "model.name='lenet300' (checkpoint) vs 'lenet5' (now)" in other.stderr
    assert "Traceback" not in other.stderr


def test_malicious_checkpoint_is_refused(tmp_path):
    import pickle

    from sparsevd.io import RecordError
    from sparsevd.train.checkpoint import load_checkpoint

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    with open(tmp_path / "checkpoint.pt", "wb") as f:
        pickle.dump({"model": Evil()}, f)
    with pytest.raises(RecordError, match="refusing to load"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_resume_auto_finds_the_unfinished_run_of_the_same_config(tmp_path, data_root, reference_run):
    env = {**os.environ, "SPARSEVD_DATA": str(data_root), "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "scripts/train.py", *SMALL, f"outputs={tmp_path}"]
    first_dir = kill_after_epochs(cmd, tmp_path, env)
    # A different config is not a match; the same one is found and finished.
    other = run_train(tmp_path / "x", *SMALL, "seed=1", f"outputs={tmp_path}", "resume=auto", "trainer.epochs=1",
                      data_root=data_root)
    assert "no unfinished run of this config" in other.stdout
    again = subprocess.run([*cmd, "resume=auto"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"continuing {first_dir}" in again.stdout
    assert _metrics(first_dir) == reference_run
    # the resume ran in first_dir, so the folder Hydra made for it is gone, not left empty
    assert not [d for d in tmp_path.rglob("*") if d.is_dir() and not any(d.iterdir())]


def test_init_from_copies_the_trained_means_and_keeps_log_sigma2(tmp_path):
    from sparsevd.core.models import build_model
    from sparsevd.train.checkpoint import save_checkpoint
    from sparsevd.config import ConfigError
    from sparsevd.train.run import init_means

    dense = build_model("lenet5", "dense")
    with torch.no_grad():
        for p in dense.parameters():
            p.normal_()
    save_checkpoint(tmp_path / "checkpoint.pt", {"model": dense.state_dict(), "epoch": 7,
                                                 "identity": {"model": "lenet5", "method": "dense", "data": "mnist"}})
    svd = build_model("lenet5", "sparsevd")
    log_sigma2 = {n: p.clone() for n, p in svd.named_parameters() if n.endswith("log_sigma2")}
    info = init_means(svd, "lenet5", tmp_path)
    for name, p in dense.named_parameters():
        assert torch.equal(dict(svd.named_parameters())[name], p), name
    assert all(torch.equal(dict(svd.named_parameters())[n], v) for n, v in log_sigma2.items())
    assert info["epoch"] == 7 and "conv1.weight" in info["copied"]
    assert info["checkpoint_sha256"] == hashlib.sha256((tmp_path / "checkpoint.pt").read_bytes()).hexdigest()
    with pytest.raises(ConfigError, match="holds a lenet5 run, not lenet300; pass a run folder of model=lenet300"):
        init_means(build_model("lenet300", "sparsevd"), "lenet300", tmp_path)
    state = dense.state_dict()
    del state["fc2.bias"]
    save_checkpoint(tmp_path / "checkpoint.pt", {"model": state, "identity": {"model": "lenet5"}})
    with pytest.raises(ConfigError, match=r"fc2.bias: missing in the source"):
        init_means(build_model("lenet5", "ard"), "lenet5", tmp_path)


@pytest.mark.slow
def test_init_from_a_dense_run_is_used_and_recorded(tmp_path, data_root):
    small = ["model=lenet300", "logger=none", "data.train_size=2000", "trainer.epochs=1", "trainer.progress=false",
             "trainer.compile=false"]
    dense = run_train(tmp_path / "dense", *small, "method=dense", data_root=data_root)
    assert dense.returncode == 0, dense.stderr
    svd = run_train(tmp_path / "svd", *small, "method=sparsevd", f"model.init_from={tmp_path / 'dense'}",
                    data_root=data_root)
    assert svd.returncode == 0, svd.stderr
    final = json.loads((tmp_path / "svd" / "final.json").read_text())
    assert final["init_from"]["run"] == str(tmp_path / "dense") and final["init_from"]["epoch"] == 1
    fresh = run_train(tmp_path / "fresh", *small, "method=sparsevd", data_root=data_root)
    assert fresh.returncode == 0, fresh.stderr
    dense_err, svd_err, fresh_err = (json.loads((tmp_path / d / "final.json").read_text())["metrics"]["test_error"]
                                     for d in ("dense", "svd", "fresh"))
    assert svd_err < fresh_err - 5 and svd_err < dense_err + 5  # it starts where the dense run ended
    bad = run_train(tmp_path / "bad", *small, f"model.init_from={tmp_path / 'nowhere'}", data_root=data_root)
    assert bad.returncode == 2 and "holds neither checkpoint.pt nor weights.safetensors" in bad.stderr and "Traceback" not in bad.stderr
    assert not list((tmp_path / "bad").iterdir())  # Hydra made the folder; we wrote nothing into it


def test_resume_auto_matches_a_run_saved_before_a_key_was_added(tmp_path):
    import yaml

    from sparsevd.train.checkpoint import find_unfinished

    cfg = {"name": "x", "seed": 0, "model": {"name": "lenet300", "init_from": None}, "outputs": str(tmp_path)}
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.yaml").write_text(yaml.safe_dump({**cfg, "model": {"name": "lenet300"}}))
    (old / "checkpoint.pt").write_bytes(b"")
    assert find_unfinished(tmp_path, cfg) == old
    assert find_unfinished(tmp_path, {**cfg, "model": {"name": "lenet5", "init_from": None}}) is None
    # method.log_alpha_clip: a saved config without it is the authors' 8, whether now null or an explicit 8
    (old / "config.yaml").write_text(yaml.safe_dump({**cfg, "method": {"name": "sparsevd"}}))
    for clip, match in ((None, True), (8.0, True), (10.0, False)):
        found = find_unfinished(tmp_path, {**cfg, "method": {"name": "sparsevd", "log_alpha_clip": clip}})
        assert (found == old) is match, clip


def test_git_info_names_the_commit_a_process_loaded(tmp_path, monkeypatch):
    from sparsevd import records

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "src").mkdir()
    (tmp_path / "results").mkdir()
    for f in ("src/f.py", "results/r.json"):
        (tmp_path / f).write_text("1")
        git("add", f)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    first = records.git_info(tmp_path)
    assert len(first["sha"]) == 40 and first["dirty"] is False
    (tmp_path / "results/r.json").write_text("2")  # a new record is not a change to the code
    assert records.git_info(tmp_path) == {"sha": first["sha"], "dirty": False}
    (tmp_path / "src/f.py").write_text("2")
    assert records.git_info(tmp_path) == {"sha": first["sha"], "dirty": True}
    # The package's own repo is read once per process: later calls (a multirun's later jobs) do not ask
    # git again, so a HEAD that moved mid-sweep cannot be recorded for code loaded before it.
    loaded = records.git_info()

    def no_git(*a, **k):
        raise OSError("git must not be asked again")
    monkeypatch.setattr(records.subprocess, "run", no_git)
    assert records.git_info() == loaded


def test_log_alpha_histograms_span_the_runs_clip_and_lose_no_weight(tmp_path):
    from sparsevd.core.models import build_model
    from sparsevd.train.arrays import save_arrays

    model = build_model("lenet300", "sparsevd", log_alpha_clip=10.0)
    with torch.no_grad():
        model.fc1.log_sigma2.fill_(5.0)  # theta ~ 0.05: raw log alpha ~ 11, clipped to 10
    save_arrays(model, tmp_path / "arrays.npz")
    arrays = np.load(tmp_path / "arrays.npz")
    assert arrays["bin_edges"][0] == -10 and arrays["bin_edges"][-1] == 10
    assert arrays["log_alpha_hist/fc1"].sum() == model.fc1.weight.numel()
    assert arrays["log_alpha_hist/fc1"][-1] > 0.9 * model.fc1.weight.numel()


def test_init_from_a_record_folder_copies_its_weights(tmp_path):
    """A committed record (weights.safetensors + config.yaml, no checkpoint) can start a run too."""
    from omegaconf import OmegaConf
    from sparsevd.compress.weights import save_weights
    from sparsevd.config import ConfigError
    from sparsevd.core.models import build_model
    from sparsevd.train.run import init_means

    dense = build_model("lenet5", "dense")
    with torch.no_grad():
        for p in dense.parameters():
            p.normal_()
    save_weights(dense, tmp_path / "weights.safetensors")
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(run_config("experiment=lenet5_dense")))
    (tmp_path / "final.json").write_text(json.dumps({"metrics": {"epoch": 37}}))
    svd = build_model("lenet5", "sparsevd")
    info = init_means(svd, "lenet5", tmp_path)
    for name, p in dense.named_parameters():
        assert torch.equal(dict(svd.named_parameters())[name], p), name
    assert info["identity"] == {"model": "lenet5", "method": "dense", "data": "mnist"} and info["epoch"] == 37
    assert info["weights_sha256"] == hashlib.sha256((tmp_path / "weights.safetensors").read_bytes()).hexdigest()
    with pytest.raises(ConfigError, match="holds a lenet5 run, not lenet300"):
        init_means(build_model("lenet300", "sparsevd"), "lenet300", tmp_path)
    (tmp_path / "config.yaml").write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="model.init_from=.*not a readable record"):
        init_means(build_model("lenet5", "sparsevd"), "lenet5", tmp_path)
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(run_config("experiment=lenet5_dense")))
    (tmp_path / "weights.safetensors").write_bytes(b"not a weights file")
    with pytest.raises(ConfigError, match="model.init_from=.*cannot read weights"):
        init_means(build_model("lenet5", "sparsevd"), "lenet5", tmp_path)
    (tmp_path / "weights.safetensors").unlink()
    with pytest.raises(ConfigError, match="holds neither checkpoint.pt nor weights.safetensors; pass a run folder"):
        init_means(build_model("lenet5", "sparsevd"), "lenet5", tmp_path)
