"""The notebooks: committed with outputs and a plot, in step with their generator scripts, and
re-executed top to bottom (a cell that errors, warns about tqdm or draws no plot fails)."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
GENERATORS = {"quickstart.ipynb": ("make_notebooks", "QUICKSTART"), "train_and_classify.ipynb": ("make_train_notebook", "CELLS")}


def script(module_name: str):
    """A module of scripts/ (make_notebooks has build() and execute(), each script its cells)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        return importlib.import_module(module_name)
    finally:
        sys.path.pop(0)


def outputs(notebook) -> list:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]


def check_outputs(notebook, name: str) -> None:
    """Every code cell ran and showed something; at least one PNG plot; no errors or tqdm warnings."""
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    silent = [cell.source.splitlines()[0] for cell in code if not cell.get("outputs") and "close()" not in cell.source]
    assert not silent, f"{name}: code cells without output: {silent}"
    everything = outputs(notebook)
    assert not [o for o in everything if o.output_type == "error"], f"{name}: a cell raised"
    pngs = [o for o in everything if o.output_type in ("display_data", "execute_result") and "image/png" in o.get("data", {})]
    assert pngs, f"{name}: no plot (image/png output)"
    assert all(len(o["data"]["image/png"]) > 5_000 for o in pngs)  # base64 of a real figure, not an empty one
    text = "".join(o.get("text", "") for o in everything if o.output_type == "stream")
    assert "TqdmWarning" not in text and "IProgress not found" not in text, f"{name}: {text[:500]}"


def test_every_notebook_has_a_generator():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(GENERATORS)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_committed_notebook_matches_its_script_and_has_outputs(name: str) -> None:
    committed = nbformat.read(NOTEBOOKS / name, as_version=4)
    module_name, cells = GENERATORS[name]
    expected = script("make_notebooks").build(getattr(script(module_name), cells))
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in expected.cells], (
        f"notebooks/{name} is out of date: run python3 scripts/{module_name}.py"
    )
    check_outputs(committed, name)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_notebook_executes_and_draws_its_plots(name: str, tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    script("make_notebooks").execute(notebook, tmp_path)
    check_outputs(notebook, name)
    if name == "train_and_classify.ipynb":
        text = "".join(o.get("text", "") for o in outputs(notebook) if o.output_type == "stream")
        assert re.search(r"epoch \d+/20: 100%", text)  # the forced progress bar, stored as its last state


def _stderr_of_cell(source: str, tmp_path: Path) -> str:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    script("make_notebooks").execute(notebook, tmp_path, timeout=300)
    return "".join(o.get("text", "") for o in outputs(notebook) if o.output_type == "stream")


@pytest.mark.skipif(importlib.util.find_spec("ipywidgets") is not None, reason="with ipywidgets tqdm.auto does not warn")
def test_importing_the_package_in_a_kernel_silences_the_tqdm_widget_warning(tmp_path: Path) -> None:
    assert "IProgress not found" in _stderr_of_cell("import tqdm.auto", tmp_path)  # what a newcomer saw before
    shown = _stderr_of_cell("import nemo_cls_dask\nimport tqdm.auto\nfrom nemo_cls_dask.progress import progress_bar\n"
                            "bar = progress_bar(3, desc='demo', progress=True)\nbar.update(3)\nbar.close()", tmp_path)
    assert "IProgress not found" not in shown and "TqdmWarning" not in shown
    assert "demo: 100%" in shown  # the forced text bar is drawn in the cell
