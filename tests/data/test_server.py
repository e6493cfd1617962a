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
from bayesmatrix.data.llm import log_task
from bayesmatrix.data.llm.rendering import PRODUCT_WITH_FOLLOWING
from bayesmatrix.data.llm.server import Server, _Client, _prompt_positions, run_server_log, server_log_task
from bayesmatrix.data.llmlog import read_log
from bayesmatrix.data.tasks import Task, draw_episode, get_task

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


# --------------------------------------------------------------------------- a server running a local model
#
# Chat tasks and categories one of which begins another, logged through a server that runs the same tiny model
# as the local logger: both logs can be computed exactly, so they must agree to rounding.

# ChatML without the newlines after <|im_end|> and the assistant's role: a word-level tokenizer has no token for
# whitespace, which the fake server gives the token after it (a real one's newlines are tokens of their own:
# tests/data/test_server_llama.py)
CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant{% endif %}")
DIGITS = ["[UNK]", "[PAD]", "<|im_start|>", "<|im_end|>", "user", "assistant", "Counts", "Tally", ":", ",", "0", "1",
          "2"]


def _digit_model(folder, chat_template: str | None = CHAT_TEMPLATE):
    """A tiny GPT-2 over digits, each digit its own token (so "10" is "1" then "0"), with a ChatML-like template
    whose BOS is ``<|im_start|>`` (as SmolLM2's)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from bayesmatrix.data.llm import load_model

    word_level = Tokenizer(models.WordLevel({w: i for i, w in enumerate(DIGITS)}, unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                        pre_tokenizers.Digits(individual_digits=True)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token="[UNK]", pad_token="[PAD]",
                                        bos_token="<|im_start|>", eos_token="<|im_end|>")
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    torch.manual_seed(3)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(DIGITS), n_positions=256, n_embd=32, n_layer=2,
                               n_head=2)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return load_model(str(folder))


@pytest.fixture(scope="module")
def digit_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    return folder, _digit_model(folder)


class ModelServer(FakeServer):
    """A completions server running ``loaded`` (float64 softmax of its logits), answering as the real ones do.

    ``echo`` requests get llama-cpp-python 0.3's answer: every token's text runs from the end of the token
    before (so a space belongs to the word after it), a token that is the BOS is left out, another special
    token is echoed as empty text, and offsets count the echoed text only. ``prompt_logprobs`` requests get
    vLLM's, special tokens decoded as empty text. The server tokenizes as the tokenizer does, honouring
    ``add_special_tokens``.
    """

    def __init__(self, loaded):
        super().__init__(default="model")
        self.loaded = loaded

    def answer(self, body):
        import torch

        tokenizer = self.loaded.tokenizer
        prompt = body["prompt"]
        encoded = tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=body.get("add_special_tokens",
                                                                                               True))  # fmt: skip
        ids, spans = encoded["input_ids"], encoded["offset_mapping"]
        with torch.no_grad():
            logits = self.loaded.model(torch.tensor([ids])).logits[0].double()
        logprobs = torch.log_softmax(logits, dim=-1).numpy()  # (tokens, vocab): the distribution after each
        special = set(tokenizer.all_special_ids)
        ends = [0] + [end for _, end in spans]
        # the text before each token (and a space before the generated one)
        gaps = [prompt[ends[t] : start] for t, (start, _) in enumerate(spans)] + [" "]
        texts = ["" if i in special else prompt[ends[t] : ends[t + 1]] for t, i in enumerate(ids)]
        generated = int(np.argmax(logprobs[-1]))

        def text_of(t: int, token: int) -> str:
            return "" if token in special else gaps[t] + tokenizer.convert_ids_to_tokens(token)

        def alternatives(t: int, k: int) -> list[int]:  # the top k after token t - 1
            return [int(i) for i in np.argsort(-logprobs[t - 1], kind="stable")[:k]]

        k = body.get("logprobs") or body.get("prompt_logprobs")
        usage = {"prompt_tokens": len(ids), "completion_tokens": 1, "total_tokens": len(ids) + 1}
        if "prompt_logprobs" in body:
            entries = [None]
            for t in range(1, len(ids)):
                own, top = ids[t], alternatives(t, k)
                entries.append({str(i): {"logprob": float(logprobs[t - 1, i]), "rank": int(np.sum(logprobs[t - 1] >
                                         logprobs[t - 1, i])) + 1, "decoded_token": text_of(t, i)}
                                for i in [own] + [i for i in top if i != own]})  # fmt: skip
            return {"object": "text_completion", "usage": usage, "choices": [
                {"index": 0, "text": DIGITS[generated], "logprobs": None, "prompt_logprobs": entries}]}
        kept = [t for t, i in enumerate(ids) if i != tokenizer.bos_token_id]
        tokens, offsets, token_logprobs, tops = [], [], [], []
        for t in kept + [len(ids)]:
            own = ids[t] if t < len(ids) else generated
            tokens.append(texts[t] if t < len(ids) else text_of(t, generated))
            offsets.append(sum(len(text) for text in tokens[:-1]))
            token_logprobs.append(float(logprobs[t - 1, own]) if t > 0 else None)
            top = {text_of(t, i): float(logprobs[t - 1, i]) for i in alternatives(t, k)} if t > 0 else None
            tops.append(None if top is None else {**top, tokens[-1]: token_logprobs[-1]})
        token_logprobs[0], tops[0] = None, None  # the OpenAI API's first token, whatever it is
        return {"object": "text_completion", "usage": usage, "choices": [{"index": 0, "text": tokens[-1], "logprobs": {
            "tokens": tokens, "text_offset": offsets, "token_logprobs": token_logprobs, "top_logprobs": tops}}]}


def _digits(chat: bool, categories=("1", "10")) -> Task:
    return Task("digits", tuple(categories), "Counts:", " {},", instruction="Tally " if chat else "", chat=chat)


@pytest.mark.parametrize("api", ["echo", "prompt_logprobs"])
@pytest.mark.parametrize("chat, categories", [(False, ("1", "10")), (True, ("1", "2")), (True, ("10", "1", "2"))])
def test_chat_and_prefix_tasks_through_a_server_equal_the_local_log(digit_model, api, chat, categories):
    folder, loaded = digit_model
    task = _digits(chat, categories)
    episodes, length = 2, 4
    local = log_task(loaded, task, episodes, length, seed=1)
    with ModelServer(loaded) as fake:
        through = server_log_task(_server(fake.url, api=api, top_logprobs=2), task, episodes, length, seed=1,
                                  tokenizer=loaded.tokenizer if chat else None)
        sent = [request["body"] for request in fake.requests]
    assert list(through["prompt"].values) == list(local["prompt"].values)
    np.testing.assert_array_equal(through["context_counts"].values, local["context_counts"].values)
    np.testing.assert_allclose(through["probs"].values, local["probs"].values, rtol=1e-6, atol=1e-9)
    prefixed = len(categories) == 3 or not chat
    if prefixed:
        assert through.attrs["category_rule"] == local.attrs["category_rule"] == PRODUCT_WITH_FOLLOWING
    else:  # the server does not see the categories' tokens before reading them: a product, perhaps of one
        assert (through.attrs["category_rule"], local.attrs["category_rule"]) == ("product", "single-token")
    assert through.attrs.get("category_following") == ("," if prefixed else None)
    # the text sent is the local logger's rendering: the chat template's turn, then the observations
    lead = loaded.tokenizer.apply_chat_template([{"role": "user", "content": "Tally Counts:"}],
                                                add_generation_prompt=True, tokenize=False) if chat else None
    episode_texts = {task.render(list(draw_episode(task, length, 1, e)) + [0], lead)[0] for e in range(episodes)}
    assert episode_texts <= {body["prompt"] for body in sent}
    assert all(body.get("add_special_tokens") is (False if chat else None) for body in sent)
    if prefixed:  # a continuation asked for on its own carries the text after the category
        assert any(body["prompt"].endswith((" 10,", " 1,")) and body["prompt"] not in episode_texts for body in sent)


@pytest.mark.parametrize("observation, message", [(" {}", "has no text after the category"),
                                                  (" {}0", "followed by '0' is still a prefix of '10'")])
def test_prefix_categories_that_cannot_be_told_apart_in_text_are_refused(observation, message):
    task = Task("digits", ("1", "10"), "Counts:", observation)
    with pytest.raises(InputError, match=message) as raised:
        server_log_task(_server("http://127.0.0.1:1"), task, 1, 1)
    assert raised.value.field == "task"


def test_cli_logs_a_chat_task_file_through_a_server_with_a_local_tokenizer(digit_model, tmp_path, capsys):
    folder, loaded = digit_model
    task_file = tmp_path / "digits.toml"
    task_file.write_text('name = "digits"\ncategories = ["1", "10"]\ninstruction = "Tally "\nheader = "Counts:"\n'
                         'observation = " {},"\nchat = true\n')
    out = tmp_path / "log.nc"
    command = ["log", "--server", None, "--model", "digits", "--task", str(task_file), "--episodes", "2",
               "--length", "3", "--out", str(out), "--server-topk", "1"]
    assert main([*command[:2], "http://127.0.0.1:1", *command[3:]]) == 2  # refused before any request
    err = capsys.readouterr().err
    assert "field '--tokenizer'" in err and "chat template" in err and len(err.strip().splitlines()) == 1
    with ModelServer(loaded) as fake:
        assert main([*command[:2], fake.url, *command[3:], "--tokenizer", str(folder)]) == 0
    through = read_log(out)
    local = log_task(loaded, get_task(str(task_file)), 2, 3, seed=0)
    np.testing.assert_allclose(through["probs"].values, local["probs"].values, rtol=1e-6, atol=1e-9)
    assert through.attrs["tokenizer"] == str(folder) and through.attrs["category_rule"] == PRODUCT_WITH_FOLLOWING


def test_tokenizer_is_refused_where_it_renders_nothing(digit_model, tmp_path, capsys):
    folder, _ = digit_model
    out = str(tmp_path / "x.nc")
    plain = main(["log", "--server", "http://127.0.0.1:1", "--task", "coin", "--tokenizer", str(folder), "--out", out])
    assert plain == 2 and "is not a chat task" in capsys.readouterr().err
    local = main(["log", "--task", "coin-words-chat", "--tokenizer", str(folder), "--out", out])
    assert local == 2 and "through --server only" in capsys.readouterr().err
    no_template = tmp_path / "no-template"
    _digit_model(no_template, chat_template=None)
    with pytest.raises(InputError, match="chat template, but this tokenizer has none"):
        run_server_log(out, _server("http://127.0.0.1:1"), task="coin-words-chat", tokenizer=str(no_template))
    assert not Path(f"{out}.partial").exists()


def test_recorded_llama_cpp_chat_episode_replays_to_the_local_logs_probabilities():
    # llama-cpp-python's answers to a chat episode: <|im_start|> (SmolLM2's BOS) left out, <|im_end|> echoed as
    # empty text; the chat template is SmolLM2's own (from its GGUF), rendered by transformers around a tokenizer
    # that knows the same special tokens
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    recorded = json.loads((FIXTURES / "llama_cpp_chat.json").read_text())
    specials = recorded["specials"]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({s: i for i, s in enumerate(specials)}, unk_token=specials[0])),
        unk_token=specials[0], bos_token="<|im_start|>", eos_token="<|im_end|>")
    tokenizer.chat_template = recorded["chat_template"]
    with FakeServer() as fake:
        fake.recorded = recorded["responses"]
        ds = server_log_task(_server(fake.url, top_logprobs=recorded["top_logprobs"]), get_task(recorded["task"]),
                             recorded["episodes"], recorded["length"], seed=recorded["seed"], tokenizer=tokenizer)
        assert {request["body"]["prompt"] for request in fake.requests} == set(recorded["responses"])
    assert str(ds["prompt"].values[0]).startswith("<|im_start|>system\n") and ds["prompt"].values[0].endswith(
        "<|im_start|>assistant\n")
    # the same weights, quantised blocks against float32 (tests/data/test_server_llama.py measures 340 rows)
    assert np.abs(ds["probs"].values - np.asarray(recorded["local_probs"])).max() < 0.08
