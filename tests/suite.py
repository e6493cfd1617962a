"""The whole test suite as ``make test`` runs it: each test folder in a fresh pytest process, two lanes at once.

    python -m tests.suite [PYTEST_ARGS ...]      e.g. -m "not slow"

Why not one pytest process: a single process that compiles every XLA program of
the suite has crashed inside XLA's CPU compiler (a segmentation fault late in
the pytest run, at a test that passes on its own); a fresh interpreter per folder
keeps each process's compilations to a sixth of the suite. Why two lanes: the
machines this runs on have two cores and most tests use one. Each folder's
output is printed whole when it finishes; the last line counts every folder's
tests (``N passed, N failed, N skipped``), and the exit status is 0 only when
every folder passed and at least one test ran.
"""

from __future__ import annotations

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


class Outcome(NamedTuple):
    """One folder's pytest run."""

    target: str
    status: int
    passed: int
    failed: int
    skipped: int
    seconds: float


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


def run_folder(target: str, pytest_args: Sequence[str], workdir: Path, lock: threading.Lock) -> Outcome:
    report = workdir / (target.replace("/", "_") + ".xml")
    command = [sys.executable, "-m", "pytest", "-q", "-ra", f"--junitxml={report}", *pytest_args, target]
    started = time.monotonic()
    with lock:
        print(f"suite: {target} started", flush=True)
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.monotonic() - started
    passed, failed, skipped = counts(report)
    if done.returncode not in (0, NO_TESTS_COLLECTED) and failed == 0:
        failed = 1  # the process died (a crash, a timeout) before it could report a failure
    with lock:
        print(f"\n===== {target} ({seconds:.0f} s, exit {done.returncode}) =====", flush=True)
        print(done.stdout.rstrip(), flush=True)
    return Outcome(target, done.returncode, passed, failed, skipped, seconds)


def main(argv: Sequence[str] | None = None) -> int:
    pytest_args = list(sys.argv[1:] if argv is None else argv)
    lock = threading.Lock()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="suite-") as folder:
        workdir = Path(folder)

        def lane(targets: Sequence[str]) -> None:
            for target in targets:
                outcomes.append(run_folder(target, pytest_args, workdir, lock))

        threads = [threading.Thread(target=lane, args=(targets,)) for targets in LANES]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    print("\nsuite: folder                       passed  failed  skipped  seconds  exit")
    for outcome in sorted(outcomes):
        print(f"suite: {outcome.target:<28} {outcome.passed:>6}  {outcome.failed:>6}  {outcome.skipped:>7}  "
              f"{outcome.seconds:>7.0f}  {outcome.status:>4}")
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
