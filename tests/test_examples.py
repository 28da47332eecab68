"""examples/own_model.py runs end to end on small data and ends with a compressed, exported model."""
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_own_model_example_sparsifies_trains_and_exports(tmp_path, data_root):
    out = tmp_path / "own.svd"
    proc = subprocess.run([sys.executable, "examples/own_model.py", "--epochs", "3", "--dense-epochs", "1",
                           "--train-size", "2000", "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "SPARSEVD_DATA": str(data_root)})
    assert proc.returncode == 0, proc.stderr
    compression = [float(c) for c in re.findall(r"compression ([\d.]+)x", proc.stdout)]
    assert len(compression) == 3 and compression[-1] > 1.0
    assert out.exists() and f"{out.stat().st_size:,} bytes" in proc.stdout
