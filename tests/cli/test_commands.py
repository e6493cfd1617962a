"""Every ``bayesmatrix`` subcommand, run end to end as a user runs it, from one table.

Each row of :data:`TABLE` is one command line with tiny settings, run in its own
process (``python -m bayesmatrix ...``, which is how users run it, and keeps
each JAX or torch set-up out of this process). A row passes when the command
exits 0 and what it says it writes is there and reads back with our readers
(``read_log`` for logs, ``read_run`` for run directories, and so on). Rows
name the outputs of earlier rows as ``{row_id}``, so one chain runs
simulate -> fit -> diagnose / compare / report, log -> embedding, and
windtunnel train -> eval; a row's inputs are run first, once per module.

The other tests check each command in depth (test_cli_errors.py,
test_llm_logging.py, test_windtunnel.py, ...); this file checks only that each
runs and writes, and :func:`test_every_subcommand_has_a_row` makes a new
subcommand without a row here fail.
"""

from __future__ import annotations

import json
import stat
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from bayesmatrix.data.atomic import umask_mode

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
SHIPPED_DIRICHLET = REPO / "data" / "shipped" / "windtunnel" / "dirichlet"
IMPORTED = FIXTURES / "openai_chat.jsonl"


@dataclass(frozen=True)
class Completed:
    """One finished command: its status, what it printed and how long it took."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


@dataclass(frozen=True)
class Row:
    """One command line of the table.

    ``command`` is the subcommand with its nested action (``("windtunnel", "eval")``);
    ``args`` may name ``{out}`` (this row's output in the work folder) and
    ``{ROW_ID}``, the output of another row, which then runs first;
    ``check(out, completed)`` reads back what the command wrote.
    """

    id: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    out: str
    check: Callable[[Path, Completed], None]
    timeout: float = 600
    marks: tuple = field(default=())

    def needs(self) -> list[str]:
        names = {name for arg in self.args for _, name, _, _ in string.Formatter().parse(arg) if name}
        return sorted(names - {"out"})


# ------------------------------------------------------------------- checks: each output read back


def a_log(rows: int, *variables: str, truth: bool = False):
    def check(out: Path, completed: Completed) -> None:
        from bayesmatrix.data.llmlog import read_log

        ds = read_log(out)
        assert ds.sizes["row"] == rows
        last_line = completed.stdout.strip().splitlines()[-1]
        assert last_line.startswith("wrote ") and out.name in last_line, completed.stdout
        assert stat.S_IMODE(out.stat().st_mode) == umask_mode()  # not the 0600 of a temporary file
        for name in variables:
            assert name in ds, name
        if truth:
            assert json.loads(ds.attrs["truth"])

    return check


def a_run(method: str):
    def check(out: Path, completed: Completed) -> None:
        from bayesmatrix.inference.rundir import read_run

        run = read_run(out)
        assert completed.stdout.strip().splitlines()[-1].startswith(f"wrote {out}")
        assert "posterior" in run.datatree.children
        assert run.info["method"] == method
        assert (out / "summary.csv").is_file()

    return check


def a_compiled_run(out: Path, completed: Completed) -> None:
    from bayesmatrix.inference.rundir import read_run

    a_run("nuts")(out, completed)
    run = read_run(out)
    assert run.info["options"]["sampler"] == "compiled"
    assert run.datatree["posterior"]["s"].shape == (2, 300)
    # diagnosed as NUTS draws (whether 300 draws pass every check is the seed's luck, as for NumPyro's)
    assert "NUTS: 2 chains x 300 draws" in completed.stdout


def all_checks_passed(out: Path, completed: Completed) -> None:
    assert "all checks passed" in completed.stdout


def a_comparison(out: Path, completed: Completed) -> None:
    import pandas as pd

    table = pd.read_csv(out, index_col=0)
    assert len(table) == 2 and "elpd" in table.columns
    assert "LOO prefers" in completed.stdout or "not distinguishable" in completed.stdout  # the verdict line
    assert completed.stdout.strip().splitlines()[-1].startswith(f"wrote {out}")


def a_subsampled_comparison(out: Path, completed: Completed) -> None:
    import pandas as pd

    table = pd.read_csv(out, index_col=0)
    assert len(table) == 2 and (table["subsampling_se"] > 0).all()  # 20 of the 30 rows: an estimate, with its error
    assert "LOO estimated on 20 of 30 rows" in completed.stdout


def an_html_report(out: Path, completed: Completed) -> None:
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert text.count("<h2>Diagnostics:") == 2 and "<h2>LOO comparison" in text
    assert 'src="data:image/png;base64,' in text
    assert completed.stdout.strip().splitlines()[-1] == f"wrote {out}"


def a_report_with_tokens(out: Path, completed: Completed) -> None:
    text = out.read_text()
    assert "<h2>Log: windtunnel.nc" in text and 'src="data:image/png;base64,' in text
    assert "not the model's top tokens" not in text  # the instrumented picture shows the decoded top-k tokens


def a_trained_folder(out: Path, completed: Completed) -> None:
    record = json.loads((out / "training.json").read_text())
    assert record["options"]["steps"] == 20
    assert (out / "model.safetensors").is_file() and (out / "learning_curve.csv").is_file()


def an_evaluation(out: Path, completed: Completed) -> None:
    evaluation = json.loads(out.read_text())
    assert evaluation["sequences"] == 50 and len(evaluation["positions"]) == 8
    assert evaluation["mean_strict_kl_bits_trained"] > evaluation["mean_kl_bits_trained"] > 0  # the headline


def an_order_table(out: Path, completed: Completed) -> None:
    import pandas as pd

    [row] = pd.read_csv(out).to_dict("records")
    assert row["task"] == "windtunnel-dirichlet" and (row["multisets"], row["orders"], row["examples"]) == (3, 3, 4)
    assert row["order_variance"] > 0 and row["averaged_strict_kl_bits"] <= row["raw_strict_kl_bits"]
    assert completed.stdout.strip().splitlines()[-1] == f"wrote {out}"


def a_demo_folder(out: Path, completed: Completed) -> None:
    """The quick demo end to end: its summary, a complete self-contained report and demo.json."""
    from tests.analysis.test_report import assert_self_contained, decoded_images

    for phrase in ("effective prior", "strength", "decay", "temperature", "martingale gap", "report:"):
        assert phrase in completed.stdout
    assert "LOO prefers" in completed.stdout or "not distinguishable" in completed.stdout  # the verdict

    text = (out / "report.html").read_text()
    assert_self_contained(text)
    images = decoded_images(text)
    assert all(image.ndim == 3 and min(image.shape[:2]) > 50 for image in images)
    # 3 runs x (trace/rank or elbo, posterior), LOO plot, coin pictures (4), die instrumented, consistency, approximation
    assert len(images) >= 3 * 2 + 1 + 4 + 1 + 1 + 1
    assert text.count("<h2>Diagnostics:") == 3
    assert "<h2>LOO comparison" in text and "<th>elpd</th>" in text
    assert "<h2>Bayesian consistency" in text and "martingale gap" in text
    assert "<h2>The Dirichlet-mixture approximation" in text
    assert "<h2>Log: coin.nc" in text and "<h2>Log: die.nc" in text

    record = json.loads((out / "demo.json").read_text())
    [coin] = record["findings"]
    low, high = coin["decay"][1], coin["decay"][2]
    assert 0 < low <= coin["decay"][0] <= high <= 1
    assert {c["name"] for c in record["consistency"]} >= {"SmolLM2 (coin)"}
    assert record["seconds"]["total"] > 0


def a_corpus(out: Path, completed: Completed) -> None:
    from bayesmatrix.data.corpus import read_corpus

    assert [record.source for record in read_corpus(out)].count("doc") == 5


def a_study(out: Path, completed: Completed) -> None:
    import pandas as pd

    summary = json.loads((out / "summary.json").read_text())
    assert summary["chosen_rank"] == 1
    assert len(pd.read_csv(out / "heldout.csv")) >= 2
    assert (out / "continuity.png").stat().st_size > 0


def an_sbc_report(out: Path, completed: Completed) -> None:
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["model"] == "matrix" and report["replications"] == 2
    assert set(report["pvalues"]) == {"m", "s"}


def phenomena_result(study: str) -> Callable[[Path, Completed], None]:
    """A study of ``bayesmatrix phenomena``: its result file reads back, and the command printed its lines."""

    def check(out: Path, completed: Completed) -> None:
        from bayesmatrix.analysis.phenomena import read_study

        result = read_study(out, study)
        assert result["study"] == study and result["model"] == "smollm2"
        assert completed.stdout.strip().splitlines()[-1] == f"wrote {out}"

    return check


def a_phenomena_report(out: Path, completed: Completed) -> None:
    text = out.read_text()
    for title in ("Chain of thought", "Long contexts", "Hallucination"):
        assert f"<h2>{title}" in text
    assert text.count("data:image/png;base64,") == 3


SHIPPED_PHENOMENA = REPO / "data" / "shipped" / "phenomena"

llm = (pytest.mark.llm,)  # runs an LLM, or reads what one logged: needs the llm extra
long = (pytest.mark.long,)  # a study or a whole workflow end to end: make test-long

# Tiny settings, taken from the tests that check each command in depth.
TABLE = [
    Row("sim_matrix", ("simulate", "matrix"),
        ("--rows", "30", "--cols", "3", "--counts-per-row", "20", "--seed", "1", "--out", "{out}"),
        "matrix.nc", a_log(30, "probs", "counts", truth=True)),
    Row("sim_icl", ("simulate", "icl"),
        ("--episodes", "12", "--length", "8", "--alpha", "2,1", "--decay", "0.7", "--temperature", "1.3",
         "--tau", "40", "--seed", "3", "--out", "{out}"),
        "icl.nc", a_log(12 * 9, "probs", "context_counts", truth=True)),
    Row("sim_icl_framed", ("simulate", "icl"),
        ("--episodes", "6", "--length", "4", "--framing-alphas", "4,1;1,4", "--seed", "2", "--out", "{out}"),
        "icl-framed.nc", a_log(6 * 5, "probs", "context_counts", "framing", truth=True)),
    Row("sim_icl_mixture", ("simulate", "icl-mixture"),
        ("--episodes", "6", "--length", "5", "--alphas", "4,1;1,4", "--seed", "2", "--out", "{out}"),
        "icl-mixture.nc", a_log(6 * 6, "probs", "context_counts", truth=True)),
    Row("sim_embedding", ("simulate", "embedding"),
        ("--rows", "60", "--cols", "4", "--embed-dim", "3", "--rank", "1", "--seed", "3", "--out", "{out}"),
        "embedding.nc", a_log(60, "probs", "embedding", truth=True)),
    # three responses (and a blank line, which is skipped): one row each
    Row("import", ("import",), (str(IMPORTED), "--out", "{out}"), "imported.nc", a_log(3, "probs")),
    # The shipped wind-tunnel model is a far quicker LLM to log than SmolLM2.
    Row("log", ("log",),
        ("--model", str(SHIPPED_DIRICHLET), "--task", "windtunnel-dirichlet", "--episodes", "4", "--length", "8",
         "--samples", "3", "--embeddings", "--topk-store", "3", "--out", "{out}"),
        "windtunnel.nc", a_log(4 * 9, "probs", "counts", "embedding", "topk_ids"), marks=llm),
    # 2 chains x 300 draws of the matrix model pass every check of diagnose (exit status 0), on both
    # stacks (seed 1 draws an r_hat of 1.011 with JAX 0.12's random numbers).
    Row("fit_nuts", ("fit",),
        ("{sim_matrix}", "--model", "matrix", "--num-samples", "300", "--num-warmup", "200", "--num-chains", "2",
         "--seed", "2", "--quiet", "--out", "{out}"),
        "run-matrix-nuts", a_run("nuts")),
    Row("fit_compiled", ("fit",),
        ("{sim_matrix}", "--model", "matrix", "--sampler", "compiled", "--num-samples", "300", "--num-warmup", "200",
         "--num-chains", "2", "--seed", "2", "--quiet", "--no-plots", "--out", "{out}"),
        "run-matrix-compiled", a_compiled_run),
    Row("fit_svi", ("fit",),
        ("{sim_matrix}", "--model", "matrix", "--method", "svi", "--max-steps", "500", "--num-samples", "100",
         "--seed", "1", "--quiet", "--no-plots", "--out", "{out}"),
        "run-matrix-svi", a_run("svi")),
    Row("diagnose", ("diagnose",), ("{fit_nuts}",), "{fit_nuts}", all_checks_passed),
    Row("compare", ("compare",), ("{fit_nuts}", "{fit_svi}", "--out", "{out}"), "compare.csv", a_comparison),
    Row("compare_subsample", ("compare",), ("{fit_nuts}", "{fit_svi}", "--log", "{sim_matrix}", "--subsample", "20",
                                           "--out", "{out}"), "compare-subsample.csv", a_subsampled_comparison),
    Row("report", ("report",), ("{fit_nuts}", "{fit_svi}", "--log", "{sim_matrix}", "--out", "{out}"),
        "report.html", an_html_report),
    # a log alone, its top-k token ids decoded by the tokenizer --model names (only the tokenizer is loaded)
    Row("report_tokens", ("report",), ("--log", "{log}", "--model", "windtunnel:dirichlet", "--out", "{out}"),
        "report-tokens.html", a_report_with_tokens, marks=llm),
    Row("windtunnel_train", ("windtunnel", "train"),
        ("--world", "dirichlet", "--steps", "20", "--length", "8", "--batch-size", "32", "--eval-every", "10",
         "--checkpoint-every", "10", "--outside-penalty", "10", "--quiet", "--out", "{out}"),
        "windtunnel-trained", a_trained_folder, marks=llm),
    Row("windtunnel_eval", ("windtunnel", "eval"), ("{windtunnel_train}", "--sequences", "50", "--out", "{out}"),
        "evaluation.json", an_evaluation, marks=llm),
    Row("order", ("order",),
        ("{windtunnel_train}", "--multisets", "3", "--orders", "3", "--examples", "4", "--out", "{out}"),
        "order.csv", an_order_table, marks=llm),
    Row("corpus", ("corpus",), ("--out", "{out}", "--doc-prompts", "5", "--seed", "3"), "prompts.jsonl", a_corpus),
    Row("embedding", ("embedding",),
        ("{log}", "--out", "{out}", "--ranks", "1", "--columns", "0", "--features", "4", "--pairs", "50",
         "--num-samples", "10", "--max-steps", "100", "--quiet"),
        "study", a_study, marks=long + llm),
    Row("embedding_shrink", ("embedding",), ("{sim_embedding}", "--shrink", "{out}", "--columns", "2"),
        "embedding-small.nc", a_log(60, "probs", "embedding")),
    Row("sbc", ("sbc",), ("matrix", "--replications", "2", "--num-warmup", "20"), "", an_sbc_report,
        marks=long),
    # The quickest demo loads SmolLM2 (over a minute); its row checks the whole report.
    Row("demo", ("demo",), ("--quick", "--out", "{out}"), "demo", a_demo_folder, timeout=1800, marks=long + llm),
    # each phenomena study on SmolLM2 at a tiny size (its model load alone takes 20 s): make test-long
    Row("phenomena_cot", ("phenomena", "cot"),
        ("--prompts", "2", "--direct-tokens", "3", "--cot-tokens", "6", "--batch-size", "2", "--quiet", "--out", "{out}"),
        "phenomena-cot", phenomena_result("cot"), marks=long + llm),
    Row("phenomena_long_context", ("phenomena", "long-context"),
        ("--inserted", "0,8", "--placements", "inside", "--episodes", "2", "--length", "4", "--num-warmup", "20",
         "--num-samples", "20", "--num-chains", "1", "--quiet", "--out", "{out}"),
        "phenomena-long", phenomena_result("long-context"), marks=long + llm),
    Row("phenomena_hallucination", ("phenomena", "hallucination"),
        ("--groups", "element", "--limit", "3", "--max-tokens", "3", "--quiet", "--out", "{out}"),
        "phenomena-hallucination", phenomena_result("hallucination"), marks=long + llm),
    # the shipped phenomena results as report sections (no LLM: the JSON files and their figures)
    Row("report_phenomena", ("report",), ("--phenomena", str(SHIPPED_PHENOMENA), "--out", "{out}"),
        "report-phenomena.html", a_phenomena_report),
]
ROWS = {row.id: row for row in TABLE}
# Commands whose end-to-end run, in its own process, lives in another test file, because
# that file's assertions need the command's full-size output and running it twice costs minutes.
ELSEWHERE = {("study",): REPO / "tests" / "workflows" / "test_study.py",
             ("windtunnel", "loop"): REPO / "tests" / "workflows" / "test_windtunnel_loop.py",
             ("windtunnel", "sweep"): REPO / "tests" / "data" / "test_windtunnel_sweep.py"}


def bayesmatrix(*argv: str, cwd: Path, timeout: float = 600) -> Completed:
    """``python -m bayesmatrix ARGV`` in a fresh process, as a user runs it."""
    started = time.monotonic()
    completed = subprocess.run([sys.executable, "-m", "bayesmatrix", *argv], cwd=cwd, capture_output=True,
                               text=True, timeout=timeout)
    return Completed(tuple(argv), completed.returncode, completed.stdout, completed.stderr,
                     time.monotonic() - started)


class Chain:
    """Runs rows on demand in one work folder, each at most once, a row's inputs first."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.done: dict[str, Completed] = {}

    def output(self, row: Row) -> Path:
        """What ``row`` writes (the work folder itself for a row that only prints)."""
        return self.folder / row.out.format(**self.inputs(row))

    def inputs(self, row: Row) -> dict[str, str]:
        return {name: str(self.output(ROWS[name])) for name in row.needs()}

    def resolve(self, text: str, row: Row) -> str:
        return text.format(out=str(self.output(row)), **self.inputs(row))

    def run(self, row_id: str) -> Completed:
        if row_id not in self.done:
            row = ROWS[row_id]
            for name in row.needs():
                needed = self.run(name)
                if needed.returncode != 0:
                    pytest.fail(f"{row_id} needs the output of {name}, which exited {needed.returncode}")
            argv = [*row.command, *(self.resolve(arg, row) for arg in row.args)]
            self.done[row_id] = bayesmatrix(*argv, cwd=self.folder, timeout=row.timeout)
        return self.done[row_id]


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Chain:
    return Chain(tmp_path_factory.mktemp("cli"))


@pytest.mark.parametrize("row", [pytest.param(row, id=row.id, marks=row.marks) for row in TABLE])
def test_command_runs_and_writes(chain, row):
    completed = chain.run(row.id)
    shown = f"bayesmatrix {' '.join(completed.argv)}\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    assert completed.returncode == 0, shown
    assert "Traceback" not in completed.stderr, shown
    out = chain.output(row)
    assert out.exists(), f"{out} was not written\n{shown}"
    row.check(out, completed)


# ------------------------------------------------------------------- the table covers the command line


def command_paths() -> list[tuple[str, ...]]:
    """Every subcommand and nested action of ``bayesmatrix``, as the parser holds them (parents first)."""
    import argparse

    from bayesmatrix.cli import build_parser

    def walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...]):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield (*prefix, name)
                    yield from walk(child, (*prefix, name))

    return list(walk(build_parser(), ()))


def leaves(paths: list[tuple[str, ...]]) -> set[tuple[str, ...]]:
    return {path for path in paths if not any(other[: len(path)] == path and other != path for other in paths)}


def test_every_subcommand_has_a_row(tmp_path):
    paths = command_paths()
    top = {path[0] for path in paths}
    # the subcommands are the cmd_NAME modules, and --help lists each of them
    modules = {path.stem.removeprefix("cmd_") for path in (REPO / "bayesmatrix" / "commands").glob("cmd_*.py")}
    assert top == modules
    shown = bayesmatrix("--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    listed = {line.split()[0] for line in shown.stdout.split("COMMAND\n", 1)[1].split("\n\n")[0].splitlines()
              if line.startswith("    ") and not line.startswith("      ")}
    assert listed == top
    # every command a user can run has a row, and no row names a command that is gone
    assert leaves(paths) == {row.command for row in TABLE} | set(ELSEWHERE)
    for command, test_file in ELSEWHERE.items():
        invocation = ", ".join(f'"{word}"' for word in ("-m", "bayesmatrix", *command))
        assert invocation in test_file.read_text(), f"{test_file} does not run {' '.join(command)}"


@pytest.mark.parametrize("path", [" ".join(path) for path in command_paths()])
def test_help_of_every_subcommand(path, tmp_path):
    shown = bayesmatrix(*path.split(), "--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"usage: bayesmatrix {path}")


def parsers() -> dict[str, "argparse.ArgumentParser"]:
    """Every subcommand's parser (nested actions included), by its command path."""
    import argparse

    from bayesmatrix.cli import build_parser

    found = {}

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    found[" ".join((*prefix, name))] = child
                    walk(child, (*prefix, name))

    walk(build_parser(), ())
    return found


def test_help_shows_every_default():
    """An option with a default says what it is: the formatter adds it unless the help already speaks of it."""
    import argparse

    missing = []
    for path, parser in parsers().items():
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            default = action.default
            if not action.option_strings or default is None or default is False or default is argparse.SUPPRESS:
                continue
            if action.help is argparse.SUPPRESS or "default" in (action.help or ""):
                continue
            if f"(default: {default})" not in text:
                missing.append(f"{path} {action.option_strings[0]}")
    assert missing == []
