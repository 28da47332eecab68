"""Follow the first steps of a run, as training takes them: the batch's CE, the KL per training image
and, per layer, median |theta|, median log sigma^2, median log alpha and the share at or above the
pruning threshold. It shows where a recipe goes before its first evaluation, for instance why a
recipe collapses to chance within its first epoch. Nothing is written.

    python scripts/probe.py experiment=lenet5_sparsevd_no_kl_warmup_val10k --steps 100 --every 25
    python scripts/probe.py model=lenet300 kl.start=0 kl.warmup=0 --steps 200
"""
import argparse
import sys

from sparsevd.config import ConfigError, compose
from sparsevd.core.models import build_from_config
from sparsevd.data import DataError, load_dataset
from sparsevd.train.device import seed_everything, use_threads
from sparsevd.train.probe import format_rows, probe


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="the run's overrides, as scripts/train.py takes them")
    p.add_argument("--steps", type=int, default=100, help="steps to train (default 100)")
    p.add_argument("--every", type=int, default=25, help="a row every that many steps (default 25)")
    args = p.parse_args(argv)
    try:
        c = compose(*args.overrides)
        if c.model.init_from:
            raise ConfigError("model.init_from: the probe follows runs that start from their own init; drop it")
        use_threads(c.trainer.threads)
        seed_everything(c.seed)  # the same data order and initial weights as scripts/train.py's run
        d = c.data
        data = load_dataset(d.name, d.root, d.preprocess, d.train_size, "cpu", d.val_size, d.labels)
        model = build_from_config(c)
        print(format_rows(probe(model, data, c, args.steps, args.every)))
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
