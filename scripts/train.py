"""Train one configuration: ``python scripts/train.py model=lenet300 kl.warmup=50``."""
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from sparsevd.train.run import ERRORS, remove_empty_folders, run
from sparsevd.train.trainer import Interrupted


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    try:
        run(OmegaConf.to_container(cfg, resolve=True), Path(hc.runtime.output_dir),
            overrides=list(hc.overrides.task))
    except ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Interrupted:
        sys.exit(130)
    except KeyboardInterrupt:  # Ctrl-C outside the training loop: no step to finish, nothing to save
        print("interrupted outside the training loop; no new checkpoint was written", file=sys.stderr)
        sys.exit(130)
    finally:  # Hydra makes the run folder up front; a failed start or a resume elsewhere leaves it empty
        remove_empty_folders(Path(hc.runtime.output_dir), stop=Path(cfg.outputs))


if __name__ == "__main__":
    main()
