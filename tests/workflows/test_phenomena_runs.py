"""The phenomena studies (bayesmatrix/workflows/phenomena.py): questions, inserted text, the answer key,
the summaries, and each study end to end on SmolLM2 at a tiny size (marked long)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bayesmatrix.analysis.phenomena import RESULT_FILES, read_study, studies_in
from bayesmatrix.data.corpus import read_corpus
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.tasks import Task, get_task
from bayesmatrix.workflows.phenomena import (
    CotSettings,
    HallucinationSettings,
    InsertedTask,
    LongContextSettings,
    arithmetic_problems,
    cot_summary,
    hallucination_summary,
    read_answers,
)


def test_arithmetic_problems_are_seeded_and_right():
    problems = arithmetic_problems(12, seed=3)
    assert problems == arithmetic_problems(12, seed=3) != arithmetic_problems(12, seed=4)
    for expression, answer in problems:
        assert eval(expression) == answer  # the expressions are plain integer arithmetic
    assert [("(" in e) for e, _ in problems] == [i % 2 == 1 for i in range(12)]


def _coin_with(inserted: str, after: int) -> InsertedTask:
    coin = get_task("coin")
    fields = {name: getattr(coin, name) for name in Task.__dataclass_fields__}
    return InsertedTask(**fields, inserted=inserted, inserted_after=after)


@pytest.mark.parametrize("after", [0, 2])
def test_inserted_text_keeps_every_observation_where_its_span_says(after):
    task = _coin_with("Unrelated words here.", after)
    observations = [0, 1, 1, 0]
    text, spans = task.render(observations)
    assert [text[s.symbol_start : s.symbol_end] for s in spans] == ["H", "T", "T", "H"]
    plain, _ = get_task("coin").render(observations)
    if after == 0:
        assert text == "Unrelated words here.\n\n" + plain
    else:
        assert text == "Coin flips: H, T,\nUnrelated words here.\n T, H,"
    assert _coin_with("", after).render(observations) == (plain, get_task("coin").render(observations)[1])


def test_the_answer_key_covers_its_groups_of_the_corpus():
    key = read_answers()
    groups = {"capital", "element", "born"}
    facts = [r for r in read_corpus() if r.source == "fact" and r.group in groups]
    assert {r.prompt for r in facts} == set(key)
    assert all(entry["group"] in groups and entry["accepted"] for entry in key.values())
    assert key["The capital of France is"]["accepted"] == ["Paris"]
    assert key["The chemical symbol for gold is"]["accepted"] == ["Au"]
    assert key["Albert Einstein was born in the year"]["accepted"] == ["1879"]


def test_a_bad_answer_key_names_its_row(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text('{"prompt": "a", "accepted": ["x"]}\n{"prompt": "b", "accepted": []}\n')
    with pytest.raises(InputError) as raised:
        read_answers(path)
    assert (raised.value.field, raised.value.row) == ("accepted", 1)


@pytest.mark.parametrize("make, field", [
    (lambda: LongContextSettings(placements=("middle",)), "placements"),
    (lambda: LongContextSettings(inserted=(0, 0)), "inserted"),
    (lambda: CotSettings(prompts=0), "prompts"),
    (lambda: HallucinationSettings(groups=()), "groups"),
])
def test_settings_check_themselves(make, field):
    with pytest.raises(InputError) as raised:
        make()
    assert raised.value.field == field


def test_summaries_of_known_records():
    records = [{"question": "q", "answer": 1,
                "direct": {"parsed": 1, "correct": True, "entropy_bits": [1.0, 3.0]},
                "cot": {"parsed": None, "correct": False, "entropy_bits": [2.0]}},
               {"question": "q", "answer": 2,
                "direct": {"parsed": 3, "correct": False, "entropy_bits": [3.0]},
                "cot": {"parsed": 2, "correct": True, "entropy_bits": [4.0, 0.0, 2.0]}}]
    summary = cot_summary(records)
    assert summary["direct"]["accuracy"]["mean"] == 0.5 and summary["cot"]["answered"] == 1
    assert summary["direct"]["mean_entropy_bits"] == pytest.approx(2.5)  # answers' means 2 and 3
    assert summary["cot"]["entropy_by_index"] == [3.0, 0.0, 2.0]
    facts = [{"group": "g", "correct": c, "entropy_bits": e} for c, e in [(True, 0.1), (False, 2.0), (False, 0.5)]]
    result = hallucination_summary(facts + [{"group": "h", "correct": True, "entropy_bits": 1.0}])
    assert result["g"]["auroc_wrong"]["auroc"] == 1.0 and result["h"]["auroc_wrong"] is None
    assert result["all"]["prompts"] == 4 and result["all"]["accuracy"]["mean"] == 0.5


# ---------------------------------------------------------------------------
# End to end on SmolLM2, tiny (make test-long)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2():
    import torch

    from bayesmatrix.data.llm.loading import load_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core machine two threads are many times slower
    yield load_model("smollm2")
    torch.set_num_threads(threads)


@pytest.mark.long
@pytest.mark.llm
def test_cot_study(smollm2, tmp_path):
    from bayesmatrix.workflows.phenomena import run_cot

    result = run_cot(smollm2, CotSettings(prompts=2, direct_tokens=4, cot_tokens=12, batch_size=2), tmp_path)
    assert read_study(tmp_path, "cot") == json.loads(json.dumps(result))
    assert not (tmp_path / (RESULT_FILES["cot"] + ".partial")).exists()
    for record in result["records"]:
        assert 1 <= len(record["direct"]["entropy_bits"]) <= 4 and 1 <= len(record["cot"]["entropy_bits"]) <= 12
        assert all(0 <= e <= np.log2(smollm2.tokenizer.vocab_size + 1000) for e in record["cot"]["entropy_bits"])
    assert result["summary"]["cot"]["accuracy"]["n"] == 2


@pytest.mark.long
@pytest.mark.llm
def test_long_context_study_resumes_per_condition(smollm2, tmp_path):
    from bayesmatrix.workflows.phenomena import run_long_context

    settings = LongContextSettings(inserted=(0, 16), episodes=2, length=4, num_warmup=30, num_samples=30,
                                   num_chains=1, batch_size=2)  # fmt: skip
    result = run_long_context(smollm2, settings, tmp_path)
    assert [(c["placement"], c["inserted_tokens"]) for c in result["conditions"]] == [
        ("none", 0), ("before", 16), ("inside", 16)]
    assert all(abs(c["inserted_tokens_actual"] - c["inserted_tokens"]) <= 2 for c in result["conditions"][1:])
    assert all(c["stated_excess_bits"] >= 0 and 0 < c["decay"]["mean"] < 1 for c in result["conditions"])
    stamp = (tmp_path / "logs" / "inside-16.nc").stat().st_mtime_ns
    again = run_long_context(smollm2, settings, tmp_path)
    assert (tmp_path / "logs" / "inside-16.nc").stat().st_mtime_ns == stamp
    assert again["conditions"] == result["conditions"]


@pytest.mark.long
@pytest.mark.llm
def test_hallucination_study_and_report(smollm2, tmp_path):
    from bayesmatrix.analysis.report import build_report
    from bayesmatrix.workflows.phenomena import run_hallucination

    result = run_hallucination(smollm2, HallucinationSettings(limit=4, max_tokens=3), tmp_path)
    assert len(result["records"]) == 12 and result["summary"]["all"]["prompts"] == 12
    paris = [r for r in result["records"] if r["prompt"] == "The capital of Afghanistan is"]
    assert paris and paris[0]["correct"] == paris[0]["completion"].lstrip().startswith("Kabul")
    assert studies_in(tmp_path) == ["hallucination"]
    report = build_report([], tmp_path / "report.html", phenomena=tmp_path)
    text = report.path.read_text()
    assert "Hallucination: entropy as a signal of a wrong answer" in text and "data:image/png;base64," in text
