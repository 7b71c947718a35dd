"""Every notebook in ``notebooks/`` runs top to bottom, and is committed clean.

Each notebook is executed with nbclient on the ``python3`` kernel, from
``notebooks/`` as the working directory, with matplotlib on the ``Agg``
backend; a cell that raises fails the test. The notebooks are stored
without outputs or execution counts so they read well in a diff.
"""

import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 120  # s per cell: generous for a loaded 2-core machine


def _read(path):
    with open(path, encoding="utf-8") as fh:
        return nbformat.read(fh, as_version=4)


def _execute(nb, monkeypatch, cwd=NB_DIR):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the kernel inherits this environment
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def _text_outputs(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


def test_the_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_custom_stage_chain.ipynb",
        "03_monte_carlo.ipynb",
        "04_latency_and_throughput.ipynb",
        "05_nab_real_data.ipynb",
    ]


def test_kernel_is_this_interpreter(monkeypatch):
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("import os, sys\nprint(sys.executable)\nprint(os.getcwd())\n"
                                         "print(os.environ.get('MPLBACKEND'))")]
    )
    _execute(nb, monkeypatch)
    exe, cwd, backend = _text_outputs(nb.cells[0]).split("\n")[:3]
    assert Path(exe).resolve() == Path(sys.executable).resolve()
    assert Path(cwd).resolve() == NB_DIR.resolve()
    assert backend == "Agg"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    assert nb.cells and nb.cells[0].cell_type == "markdown", "a notebook opens with a markdown cell saying what it teaches"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.get("outputs") == [], f"cell {i} has outputs"
            assert cell.get("execution_count") is None, f"cell {i} has an execution count"
            assert cell.source.strip(), f"cell {i} is empty"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    nb = _execute(_read(path), monkeypatch)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "the notebook produced no output"


def test_nab_notebook_skips_cleanly_without_the_corpus(tmp_path, monkeypatch):
    # Run from a folder with no shared/datasets/NAB above it.
    assert not any((d / "shared" / "datasets" / "NAB").exists() for d in (tmp_path, *tmp_path.parents))
    nb = _read(NB_DIR / "05_nab_real_data.ipynb")
    probe = nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nprint('figures', len(plt.get_fignums()), 'results', len(results))")
    nb.cells.append(probe)
    _execute(nb, monkeypatch, cwd=tmp_path)
    text = "".join(_text_outputs(c) for c in nb.cells if c.cell_type == "code")
    assert "NAB corpus not found" in text
    assert _text_outputs(nb.cells[-1]).strip() == "figures 0 results 0"
