"""The catalog's names resolve to the shipped files from any folder, and only there."""

from __future__ import annotations

import pytest

from bayesmatrix.data import catalog
from bayesmatrix.data.errors import InputError


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory outside the repository, where data/shipped/... does not exist."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_names_resolve_to_shipped_files_from_another_folder(elsewhere):
    assert not (elsewhere / "data").exists()
    folder = catalog.resolve("windtunnel:dirichlet")
    assert (catalog.WINDTUNNEL_DIR / "dirichlet").samefile(folder)
    assert (elsewhere.joinpath(folder) / "training.json").is_file()  # absolute: joinpath keeps it
    assert catalog.resolve("corpus:smollm2").endswith("smollm2_corpus.nc")
    assert set(catalog.names()) >= {"smollm2", "windtunnel:dirichlet", "windtunnel:mixture", "corpus:prompts",
                                    "corpus:smollm2"}
    for name, path in catalog.names().items():
        assert path is None or path.exists(), name


def test_other_specs_pass_through_unchanged():
    for spec in ("sim.nc", "./windtunnel:dirichlet", "HuggingFaceTB/SmolLM2-135M", "my_models:HALFNORMAL"):
        assert catalog.resolve(spec) == spec


@pytest.mark.parametrize("spec", ["windtunnel:nope", "windtunnel:../mixture", "windtunnel:", "corpus:nope"])
def test_unknown_names_list_the_known_ones(spec):
    with pytest.raises(InputError, match="shipped: .*(dirichlet|corpus:prompts)") as caught:
        catalog.resolve(spec, field="model")
    assert caught.value.field == "model"


@pytest.mark.llm  # bayesmatrix.data.llm, which loads torch
def test_readers_take_names(elsewhere):
    from bayesmatrix.data.corpus import read_corpus
    from bayesmatrix.data.llm import read_prompts
    from bayesmatrix.data.llmlog import read_log

    prompts = read_prompts("corpus:prompts")
    assert len(prompts) == len(read_corpus("corpus:prompts")) > 2000
    ds = read_log(catalog.resolve("corpus:smollm2"))
    assert "embedding" in ds and ds.sizes["row"] == len(prompts)


@pytest.mark.llm  # bayesmatrix.data.llm, which loads torch
def test_load_model_by_name_keeps_the_name(elsewhere):
    from bayesmatrix.data.llm import load_model
    from bayesmatrix.data.windtunnel import load

    loaded = load_model("windtunnel:dirichlet")
    assert loaded.name == "windtunnel:dirichlet" and loaded.file_hash is not None
    assert load("windtunnel:mixture").world.name == "mixture"
