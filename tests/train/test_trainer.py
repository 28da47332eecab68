import pytest
import torch

from sparsevd.data import Dataset
from sparsevd.core.models import build_model
from sparsevd.core.objective import KLSchedule
from conftest import run_config, tiny_train_config
from sparsevd.train.trainer import TrainingError, fit, lr_factor, summary_line


def test_kl_weight_schedule_matches_authors_rw_linear():
    # authors: 0 for epoch < 5, (epoch - 5) / 15 until 20, then 1
    got = [KLSchedule(5, 15)(e) for e in range(25)]
    want = [0.0 if e < 5 else min(1.0, (e - 5) / 15) for e in range(25)]
    assert got == pytest.approx(want)
    assert KLSchedule(0, 50)(10) == pytest.approx(0.2) and KLSchedule(0, 0, 0.5)(3) == 0.5


def test_lr_schedules():
    assert [lr_factor(e, 200, "constant") for e in (0, 199)] == [1.0, 1.0]
    assert lr_factor(0, 200, "linear") == 1.0 and lr_factor(100, 200, "linear") == 0.5
    assert lr_factor(199, 200, "linear") == pytest.approx(1 / 200)
    ctl = [lr_factor(e, 200, "constant_then_linear") for e in (0, 99, 100, 150, 199)]
    assert ctl == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.01])
    with pytest.raises(ValueError):
        lr_factor(0, 10, "cosine")


def tiny_data(n=300):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return Dataset(x, y, x[:100], y[:100])


def test_fit_learns_and_records_history(tmp_path):
    torch.manual_seed(0)
    model = build_model("lenet300", "sparsevd")
    cfg = run_config("trainer.epochs=3", "trainer.batch_size=50", "trainer.progress=false", "optim.schedule=constant",
                     "kl.start=0", "kl.warmup=2")
    history = fit(model, tiny_data(), cfg, tmp_path)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert [r["kl_weight"] for r in history] == [0.0, 0.5, 1.0]
    assert history[-1]["train_ce"] < history[0]["train_ce"]
    assert (tmp_path / "checkpoint.pt").exists() and len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3


def test_training_on_cpu_flushes_subnormals_and_restores_them_after(tmp_path):
    tiny = torch.tensor([1e-39])  # subnormal in float32
    seen = []
    cfg = run_config("trainer.epochs=1", "trainer.batch_size=50", "trainer.progress=false")
    fit(build_model("lenet300", "sparsevd"), tiny_data(), cfg, tmp_path, on_eval=lambda row: seen.append((tiny * 1.0).item()))
    if torch.set_flush_denormal(False):  # the CPU can flush at all
        assert seen == [0.0]
    assert (tiny * 1.0).item() > 0
    if torch.set_flush_denormal(True):  # a caller that flushes itself keeps flushing after fit
        try:
            fit(build_model("lenet300", "sparsevd"), tiny_data(), cfg, tmp_path / "again")
            assert (tiny * 1.0).item() == 0.0
        finally:
            torch.set_flush_denormal(False)


@pytest.mark.parametrize("method", ["sparsevd", "dense"])
def test_sum_scale_gradients_are_n_times_the_mean_scale(method):
    from sparsevd.train.trainer import train_step

    data, grads = tiny_data(), {}
    for scale in ("sum", "mean"):
        torch.manual_seed(0)
        model = build_model("lenet300", method)
        torch.manual_seed(1)
        frozen = torch.optim.SGD(model.parameters(), lr=0.0)   # leaves .grad for us to read
        train_step(model, frozen, data.x_train[:50], data.y_train[:50], n=300, beta=0.5, loss_scale=scale)
        grads[scale] = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.testing.assert_close(grads["sum"], 300 * grads["mean"], rtol=1e-4, atol=1e-6)


def test_loss_scale_changes_training_under_adam(tmp_path):
    def train(scale):
        torch.manual_seed(0)
        model = build_model("lenet300", "sparsevd")
        fit(model, tiny_data(), run_config("trainer.epochs=1", "trainer.batch_size=50", "trainer.progress=false",
                                            f"loss.scale={scale}"), tmp_path / scale)
        return model.fc1.log_sigma2.detach().clone()
    # Adam is scale-invariant up to eps, so only a small (but nonzero) difference is expected here;
    # an implementation that ignored loss.scale would give bit-identical parameters.
    assert (train("sum") - train("mean")).abs().max() > 1e-6


def test_nan_is_caught_with_epoch_and_term(tmp_path):
    data = tiny_data()
    model = build_model("lenet300", "sparsevd")
    fit(model, data, tiny_train_config(1), tmp_path)
    data.x_train[:] = float("nan")          # poison the data after a good epoch was checkpointed
    with pytest.raises(TrainingError, match=r"non-finite CE in epoch 2, step 1; last good checkpoint: .*checkpoint.pt"):
        fit(model, data, tiny_train_config(2), tmp_path, resume=True)
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1 and "NaN" not in rows[0]


def test_nan_in_a_variance_parameter_is_named(tmp_path):
    model = build_model("lenet300", "sparsevd")
    with torch.no_grad():
        model.fc2.log_sigma2[0, 0] = float("nan")   # poisons the KL and, through the noise, the CE
    with pytest.raises(TrainingError, match=r"non-finite CE and KL in epoch 1, step 1; last good checkpoint: none yet"):
        fit(model, tiny_data(), tiny_train_config(1), tmp_path)


def test_weight_decay_is_l2_on_the_gradient_and_off_by_default():
    from sparsevd.core.models import build_model
    from sparsevd.train.trainer import make_optimizer

    def one_step(weight_decay):
        torch.manual_seed(0)
        model = build_model("lenet300", "dense")
        before = model.fc1.weight.detach().clone()
        opt = make_optimizer(model, 1e-2, weight_decay)
        (0.0 * sum(p.sum() for p in model.parameters())).backward()  # zero data gradient
        opt.step()
        return before, model.fc1.weight.detach()

    before, after = one_step(0.0)
    assert torch.equal(before, after)
    before, after = one_step(0.1)
    # Adam's first step on g = wd * w moves each weight by lr against its sign (toward zero), except
    # where g is as small as Adam's eps.
    big = before.abs() > 1e-3
    torch.testing.assert_close(after[big], (before - 1e-2 * before.sign())[big], atol=2e-6, rtol=0)


def test_a_ramp_started_before_epoch_0_is_the_talks_beta():
    """The talk raises beta by 0.02 before each epoch: beta = min(0.02 k, 1) in the k-th epoch."""
    got = [KLSchedule(-1, 50)(e) for e in range(60)]
    assert got == pytest.approx([min(0.02 * (e + 1), 1.0) for e in range(60)])


def test_log_sigma2_lr_scale_moves_only_log_sigma2_faster():
    from sparsevd.train.trainer import make_optimizer

    def one_step(scale):
        torch.manual_seed(0)
        model = build_model("lenet300", "sparsevd")
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt = make_optimizer(model, 1e-3, log_sigma2_lr_scale=scale)
        sum((p * 1.0).sum() for p in model.parameters()).backward()  # gradient 1 everywhere
        opt.step()
        return {n: (before[n] - p.detach()) for n, p in model.named_parameters()}

    one, two = one_step(1.0), one_step(2.0)
    for name in one:  # Adam's first step is lr * sign(g): 1e-3, and 2e-3 for log sigma^2 at scale 2
        want = 2e-3 if name.endswith("log_sigma2") else 1e-3
        torch.testing.assert_close(two[name], torch.full_like(two[name], want), rtol=0, atol=2e-6)  # float32 at -10
        torch.testing.assert_close(one[name], torch.full_like(one[name], 1e-3), rtol=0, atol=2e-6)


def test_fit_keeps_the_lr_scale_of_log_sigma2_over_epochs(tmp_path):
    cfg = run_config("trainer.epochs=2", "trainer.batch_size=50", "trainer.progress=false", "optim.schedule=linear",
                     "kl.start=0", "optim.log_sigma2_lr_scale=2.0")
    seen = []
    fit(build_model("lenet300", "sparsevd"), tiny_data(), cfg, tmp_path, on_eval=lambda row: seen.append(row["lr"]))
    groups = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["optimizer"]["param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, 2.0] and groups[1]["lr"] == pytest.approx(2 * groups[0]["lr"])
    assert seen == pytest.approx([1e-3, 5e-4])


def test_history_counts_weights_crossing_the_threshold(tmp_path):
    torch.manual_seed(0)
    model = build_model("lenet300", "sparsevd")
    masks = []
    fit(model, tiny_data(), tiny_train_config(4), tmp_path,
        on_eval=lambda row: masks.append(([layer.mask().bool() for layer in (model.fc1, model.fc2, model.fc3)], row)))
    assert "revived" not in masks[0][1]  # nothing to compare the first evaluation with
    flips = 0
    for (before, _), (now, row) in zip(masks, masks[1:]):
        assert row["revived"] == sum(int((n & ~b).sum()) for n, b in zip(now, before))
        assert row["newly_pruned"] == sum(int((b & ~n).sum()) for n, b in zip(now, before))
        flips += row["revived"] + row["newly_pruned"]
    assert flips > 0


def test_the_epoch_line_names_the_validation_error_where_there_is_one():
    row = {"epoch": 7, "test_error": 1.62, "sparsity": {"fc1": 90.0, "fc2": 80.0}, "compression": 12.0,
           "kl_weight": 1.0, "lr": 1e-3, "train_ce": 0.01, "train_kl_per_sample": 0.0}
    assert "  error 1.62%  " in summary_line(row) and "val" not in summary_line(row)
    line = summary_line({**row, "val_error": 1.80})
    assert "val error 1.80%  test error 1.62%" in line and "  error 1.62%" not in line
