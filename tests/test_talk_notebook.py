"""notebooks/talk.ipynb: every step's numerical check passes when executed, and the committed copy shows its outputs."""
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TALK = NOTEBOOKS / "talk.ipynb"


def images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.slow
def test_talk_notebook_executes(data_root, tmp_path, monkeypatch):
    """Runs top to bottom (its cells assert each step), section 7 in its quick setting: seconds of training
    on real MNIST instead of minutes (``make notebook`` runs the full one for the committed outputs)."""
    monkeypatch.setenv("SPARSEVD_DATA", str(data_root))
    monkeypatch.setenv("SPARSEVD_TALK_QUICK", "1")
    copy = shutil.copy(TALK, tmp_path / "talk.ipynb")  # the committed file is never rewritten
    nb = nbformat.read(copy, as_version=4)
    # the notebook finds the repository from its working directory, so it runs in notebooks/
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    nbformat.write(nb, copy)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert images(nb) >= 6
    assert "8 epochs on 5000 images" in printed(nb)  # the quick setting was read


def printed(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_the_committed_talk_notebook_shows_its_outputs():
    """Opened on GitHub or in Jupyter, the notebook shows its checks and figures without being run."""
    nb = nbformat.read(TALK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert images(nb) >= 6
    assert "64 epochs on 10000 images" in printed(nb)  # the full setting, not the tests' quick one
