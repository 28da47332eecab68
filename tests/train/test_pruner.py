"""method=pruning trained by the harness: zeros that stay zero, the schedule's target, resume after a
kill, the exported file, and bad options refused before anything is written."""
import json
import os
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch
import yaml

from conftest import REPO, run_config
from sparsevd.core.models import build_model
from sparsevd.core.pruning import ALLOCATIONS, kept_fraction, mask_of, original_of
from sparsevd.train.pruning import Pruner
from sparsevd.train.trainer import fit, make_optimizer, train_step

from train.test_run import _metrics, kill_after_epochs, run_train
from train.test_trainer import tiny_data


def pruning_config(*overrides):
    return run_config("method=pruning", "model.init_from=/a/dense/record", "trainer.batch_size=50",
                      "trainer.progress=false", "optim.schedule=constant", *overrides)


def test_pruned_weights_stay_zero_through_adam_steps_and_in_the_weights_file(tmp_path):
    from sparsevd.compress.weights import WEIGHTS, load_record, save_weights

    torch.manual_seed(0)
    model, data = build_model("lenet300", "dense"), tiny_data()
    cfg = pruning_config("method.schedule=han", "method.allocation=uniform", "method.rounds=1", "method.target_compression=10",
                         "trainer.epochs=1")
    pruner = Pruner(cfg.method, model)
    optimizer = make_optimizer(model, 1e-2)
    for i in range(3):  # Adam's moments fill up while every weight is live
        train_step(model, optimizer, data.x_train[50 * i:50 * (i + 1)], data.y_train[50 * i:50 * (i + 1)], 300, 0.0)
    assert pruner.before_epoch(0, optimizer) == round(pruner.total / 10)
    for i in range(6):
        train_step(model, optimizer, data.x_train[50 * i:50 * (i + 1)], data.y_train[50 * i:50 * (i + 1)], 300, 0.0)
    for layer in pruner.layers.values():
        pruned, param = ~mask_of(layer).bool(), original_of(layer)
        assert pruned.any() and (param[pruned] == 0).all() and (layer.weight[pruned] == 0).all()
        assert all((v[pruned] == 0).all() for v in optimizer.state[param].values() if v.shape == param.shape)
        assert (layer.weight[~pruned] != 0).all()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(asdict(cfg)))
    save_weights(model, tmp_path / WEIGHTS)
    loaded, _ = load_record(tmp_path)
    for name, layer in pruner.layers.items():
        assert torch.equal(dict(loaded.named_modules())[name].weight, layer.weight.detach())
    assert (tmp_path / WEIGHTS).stat().st_size < pruner.total  # a quarter of fp32: only the nonzeros are stored


@pytest.mark.slow
@pytest.mark.parametrize("allocation", [a for a in ALLOCATIONS if a != "layers"])
def test_the_gradual_schedule_reaches_its_target_compression(tmp_path, allocation):
    torch.manual_seed(0)
    model = build_model("lenet5", "dense")
    cfg = pruning_config("model=lenet5", "method.schedule=gradual", f"method.allocation={allocation}",
                         "method.target_compression=80", "method.rounds=3", "method.prune_start=1", "trainer.epochs=5")
    masks, seen = [], []

    def on_eval(row):
        masks.append([mask_of(layer).bool().clone() for layer in pruner_layers(model)])
        seen.append(row["compression"])
    history = fit(model, tiny_data(), cfg, tmp_path, on_eval=on_eval)
    total = sum(layer.weight.numel() for layer in pruner_layers(model))
    nonzero = sum(int(torch.count_nonzero(layer.weight)) for layer in pruner_layers(model))
    assert abs(total / nonzero / 80 - 1) < 0.01
    assert history[-1]["compression"] == total / nonzero
    # dense until prune_start, then the cubic's three steps, then the masks hold while it fine-tunes
    want = [1.0] + [total / round(total * kept_fraction("gradual", k, 3, 80)) for k in (1, 2, 3)] + [total / nonzero]
    assert seen == pytest.approx(want, rel=1e-3)
    assert all(not (now & ~before).any() for a, b in zip(masks, masks[1:]) for before, now in zip(a, b))


def test_han_rounds_with_given_shares_end_at_each_layers_share():
    torch.manual_seed(0)
    model = build_model("lenet300", "dense")
    cfg = pruning_config("method.schedule=han", "method.allocation=layers", "method.target_compression=null",
                         "method.densities=[0.08,0.09,0.26]", "method.rounds=2", "trainer.epochs=3")
    pruner = Pruner(cfg.method, model)
    assert pruner.target == pytest.approx(266_200 / (18_816 + 2_700 + 260))  # Han et al.'s 12x
    optimizer = make_optimizer(model, 1e-3)
    assert pruner.before_epoch(0, optimizer) is not None and pruner.before_epoch(1, optimizer) is not None
    kept = {name: int(mask_of(layer).sum()) for name, layer in pruner.layers.items()}
    assert kept == {"fc1": 18_816, "fc2": 2_700, "fc3": 260}
    assert pruner.before_epoch(2, optimizer) is None  # two rounds, then the masks hold


def pruner_layers(model):
    from sparsevd.core.models import weighted_layers
    return weighted_layers(model).values()


# ---- end to end through scripts/train.py on real MNIST ---------------------------------------------------
SMALL = ["model=lenet300", "logger=none", "data.train_size=2000", "trainer.progress=false", "trainer.compile=false"]


@pytest.fixture(scope="module")
def dense_record(tmp_path_factory, data_root):
    """A dense LeNet-300-100 record trained for 1 epoch: what a pruning run starts from."""
    root = tmp_path_factory.mktemp("dense")
    proc = run_train(root / "run", *SMALL, "method=dense", "trainer.epochs=1", "name=lenet300_dense",
                     "results.save=true", f"results.dir={root / 'runs'}", data_root=data_root)
    assert proc.returncode == 0, proc.stderr
    return root / "runs" / "lenet300_dense" / "seed0"


def pruning_overrides(dense_record):
    return [*SMALL, "method=pruning", f"model.init_from={dense_record}", "trainer.epochs=6", "method.schedule=gradual",
            "method.rounds=4", "method.target_compression=20", "optim.lr=3e-4"]


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory, dense_record, data_root):
    run_dir = tmp_path_factory.mktemp("pruned")
    proc = run_train(run_dir, *pruning_overrides(dense_record), data_root=data_root)
    assert proc.returncode == 0, proc.stderr
    return run_dir


@pytest.mark.slow
def test_a_pruning_record_states_both_trainings_and_its_layers(pruned_run, dense_record):
    final = json.loads((pruned_run / "final.json").read_text())
    assert final["metrics"]["epoch"] == 6 and final["init_from"]["epoch"] == 1
    assert final["init_from"]["run"] == str(dense_record) and final["init_from"]["identity"]["method"] == "dense"
    m = final["metrics"]
    assert abs(m["compression"] / 20 - 1) < 0.01 and set(m["nonzero"]) == {"fc1", "fc2", "fc3"}
    assert sum(m["weights"].values()) / sum(m["nonzero"].values()) == pytest.approx(m["compression"])
    dense = json.loads((dense_record / "final.json").read_text())["metrics"]["test_error"]
    assert m["test_error"] < dense + 10  # it went on from where the dense net was, one in twenty weights left


@pytest.mark.slow
def test_a_pruning_run_killed_mid_schedule_resumes_to_the_same_final_metrics(tmp_path, dense_record, pruned_run,
                                                                              data_root):
    env = {**os.environ, "SPARSEVD_DATA": str(data_root), "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "scripts/train.py", *pruning_overrides(dense_record), f"outputs={tmp_path}"]
    run_dir = kill_after_epochs(cmd, tmp_path, env)
    assert not (run_dir / "final.json").exists()
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert 1 <= state["epoch"] < 4  # killed before the schedule's last event
    again = subprocess.run([*cmd, "resume=auto"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"continuing {run_dir}" in again.stdout
    assert _metrics(run_dir) == _metrics(pruned_run)


@pytest.mark.slow
def test_the_exported_file_of_a_pruned_record_has_the_records_error(tmp_path, pruned_run):
    from sparsevd.compress.deploy import DEFAULT, LOSSLESS, export_record, threshold_sweep

    final = json.loads((pruned_run / "final.json").read_text())["metrics"]
    lossless = export_record(pruned_run, tmp_path / "lossless.svd", LOSSLESS)
    assert lossless["test_error"] == final["test_error"]
    default = export_record(pruned_run, tmp_path / "default.svd", DEFAULT)
    assert default["bytes"] < lossless["bytes"] < lossless["dense_bytes"] / 10
    (point,), _ = threshold_sweep(pruned_run)  # no threshold to move: the one point it was trained to
    assert point["threshold"] is None and point["test_error"] == final["test_error"]
    assert point["compression"] == final["compression"]


@pytest.mark.parametrize("override,needle", [
    ("method.schedule=cubic", "method.schedule='cubic'; use method.schedule=han|gradual"),
    ("method.allocation=layerwise", "method.allocation='layerwise'; use method.allocation=uniform|erk|global|std|layers"),
    ("model.init_from=null", "method=pruning prunes a trained net; pass model.init_from="),
])
@pytest.mark.slow
def test_an_unknown_schedule_or_allocation_is_one_line_and_writes_nothing(tmp_path, override, needle):
    run_dir = tmp_path / "outputs" / "run"
    proc = subprocess.run([sys.executable, "scripts/train.py", "experiment=lenet300_gmp", override, "logger=none",
                           f"outputs={tmp_path / 'outputs'}", f"hydra.run.dir={run_dir}", "results.save=true",
                           f"results.dir={tmp_path / 'results'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "WANDB_MODE": "disabled"})
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not run_dir.exists() and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_pruning_starts_only_from_a_dense_net(tmp_path, pruned_run, data_root):
    import shutil

    record = tmp_path / "record"  # a record folder of the pruned run: its weights, config and final.json
    record.mkdir()
    for name in ("weights.safetensors", "config.yaml", "final.json"):
        shutil.copy(pruned_run / name, record / name)
    proc = run_train(tmp_path / "run", *SMALL, "method=pruning", f"model.init_from={record}", "trainer.epochs=2",
                     "method.rounds=1", f"outputs={tmp_path}", data_root=data_root)
    assert proc.returncode == 2 and "holds a method=pruning run; method=pruning prunes a trained dense net" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
