"""The whole test suite as ``make test`` runs it: each test folder in a fresh pytest process, two lanes at once.

    python -m tests.suite [--stack2 PYTHON [--stack2-marks EXPR]] [PYTEST_ARGS ...]      e.g. -m "not slow"

Why not one pytest process: a single process that compiles every XLA program of
the suite has crashed inside XLA's CPU compiler (a segmentation fault late in
the pytest run, at a test that passes on its own); a fresh interpreter per folder
keeps each process's compilations to a sixth of the suite. Why two lanes: the
machines this runs on have two cores and most tests use one. Each folder's
output is printed whole when it finishes; the last line counts every folder's
tests (``N passed, N failed, N skipped``), and the exit status is 0 only when
every folder passed and at least one test ran.

``--stack2 PYTHON`` (``make test``) runs the second supported stack too, that
interpreter's environment (Python 3.12, ArviZ 1.x, no torch): each lane, once its
own folders are done, takes the next of that stack's folders, with every test that
needs no torch but the long ones (:data:`STACK2_MARKS`, or ``--stack2-marks EXPR``:
``make test-long`` runs there the long ones). The versions of both stacks are printed first.
"""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import NamedTuple, Sequence

ROOT = Path(__file__).resolve().parent.parent

# Two lanes of about equal time on two cores, the slowest folders first.
LANES = (
    ("tests/workflows", "tests/inference", "tests/models"),
    ("tests/cli", "tests/analysis", "tests/data", "tests/test_architecture.py"),
)
NO_TESTS_COLLECTED = 5

# The second stack's folders, the slowest first, and what make test runs there.
STACK2_FOLDERS = ("tests/inference", "tests/cli", "tests/analysis", "tests/models", "tests/data",
                  "tests/test_architecture.py", "tests/workflows")
STACK2_MARKS = "not docs and not server and not llm and not long"
# Each folder's output ends with its slowest tests, so a CI log shows where the time goes.
DURATIONS = ("--durations=8", "--durations-min=10")
VERSIONS = ("arviz-base", "arviz-stats", "arviz-plots", "xarray", "matplotlib", "numpy", "jax", "numpyro", "torch")


class Outcome(NamedTuple):
    """One folder's pytest run."""

    target: str
    status: int
    passed: int
    failed: int
    skipped: int
    seconds: float
    deselected: int = 0


def counts(junit_xml: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) from a pytest JUnit XML report; errors count as failures."""
    if not junit_xml.is_file() or junit_xml.stat().st_size == 0:
        return 0, 0, 0
    suites = ElementTree.parse(junit_xml).getroot()
    suites = [suites] if suites.tag == "testsuite" else list(suites)
    total = failed = skipped = 0
    for suite in suites:
        total += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return total - failed - skipped, failed, skipped


def versions(python: str) -> str:
    """One line: an interpreter's Python and the versions of the packages that make a stack."""
    code = ("import sys\nfrom importlib import metadata\nfound = []\n"
            f"for name in {VERSIONS!r}:\n"
            "    try:\n        found.append(f'{name} {metadata.version(name)}')\n"
            "    except metadata.PackageNotFoundError:\n        found.append(f'{name} absent')\n"
            "print(f'Python {sys.version.split()[0]}: ' + ', '.join(found))")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"suite: {python} does not run: {done.stderr.strip()}")
    return done.stdout.strip()


def run_folder(target: str, pytest_args: Sequence[str], workdir: Path, lock: threading.Lock,
               python: str = sys.executable, label: str = "") -> Outcome:
    report = workdir / ((label + target).replace("/", "_").replace(" ", "_") + ".xml")
    command = [python, "-m", "pytest", "-q", "-ra", f"--junitxml={report}", *DURATIONS, *pytest_args, target]
    started = time.monotonic()
    with lock:
        print(f"suite: {label}{target} started", flush=True)
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.monotonic() - started
    passed, failed, skipped = counts(report)
    if done.returncode not in (0, NO_TESTS_COLLECTED) and failed == 0:
        failed = 1  # the process died (a crash, a timeout) before it could report a failure
    # pytest's closing line counts what -m deselected; the JUnit report does not
    closing = done.stdout.rstrip().splitlines()[-1:] or [""]
    deselected = int(match.group(1)) if (match := re.search(r"(\d+) deselected", closing[0])) else 0
    with lock:
        print(f"\n===== {label}{target} ({seconds:.0f} s, exit {done.returncode}) =====", flush=True)
        print(done.stdout.rstrip(), flush=True)
    return Outcome(label + target, done.returncode, passed, failed, skipped, seconds, deselected)


def main(argv: Sequence[str] | None = None) -> int:
    pytest_args = list(sys.argv[1:] if argv is None else argv)
    stack2, stack2_marks = None, STACK2_MARKS
    if pytest_args[:1] == ["--stack2"]:
        stack2, pytest_args = pytest_args[1], pytest_args[2:]
        if pytest_args[:1] == ["--stack2-marks"]:
            stack2_marks, pytest_args = pytest_args[1], pytest_args[2:]
    print(f"suite: stack {versions(sys.executable)}", flush=True)
    second = queue.Queue()
    if stack2 is not None:
        print(f"suite: stack 2 {versions(stack2)}; -m {stack2_marks!r}", flush=True)
        for target in STACK2_FOLDERS:
            second.put(target)
    lock = threading.Lock()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="suite-") as folder:
        workdir = Path(folder)

        def lane(targets: Sequence[str]) -> None:
            for target in targets:
                outcomes.append(run_folder(target, pytest_args, workdir, lock))
            while True:
                try:
                    target = second.get_nowait()
                except queue.Empty:
                    return
                outcomes.append(run_folder(target, ["-m", stack2_marks], workdir, lock, python=stack2,
                                           label="stack 2: "))

        threads = [threading.Thread(target=lane, args=(targets,)) for targets in LANES]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    print("\nsuite: folder                                 passed  failed  skipped  deselected  seconds  exit")
    for outcome in sorted(outcomes):
        print(f"suite: {outcome.target:<38} {outcome.passed:>6}  {outcome.failed:>6}  {outcome.skipped:>7}  "
              f"{outcome.deselected:>10}  {outcome.seconds:>7.0f}  {outcome.status:>4}")
    if any(outcome.status == NO_TESTS_COLLECTED for outcome in outcomes):
        print(f"suite: exit {NO_TESTS_COLLECTED}: no test of that folder matches the selection (not a failure)")
    passed = sum(outcome.passed for outcome in outcomes)
    failed = sum(outcome.failed for outcome in outcomes)
    skipped = sum(outcome.skipped for outcome in outcomes)
    broken = [outcome.target for outcome in outcomes if outcome.status not in (0, NO_TESTS_COLLECTED)]
    if passed + failed == 0:
        print("suite: no tests were collected", file=sys.stderr)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if (broken or failed or passed + failed == 0) else 0


if __name__ == "__main__":
    sys.exit(main())
