"""Every code block of README.md and docs/*.md, run in order as a reader would run them.

Each document is one session, like a notebook: its blocks run top to bottom in
one temporary working folder outside the repository, so a block can use what
an earlier one wrote (``fit sim.nc`` after ``simulate ... --out sim.nc``) and a
repository-relative path (``data/shipped/...``) fails, as it would for a user
in any other folder. Shell blocks (``sh``, ``bash``, ``console``: its ``$``
lines) run through ``bash -e`` with the environment's ``bin`` first on PATH;
Python blocks run in one persistent interpreter per document, so names carry
from block to block. A Python block tagged ``python file=NAME`` is the file
the text asks the reader to write: it is written to ``NAME``, not run.
Anything else a reader only reads (file layouts, error transcripts, formulas)
must be tagged ``text``; a fence without a tag fails
:func:`test_every_block_has_an_honest_tag`.

The commands run with tiny settings, applied by explicit tables,
:data:`TINY_FLAGS` (command-line options), :data:`TINY_ARGUMENTS` (whole
arguments) and :data:`TINY_PYTHON` (keyword arguments); a failing block's
message prints the block as run. Files the reader is
expected to bring (their prompts, their API logs) are stood in for by
:data:`READER_FILES`. The few commands that cannot run in a test are in
:data:`NOT_RUN`, each with its reason. Every entry of these tables must be used
by some block (:func:`test_every_table_entry_is_used`), so none outlives the
text it was written for.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
DOCUMENTS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
SHELL = ("sh", "bash", "console")
PYTHON = ("python",)
READ_ONLY = ("text",)
BLOCK_TIMEOUT = 1800  # seconds; generous for a loaded machine, but a hanging block fails, not stalls the suite

# Commands (a line's start) that are not run here, and why. Keep this short.
NOT_RUN = {
    "make demo": "runs the full demo (minutes); tests/cli/test_commands.py runs `bayesmatrix demo --quick`",
    "make test": "is the test suite itself",
    "pip install": "installs packages; the test environment is already installed",
    "bayesmatrix report demo-out/": "reports the runs of `make demo` (not run here); the report line before it "
    "runs, and tests/cli/test_commands.py checks the demo's own report",
    "bayesmatrix study": "logs and fits four wind tunnels (minutes even with tiny settings); "
    "tests/workflows/test_study.py runs it on two",
    "bayesmatrix windtunnel loop": "logs three models and fits six runs (minutes even with tiny settings); "
    "tests/workflows/test_windtunnel_loop.py runs the loop",
    "bayesmatrix order windtunnel:dirichlet windtunnel:dirichlet-gpt2": "writes the shipped table into the "
    "repository (SmolLM2 takes minutes); tests/analysis/test_order.py reruns its wind-tunnel rows (make "
    "test-long), and the quick line after it runs",
    "bayesmatrix phenomena": "runs SmolLM2 for minutes per study and writes the shipped results into the "
    "repository; tests/cli/test_commands.py runs each study at a tiny size (make test-long)",
    "bayesmatrix report --phenomena": "reads the shipped results by their repository path; "
    "tests/cli/test_commands.py runs this report",
}

# Files the text asks the reader to bring, stood in for by small ones (name -> contents).
READER_FILES = {
    "prompts.txt": "The capital of France is\nThe capital of Italy is\n",
    "columns.txt": " Paris\n Rome\n",
    "labels.txt": (FIXTURES / "columns.txt").read_text(),
    "responses.jsonl": (FIXTURES / "openai_chat.jsonl").read_text(),
    "vllm.jsonl": (FIXTURES / "vllm_completions.jsonl").read_text(),
    "echoed.jsonl": (FIXTURES / "echo_completions.jsonl").read_text(),
    "chat-stream.sse": (FIXTURES / "chat_stream.sse").read_text(),
}


@dataclass(frozen=True)
class Tiny:
    """Run ``bayesmatrix COMMAND`` with ``FLAG VALUE``: replacing the value given, or added if ``add``."""

    command: str
    flag: str
    value: str
    add: bool = False


# Tiny settings for command lines. A flag already on the line gets the tiny value;
# an `add` flag missing from it is added right after the subcommand.
TINY_FLAGS = (
    Tiny("simulate", "--rows", "60"),
    Tiny("simulate", "--episodes", "12"),
    Tiny("log", "--episodes", "5"),  # one batch of episodes; five, so coin-words sees each of its five framings
    Tiny("log", "--samples", "3"),
    Tiny("fit", "--num-chains", "2", add=True),
    Tiny("fit", "--num-warmup", "40", add=True),
    Tiny("fit", "--num-samples", "40", add=True),
    Tiny("fit", "--max-steps", "300", add=True),
    Tiny("fit", "--quiet", "", add=True),
    Tiny("fit", "--no-plots", "", add=True),  # the figures cost seconds a fit; report draws its own
    Tiny("embedding", "--columns", "4"),
    Tiny("embedding --out", "--ranks", "1", add=True),
    Tiny("embedding --out", "--pairs", "200", add=True),
    Tiny("embedding --out", "--max-steps", "200", add=True),
    Tiny("embedding --out", "--num-samples", "10", add=True),
    Tiny("embedding --out", "--quiet", "", add=True),
    Tiny("windtunnel train", "--steps", "20"),
    Tiny("windtunnel eval", "--sequences", "50", add=True),
)

# Whole arguments replaced, and why.
TINY_ARGUMENTS = {
    "--prompts corpus:prompts": ("--prompts prompts.txt", "the corpus's 2,242 prompts take SmolLM2 minutes"),
}

# Tiny settings for Python blocks: (pattern, replacement), applied in order.
TINY_PYTHON = (
    (r"\bepisodes=\d+", "episodes=2"),
    (r"\bsequences=\d+", "sequences=50"),
    (r"\bnum_episodes=\d+", "num_episodes=10"),
    (r"\bnum_warmup=\d+", "num_warmup=40"),
    (r"\bnum_samples=\d+", "num_samples=40"),
    (r"\bnum_chains=\d+", "num_chains=2"),
    (r"\bmax_steps=\d+", "max_steps=300"),
)

# `diagnose` exits with status 1 when a check fails, which forty draws a chain make likely.
ACCEPTED_STATUS = {"bayesmatrix diagnose": (0, 1)}


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its tag (language and options) and its text."""

    document: Path
    line: int
    language: str
    options: dict
    code: str

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(REPO)}:{self.line}"


FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)


def blocks(document: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, in order."""
    text = document.read_text()
    found = []
    for match in FENCE.finditer(text):
        language, *options = match.group(1).split() or [""]
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(document, line, language, dict(o.split("=", 1) for o in options), match.group(2)))
    return found


def logical_lines(code: str) -> list[str]:
    """Shell lines with backslash continuations joined."""
    return code.replace("\\\n", " ").splitlines()


def shell_commands(block: Block) -> list[str]:
    lines = logical_lines(block.code)
    if block.language == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    return lines


def not_run_reason(command: str) -> str | None:
    start = command.strip()
    return next((reason for prefix, reason in NOT_RUN.items() if start.startswith(prefix)), None)


def _subcommand(command: str, tiny: Tiny) -> re.Match | None:
    """Where ``bayesmatrix TINY.COMMAND`` ends on the line (``embedding --out`` also needs ``--out``)."""
    words, *needs = tiny.command.split(" --")
    match = re.search(r"\bbayesmatrix " + re.escape(words) + r"\b", command)
    if match and all(f" --{need} " in command + " " for need in needs):
        return match
    return None


def tiny_command(command: str, used: set) -> str:
    """``command`` with :data:`TINY_FLAGS` applied; the entries that applied go into ``used``."""
    body, hash_, comment = command.partition(" #")
    for argument, (replacement, _why) in TINY_ARGUMENTS.items():
        if argument in body:
            body = body.replace(argument, replacement)
            used.add(argument)
    added: list[str] = []
    for tiny in TINY_FLAGS:
        if _subcommand(body, tiny) is None:
            continue
        given = re.compile(re.escape(tiny.flag) + (r"(?=\s|$)" if not tiny.value else r"\s+\S+"))
        setting = f"{tiny.flag} {tiny.value}".rstrip()
        if given.search(body):
            body = given.sub(setting, body)
            used.add(tiny)
        elif tiny.add:
            added.append(setting)
            used.add(tiny)
    if added:
        end = re.search(r"\bbayesmatrix [a-z]+( (train|eval|loop)\b)?", body).end()
        body = body[:end] + " " + " ".join(added) + body[end:]
    for start, statuses in ACCEPTED_STATUS.items():
        if body.lstrip().startswith(start):
            body = f"{body.rstrip()} || [ $? -le {max(statuses)} ]"
    return body + hash_ + comment


def tiny_python(code: str, used: set) -> str:
    for pattern, replacement in TINY_PYTHON:
        code, count = re.subn(pattern, replacement, code)
        if count:
            used.add(pattern)
    return code


def outputs(command: str) -> list[str]:
    """What a command line says it writes (``--out PATH``, ``--shrink PATH``)."""
    return re.findall(r"--(?:out|shrink)\s+(\S+)", command.partition(" #")[0])


# ----------------------------------------------------------------------------- the Python session

DRIVER = r"""
import json, sys, traceback
namespace = {"__name__": "__main__"}
for line in sys.stdin:
    request = json.loads(line)
    try:
        exec(compile(request["code"], request["where"], "exec"), namespace)
        status = "ok"
    except BaseException:
        traceback.print_exc(file=sys.stdout)
        status = "failed"
    sys.stdout.flush()
    sys.stderr.flush()
    print("\x1eBLOCK " + status, flush=True)
"""


class PythonSession:
    """One interpreter that runs blocks in one namespace, like a notebook kernel."""

    def __init__(self, cwd: Path, env: dict):
        self.process = subprocess.Popen([sys.executable, "-u", "-c", DRIVER], cwd=cwd, env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: queue.Queue = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, code: str, where: str) -> tuple[bool, str]:
        self.process.stdin.write(json.dumps({"code": code, "where": where}) + "\n")
        self.process.stdin.flush()
        printed, deadline = [], time.monotonic() + BLOCK_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            except queue.Empty:
                return False, "".join(printed) + f"\n(no result after {BLOCK_TIMEOUT} s)"
            if line is None:
                return False, "".join(printed) + "\n(the interpreter exited)"
            if line.startswith("\x1eBLOCK "):
                return line.split()[1] == "ok", "".join(printed)
            printed.append(line)

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=30)  # it stops at the end of the output
        self.process.stdout.close()


def readable(printed: str, limit: int = 6000) -> str:
    """The end of what a block printed, without progress-bar redraws."""
    lines = [line.rsplit("\r", 1)[-1] for line in printed.splitlines()]
    return "\n".join(line for line in lines if line.strip())[-limit:]


def session_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)  # as a reader's shell: nothing of the repository on the path
    env.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["MPLBACKEND"] = "Agg"
    return env


def run_document(document: Path, workdir: Path, used: set) -> list[tuple[str, float]]:
    """Run every block of ``document`` in ``workdir``; fail at the first block that fails. Returns timings."""
    for name, contents in READER_FILES.items():
        (workdir / name).write_text(contents)
    env = session_env()
    python = None
    timings = []
    try:
        for block in blocks(document):
            started = time.monotonic()
            if block.language in PYTHON and "file" in block.options:
                (workdir / block.options["file"]).write_text(block.code)
                continue
            if block.language in PYTHON:
                python = python or PythonSession(workdir, env)
                code = tiny_python(block.code, used)
                ok, printed = python.run(code, block.where)
                if not ok:
                    pytest.fail(f"{block.where}: the Python block failed\n--- as run:\n{code}\n--- output:\n"
                                f"{readable(printed)}", pytrace=False)
            elif block.language in SHELL:
                commands = []
                for command in shell_commands(block):
                    if not_run_reason(command):
                        used.add(next(p for p in NOT_RUN if command.strip().startswith(p)))
                        continue
                    commands.append(tiny_command(command, used))
                if not any(c.strip() and not c.strip().startswith("#") for c in commands):
                    continue
                script = "\n".join(["set -e", *commands])
                try:
                    completed = subprocess.run(["bash", "-c", script], cwd=workdir, env=env, capture_output=True,
                                               text=True, timeout=BLOCK_TIMEOUT)
                except subprocess.TimeoutExpired as expired:
                    printed = expired.stdout or ""
                    printed = printed.decode(errors="replace") if isinstance(printed, bytes) else printed
                    pytest.fail(f"{block.where}: the shell block ran past {BLOCK_TIMEOUT} s\n--- as run:\n{script}\n"
                                f"--- output:\n{readable(printed)}", pytrace=False)
                if completed.returncode != 0:
                    pytest.fail(f"{block.where}: the shell block exited {completed.returncode}\n--- as run:\n"
                                f"{script}\n--- output:\n{readable(completed.stdout + completed.stderr)}",
                                pytrace=False)
                for command in commands:
                    for path in outputs(command):
                        assert (workdir / path).exists(), f"{block.where}: {command!r} did not write {path}"
            timings.append((block.where, time.monotonic() - started))
    finally:
        if python is not None:
            python.close()
    return timings


# ----------------------------------------------------------------------------- the tests


def test_every_block_has_an_honest_tag():
    """Blocks are run (shell, Python) or tagged ``text``; a shell block holds commands, not transcripts."""
    for document in DOCUMENTS:
        for block in blocks(document):
            assert block.language in SHELL + PYTHON + READ_ONLY, (
                f"{block.where}: tag the block sh, bash, console, python (run by this test) or text (not run); "
                f"it is {block.language or 'untagged'!r}")
            if block.language in ("sh", "bash"):
                for command in logical_lines(block.code):
                    assert not command.startswith(("$ ", "> ")), f"{block.where}: a transcript; tag it console"


def test_every_table_entry_is_used():
    """Each tiny setting, stand-in file and exemption is used by some block of the documents."""
    used: set = set()
    text = ""
    for document in DOCUMENTS:
        for block in blocks(document):
            if block.language in SHELL:
                for command in shell_commands(block):
                    if not_run_reason(command):
                        used.add(next(p for p in NOT_RUN if command.strip().startswith(p)))
                    else:
                        tiny_command(command, used)
                text += block.code
            elif block.language in PYTHON:
                tiny_python(block.code, used)
                text += block.code
    unused = [tiny for tiny in TINY_FLAGS if tiny not in used]
    unused += [argument for argument in TINY_ARGUMENTS if argument not in used]
    unused += [pattern for pattern, _ in TINY_PYTHON if pattern not in used]
    unused += [prefix for prefix in NOT_RUN if prefix not in used]
    unused += [name for name in READER_FILES if name not in text]
    assert not unused, f"entries no block uses any more: {unused}"


def test_tiny_settings_replace_and_add_flags():
    used: set = set()
    assert tiny_command("bayesmatrix fit sim.nc --model icl --num-samples 900 --out runs/icl  # note", used) == (
        "bayesmatrix fit --num-chains 2 --num-warmup 40 --max-steps 300 --quiet --no-plots sim.nc --model icl "
        "--num-samples 40 --out runs/icl  # note")
    assert tiny_command("bayesmatrix diagnose runs/icl", used) == "bayesmatrix diagnose runs/icl || [ $? -le 1 ]"
    assert tiny_command("bayesmatrix embedding x.nc --columns 256 --shrink y.nc", used) == (
        "bayesmatrix embedding x.nc --columns 4 --shrink y.nc")
    assert tiny_python("log_task(m, t, episodes=200, length=32)", used) == "log_task(m, t, episodes=2, length=32)"


@pytest.mark.slow
@pytest.mark.docs
@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_document_runs(document, tmp_path_factory):
    """Every block of the document runs, in order, from a folder outside the repository."""
    workdir = tmp_path_factory.mktemp(document.stem)
    assert REPO not in workdir.resolve().parents
    started = time.monotonic()
    timings = run_document(document, workdir, set())
    slowest = sorted(timings, key=lambda timing: -timing[1])[:5]
    print(f"\n{document.name}: {time.monotonic() - started:.0f} s; slowest blocks: "
          + ", ".join(f"{where} {seconds:.0f} s" for where, seconds in slowest))
    shutil.rmtree(workdir, ignore_errors=True)
