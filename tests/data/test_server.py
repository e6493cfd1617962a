"""Logging through a completions server: the client's error path against a tiny local HTTP handler, and the
reading of recorded llama.cpp answers (tests/fixtures/server/).

The handler here stands in for a failing server only (500s, malformed JSON, truncated bodies, refusals) and,
for the replay tests, answers each prompt with the response a real llama.cpp server gave to it; the real
server itself runs in tests/data/test_server_llama.py (``make test-server``).
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from bayesmatrix.cli import main
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llm.server import Server, _Client, _prompt_positions, run_server_log, server_log_task
from bayesmatrix.data.llmlog import read_log
from bayesmatrix.data.tasks import get_task

pytestmark = pytest.mark.llm  # bayesmatrix.data.llm imports torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "server"
RECORDED = FIXTURES / "llama_cpp_coin.json"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        fake = self.server.fake
        with fake.lock:
            fake.requests.append({"body": body, "authorization": self.headers.get("Authorization")})
            behaviour = fake.behaviours.pop(0) if fake.behaviours else fake.default
        if behaviour == "500":
            self._send(500, b'{"error": {"message": "the model fell over"}}')
        elif behaviour == "400":
            self._send(400, b'{"error": {"message": "logprobs must be at most 2"}}')
        elif behaviour == "429":
            self._send(429, b'{"error": "slow down"}')
        elif behaviour == "malformed":
            self._send(200, b'{"choices": [{"logprobs": ')
        elif behaviour == "truncated":
            payload = json.dumps(fake.answer(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.close_connection = True
        else:
            self._send(200, json.dumps(fake.answer(body)).encode())

    def _send(self, status: int, payload: bytes):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class FakeServer:
    """A local HTTP server answering each request by the next behaviour, then by ``default``."""

    def __init__(self, behaviours=(), default="replay"):
        self.behaviours = list(behaviours)
        self.default = default
        self.requests = []
        self.lock = threading.Lock()
        self.recorded = json.loads(RECORDED.read_text())["responses"] if default == "replay" or behaviours else {}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.fake = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def answer(self, body):
        return cut_to_k(self.recorded.get(body["prompt"], {"choices": []}), body["logprobs"])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def cut_to_k(response: dict, k: int) -> dict:
    """The answer with each position's alternatives cut to the top k and the position's own token, as
    llama-cpp-python's server answers a request for k (a recorded answer has k = 5)."""
    cut = json.loads(json.dumps(response))
    for choice in cut["choices"]:
        logprobs = choice["logprobs"]
        for position, entry in enumerate(logprobs["top_logprobs"]):
            if entry is not None:
                own = logprobs["tokens"][position]
                kept = dict(sorted(entry.items(), key=lambda item: -item[1])[:k])
                logprobs["top_logprobs"][position] = {**kept, own: entry[own]} if own in entry else kept
    return cut


def _server(url: str, **options) -> Server:
    return Server(url, "smollm2", **{"retries": 2, "backoff": 0.01, "concurrency": 2, **options})


def test_server_options_are_checked_by_their_python_names():
    for options, field in [({"concurrency": 0}, "concurrency"), ({"top_logprobs": 0}, "top_logprobs"),
                           ({"retries": -1}, "retries"), ({"timeout": 0.0}, "timeout"), ({"api": "chat"}, "api")]:
        with pytest.raises(InputError) as raised:
            Server("http://127.0.0.1:1", "m", **options)
        assert raised.value.field == field
    with pytest.raises(InputError, match="not an http"):
        Server("127.0.0.1:8000", "m")
    assert Server("http://h:1", "m").endpoint == "http://h:1/v1/completions"
    assert Server("http://h:1/v1/", "m").endpoint == "http://h:1/v1/completions"
    assert Server("http://h:1/v1/completions", "m").endpoint == "http://h:1/v1/completions"


@pytest.mark.parametrize("failure", ["500", "malformed", "truncated", "429"])
def test_a_failing_server_is_retried_then_one_error(failure):
    with FakeServer(default=failure) as fake:
        client = _Client(_server(fake.url))
        with pytest.raises(InputError) as raised:
            client.post({"prompt": "Coin flips:"})
    assert len(fake.requests) == 3  # the first try and two retries
    assert raised.value.field == "server" and "in 3 tries" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_refusal_is_not_retried_and_names_the_servers_reason():
    with FakeServer(default="400") as fake:
        with pytest.raises(InputError, match=r"HTTP 400 \(logprobs must be at most 2\)"):
            _Client(_server(fake.url)).post({"prompt": "x"})
    assert len(fake.requests) == 1


def test_a_server_that_is_not_there_is_retried_then_one_error():
    with FakeServer() as fake:
        url = fake.url
    with pytest.raises(InputError, match="in 3 tries; the last: ConnectionRefusedError"):
        _Client(_server(url)).post({"prompt": "x"})


def test_recorded_llama_cpp_answer_locates_every_prompt_token():
    recorded = json.loads(RECORDED.read_text())
    for prompt, response in recorded["responses"].items():
        tokens = _prompt_positions(response, prompt, "echo", "recorded")
        assert "".join(token.text for token in tokens) == prompt
        assert [token.offset for token in tokens] == list(np.cumsum([0] + [len(t.text) for t in tokens[:-1]]))
        assert tokens[0].logprob is None and all(token.logprob <= 0 for token in tokens[1:])
        # the reported alternatives include the prompt's own token when it is among the top K
        for token in tokens[1:]:
            if token.text in token.top:
                assert token.top[token.text] == pytest.approx(token.logprob, abs=1e-6)


def test_replayed_episodes_make_a_valid_log_and_transient_failures_change_nothing(tmp_path):
    recorded = json.loads(RECORDED.read_text())
    task, episodes, length = get_task("coin"), recorded["episodes"], recorded["length"]
    with FakeServer() as fake:
        clean = server_log_task(_server(fake.url), task, episodes, length, seed=recorded["seed"])
    with FakeServer(["500", "malformed", "truncated", "429", "500"]) as fake:
        flaky = server_log_task(_server(fake.url, retries=3), task, episodes, length, seed=recorded["seed"])
    np.testing.assert_array_equal(clean["probs"].values, flaky["probs"].values)
    assert clean.sizes["row"] == episodes * (length + 1)
    assert list(clean["col"].values) == [" H", " T", "<other>"]
    reported = clean["reported_mass"].values
    assert np.all((reported > 0) & (reported <= 1 + 1e-6))
    # the categories the server reported are at most the reported mass; the rest comes from their own requests
    assert np.all(clean["probs"].values[:, :2].sum(axis=1) <= 1 + 1e-9)
    assert [str(p) for p in clean["prompt"].values[: length + 1]][:2] == ["Coin flips:", "Coin flips: " +
                                                                          task.categories[_first_flip(clean)] + ","]


def _first_flip(ds) -> int:
    return int(np.argmax(ds["context_counts"].values[1, :2]))


def test_a_category_the_server_left_out_gets_a_request_of_its_own():
    recorded = json.loads(RECORDED.read_text())
    with FakeServer() as fake:
        ds = server_log_task(_server(fake.url, top_logprobs=1), get_task("coin"), 1, 2, seed=recorded["seed"])
        sent = [request["body"]["prompt"] for request in fake.requests]
    # with one alternative reported, the other coin face is asked for after its prefix
    assert len(sent) > 1 and all(prompt.endswith((" H", " T")) for prompt in sent[1:])
    assert np.all(ds["probs"].values[:, :2] > 0)


def test_cli_through_a_failing_server_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BAYESMATRIX_TEST_KEY", "sk-test")
    out = tmp_path / "log.nc"
    with FakeServer(default="500") as fake:
        status = main(["log", "--server", fake.url, "--model", "smollm2", "--task", "coin", "--episodes", "2",
                       "--length", "2", "--out", str(out), "--server-retries", "1", "--api-key-env",
                       "BAYESMATRIX_TEST_KEY"])
    err = capsys.readouterr().err
    assert status == 2
    last = err.strip().splitlines()[-1]  # after the progress bar
    assert err.count("error:") == 1 and "field '--server'" in last and "HTTP 500 (the model fell over)" in last
    assert not out.exists() and not Path(f"{out}.partial").exists()
    assert fake.requests[0]["authorization"] == "Bearer sk-test"


def test_cli_refuses_local_only_options_through_a_server(tmp_path, capsys):
    status = main(["log", "--server", "http://127.0.0.1:1", "--task", "coin", "--samples", "3",
                   "--out", str(tmp_path / "x.nc")])
    assert status == 2 and "--samples" in capsys.readouterr().err


def test_resume_after_the_server_dies_mid_run_gives_the_same_log(tmp_path):
    recorded = json.loads(RECORDED.read_text())
    options = {"task": "coin", "episodes": recorded["episodes"], "length": recorded["length"],
               "seed": recorded["seed"], "checkpoint_every": 1, "progress": False}
    with FakeServer() as fake:
        whole = read_log(run_server_log(tmp_path / "whole.nc", _server(fake.url, concurrency=1), **options))
    out = tmp_path / "resumed.nc"
    # the first episode's requests succeed, then the server only fails
    with FakeServer() as fake:
        with pytest.raises(InputError):
            fake_count = _requests_of_first_episode(tmp_path, fake, options)
            fake.behaviours = ["replay"] * fake_count
            fake.default = "500"
            run_server_log(out, _server(fake.url, concurrency=1), **options)
    assert not out.exists() and any(Path(f"{out}.partial").glob("*.npz"))
    with FakeServer() as fake:
        resumed = read_log(run_server_log(out, _server(fake.url, concurrency=1), **options))
    np.testing.assert_array_equal(whole["probs"].values, resumed["probs"].values)
    np.testing.assert_array_equal(whole["reported_mass"].values, resumed["reported_mass"].values)
    assert list(whole["prompt"].values) == list(resumed["prompt"].values)
    assert not Path(f"{out}.partial").exists()


def _requests_of_first_episode(tmp_path, fake, options) -> int:
    """How many requests the first episode alone takes (counted on a run of one episode)."""
    run_server_log(tmp_path / "one.nc", _server(fake.url, concurrency=1), **{**options, "episodes": 1})
    count = len(fake.requests)
    fake.requests.clear()
    return count


def test_an_echo_one_position_late_is_refused_in_one_line():
    # llama-cpp-python's server without a BOS token: each entry is the distribution after its token ("oin" is
    # scored after "Coin"), and the generated token " D" is missing from the echo
    recorded = json.loads((FIXTURES / "llama_cpp_no_bos.json").read_text())
    with pytest.raises(InputError, match="one position late") as raised:
        _prompt_positions(recorded["response"], recorded["request"]["prompt"], "http://h/v1/completions", 3)
    assert raised.value.row == 3 and "add_bos_token=bool:true" in str(raised.value)
