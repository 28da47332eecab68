"""examples/own_model.py runs end to end on a slice of Fashion-MNIST and ends with a sparse network that
still classifies, exported to a file that classifies as well."""
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_own_model_example_sparsifies_trains_and_exports(tmp_path, data_root):
    out = tmp_path / "own.svd"
    args = ["--epochs", "4", "--dense-epochs", "2", "--train-size", "5000", "--test-size", "2000", "--out", str(out)]
    proc = subprocess.run([sys.executable, "examples/own_model.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "SPARSEVD_DATA": str(data_root)})
    assert proc.returncode == 0, proc.stderr
    sparse = [(float(e), float(c)) for e, c in re.findall(r"sparse epoch \d+: test error ([\d.]+) %  compression ([\d.]+)x",
                                                          proc.stdout)]
    assert len(sparse) == 4
    error, compression = sparse[-1]
    # measured on 5,000 training and 2,000 test images: 26.6 % at 45x; chance is 90 %. Pruning that
    # broke the net, or a KL that never pruned, fails here.
    assert error < 30.0 and compression > 10.0
    exported = float(re.search(r"its test error ([\d.]+) %", proc.stdout).group(1))
    assert abs(exported - error) <= 1.0
    assert out.exists() and f"{out.stat().st_size:,} bytes" in proc.stdout
