"""Logging through a real llama.cpp server (llama-cpp-python's, serving the shipped SmolLM2 GGUF on 127.0.0.1).

Marked ``server``: ``make test-server`` builds the server (``make llama-server``) and runs these; ``make test``
leaves them out (the build takes longer than make test's budget allows).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bayesmatrix.data.catalog import resolve
from bayesmatrix.data.llm import load_model, log_prompts, log_task
from bayesmatrix.data.llm.server import Server, run_server_log, server_log_prompts, server_log_task
from bayesmatrix.data.llmlog import read_log
from bayesmatrix.data.tasks import get_task
from benchmarks.server import LlamaServer

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.llm]

EPISODES, LENGTH = 20, 16
# Both sides run the same Q4_1 weights: transformers dequantises them to float32 and computes in float32,
# llama.cpp multiplies the quantised blocks with 8-bit activations, so the probabilities differ a little:
# the largest difference measured over the 340 rows was 0.052.
TOLERANCE = 0.08


@pytest.fixture(scope="module")
def llama():
    with LlamaServer(resolve("smollm2", field="model")) as server:
        yield server


@pytest.fixture(scope="module")
def local_model():
    loaded = load_model("smollm2")
    # the server begins each prompt with the BOS token (LlamaServer says why): so does the local side here
    loaded.tokenizer.add_bos_token = True
    return loaded


def test_server_and_local_logs_of_the_coin_task_agree(llama, local_model):
    task = get_task("coin")
    local = log_task(local_model, task, EPISODES, LENGTH, seed=0)
    through = server_log_task(Server(llama.url, "smollm2", concurrency=4), task, EPISODES, LENGTH, seed=0)
    assert list(through["prompt"].values) == list(local["prompt"].values)
    np.testing.assert_array_equal(through["context_counts"].values, local["context_counts"].values)
    differences = np.abs(through["probs"].values - local["probs"].values)
    difference = differences.max()
    print(f"category probabilities, server against local: largest difference {difference:.4g}, "
          f"mean {differences.mean():.4g}")
    assert difference < TOLERANCE
    assert np.all(through["reported_mass"].values <= 1 + 1e-6)


# The chat task's rendering begins with <|im_start|>, SmolLM2's BOS: a server without the BOS override reads it as the
# local logger does (which adds no special tokens to a chat template's text), and llama-cpp-python, seeing a prompt
# that begins with the BOS, echoes it in place. With the override the model would read two BOS tokens.
# The largest difference measured over the 340 rows of 20 episodes of 16 flips: 0.069 (mean 0.0099).
CHAT_TOLERANCE = 0.08


def test_server_and_local_logs_of_the_chat_task_agree(local_model, tmp_path):
    task = get_task("coin-words-chat")
    gguf = resolve("smollm2", field="model")
    local = log_task(local_model, task, EPISODES, LENGTH, seed=0)
    with LlamaServer(gguf, bos=False) as llama:
        # the GGUF's own tokenizer.chat_template renders the episodes here, as the local logger renders them
        out = run_server_log(tmp_path / "chat.nc", Server(llama.url, "smollm2", concurrency=4), task=task.name,
                             episodes=EPISODES, length=LENGTH, seed=0, tokenizer=str(gguf), progress=False)
    through = read_log(out)
    assert list(through["prompt"].values) == list(local["prompt"].values)
    assert str(through["prompt"].values[0]).startswith("<|im_start|>system\n")
    np.testing.assert_array_equal(through["context_counts"].values, local["context_counts"].values)
    differences = np.abs(through["probs"].values - local["probs"].values)
    print(f"chat task, category probabilities, server against local: largest difference {differences.max():.4g}, "
          f"mean {differences.mean():.4g}")
    assert differences.max() < CHAT_TOLERANCE
    assert through.attrs["tokenizer"] == str(gguf)


def test_prompts_mode_through_the_server_agrees_with_local(llama, local_model):
    prompts = ["Coin flips: H, T, H,", "Coin flips: T, T, T, T,", "The capital of France is"]
    columns = [" H", " T", " Paris"]
    local = log_prompts(local_model, prompts, columns=columns)
    through = server_log_prompts(Server(llama.url, "smollm2", top_logprobs=2), prompts, columns)
    assert list(through["col"].values) == list(local["col"].values)
    assert np.abs(through["probs"].values - local["probs"].values).max() < TOLERANCE
    assert np.all(through["reported_mass"].values < 1)


def _log_command(url: str, out: Path, concurrency: int = 1) -> list[str]:
    return [sys.executable, "-m", "bayesmatrix", "log", "--server", url, "--model", "smollm2", "--task", "coin",
            "--episodes", "8", "--length", "8", "--checkpoint-every", "1", "--concurrency", str(concurrency),
            "--server-retries", "1", "--out", str(out)]


def _wait_for_chunks(out: Path, count: int, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while len(list(Path(f"{out}.partial").glob("*.npz"))) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no chunk was saved in time"
        time.sleep(0.1)


def test_killing_the_server_or_the_client_mid_run_then_rerunning_gives_the_same_log(tmp_path):
    gguf = resolve("smollm2", field="model")
    whole, out = tmp_path / "whole.nc", tmp_path / "resumed.nc"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with LlamaServer(gguf) as llama:
        subprocess.run(_log_command(llama.url, whole, concurrency=4), check=True, env=env, capture_output=True)
        client = subprocess.Popen(_log_command(llama.url, out), env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        _wait_for_chunks(out, 2, client)
        llama.stop()  # the server dies mid-run
        _, err = client.communicate(timeout=120)
    assert client.returncode == 2 and err.count("error:") == 1 and "field '--server'" in err.splitlines()[-1], err
    assert not out.exists()
    saved = len(list(Path(f"{out}.partial").glob("*.npz")))
    with LlamaServer(gguf) as llama:  # a new server, at another port
        client = subprocess.Popen(_log_command(llama.url, out), env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        _wait_for_chunks(out, saved + 2, client)
        client.send_signal(signal.SIGKILL)  # the client dies mid-run
        client.communicate()
        assert not out.exists()
        subprocess.run(_log_command(llama.url, out, concurrency=4), check=True, env=env, capture_output=True)
    resumed, uninterrupted = read_log(out), read_log(whole)
    for name in ("probs", "reported_mass", "context_counts", "prompt"):
        np.testing.assert_array_equal(resumed[name].values, uninterrupted[name].values)
    assert {k: v for k, v in resumed.attrs.items() if k not in ("created", "server")} == {
        k: v for k, v in uninterrupted.attrs.items() if k not in ("created", "server")}
    assert not Path(f"{out}.partial").exists()
