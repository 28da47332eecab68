"""Every option of every config group composes and validates; bad overrides fail with one line."""
import copy
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sparsevd.config import upgrade_config
from sparsevd.config import ConfigError, validate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GROUPS = ["model", "data", "method", "kl", "optim", "logger", "experiment"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONFIGS / g).glob("*.yaml"))]


def composed(*overrides):
    """A fresh copy of the resolved config; each set of overrides is composed once per test run."""
    return copy.deepcopy(_composed(overrides))


@functools.lru_cache(maxsize=None)
def _composed(overrides: tuple):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def init_from(option: str) -> list[str]:
    """A *_pretrained experiment and method=pruning need a trained run's folder, which any string passes at
    compose time (the pruning experiments name their dense record themselves)."""
    return ["model.init_from=/some/run"] if "_pretrained" in option or option == "pruning" else []


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_validates(group, option):
    cfg = composed(f"{group}={option}", *init_from(option))
    validate(cfg)
    if group in ("model", "data", "method"):
        assert cfg[group]["name"] == option
    if group == "experiment":
        # a direct scripts/train.py run never writes into the committed results/ (make records does)
        assert cfg["name"] == option and not cfg["results"]["save"]


def test_experiment_rows_carry_the_authors_recipe():
    cfg = composed("experiment=lenet300_sparsevd")
    assert (cfg["model"]["name"], cfg["method"]["name"], cfg["data"]["name"]) == ("lenet300", "sparsevd", "mnist")
    assert cfg["trainer"]["epochs"] == 200 and cfg["trainer"]["batch_size"] == 100 and cfg["optim"]["lr"] == 1e-3
    assert cfg["optim"]["schedule"] == "constant_then_linear" and cfg["method"]["train_clip"]
    assert (cfg["kl"]["start"], cfg["kl"]["warmup"], cfg["method"]["log_sigma2_init"]) == (5, 15, -10.0)
    assert composed("experiment=lenet5_ard")["optim"]["schedule"] == "linear"
    assert composed("experiment=fashion_lenet5_sparsevd")["data"]["name"] == "fashion_mnist"


@pytest.mark.parametrize("override,needle", [
    ("trainer.epochs=0", "trainer.epochs"),
    ("data.train_size=-5", "data.train_size"),
    ("data.train_size=60001", "data.train_size"),
    ("trainer.batch_size=0", "trainer.batch_size"),
    ("method.threshold=inf", "method.threshold"),
    ("method.threshold=nan", "method.threshold"),
    ("optim.lr=nan", "optim.lr"),
    ("optim.schedule=cosine", "optim.schedule"),
    ("model.name=resnet", "unknown model"),
    ("device=tpu", "device"),
    ("experiment=lenet5_sparsevd_pretrained", "pass model.init_from=<run folder of a trained model=lenet5 run"),
    ("model.init_from=", "model.init_from"),
    ("optim.weight_decay=-1", "optim.weight_decay"),
    ("method.clip_noise=fc", "method.clip_noise='fc' must be null, conv or all"),
    ("model.init=xavier", "model.init='xavier' must be one of torch|normal|lasagne"),
    ("method.clip_noise=conv method.train_clip=false", "add method.train_clip=true"),
    ("optim.weight_decay=1e-4", "is for dense and pruned nets; method=sparsevd is regularised by its KL term"),
    ("method.log_alpha_clip=0", "method.log_alpha_clip=0.0 must be a number in (0, 20.0]"),
    ("method.log_alpha_clip=2", "method.threshold=3.0 must not exceed method.log_alpha_clip=2"),
    ("method.log_alpha_clip=1e9", "method.log_alpha_clip=1000000000.0 must be a number"),
    ("data.labels=shuffled", "data.labels='shuffled'; use data.labels=original|random"),
    ("method.kl_fit=2018", "method.kl_fit='2018'; use method.kl_fit=eq14|march2017"),
    ("method=ard method.kl_fit=march2017", "is a fit of the log-uniform prior's KL; use it with method=sparsevd"),
    ("optim.log_sigma2_lr_scale=0", "optim.log_sigma2_lr_scale=0.0 must be finite and > 0"),
    ("kl.start=-3 kl.warmup=2", "kl.start=-3 must be a whole number of epochs >= -kl.warmup (-2)"),
    ("method=pruning", "method=pruning prunes a trained net; pass model.init_from=<record folder of a trained dense lenet300"),
    ("experiment=lenet5_gmp method.schedule=cubic", "method.schedule='cubic'; use method.schedule=han|gradual"),
    ("experiment=lenet5_gmp method.allocation=layer", "method.allocation='layer'; use method.allocation=uniform|erk|global|std|layers"),
    ("experiment=lenet5_gmp method.quality=0.5", "takes one of method.target_compression (e.g. 12), method.quality and"),
    ("experiment=lenet5_pruning method.allocation=layers", "method.allocation=layers keeps each layer's given share; set"),
    ("experiment=lenet5_pruning method.densities=[0.7,0.1,0.1,0.2]", "is read by method.allocation=layers only"),
    ("experiment=lenet5_pruning method.allocation=layers method.densities=[0.7,0.1,0.1,0.2]", "set one, null the others"),
    ("experiment=lenet5_pruning method.allocation=layers method.target_compression=null method.densities=[0.7,0.1]",
     "method.densities has 2 shares; lenet5 needs one per layer (conv1, conv2, fc1, fc2)"),
    ("experiment=lenet5_pruning method.allocation=layers method.target_compression=null method.densities=[0.7,0,0.1,0.2]",
     "method.densities: conv2: 0.0 must be a share of the layer's weights in (0, 1]"),
    ("experiment=lenet5_gmp method.target_compression=null method.quality=0.5", "use it with method.schedule=han"),
    ("experiment=lenet5_pruning method.target_compression=1", "method.target_compression=1.0 must be a finite number > 1"),
    ("experiment=lenet5_pruning method.rounds=0", "method.rounds=0 must be a whole number >= 1"),
    ("experiment=lenet5_gmp trainer.epochs=20", "epoch method.prune_start + (method.rounds - 1) x method.prune_every = 29"),
    ("method.allocation=erk", "method.allocation is an option of method=pruning; drop it for method=sparsevd"),
    ("trainer.threads=-1", "trainer.threads=-1 must be a whole number >= 1, or 0 / null for torch's default"),
])
def test_bad_values_are_rejected(override, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        validate(composed(*override.split()))


@pytest.mark.parametrize("override,needle", [
    ("method.clip_noise=[conv]", "method.clip_noise"),   # a list where a string goes
    ("trainer.epochs=abc", "trainer.epochs"),
    ("trainer.epoch=5", "trainer.epoch"),                # a typo of a key
    ("trainer.threads=two", "trainer.threads"),
])
def test_the_schema_rejects_unknown_keys_and_wrong_types_at_composition(override, needle):
    from hydra.errors import ConfigCompositionException
    with pytest.raises(ConfigCompositionException, match=re.escape(needle)):
        composed(override)
    with pytest.raises(ConfigError, match="unknown option method.log_alpha"):  # forced in with +: validate stops it
        validate(composed("+method.log_alpha=3"))


def test_the_yaml_holds_real_values_and_the_code_takes_them_typed():
    cfg = composed()
    assert cfg["method"]["log_alpha_clip"] == 8.0 and cfg["optim"]["weight_decay"] == 0.0
    c = validate(cfg)
    assert (c.method.log_alpha_clip, c.optim.weight_decay, c.kl.start, c.trainer.epochs) == (8.0, 0.0, 5, 200)
    assert c.identity == {"model": "lenet300", "method": "sparsevd", "data": "mnist"}
    with pytest.raises(ConfigError, match="unknown option optim.momentum"):
        validate({**cfg, "optim": {**cfg["optim"], "momentum": 0.9}})


def test_older_records_migrate_in_one_step():
    old = composed()
    old["method"]["log_alpha_clip"], old["optim"]["weight_decay"] = None, None   # null once meant 8 and 0
    del old["data"]["val_size"], old["trainer"]["compile"], old["model"]["init_from"], old["data"]["labels"]
    del old["method"]["kl_fit"], old["optim"]["log_sigma2_lr_scale"], old["trainer"]["threads"]
    old["optim"]["name"] = "adam"   # a key that said nothing, since removed
    c = validate(old)
    assert (c.method.log_alpha_clip, c.optim.weight_decay, c.data.val_size, c.model.init_from) == (8.0, 0.0, 0, None)
    assert (c.data.labels, c.method.kl_fit, c.optim.log_sigma2_lr_scale) == ("original", "eq14", 1.0)
    assert c.trainer.threads is None
    assert upgrade_config(old) == upgrade_config(upgrade_config(old))


def test_the_default_run_is_the_authors_recipe_under_a_name_of_its_own():
    default, row = composed(), composed("experiment=lenet300_sparsevd")
    assert default["name"] == "run_lenet300_sparsevd" != row["name"]
    assert {k for k, v in _leaves(default) if dict(_leaves(row)).get(k) != v} == {"name", "logger.group"}


def test_batch_larger_than_data_is_rejected():
    with pytest.raises(ConfigError, match="larger than"):
        validate(composed("data.train_size=50", "trainer.batch_size=100"))


@pytest.mark.parametrize("override,needle", [
    ("model=resnet", "model/resnet"),
    ("trainer.epochs=0", "trainer.epochs"),
    ("trainer.epochs=abc", "trainer.epochs"),
    ("data.train_size=-5", "data.train_size"),
    ("method.threshold=inf", "method.threshold"),
    ("experiment=lenet5_sparsevd_pretrained", "model.init_from=<run folder"),
])
@pytest.mark.slow
def test_cli_bad_override_is_one_clear_error_and_writes_nothing(override, needle, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "scripts/train.py", override, "logger=none",
                           f"hydra.run.dir={run_dir}", f"results.dir={tmp_path / 'results'}"],
                          cwd=CONFIGS.parent, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert not run_dir.exists() or not any(run_dir.rglob("*"))
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("launcher,target", [("local_parallel", "JoblibLauncher"), ("slurm", "SlurmLauncher"),
                                             ("submitit_local", "LocalLauncher")])
def test_launcher_configs_compose(launcher, target):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)


@pytest.mark.slow
def test_cli_missing_data_and_unwritable_results_write_nothing(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cases = [
        ([f"data.root={tmp_path / 'nodata'}"], {"SPARSEVD_DATA": ""}, "SPARSEVD_DATA"),
        (["experiment=lenet300_sparsevd", "results.save=true", f"results.dir={blocker / 'runs'}"], {}, "not writable"),
    ]
    import os
    for overrides, env, needle in cases:
        run_dir = tmp_path / "run"
        proc = subprocess.run([sys.executable, "scripts/train.py", *overrides, "logger=none", f"outputs={tmp_path}",
                               f"hydra.run.dir={run_dir}"],
                              cwd=CONFIGS.parent, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "WANDB_MODE": "disabled", **env})
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not run_dir.exists()  # not even the empty folder Hydra made up front


# Each variant of a Table 1 row (docs/reproduction.md) and the only keys where it may differ from that row.
VARIANTS = {
    "lenet300_dense_wd": ("lenet300_dense", {"optim.weight_decay", "loss.scale"}),
    "lenet5_sparsevd_lr_const_then_linear": ("lenet5_sparsevd", {"optim.schedule"}),
    "lenet5_sparsevd_pretrained": ("lenet5_sparsevd", {"model.init_from"}),
    "lenet5_sparsevd_lasagne": ("lenet5_sparsevd", {"model.init", "method.clip_noise"}),
    "lenet5_ard_lasagne": ("lenet5_ard", {"model.init", "method.clip_noise"}),
    "lenet5_ard_pretrained": ("lenet5_ard", {"model.init_from"}),
    "lenet5_sparsevd_100ep": ("lenet5_sparsevd", {"trainer.epochs", "kl.start", "kl.warmup", "method.log_alpha_clip"}),
    "lenet5_sparsevd_no_train_clip": ("lenet5_sparsevd", {"method.train_clip"}),
    "lenet5_sparsevd_mean_loss": ("lenet5_sparsevd", {"loss.scale"}),
    "lenet5_ard_lr_const_then_linear": ("lenet5_ard", {"optim.schedule"}),
    "lenet5_sparsevd_log_sigma2_init": ("lenet5_sparsevd", {"method.log_sigma2_init"}),
    # the LR schedule chosen on held-out training images: each side of the choice with a validation split
    "lenet5_sparsevd_val10k": ("lenet5_sparsevd", {"data.val_size"}),
    "lenet5_sparsevd_lr_const_then_linear_val10k": ("lenet5_sparsevd_lr_const_then_linear", {"data.val_size"}),
    # the LeNet-5 recipe search: each candidate alone, then with the validation split it is judged on
    "lenet5_sparsevd_march2017": ("lenet5_sparsevd", {"method.kl_fit"}),
    "lenet5_sparsevd_glorot_conv": ("lenet5_sparsevd", {"model.init"}),
    "lenet5_sparsevd_clip_noise_conv": ("lenet5_sparsevd", {"method.clip_noise"}),
    "lenet5_sparsevd_kl_warmup50": ("lenet5_sparsevd", {"kl.warmup"}),
    "lenet5_sparsevd_no_kl_warmup": ("lenet5_sparsevd", {"kl.start", "kl.warmup"}),
    "lenet5_sparsevd_no_kl_warmup_torch_init": ("lenet5_sparsevd_no_kl_warmup", {"model.init"}),
    **{f"lenet5_sparsevd_{v}_val10k": (f"lenet5_sparsevd_{v}", {"data.val_size"})
       for v in ("march2017", "glorot_conv", "clip_noise_conv", "kl_warmup50", "no_train_clip", "log_sigma2_init",
                 "no_kl_warmup", "no_kl_warmup_torch_init")},
    "lenet5_ard_lr_const_then_linear_val10k": ("lenet5_ard_lr_const_then_linear", {"data.val_size"}),
    "lenet5_sparsevd_pretrained_noisy_val10k": ("lenet5_sparsevd_pretrained",
                                                {"data.val_size", "method.log_sigma2_init", "trainer.epochs"}),
    "lenet5_sparsevd_pretrained_noisy_lr10_val10k": ("lenet5_sparsevd_pretrained_noisy_val10k",
                                                     {"optim.log_sigma2_lr_scale"}),
    "lenet5_dense_val10k": ("lenet5_dense", {"data.val_size"}),
    "lenet300_dense_val10k": ("lenet300_dense", {"data.val_size"}),
    **{f"{net}_dense_wd_val10k": (f"{net}_dense_wd", {"data.val_size"}) for net in ("lenet300", "lenet5")},
    "lenet5_dense_wd": ("lenet5_dense", {"optim.weight_decay", "loss.scale"}),
    **{f"lenet300_{row}_wd_val10k": (f"lenet300_{row}", {"data.val_size", "model.init_from"}) for row in ("pruning", "gmp")},
    # magnitude pruning: the rows on the validation split start from the dense net trained beside it
    **{f"{net}_{row}_val10k": (f"{net}_{row}", {"data.val_size", "model.init_from"})
       for net in ("lenet300", "lenet5") for row in ("pruning", "gmp")},
    # the plain dense start, without weight decay: the LeNet-300-100 rows start from lenet300_dense_wd
    "lenet300_pruning_val10k": ("lenet300_pruning", {"data.val_size", "model.init_from", "optim.lr",
                                                     "optim.weight_decay", "loss.scale"}),
    "lenet300_gmp_val10k": ("lenet300_gmp", {"data.val_size", "model.init_from", "optim.weight_decay", "loss.scale"}),
    "lenet5_pruning_val10k": ("lenet5_pruning", {"data.val_size", "model.init_from", "optim.lr"}),
    "lenet5_pruning_wd_val10k": ("lenet5_pruning", {"data.val_size", "model.init_from", "optim.weight_decay", "loss.scale"}),
    "lenet5_gmp_wd_val10k": ("lenet5_gmp", {"data.val_size", "model.init_from"}),
    # the LeNet-5 gradual row fine-tunes with weight decay; its candidates on the validation split without it
    "lenet5_gmp_val10k": ("lenet5_gmp", {"data.val_size", "model.init_from", "method.allocation",
                                         "optim.weight_decay", "loss.scale"}),
    "lenet300_pruning_layers_val10k": ("lenet300_pruning_fast_lr_val10k", {"method.allocation", "method.target_compression",
                                                                           "method.densities"}),
    "lenet5_pruning_layers_val10k": ("lenet5_pruning", {"data.val_size", "model.init_from", "method.allocation",
                                                        "method.target_compression", "method.densities"}),
    **{f"{net}_gmp_{split}_val10k": (f"{net}_gmp_val10k", {"method.allocation"})
       for net in ("lenet300", "lenet5") for split in ("uniform", "global")},
    **{f"{net}_gmp_{t}x": (f"{net}_gmp", {"method.target_compression"}) for net in ("lenet300", "lenet5") for t in (20, 500)},
    "lenet5_pruning_fast_lr_wd_val10k": ("lenet5_pruning_fast_lr_val10k", {"optim.weight_decay", "loss.scale"}),
    "lenet5_gmp_global_wd_val10k": ("lenet5_gmp_global_val10k", {"optim.weight_decay", "loss.scale"}),
    "lenet300_gmp_long_val10k": ("lenet300_gmp_val10k", {"method.rounds", "trainer.epochs"}),
    "lenet300_gmp_slow_lr_val10k": ("lenet300_gmp_val10k", {"optim.lr"}),
    "lenet300_pruning_fast_lr_val10k": ("lenet300_pruning_val10k", {"optim.lr"}),
    "lenet5_pruning_fast_lr_val10k": ("lenet5_pruning_val10k", {"optim.lr"}),
    "lenet300_dense_random_labels": ("lenet300_dense", {"data.labels"}),
    "lenet300_sparsevd_random_labels": ("lenet300_sparsevd", {"data.labels"}),
    "lenet300_ard_talk": ("lenet300_ard", {"trainer.epochs", "kl.start", "kl.warmup", "optim.schedule",
                                           "optim.log_sigma2_lr_scale", "method.train_clip", "method.log_alpha_clip"}),
}


def _leaves(cfg, prefix=""):
    for k, v in cfg.items():
        yield from _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_variant_changes_only_what_it_says(variant):
    """A variant is its row plus the named changes; anything else would confound the comparison."""
    row, allowed = VARIANTS[variant]
    a = dict(_leaves(composed(f"experiment={row}", *init_from(row))))
    b = dict(_leaves(composed(f"experiment={variant}", *init_from(variant))))
    changed = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)} - {"name", "logger.group"}  # both follow the name
    assert changed == allowed


@pytest.mark.parametrize("row", ["lenet300_dense", "lenet300_sparsevd", "lenet300_ard", "lenet5_dense",
                                 "lenet5_sparsevd", "lenet5_ard"])
def test_fashion_rows_are_the_mnist_rows_on_other_data(row):
    a = dict(_leaves(composed(f"experiment={row}")))
    b = dict(_leaves(composed(f"experiment=fashion_{row}")))
    assert {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)} - {"name", "logger.group", "logger.tags"} == {"data.name"}


def test_every_variant_experiment_is_listed():
    """An experiment named <row>_<change> must be in VARIANTS, so the test above checks it."""
    rows = {p.stem for p in (CONFIGS / "experiment").glob("*.yaml")} - set(VARIANTS)
    assert not [r for r in rows if any(r.startswith(f"{row}_") for row in rows)]


# Keys a record may hold that say where and how it ran, not what it computed.
RUN_PLACE = {"name", "seed", "resume", "outputs", "device", "results", "logger"}
RUNS = Path(__file__).resolve().parents[1] / "results" / "runs"


def _what_it_computes(cfg: dict) -> dict:
    out = {k: v for k, v in upgrade_config(cfg).items() if k not in RUN_PLACE and k != "hydra"}
    out["trainer"].pop("progress", None)
    out["trainer"].pop("compile", None)  # how the per-weight pass runs, like device
    out["trainer"].pop("threads", None)  # on how many CPU threads, like device
    if out["method"]["name"] == "dense":  # a dense net has no KL term and no variational layer options
        out.pop("kl")
        out["method"] = {"name": "dense"}
    if out["model"].get("init_from"):  # a *_pretrained run names its dense run on the command line
        out["model"]["init_from"] = "<given>"
    return out


@pytest.mark.parametrize("record", sorted(p.parent.relative_to(RUNS).as_posix() for p in RUNS.glob("*/seed*/config.yaml")))
def test_every_committed_record_composes_from_its_experiment_config(record):
    """results/runs/<experiment>/seed<k> must be what experiment=<experiment> runs today: a row or variant
    config edited after its records were made would otherwise leave numbers the configs no longer produce."""
    saved = upgrade_config(yaml.safe_load((RUNS / record / "config.yaml").read_text()))
    experiment = record.split("/")[0]
    now = {**composed(f"experiment={experiment}", *init_from(experiment)), "seed": saved["seed"]}  # one compose a row
    assert _what_it_computes(saved) == _what_it_computes(now)


@pytest.mark.parametrize("row", ["lenet300_pruning", "lenet5_pruning", "lenet300_gmp", "lenet5_gmp"])
def test_a_pruning_row_starts_from_the_dense_record_of_its_seed_and_has_its_recipe_length(row):
    paper = yaml.safe_load((CONFIGS.parent / "results" / "paper.yaml").read_text())
    cfg = composed(f"experiment={row}", "seed=2")
    net = row.split("_")[0]  # from the dense row, or its weight-decay variant (the LeNet-300-100 rows)
    assert cfg["model"]["init_from"] in (f"results/runs/{net}_dense/seed2", f"results/runs/{net}_dense_wd/seed2")
    assert (CONFIGS.parent / cfg["model"]["init_from"] / "weights.safetensors").exists()
    assert cfg["trainer"]["epochs"] == paper["rows"][row]["epochs"]  # the table's recipe length
    assert validate(cfg).method.name == "pruning"
    assert validate(composed(f"experiment={row}", "optim.weight_decay=1e-4")).optim.weight_decay == 1e-4  # Han's L2
