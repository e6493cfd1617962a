"""The paper's other phenomena on a real LLM: chain of thought, long contexts and hallucination.

README, "Phenomena on SmolLM2". Each study loads the model once
(:func:`bayesmatrix.data.llm.loading.load_model`), runs greedily and writes its
result file (``analysis.phenomena.RESULT_FILES``) into an output folder,
atomically; ``bayesmatrix phenomena STUDY`` runs one:

- :func:`run_cot`: seeded two-step arithmetic questions (:func:`arithmetic_problems`)
  asked through the chat template twice: for the number alone (the answer
  begun with :data:`DIRECT_ANSWER_START`) and step by step; the entropy of every next-token row along each greedy answer, and
  the accuracy of the final number. Resumable per batch of questions.
- :func:`run_long_context`: the coin task's episodes with unrelated text
  (the corpus's documentation sentences, :func:`filler_text`) of each length
  inserted before the episode or between its flips at the middle
  (:class:`InsertedTask`); each condition's log (``logs/``), its excess bits
  per step against the task's stated prior and an ``icl-general`` NUTS run
  (``runs/``) for the decay. Resumable per condition.
- :func:`run_hallucination`: the corpus's fact prompts of the groups the answer
  key covers (``data/shipped/corpus/answers.jsonl``); the greedy completion,
  whether it starts with an accepted answer, and the entropy of the row at
  the answer position; the AUROC of that entropy for a wrong answer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from bayesmatrix.analysis.phenomena import (
    RESULT_FILES,
    auroc_interval,
    final_number,
    is_accepted,
    mean_by_index,
    proportion_interval,
    row_entropy_bits,
)
from bayesmatrix.data.errors import InputError, check_at_least
from bayesmatrix.data.tasks import SHIPPED_TASKS, Task

SHIPPED_ANSWERS = SHIPPED_TASKS.parent / "corpus" / "answers.jsonl"
"""The answer key of the corpus's fact prompts: one ``{"prompt", "group", "accepted"}`` record a line."""

PLACEMENTS = ("before", "inside")
"""Where :func:`run_long_context` inserts text: before the episode's header, or between its flips at the middle."""

COT_MODES = ("direct", "cot")
DIRECT_INSTRUCTION = "Reply with only the number."
DIRECT_ANSWER_START = "The answer is"
"""The direct answer's first words, written into the assistant turn so that the number comes next."""
COT_INSTRUCTION = "Let's think step by step, then give the final answer as 'Answer: N'."


@dataclasses.dataclass(frozen=True)
class CotSettings:
    """The chain-of-thought study's sizes (checked on creation)."""

    prompts: int = 40
    """Arithmetic questions (:func:`arithmetic_problems`)."""
    direct_tokens: int = 16
    """Most tokens generated for the direct answer."""
    cot_tokens: int = 160
    """Most tokens generated for the step-by-step answer."""
    seed: int = 0
    batch_size: int = 8

    def __post_init__(self):
        check_at_least(1, prompts=self.prompts, direct_tokens=self.direct_tokens, cot_tokens=self.cot_tokens,
                        batch_size=self.batch_size)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class LongContextSettings:
    """The long-context study's sizes (checked on creation)."""

    inserted: tuple[int, ...] = (0, 64, 256, 1024)
    """Lengths in tokens of the inserted text (0: the plain episode, once)."""
    placements: tuple[str, ...] = PLACEMENTS
    episodes: int = 16
    length: int = 20
    """Coin flips per episode; ``inside`` inserts after the first ``length // 2``."""
    num_warmup: int = 200
    num_samples: int = 200
    num_chains: int = 2
    seed: int = 0
    batch_size: int = 4

    def __post_init__(self):
        check_at_least(1, episodes=self.episodes, length=self.length, num_warmup=self.num_warmup,
                        num_samples=self.num_samples, num_chains=self.num_chains, batch_size=self.batch_size)  # fmt: skip
        if not self.inserted or any(n < 0 for n in self.inserted) or len(set(self.inserted)) != len(self.inserted):
            raise InputError("must be distinct lengths of 0 or more tokens", field="inserted")
        if not self.placements or any(p not in PLACEMENTS for p in self.placements):
            raise InputError(f"must be some of {', '.join(PLACEMENTS)}", field="placements")
        if self.length < 2:
            raise InputError("needs at least 2 flips to insert between", field="length")


@dataclasses.dataclass(frozen=True)
class HallucinationSettings:
    """The hallucination study's sizes (checked on creation)."""

    groups: tuple[str, ...] = ("capital", "element", "born")
    """Fact groups of the corpus (each must be in the answer key)."""
    max_tokens: int = 8
    """Tokens of each greedy completion."""
    batch_size: int = 16
    limit: int | None = None
    """At most this many prompts per group (None: all)."""

    def __post_init__(self):
        check_at_least(1, max_tokens=self.max_tokens, batch_size=self.batch_size)
        if not self.groups:
            raise InputError("needs at least one fact group", field="groups")
        if self.limit is not None:
            check_at_least(1, limit=self.limit)


# ---------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------


class Generated(NamedTuple):
    """One greedy generation."""

    text: str
    """The generated text (special tokens dropped)."""
    token_ids: list[int]
    """The generated tokens, up to and including the end-of-sequence token if one came."""
    entropy_bits: np.ndarray
    """(tokens,) the entropy of the next-token row each generated token was chosen from."""


def greedy_generate(loaded, prompts: Sequence[Sequence[int]], max_new_tokens: int, batch_size: int) -> list[Generated]:
    """Greedy continuations of token-id prompts, left-padded in batches, with each row's entropy.

    The rows are the model's raw logits (no processors), so their entropies are the model's own.
    """
    import torch
    from transformers import GenerationConfig

    tokenizer, model = loaded.tokenizer, loaded.model
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad, eos_token_id=eos,
                              output_logits=True, return_dict_in_generate=True)  # fmt: skip
    device = next(model.parameters()).device
    results = []
    for start in range(0, len(prompts), batch_size):
        batch = [list(p) for p in prompts[start : start + batch_size]]
        width = max(len(p) for p in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for b, ids in enumerate(batch):  # left padding: every prompt ends where generation starts
            input_ids[b, width - len(ids) :] = torch.as_tensor(ids)
            attention_mask[b, width - len(ids) :] = 1
        with torch.inference_mode():
            output = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                    generation_config=config)  # fmt: skip
        logits = torch.stack(output.logits, dim=1).float().cpu()  # (batch, steps, vocab)
        new = output.sequences[:, width:].cpu()
        for b in range(len(batch)):
            tokens = new[b].tolist()
            if eos in tokens:
                tokens = tokens[: tokens.index(eos) + 1]
            entropy = row_entropy_bits(logits[b, : len(tokens)].numpy())
            results.append(Generated(tokenizer.decode(tokens, skip_special_tokens=True), tokens, entropy))
    return results


def _rounded(values, digits: int = 4) -> list[float]:
    return [round(float(v), digits) for v in values]


def _write_json(path: Path, value: dict) -> Path:
    from bayesmatrix.data.atomic import write_text_atomic

    return write_text_atomic(path, json.dumps(value, indent=1) + "\n")


def _resumed(path: Path, settings: dict) -> list:
    """The records of an unfinished run with the same settings (an empty list otherwise)."""
    if not path.is_file():
        return []
    try:
        partial = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return []
    return partial.get("records", []) if partial.get("settings") == settings else []


def _out_folder(out: os.PathLike | str) -> Path:
    from bayesmatrix.data.atomic import check_writable_folder

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder", file=str(out), field="out")
    out.mkdir(parents=True, exist_ok=True)
    check_writable_folder(out, str(out))
    return out


def _header(study: str, loaded, settings: dict, command: str) -> dict[str, Any]:
    return {"study": study, "model": loaded.name, "model_sha256": loaded.file_hash, "settings": settings,
            "command": command}  # fmt: skip


# ---------------------------------------------------------------------------
# Chain of thought
# ---------------------------------------------------------------------------


def arithmetic_problems(count: int, seed: int = 0) -> list[tuple[str, int]]:
    """``count`` seeded two-step questions with their answers, alternating ``a * b + c`` and ``(a + b) * c``
    (``a``, ``b`` from 2 to 9; ``c`` from 2 to 19 for the sum, 2 to 9 for the product)."""
    rng = random.Random(seed)
    problems = []
    for i in range(count):
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        if i % 2 == 0:
            c = rng.randint(2, 19)
            problems.append((f"{a} * {b} + {c}", a * b + c))
        else:
            c = rng.randint(2, 9)
            problems.append((f"({a} + {b}) * {c}", (a + b) * c))
    return problems


def _chat_ids(tokenizer, question: str, answer_start: str = "") -> list[int]:
    """The question as the user turn, the assistant turn opened and begun with ``answer_start``."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                         tokenize=False)  # fmt: skip
    return tokenizer(text + answer_start, add_special_tokens=False)["input_ids"]


def run_cot(loaded, settings: CotSettings, out: os.PathLike | str, *, command: str = "",
            progress: Callable[[str], None] | None = None) -> dict:
    """The chain-of-thought study into ``out/cot.json``; returns what it writes (``summary`` per mode)."""
    out = _out_folder(out)
    if not getattr(loaded.tokenizer, "chat_template", None):
        raise InputError(f"model {loaded.name!r} has no chat template to ask questions through", field="model")
    settings_json = dataclasses.asdict(settings)
    partial_path = out / (RESULT_FILES["cot"] + ".partial")
    records = _resumed(partial_path, settings_json)
    problems = arithmetic_problems(settings.prompts, settings.seed)
    start_time = time.perf_counter()
    for start in range(len(records), len(problems), settings.batch_size):
        batch = problems[start : start + settings.batch_size]
        answers = {}
        for mode, instruction, answer_start, tokens in (
            ("direct", DIRECT_INSTRUCTION, DIRECT_ANSWER_START, settings.direct_tokens),
            ("cot", COT_INSTRUCTION, "", settings.cot_tokens),
        ):
            prompts = [_chat_ids(loaded.tokenizer, f"What is {expr}? {instruction}", answer_start) for expr, _ in batch]
            answers[mode] = greedy_generate(loaded, prompts, tokens, settings.batch_size)
        for i, (expr, answer) in enumerate(batch):
            record = {"question": f"What is {expr}?", "answer": answer}
            for mode in COT_MODES:
                generated = answers[mode][i]
                parsed = final_number(generated.text)
                record[mode] = {"text": generated.text, "parsed": parsed, "correct": parsed == answer,
                                "entropy_bits": _rounded(generated.entropy_bits)}  # fmt: skip
            records.append(record)
        _write_json(partial_path, {"settings": settings_json, "records": records})
        if progress:
            progress(f"cot: {len(records)}/{len(problems)} questions")
    result = _header("cot", loaded, settings_json, command)
    result["seconds"] = round(time.perf_counter() - start_time, 1)
    result["summary"] = cot_summary(records)
    result["records"] = records
    _write_json(out / RESULT_FILES["cot"], result)
    partial_path.unlink(missing_ok=True)
    return result


def cot_summary(records: Sequence[dict]) -> dict[str, dict]:
    """Per mode: accuracy (Wilson interval), the mean entropy per generated token (mean over questions of
    each answer's mean, with its standard error), that of the first row, the mean length, and the mean
    entropy at each generated token's index (with how many answers reach it)."""
    from bayesmatrix.analysis.metrics import mean_and_mcse

    summary = {}
    for mode in COT_MODES:
        entropies = [r[mode]["entropy_bits"] for r in records]
        accuracy = proportion_interval([r[mode]["correct"] for r in records])
        per_answer = np.array([np.mean(e) for e in entropies if e])
        first = np.array([e[0] for e in entropies if e])
        mean, se = mean_and_mcse(per_answer)
        first_mean, first_se = mean_and_mcse(first)
        by_index, count = mean_by_index(entropies)
        summary[mode] = {
            "accuracy": accuracy._asdict(),
            "answered": int(sum(r[mode]["parsed"] is not None for r in records)),
            "mean_entropy_bits": float(mean), "mean_entropy_se": float(se),
            "first_row_entropy_bits": float(first_mean), "first_row_entropy_se": float(first_se),
            "mean_tokens": float(np.mean([len(e) for e in entropies])),
            "entropy_by_index": _rounded(by_index), "answers_by_index": count.tolist(),
        }  # fmt: skip
    return summary


# ---------------------------------------------------------------------------
# Long contexts
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InsertedTask(Task):
    """A task whose prompts carry unrelated text: before the lead (``inserted_after = 0``) or after the
    first ``inserted_after`` observations, on lines of its own. Observations are read as in the task."""

    inserted: str = ""
    inserted_after: int = 0

    def render(self, observations: Sequence[int], lead: str | None = None):
        lead = self.lead if lead is None else lead
        if not self.inserted:
            return super().render(observations, lead)
        if self.inserted_after == 0:
            return super().render(observations, f"{self.inserted}\n\n{lead}")
        if len(observations) <= self.inserted_after:
            return super().render(observations, lead)
        text, spans = super().render(observations[: self.inserted_after], lead)
        text, later = super().render(observations[self.inserted_after :], f"{text}\n{self.inserted}\n")
        return text, spans + later


def filler_text(tokenizer, tokens: int, corpus=None) -> str:
    """About ``tokens`` tokens of unrelated text: the corpus's documentation prefixes (``source = "doc"``)
    in file order, each closed with a full stop, cut to ``tokens`` tokens and decoded."""
    from bayesmatrix.data.corpus import read_corpus

    if tokens == 0:
        return ""
    records = corpus if corpus is not None else read_corpus()
    ids: list[int] = []
    for record in records:
        if record.source == "doc":
            ids += tokenizer(f" {record.prompt}.", add_special_tokens=False)["input_ids"]
            if len(ids) >= tokens:
                break
    if len(ids) < tokens:
        raise InputError(f"the corpus has fewer than {tokens} tokens of documentation text", field="inserted")
    return tokenizer.decode(ids[:tokens]).strip()


def _conditions(settings: LongContextSettings) -> list[tuple[str, int]]:
    conditions = [("none", 0)] if 0 in settings.inserted else []
    return conditions + [(p, n) for p in settings.placements for n in sorted(settings.inserted) if n > 0]


def run_long_context(loaded, settings: LongContextSettings, out: os.PathLike | str, *, command: str = "",
                     progress: Callable[[str], None] | None = None) -> dict:
    """The long-context study into ``out/long_context.json`` (logs under ``out/logs``, runs under ``out/runs``).

    A condition whose log and run are there already is read, not redone.
    """
    from bayesmatrix.analysis.excess import fitted_excess, stated_excess
    from bayesmatrix.analysis.report import run_estimates
    from bayesmatrix.data.llm.drivers import log_task
    from bayesmatrix.data.llmlog import read_log, write_log
    from bayesmatrix.data.tasks import get_task
    from bayesmatrix.inference.fit import FitOptions, fit
    from bayesmatrix.inference.rundir import read_run

    out = _out_folder(out)
    (out / "logs").mkdir(exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    coin = get_task("coin")
    settings_json = dataclasses.asdict(settings)
    start_time = time.perf_counter()
    conditions = []
    for placement, tokens in _conditions(settings):
        name = f"{placement}-{tokens}"
        log_path, run_path = out / "logs" / f"{name}.nc", out / "runs" / name
        filler = filler_text(loaded.tokenizer, tokens)
        after = 0 if placement != "inside" else settings.length // 2
        task = InsertedTask(**{f.name: getattr(coin, f.name) for f in dataclasses.fields(Task)}, inserted=filler,
                            inserted_after=after)  # fmt: skip
        attrs = {"inserted_placement": placement, "inserted_tokens": tokens, "inserted_after": after}
        if not _same_condition(log_path, attrs, settings):
            ds = log_task(loaded, task, settings.episodes, settings.length, settings.seed, settings.batch_size,
                          attrs=attrs)  # fmt: skip
            write_log(ds, log_path)
        ds = read_log(log_path)
        if not (run_path / "run.json").is_file():
            options = FitOptions(model="icl-general", method="nuts", num_warmup=settings.num_warmup,
                                 num_samples=settings.num_samples, num_chains=settings.num_chains, seed=settings.seed,
                                 progress_bar=False)  # fmt: skip
            fit(log_path, options, run_path, force=True)
        run = read_run(run_path)
        stated = stated_excess(ds, file=str(log_path))
        fitted = fitted_excess(run, ds, file=str(log_path))
        estimates = run_estimates(run, "icl-general (nuts)")
        conditions.append({
            "placement": placement, "inserted_tokens": tokens,
            "inserted_tokens_actual": len(loaded.tokenizer(filler, add_special_tokens=False)["input_ids"]),
            "log": f"logs/{name}.nc", "run": f"runs/{name}",
            "stated_excess_bits": stated.mean, "stated_excess_se": stated.se,
            "stated_excess_renormalised_bits": float(stated.renormalised.mean()),
            "stated_excess_by_step": _rounded(stated.by_step[0], 5),
            "fitted_excess_bits": fitted.mean, "fitted_excess_interval": list(fitted.interval()),
            "decay": estimates.decay._asdict(), "temperature": estimates.temperature._asdict(),
            "strength": estimates.strength._asdict(),
            "other_mass": float(np.mean(1.0 - ds["probs"].values[:, :-1].sum(axis=1))),
        })  # fmt: skip
        if progress:
            progress(f"long-context: {name} done")
    result = _header("long-context", loaded, settings_json, command)
    result["seconds"] = round(time.perf_counter() - start_time, 1)
    result["conditions"] = conditions
    _write_json(out / RESULT_FILES["long-context"], result)
    return result


def _same_condition(log_path: Path, attrs: dict, settings: LongContextSettings) -> bool:
    """Whether ``log_path`` is a finished log of this condition at these sizes (then it is kept)."""
    if not log_path.is_file():
        return False
    from bayesmatrix.data.llmlog import read_log, task_of

    try:
        ds = read_log(log_path)
    except InputError:
        return False
    task = task_of(ds, str(log_path))
    same = all(ds.attrs.get(key) == value for key, value in attrs.items())
    return same and task.get("episodes") == settings.episodes and task.get("length") == settings.length


# ---------------------------------------------------------------------------
# Hallucination
# ---------------------------------------------------------------------------


def read_answers(path: os.PathLike | str = SHIPPED_ANSWERS) -> dict[str, dict]:
    """The answer key: prompt -> ``{"group", "accepted"}``; a bad line is an InputError naming it."""
    file = str(path)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError("no such answer key", file=file, field="answers") from None
    key = {}
    for row, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise InputError("is not JSON", file=file, field="answers", row=row) from None
        accepted = record.get("accepted") if isinstance(record, dict) else None
        if not isinstance(accepted, list) or not accepted or not all(isinstance(a, str) and a for a in accepted):
            raise InputError("needs accepted: a list of non-empty strings", file=file, field="accepted", row=row)
        if not isinstance(record.get("prompt"), str) or record["prompt"] in key:
            raise InputError("needs a prompt of its own (a string, not repeated)", file=file, field="prompt", row=row)
        key[record["prompt"]] = {"group": str(record.get("group", "")), "accepted": accepted}
    return key


def run_hallucination(loaded, settings: HallucinationSettings, out: os.PathLike | str, *, command: str = "",
                      answers: os.PathLike | str = SHIPPED_ANSWERS,
                      progress: Callable[[str], None] | None = None) -> dict:
    """The hallucination study into ``out/hallucination.json``; returns what it writes."""
    from bayesmatrix.data.corpus import read_corpus
    from bayesmatrix.data.llm.rendering import prompt_tokens

    out = _out_folder(out)
    key = read_answers(answers)
    known = {entry["group"] for entry in key.values()}
    missing = [g for g in settings.groups if g not in known]
    if missing:
        raise InputError(f"group {missing[0]!r} has no answers in the key (it has: {', '.join(sorted(known))})",
                         field="groups")  # fmt: skip
    chosen, per_group = [], {g: 0 for g in settings.groups}
    for record in read_corpus():
        if record.source == "fact" and record.group in per_group and record.prompt in key:
            if settings.limit is None or per_group[record.group] < settings.limit:
                chosen.append(record)
                per_group[record.group] += 1
    start_time = time.perf_counter()
    generated = greedy_generate(loaded, prompt_tokens(loaded, [r.prompt for r in chosen]), settings.max_tokens,
                                settings.batch_size)  # fmt: skip
    records = []
    for record, completion in zip(chosen, generated):
        accepted = key[record.prompt]["accepted"]
        records.append({"prompt": record.prompt, "group": record.group, "accepted": accepted,
                        "completion": completion.text, "correct": is_accepted(completion.text, accepted),
                        "entropy_bits": round(float(completion.entropy_bits[0]), 4)})  # fmt: skip
    if progress:
        progress(f"hallucination: {len(records)} prompts")
    result = _header("hallucination", loaded, dataclasses.asdict(settings), command)
    result["seconds"] = round(time.perf_counter() - start_time, 1)
    result["summary"] = hallucination_summary(records)
    result["records"] = records
    _write_json(out / RESULT_FILES["hallucination"], result)
    return result


def hallucination_summary(records: Sequence[dict]) -> dict[str, dict]:
    """Over all prompts and per group: accuracy (Wilson interval), the mean entropy of right and wrong
    answers, and the AUROC of the entropy for a wrong answer with DeLong's interval (None where every
    answer is right or every one wrong)."""
    groups = {"all": list(records)}
    for record in records:
        groups.setdefault(record["group"], []).append(record)
    summary = {}
    for group, members in groups.items():
        wrong = np.array([not r["correct"] for r in members])
        entropy = np.array([r["entropy_bits"] for r in members])
        area = auroc_interval(entropy, wrong)._asdict() if 0 < wrong.sum() < len(wrong) else None
        summary[group] = {
            "prompts": len(members), "accuracy": proportion_interval(~wrong)._asdict(),
            "entropy_right_bits": float(entropy[~wrong].mean()) if (~wrong).any() else None,
            "entropy_wrong_bits": float(entropy[wrong].mean()) if wrong.any() else None,
            "auroc_wrong": area,
        }  # fmt: skip
    return summary
