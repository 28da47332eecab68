"""Follow the first steps of a run, as training takes them: the batch's CE, the KL per training image
and, per layer, median |theta|, median log sigma^2, median log alpha and the share at or above the
pruning threshold. It shows where a recipe goes before its first evaluation, for instance why a
recipe collapses to chance within its first epoch. Nothing is written.

    python scripts/probe.py experiment=lenet5_sparsevd_no_kl_warmup_val10k --steps 100 --every 25
    python scripts/probe.py model=lenet300 kl.start=0 kl.warmup=0 --steps 200
"""
import argparse
import sys

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from sparsevd.config import ConfigError, compose
from sparsevd.data import DataError
from sparsevd.train.device import DeviceError
from sparsevd.train.probe import check_steps, format_rows, probe
from sparsevd.train.run import start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="the run's overrides, as scripts/train.py takes them")
    p.add_argument("--steps", type=int, default=100, help="steps to train (default 100)")
    p.add_argument("--every", type=int, default=25, help="a row every that many steps (default 25)")
    args = p.parse_args(argv)
    try:
        try:
            c = compose(*args.overrides)
        except (HydraException, OmegaConfBaseException) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{first} (the options: docs/usage.md; the experiments: configs/experiment/)") from exc
        check_steps(args.steps, args.every, c)
        if c.model.init_from:
            raise ConfigError("the probe cannot follow a run that starts from a trained run (model.init_from); "
                              "probe one that starts from its own init")
        device, data, model, _ = start(c)  # as scripts/train.py's run starts
        print(format_rows(probe(model, data, c, args.steps, args.every, device)))
    except (ConfigError, DataError, DeviceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
