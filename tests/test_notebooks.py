"""notebooks/results.ipynb executes top to bottom on fabricated records (and on the committed ones)."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import fake_record

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.slow
@pytest.mark.parametrize("records", ["fabricated", "committed"])
def test_results_notebook_executes(records, tmp_path, monkeypatch):
    if records == "fabricated":
        runs = tmp_path / "runs"
        fake_record(runs, "lenet300_sparsevd", 0, 1.8, 70.0, [99.0, 97.0, 60.0])
        fake_record(runs, "lenet300_sparsevd", 1, 1.9, 75.0, [99.1, 97.1, 61.0])
        monkeypatch.setenv("SPARSEVD_RUNS", str(runs))
    else:
        monkeypatch.delenv("SPARSEVD_RUNS", raising=False)
    nb = nbformat.read(NOTEBOOKS / "results.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                      for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    html = "".join(str(o.get("data", {}).get("text/markdown", "")) for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
    if records == "fabricated":
        assert "2 records in" in outputs and "lenet300_sparsevd" in outputs
    else:  # every committed record is read, and the table has the paper's rows beside ours
        committed = len(list((NOTEBOOKS.parent / "results" / "runs").glob("*/seed*/final.json")))
        assert f"{committed} records in" in outputs
        assert "| LeNet-5-Caffe | SparseVD |" in html and "| LeNet-300-100 | ARD |" in html
    assert sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])) >= 2


def test_the_committed_notebook_shows_its_outputs():
    """Opened on GitHub or in Jupyter, the notebook shows its tables and figures without being run."""
    nb = nbformat.read(NOTEBOOKS / "results.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code)
    assert sum("image/png" in o.get("data", {}) for c in code for o in c.outputs) >= 2
