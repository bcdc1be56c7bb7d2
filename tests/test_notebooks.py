"""Every notebook in notebooks/ runs top to bottom on the bundled data without an error."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_the_analyst_notebooks_are_there():
    names = {p.name for p in NOTEBOOKS}
    assert {"01_replay_a_production_log.ipynb", "02_tuning_panel.ipynb",
            "03_policy_grid.ipynb"} <= names  # fmt: skip


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [
        out for cell in nb.cells if cell.cell_type == "code"
        for out in cell.get("outputs", []) if out.get("output_type") == "error"
    ]  # fmt: skip
    assert not errors
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.source.strip() for c in code), "no empty (dead) cells"
    assert all(c.get("execution_count") for c in code), "every cell ran"
    # The last cell of each notebook shows something (a table or a chart).
    assert code[-1]["outputs"]
