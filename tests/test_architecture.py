"""The architecture of docs/architecture.md, checked: one import name, imports pointing one way,
no command-line flags or argparse below the command line, and a light ``import bayesmatrix``."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("data", "models", "inference", "analysis")
HEAVY = ("torch", "jax", "xarray")

# What each layer may import of ours (docs/architecture.md, "Imports point one way").
ALLOWED = {
    "data": {"data"},
    "models": {"models"},
    "inference": {"inference", "models", "data"},
    "analysis": {"analysis", "inference", "models", "data"},
    "workflows": {"workflows", "analysis", "inference", "models", "data"},
}


def library_files(layer: str) -> list[Path]:
    folder = ROOT / "bayesmatrix" / "workflows" if layer == "workflows" else ROOT / layer
    return sorted(folder.rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def our_layer(module: str) -> str | None:
    """The layer a module of ours belongs to (``bayesmatrix.models.icl`` -> ``models``)."""
    parts = module.split(".")
    if parts[0] != "bayesmatrix":
        return None
    if len(parts) == 1:
        return "bayesmatrix"
    return parts[1]


@pytest.mark.parametrize("layer", list(ALLOWED))
def test_imports_point_one_way(layer):
    wrong = []
    for path in library_files(layer):
        for module in imported_modules(path):
            found = our_layer(module)
            if found is not None and found not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == []


@pytest.mark.parametrize("layer", LAYERS)
def test_no_bare_layer_names(layer):
    """Inside the package every import of ours goes through ``bayesmatrix.`` (ruff enforces it too)."""
    wrong = []
    for path in [*library_files(layer), *ROOT.joinpath("bayesmatrix").rglob("*.py")]:
        for module in imported_modules(path):
            if module.split(".")[0] in LAYERS:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == []


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
ARGPARSE = re.compile(r"\bimport argparse\b|\bargparse\.")  # the corpus names the module as a docstring source


@pytest.mark.parametrize("layer", LAYERS)
def test_library_speaks_no_flags(layer):
    """Only bayesmatrix/commands knows the command line: no ``--flag`` in the layers, nor argparse."""
    found = []
    for path in library_files(layer):
        text = path.read_text()
        for number, line in enumerate(text.splitlines(), 1):
            if FLAG.search(line) or ARGPARSE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []


def test_nothing_below_the_command_line_imports_it():
    wrong = []
    for layer in ALLOWED:
        for path in library_files(layer):
            for module in imported_modules(path):
                if module.startswith(("bayesmatrix.cli", "bayesmatrix.commands")):
                    wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == []


def imported_by(code: str, cwd: Path | None = None) -> set[str]:
    """Top-level modules a fresh interpreter has loaded after running ``code``."""
    probe = code + "\nimport sys\nprint(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=cwd)
    return set(out.stdout.split()[-1000:])


def test_import_bayesmatrix_is_light():
    assert imported_by("import bayesmatrix").isdisjoint(HEAVY)


def test_help_is_light():
    code = "import sys\nfrom bayesmatrix.cli import build_parser\nbuild_parser().format_help()"
    assert imported_by(code).isdisjoint(HEAVY)
    out = subprocess.run([sys.executable, "-m", "bayesmatrix", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "COMMAND" in out.stdout


def users_project(folder: Path) -> Path:
    """A folder holding a user's own ``data``, ``models``, ``inference`` and ``analysis`` packages."""
    for name in LAYERS:
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text("raise ImportError('the user package was imported')\n")
    return folder


def test_a_users_own_data_and_models_do_not_collide(tmp_path):
    """From a folder holding its own ``data`` and ``models`` packages, ours still import."""
    project = users_project(tmp_path)
    code = "import bayesmatrix.models, bayesmatrix.inference.fit, bayesmatrix.data.llmlog, bayesmatrix.analysis.report"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=project)


@pytest.mark.llm  # runs an LLM (torch): the llm extra
@pytest.mark.slow
def test_log_and_fit_run_beside_a_users_own_packages(tmp_path):
    """``bayesmatrix log`` and ``bayesmatrix fit`` run from that folder, the console script as installed."""
    project = users_project(tmp_path)
    command = str(Path(sys.executable).parent / "bayesmatrix")
    shipped = ROOT / "data" / "shipped" / "windtunnel" / "dirichlet"
    logged = subprocess.run(
        [command, "log", "--model", str(shipped), "--task", "windtunnel-dirichlet", "--episodes", "2",
         "--length", "4", "--out", "log.nc"],
        capture_output=True, text=True, cwd=project,
    )  # fmt: skip
    assert logged.returncode == 0, logged.stderr
    fitted = subprocess.run(
        [command, "fit", "log.nc", "--model", "icl-none", "--num-chains", "1", "--num-warmup", "50",
         "--num-samples", "50", "--no-plots", "--quiet", "--out", "run"],
        capture_output=True, text=True, cwd=project,
    )  # fmt: skip
    assert fitted.returncode == 0, fitted.stderr
    assert (project / "run" / "posterior.nc").is_file() and (project / "log.nc").is_file()


def test_shipped_folders_python_could_import_are_listed_as_packages():
    """setuptools warns, for each, about a folder of package data whose name is an identifier."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    shipped = ROOT / "data" / "shipped"
    importable = {
        ".".join(("bayesmatrix.data.shipped", *folder.relative_to(shipped).parts)).rstrip(".")
        for folder in [shipped, *shipped.rglob("*")]
        if folder.is_dir() and all(part.isidentifier() for part in folder.relative_to(ROOT / "data").parts)
    }
    assert importable <= listed, sorted(importable - listed)
    assert {name for name in listed if name.startswith("bayesmatrix.data.shipped")} <= importable


@pytest.mark.slow
def test_wheel_holds_one_top_level_package(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "absent from the `packages` configuration" not in built.stdout + built.stderr
    (wheel,) = tmp_path.glob("bayesmatrix-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"bayesmatrix"}
    for layer in LAYERS:
        assert f"bayesmatrix/{layer}/__init__.py" in names
    shipped = [path for path in (ROOT / "data" / "shipped").rglob("*") if path.is_file()]
    missing = [str(path) for path in shipped if f"bayesmatrix/{path.relative_to(ROOT).as_posix()}" not in names]
    assert shipped and not missing, missing


# `pip install bayesmatrix` leaves the llm extra out (pyproject.toml, README.md "Install"): these
# commands must run without it, and the others must say they need it.
TORCH_FREE_COMMANDS = ("import", "simulate", "fit", "diagnose", "compare", "report", "sbc", "embedding", "corpus")
LLM_EXTRA = ("torch", "transformers", "tokenizers", "gguf", "accelerate")
# A finder first on sys.meta_path that refuses them, as a machine without them would (a None in
# sys.modules would do it too, but SciPy takes any 'torch' key there for the real module).
BLOCK_LLM_EXTRA = f"""import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {LLM_EXTRA!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Refuse())
"""


def test_torch_free_commands_import_no_llm_package():
    """Everything the torch-free commands' modules import, at their top or inside ``run``, imports with the
    extra refused (one interpreter for all: each import of JAX and ArviZ costs seconds)."""
    ours = set()
    for command in TORCH_FREE_COMMANDS:
        path = ROOT / "bayesmatrix" / "commands" / f"cmd_{command}.py"
        found = {module for module in imported_modules(path) if module.startswith("bayesmatrix")}
        assert found, f"{path.name} imports nothing of ours: the check would check nothing"
        ours |= found
    code = BLOCK_LLM_EXTRA + "".join(f"import {module}\n" for module in sorted(ours)) + "print(' '.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert {name.split(".")[0] for name in done.stdout.split()}.isdisjoint(LLM_EXTRA)


@pytest.mark.parametrize("argv", [
    ["log", "--task", "coin", "--episodes", "1", "--length", "2", "--out", "log.nc"],
    ["windtunnel", "eval", "windtunnel:dirichlet", "--sequences", "2", "--out", "eval.json"],
])
def test_a_command_that_needs_the_llm_extra_says_so(tmp_path, argv):
    code = BLOCK_LLM_EXTRA + f"from bayesmatrix.cli import main\nsys.exit(main({argv!r}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"bayesmatrix {argv[0]} needs the llm extra: pip install 'bayesmatrix[llm]'\n"
    assert list(tmp_path.iterdir()) == []
