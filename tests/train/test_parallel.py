"""Runs that share a machine: each holds its threads and computes what it computes alone; and the Slurm
path (submitit, here on this machine) trains, records and resumes what make reproduce sends it."""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO

TINY = ["model=lenet300", "method=sparsevd", "logger=none", "data.train_size=1000", "trainer.epochs=1",
        "trainer.compile=false", "trainer.progress=false", "trainer.threads=1"]


def run_env(data_root) -> dict:
    return {**os.environ, "SPARSEVD_DATA": str(data_root), "WANDB_MODE": "disabled"}


def final_of(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "final.json").read_text())


def numbers(final: dict) -> dict:
    return {k: v for k, v in final["metrics"].items() if k != "time"}


def test_use_threads_holds_the_process_to_its_threads():
    from sparsevd.train.device import use_threads

    before = torch.get_num_threads()
    try:
        assert use_threads(1) == 1 == torch.get_num_threads()
        assert use_threads(None) == 1 and use_threads(0) == 1  # null and 0 leave the count as it is
        assert use_threads(2) == 2 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_a_runs_numbers_are_the_same_alone_and_beside_another_run(tmp_path, data_root):
    def start(folder, seed):
        cmd = [sys.executable, "scripts/train.py", *TINY, f"seed={seed}", f"hydra.run.dir={tmp_path / folder}"]
        return subprocess.Popen(cmd, cwd=REPO, env=run_env(data_root), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    def finish(proc):
        err = proc.communicate(timeout=300)[1]
        assert proc.returncode == 0, err[-2000:]

    finish(start("alone", 0))
    pair = [start("beside", 0), start("neighbour", 1)]  # two runs at once on the same cores
    for proc in pair:
        finish(proc)
    alone, beside, neighbour = (final_of(tmp_path / f) for f in ("alone", "beside", "neighbour"))
    assert numbers(beside) == numbers(alone)  # bit for bit
    assert numbers(neighbour) != numbers(alone)  # the neighbour really was another run
    assert alone["environment"]["threads"] == beside["environment"]["threads"] == 1
    assert alone["config"]["trainer"]["threads"] == 1


def make_train_command(*knobs: str) -> list[str]:
    """The training command ``make reproduce <knobs>`` runs (its first line), with this Python."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run(["make", "-n", "reproduce", "STAMP=", f"PY={sys.executable}", *knobs], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True).stdout
    return shlex.split(out.splitlines()[0])


def test_the_usage_docs_slurm_commands_compose():
    """Each make reproduce LAUNCHER=slurm line of docs/usage.md gives a config Hydra composes and we validate,
    its jobs asking for the CPUs each run uses."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from sparsevd.config import validate

    usage = (REPO / "docs" / "usage.md").read_text()
    lines = [line for line in usage.splitlines() if line.startswith("make reproduce") and "LAUNCHER=slurm" in line]
    assert len(lines) == 2
    for line in lines:
        cmd = make_train_command(*shlex.split(line.replace("<partition>", "gpu"))[2:])
        # a sweep's first job: the first value of every swept key
        overrides = [re.sub(r"^([^=]+)=([^,]*),.*$", r"\1=\2", a) for a in cmd[cmd.index("-m") + 1:]]
        with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
        launcher = cfg.hydra.launcher
        assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
        assert launcher.cpus_per_task == cfg.trainer.threads
        plain = OmegaConf.to_container(cfg, resolve=False)
        plain.pop("hydra")
        validate(OmegaConf.to_container(OmegaConf.create(plain), resolve=True))


@pytest.mark.slow
def test_submitit_trains_two_runs_records_them_and_resume_auto_finds_a_killed_one(tmp_path, data_root):
    """make reproduce LAUNCHER=submitit_local: two runs as submitit jobs, killed (Hydra and the jobs) once a
    checkpoint is written; the same command again continues the unfinished runs and records both."""
    cmd = make_train_command("LAUNCHER=submitit_local", "ROWS=lenet300_dense", "SEEDS=2", "EPOCHS=40",
                             f"REPRO={tmp_path}", "EXTRA=data.train_size=500 trainer.eval_every=40 "
                             "trainer.compile=false logger=none")
    assert {"hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1", "trainer.threads=1",
            "resume=auto"} <= set(cmd)
    work = tmp_path / "work"
    first = subprocess.Popen(cmd, cwd=REPO, env=run_env(data_root), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None and not list(work.rglob("checkpoint.pt")):
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)  # the whole sweep, as a node that dies would
    first.wait()
    killed = [c.parent for c in work.rglob("checkpoint.pt") if not (c.parent / "final.json").exists()]
    assert killed, "no run was stopped mid-way"
    again = subprocess.run(cmd, cwd=REPO, env=run_env(data_root), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    for seed in (0, 1):
        final = final_of(tmp_path / "runs" / "lenet300_dense" / f"seed{seed}")
        assert final["metrics"]["epoch"] == 40 and final["environment"]["threads"] == 1
    for run_dir in killed:  # continued where it stopped, in its own folder
        segments = final_of(run_dir)["segments"]
        assert len(segments) == 2 and segments[1]["from_epoch"] >= 1
    logs = "".join(p.read_text() for p in work.rglob(".submitit/*/*_log.out"))
    assert logs.count("resume=auto: continuing") == len(killed)  # the jobs ran under submitit, and said so
