"""Benchmark of logging through a completions server (bayesmatrix.data.llm.server) against the server's own rate.

A llama.cpp server (the ``llama-cpp-python[server]`` package ``make llama-server``
builds into .cache/llama-server) serves the shipped SmolLM2 GGUF on 127.0.0.1.
At concurrency 1, 4 and 16 the coin task's episodes are logged through it
(everything included: rendering, requests, locating the reads, the requests of
categories the top-k left out, building the log), then exactly the same
request bodies are sent again by a bare loop of the same concurrency that only
posts them and reads the answers: the server's own rate. The ratio says what the
client costs on top of the server. One run each (the server is the slow side).
Run from the repository root: ``python -m benchmarks.server`` (a few minutes on 2 cores).

:class:`LlamaServer` starts and stops the server; the tests that log through a
real server (tests/data/test_server_llama.py) use it too.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LLAMA_PYTHON_VARIABLE = "BAYESMATRIX_LLAMA_PYTHON"
"""The environment variable naming the Python that has ``llama_cpp.server``; else :data:`DEFAULT_LLAMA_PYTHON`."""
DEFAULT_LLAMA_PYTHON = ROOT / ".cache" / "llama-server" / "bin" / "python"


def llama_python() -> Path:
    """The Python of the llama.cpp server's own environment (``make llama-server`` builds it)."""
    python = Path(os.environ.get(LLAMA_PYTHON_VARIABLE) or DEFAULT_LLAMA_PYTHON)
    if not python.exists():
        raise FileNotFoundError(f"{python} does not exist: run `make llama-server` (it builds llama-cpp-python) "
                                f"or set {LLAMA_PYTHON_VARIABLE}")
    return python


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server`` serving a GGUF file on 127.0.0.1 at a free port, until :meth:`stop`.

    ``logits_all`` (the server's default) is what lets echoed prompts carry logprobs. ``bos`` makes the
    server begin every prompt with the BOS token: without one (SmolLM2's GGUF adds none) llama-cpp-python
    pairs each echoed token with the distribution one position late, which the client refuses.
    """

    def __init__(self, gguf: Path | str, port: int | None = None, threads: int = 2, context: int = 2048,
                 bos: bool = True):
        self.gguf = Path(gguf)
        self.bos = bos
        self.port = port or free_port()
        self.threads = threads
        self.context = context
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> LlamaServer:
        command = [str(llama_python()), "-m", "llama_cpp.server", "--model", str(self.gguf), "--host", "127.0.0.1",
                   "--port", str(self.port), "--n_ctx", str(self.context), "--n_threads", str(self.threads),
                   "--logits_all", "True", "--verbose", "False"]
        if self.bos:
            command += ["--kv_overrides", "tokenizer.ggml.add_bos_token=bool:true"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the llama.cpp server exited with {self.process.returncode}: "
                                   f"{self.process.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/v1/models", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the llama.cpp server did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        """Kill the server (as a crash would: no goodbye) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _recording(client_class):
    """A client class that keeps every request body it posts, in order."""

    class Recording(client_class):
        bodies: list = []

        def post(self, body):
            Recording.bodies.append(dict(body))
            return super().post(body)

    return Recording


def _bare_rate(url: str, bodies: list[dict], concurrency: int) -> float:
    """Seconds for a bare loop to post ``bodies`` ``concurrency`` at a time and read every answer."""

    def post(body: dict) -> None:
        request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=300) as answer:
            json.loads(answer.read())

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(post, bodies))
    return time.perf_counter() - start


def main(argv=None) -> None:
    from benchmarks import print_table
    from bayesmatrix.data.catalog import resolve
    from bayesmatrix.data.llm import server as server_module
    from bayesmatrix.data.tasks import get_task

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--length", type=int, default=8)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args(argv)

    task = get_task("coin")
    rows = []
    with LlamaServer(resolve("smollm2", field="model")) as llama:
        for concurrency in args.concurrency:
            server = server_module.Server(llama.url, "smollm2", concurrency=concurrency)
            recording = _recording(server_module._Client)
            recording.bodies.clear()
            original, server_module._Client = server_module._Client, recording
            try:
                start = time.perf_counter()
                server_module.server_log_task(server, task, args.episodes, args.length, seed=0)
                client_seconds = time.perf_counter() - start
            finally:
                server_module._Client = original
            bare_seconds = _bare_rate(server.endpoint, recording.bodies, concurrency)
            rows.append([concurrency, len(recording.bodies), args.episodes / client_seconds,
                         args.episodes / bare_seconds, bare_seconds / client_seconds])
    print(f"coin, {args.episodes} episodes of {args.length} flips, SmolLM2 Q4_1 on llama-cpp-python's server, "
          f"{os.cpu_count()} CPUs", file=sys.stderr)
    print_table(["concurrency", "requests", "episodes/s (bayesmatrix)", "episodes/s (bare requests)", "ratio"], rows)


if __name__ == "__main__":
    main()
