"""docs/inspect_a_fit.ipynb runs from top to bottom, in a kernel of this interpreter, and is kept without outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "inspect_a_fit.ipynb"


def test_the_notebook_is_stored_without_outputs():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_the_notebook_runs(tmp_path):
    import nbformat
    from jupyter_client.kernelspec import KernelSpec
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # this interpreter's kernel, whatever kernels the machine has installed
    spec = KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                      display_name="this interpreter", language="python")
    client = NotebookClient(notebook, timeout=300, resources={"metadata": {"path": str(tmp_path)}})
    client.kernel_manager_class = _manager_of(spec)
    client.execute()  # raises CellExecutionError, with the cell and its traceback, when a cell fails
    outputs = "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []))
    assert "Pareto k: max" in outputs and "LOO prefers matrix (nuts)" in outputs  # the learned mean, by far
    images = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if "image/png" in output.get("data", {})]
    assert len(images) == 3  # rank, trace, posterior predictive
    assert (tmp_path / "runs" / "matrix" / "posterior.nc").is_file() and (tmp_path / "runs" / "uniform-mean").is_dir()


def _manager_of(spec):
    from jupyter_client.manager import KernelManager

    class ThisInterpreter(KernelManager):
        @property
        def kernel_spec(self):
            return spec

    return ThisInterpreter
