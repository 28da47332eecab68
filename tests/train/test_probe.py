import copy

import pytest
import torch

from conftest import run_config, script
from sparsevd.config import ConfigError
from sparsevd.core.models import build_model
from sparsevd.data import Dataset
from sparsevd.train.probe import format_rows, probe
from sparsevd.train.trainer import fit


def tiny_data(n=300):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return Dataset(x, y, x[:100], y[:100])


def config(*extra):
    """Two epochs of 6 steps on 300 images (7 on 310, the last one short), the LR falling linearly, beta 0 then
    0.5."""
    return run_config("trainer.epochs=2", "trainer.batch_size=50", "trainer.progress=false", "optim.schedule=linear",
                      "kl.start=0", "kl.warmup=2", *extra)


def test_probe_takes_the_steps_training_takes(tmp_path):
    # a short last batch and log sigma^2 at twice the LR: each must be stepped as the trainer steps it
    cfg = config("optim.log_sigma2_lr_scale=2")
    torch.manual_seed(0)
    model = build_model("lenet300", "sparsevd")
    probed = copy.deepcopy(model)
    torch.manual_seed(1)  # the weight noise draws from the global generator
    fit(model, tiny_data(310), cfg, tmp_path)
    torch.manual_seed(1)
    rows = probe(probed, tiny_data(310), cfg, steps=14, every=7)
    assert [(r["step"], r["epoch"], r["beta"]) for r in rows] == [(0, 1, 0.0), (7, 1, 0.0), (14, 2, 0.5)]
    assert [r["lr"] for r in rows] == pytest.approx([cfg.optim.lr, cfg.optim.lr, cfg.optim.lr / 2])
    for (name, a), b in zip(model.state_dict().items(), probed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-7), name


def test_rows_at_the_start_every_few_steps_and_the_last():
    rows = probe(build_model("lenet300", "sparsevd"), tiny_data(), config(), steps=7, every=3)
    assert [r["step"] for r in rows] == [0, 3, 6, 7]
    assert rows[0]["ce"] is None and rows[1]["ce"] > 0 and rows[0]["kl_per_image"] > 0
    assert list(rows[0]["layers"]) == ["fc1", "fc2", "fc3"]
    text = format_rows(rows)
    assert len(text.splitlines()) == 5 and "fc3" in text.splitlines()[0]


def test_the_kl_from_the_first_step_shrinks_theta_and_prunes():
    # the same start and data, beta = 1 from step 1 against beta = 0: only the KL tells them apart
    torch.manual_seed(0)
    start = build_model("lenet300", "sparsevd")
    runs = {}
    for name, kl in {"no_warmup": ("kl.warmup=0",), "warmup": ("kl.start=5",)}.items():
        torch.manual_seed(1)
        cfg = config("trainer.epochs=10", *kl)
        runs[name] = probe(copy.deepcopy(start), tiny_data(), cfg, steps=30, every=30)[-1]["layers"]["fc1"]
    assert runs["no_warmup"]["pruned"] > runs["warmup"]["pruned"] + 20
    assert runs["no_warmup"]["theta"] < runs["warmup"]["theta"] / 2


def test_a_net_without_log_alpha_no_steps_or_steps_past_the_run_are_refused():
    with pytest.raises(ConfigError, match="no log alpha"):
        probe(build_model("lenet300", "dense"), tiny_data(), config(), steps=5, every=1)
    with pytest.raises(ConfigError, match="--steps and --every must be >= 1"):
        probe(build_model("lenet300", "sparsevd"), tiny_data(), config(), steps=0, every=1)
    with pytest.raises(ConfigError, match="--steps 13 is past the run's 2 epochs of 6 steps"):
        probe(build_model("lenet300", "sparsevd"), tiny_data(), config(), steps=13, every=1)


@pytest.mark.parametrize("argv, names", [
    (["model.init_from=results/runs/lenet5_dense/seed0"], "model.init_from"),
    (["experiment=no_such_experiment"], "configs/experiment/"),
    (["trainer.no_such_key=1"], "no_such_key"),
    (["--steps", "0"], "--steps and --every must be >= 1"),
], ids=["pretrained start", "unknown experiment", "unknown key", "no steps"])
def test_the_script_refuses_bad_input_in_one_line(capsys, argv, names):
    assert script("probe").main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and names in err and "\n" not in err


@pytest.mark.slow
def test_beta_one_from_the_first_step_prunes_lenet5_within_fifty_steps(data_root, capsys):
    # the no-warm-up candidate of the LeNet-5 search, on the real data: at step 50 nearly every weight of every
    # layer is at or above the threshold, and the CE is at chance
    argv = ["experiment=lenet5_sparsevd_no_kl_warmup_val10k", f"data.root={data_root}", "trainer.threads=1",
            "--steps", "50", "--every", "50"]
    assert script("probe").main(argv) == 0
    last = capsys.readouterr().out.splitlines()[-1].split()
    pruned = [float(cell.rstrip("%")) for cell in last if cell.endswith("%")]
    assert last[0] == "50" and float(last[4]) > 2.2 and len(pruned) == 4 and min(pruned) >= 99
