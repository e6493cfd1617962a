"""In-context learning tasks: categories rendered into a prompt, one observation at a time.

An ICL episode (README.md, "Logging") draws a row distribution ``pi ~ Dirichlet(alpha)``,
samples ``K`` observations from it and writes them into one prompt::

    Coin flips: H, T, H,

The text before the first observation is the task's ``header``; each
observation is its ``observation`` format with the category's symbol in place
of ``{}`` (here ``" {},"``). The LLM's predictive for observation ``k`` is read
at the token just before the token that spells observation ``k``, so one
rendering gives the predictives after 0, 1, ..., K observations.

A task is a TOML file (README.md, "Logging"; :meth:`Task.from_file`). The
registry ``TASKS`` holds the shipped ones, the files of ``data/shipped/tasks/``:
``coin`` (H/T), ``die`` (1-6), ``labels`` (words the user names),
``coin-words`` (heads/tails in natural language, with a stated bias) and
``weather`` (categories of several tokens each); ``windtunnel-WORLD`` names the task
of a wind-tunnel world (:mod:`bayesmatrix.data.windtunnel.worlds`, see
:func:`windtunnel_task`), whose prior may be a Dirichlet mixture: an episode then draws a component ``z ~
Categorical(w)`` and ``pi ~ Dirichlet(alpha_z)``. A log's ``task``
attribute is :meth:`Task.to_json` plus the episode settings, and
:func:`task_from_json` rebuilds the task from it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import string
import tomllib
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import OTHER
from bayesmatrix.data.windtunnel.worlds import PROMPT_HEADER, PROMPT_OBSERVATION, WORLDS, World, get_world

# Episodes draw from numpy streams keyed (WORLD_STREAM, episode) under the user's seed.
WORLD_STREAM = 0
# ``windtunnel-dirichlet`` is the task of the wind-tunnel world ``dirichlet``.
WINDTUNNEL_PREFIX = "windtunnel-"
SHIPPED_TASKS = Path(__file__).resolve().parent / "shipped" / "tasks"
"""The folder of the shipped task files, one ``NAME.toml`` per registry name."""
_KEYS = {"name", "description", "categories", "header", "observation", "alpha", "mixture", "instruction", "values",
         "framing", "chat", "stated"}


class ObservationSpan(NamedTuple):
    """Where one observation sits in a rendered prompt (character offsets)."""

    piece_start: int
    """Start of the observation's whole piece (for ``" {},"``, the space)."""
    symbol_start: int
    """Start of the category's symbol."""
    symbol_end: int
    """End (exclusive) of the category's symbol."""


@dataclasses.dataclass(frozen=True)
class Task:
    """An ICL task: a header, an observation format and the categories it can show.

    Attributes:
        name: registry name, e.g. ``"coin"``.
        categories: the symbols as written in the prompt, e.g. ``("H", "T")``;
            each may be any number of tokens.
        header: text before the first observation, e.g. ``"Coin flips:"``.
        observation: one observation, ``{}`` standing for the symbol, e.g. ``" {},"``.
        alpha: the prior's Dirichlet concentration, one per category;
            ``None`` means all ones.
        mixture: a Dirichlet-mixture prior instead, as ``(weight, alpha)``
            pairs (weights summing to 1); ``alpha`` is then ``None``.
        instruction: text placed before the header; ``{name}`` placeholders
            take their value from ``values``.
        values: ``(placeholder, value)`` pairs filling the instruction.
        framing: ``(placeholder, levels)`` pairs: the instruction is posed at
            every combination of the levels (:meth:`framings`), overriding
            ``values``; each episode records its level (README.md, "Logging").
        stated: ``(placeholder, category)`` pairs: the placeholder's value is a
            stated probability of that category, in percent (``{bias}`` = 30
            states P(heads) = 0.30), which the framing analysis compares the
            LLM with (README.md, "A Gupta-style experiment").
        chat: render through the tokenizer's chat template: the instruction
            and header as the user turn, the observations as the start of the
            assistant turn (:mod:`bayesmatrix.data.llm.rendering`).
        description: what the task is, for people (not part of the log).
        source: the task file it was read from, named in errors (not part of the log).
    """

    name: str
    categories: tuple[str, ...]
    header: str
    observation: str = " {},"
    alpha: tuple[float, ...] | None = None
    mixture: tuple[tuple[float, tuple[float, ...]], ...] | None = None
    instruction: str = ""
    values: tuple[tuple[str, str], ...] = ()
    framing: tuple[tuple[str, tuple[str, ...]], ...] = ()
    stated: tuple[tuple[str, str], ...] = ()
    chat: bool = False
    description: str = dataclasses.field(default="", compare=False)
    source: str | None = dataclasses.field(default=None, compare=False)

    @classmethod
    def from_file(
        cls, path: os.PathLike | str, labels: Sequence[str] | None = None, alpha: Sequence[float] | None = None
    ) -> Task:
        """A task from a TOML file (README.md, "Logging", has the keys and an example).

        ``labels`` are the categories of a file that has none (like the
        shipped ``labels``); ``alpha`` replaces the file's prior. A bad file is
        an :class:`InputError` naming the file and the key.
        """
        file = str(path)
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise InputError("no such task file", file=file, field="task") from None
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"cannot be read ({type(error).__name__})", file=file, field="task") from None
        except tomllib.TOMLDecodeError as error:
            raise InputError(f"is not valid TOML ({error})", file=file, field="task") from None
        return _task_from_table(data, file, labels, alpha)

    @property
    def prior(self) -> tuple[float, ...]:
        """The Dirichlet concentration episodes draw ``pi`` from (all ones unless set); not for a mixture."""
        if self.mixture is not None:
            raise ValueError(f"task {self.name!r} has a Dirichlet-mixture prior; see Task.mixture")
        return self.alpha if self.alpha is not None else (1.0,) * len(self.categories)

    def framings(self) -> list[Task]:
        """The task at each framing level (the combinations of ``framing``'s levels, the first placeholder
        slowest), each with its values filled in and no framing of its own; ``[self]`` without framing."""
        if not self.framing:
            return [self]
        levels = [dict(self.values)]
        for placeholder, choices in self.framing:
            levels = [{**level, placeholder: choice} for level in levels for choice in choices]
        return [dataclasses.replace(self, values=tuple(sorted(level.items())), framing=()) for level in levels]

    def with_framing(self, framing: Mapping[str, Sequence[str]], file: str | None = None) -> Task:
        """This task with ``framing`` (placeholder -> levels) replacing its own; each placeholder must be the
        instruction's, each level list non-empty and without repeats."""
        placeholders = _placeholders(self.instruction, file)
        checked = []
        for placeholder, levels in framing.items():
            levels = tuple(str(level) for level in levels)
            if placeholder not in placeholders:
                known = ", ".join(f"{{{p}}}" for p in placeholders) or "none"
                raise InputError(f"{placeholder!r} is not a placeholder of task {self.name!r}'s instruction "
                                 f"(its placeholders: {known})", file=file, field="framing")
            if not levels or any(not level.strip() for level in levels):
                raise InputError(f"{placeholder!r} needs one or more non-empty levels", file=file, field="framing")
            if len(set(levels)) != len(levels):
                raise InputError(f"{placeholder!r} repeats a level", file=file, field="framing")
            checked.append((placeholder, levels))
        return dataclasses.replace(self, framing=tuple(checked))

    @property
    def lead(self) -> str:
        """The text before the first observation: the instruction, its placeholders filled, then the header."""
        if self.framing:
            raise ValueError(f"task {self.name!r} is framed several ways; render each of Task.framings()")
        return self.instruction.format(**dict(self.values)) + self.header

    def render(self, observations: Sequence[int], lead: str | None = None) -> tuple[str, list[ObservationSpan]]:
        """The prompt for a sequence of category indices, and where each observation sits in it.

        ``lead`` replaces :attr:`lead` as the text before the observations (a
        chat template's rendering of it).
        """
        before, after = self.observation.split("{}")
        text = self.lead if lead is None else lead
        spans = []
        for category in observations:
            symbol = self.categories[category]
            piece_start = len(text)
            symbol_start = piece_start + len(before)
            text += before + symbol + after
            spans.append(ObservationSpan(piece_start, symbol_start, symbol_start + len(symbol)))
        return text, spans

    def to_json(self) -> dict[str, Any]:
        """The task as plain JSON values (``episodes``, ``length`` are added by the logger).

        ``instruction``, ``values``, ``framing`` and ``chat`` appear only when set, so a
        task without them has the same attribute as before they existed.
        """
        prior: dict[str, Any]
        if self.mixture is None:
            prior = {"alpha": list(self.prior)}
        else:
            prior = {"mixture": [{"weight": weight, "alpha": list(alpha)} for weight, alpha in self.mixture]}
        extras: dict[str, Any] = {}
        if self.instruction:
            extras["instruction"] = self.instruction
        if self.values:
            extras["values"] = dict(self.values)
        if self.framing:
            extras["framing"] = {placeholder: list(levels) for placeholder, levels in self.framing}
        if self.chat:
            extras["chat"] = True
        if self.stated:
            extras["stated"] = dict(self.stated)
        return {
            "name": self.name,
            "categories": list(self.categories),
            **prior,
            "template": {"header": self.header, "observation": self.observation, **extras},
        }


def _task_from_table(
    data: Mapping[str, Any], file: str, labels: Sequence[str] | None, alpha: Sequence[float] | None
) -> Task:
    """Check a parsed task file key by key; every problem names the file and the key."""

    def bad(key: str, message: str) -> InputError:
        return InputError(message, file=file, field=key)

    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise bad(unknown[0], f"is not a task key (the keys: {', '.join(sorted(_KEYS))})")

    def text(key: str, required: bool, default: str = "") -> str:
        if key not in data:
            if required:
                raise bad(key, "is missing")
            return default
        if not isinstance(data[key], str):
            raise bad(key, f"must be a string, not {type(data[key]).__name__}")
        return data[key]

    name = text("name", True)
    if not name.strip():
        raise bad("name", "is empty")
    header = text("header", True)
    observation = text("observation", True)
    if observation.count("{}") != 1 or observation.replace("{}", "", 1).count("{") or "}" in observation.replace(
        "{}", "", 1
    ):
        raise bad("observation", f"{observation!r} must hold exactly one {{}} (where the category goes) "
                                 "and no other braces")
    instruction = text("instruction", False)
    description = text("description", False)

    if "categories" in data:
        if labels:
            raise bad("categories", "the file names its categories; labels apply only to a file without them")
        categories = data["categories"]
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise bad("categories", "must be a list of strings")
    elif labels:
        categories = list(labels)
    else:
        raise bad("categories", "is missing (or give the labels of a file without categories)")
    checked_categories(categories, file, "categories")

    chat = data.get("chat", False)
    if not isinstance(chat, bool):
        raise bad("chat", "must be true or false")

    values = data.get("values", {})
    if not isinstance(values, dict):
        raise bad("values", "must be a table of placeholder = value")
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise bad("values", f"{key!r} must be a string or a number")
    framing = data.get("framing", {})
    if not isinstance(framing, dict) or not all(isinstance(levels, list) for levels in framing.values()):
        raise bad("framing", "must be a table of placeholder = [levels]")
    for key, levels in framing.items():
        if any(isinstance(level, bool) or not isinstance(level, (str, int, float)) for level in levels):
            raise bad("framing", f"the levels of {key!r} must be strings or numbers")
    placeholders = _placeholders(instruction, file)
    missing = [p for p in placeholders if p not in values and p not in framing]
    if missing:
        raise bad("instruction", f"placeholder {{{missing[0]}}} has no value (give it under [values] or [framing])")
    unused = sorted(set(values) - set(placeholders))
    if unused:
        raise bad("values", f"{unused[0]!r} is not a placeholder of the instruction")
    value_pairs = tuple(sorted((key, str(value)) for key, value in values.items()))
    stated = data.get("stated", {})
    if not isinstance(stated, dict):
        raise bad("stated", "must be a table of placeholder = category (the placeholder states its probability)")
    for key, category in stated.items():
        if key not in placeholders:
            raise bad("stated", f"{key!r} is not a placeholder of the instruction")
        if category not in categories:
            raise bad("stated", f"{key!r} names {category!r}, which is not one of the categories")

    if "alpha" in data and "mixture" in data:
        raise bad("mixture", "give alpha or mixture, not both")
    prior: dict[str, Any] = {}
    if "alpha" in data:
        prior["alpha"] = _concentration(data["alpha"], len(categories), file, "alpha")
    if "mixture" in data:
        components = data["mixture"]
        if not isinstance(components, list) or not components or not all(isinstance(c, dict) for c in components):
            raise bad("mixture", "must be a list of tables with weight and alpha ([[mixture]] entries)")
        mixture = []
        for component in components:
            weight = component.get("weight")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
                raise bad("mixture", "every component needs a positive weight")
            if set(component) != {"weight", "alpha"}:
                raise bad("mixture", "every component has exactly the keys weight and alpha")
            mixture.append((float(weight), _concentration(component["alpha"], len(categories), file, "mixture")))
        if abs(sum(weight for weight, _ in mixture) - 1.0) > 1e-9:
            raise bad("mixture", "the weights must sum to 1")
        prior["mixture"] = tuple(mixture)
    if alpha is not None:
        prior = {"alpha": _concentration(list(alpha), len(categories), None, "alpha")}
    task = Task(name=name, categories=tuple(categories), header=header, observation=observation,
                instruction=instruction, values=value_pairs, stated=tuple(sorted(stated.items())), chat=chat,
                description=description, source=file, **prior)
    return task.with_framing(framing, file) if framing else task


def _placeholders(instruction: str, file: str) -> list[str]:
    """The ``{name}`` placeholders of an instruction, in order; ``{{`` and ``}}`` are literal braces."""
    try:
        fields = [name for _, name, spec, conversion in string.Formatter().parse(instruction) if name is not None]
    except ValueError as error:
        raise InputError(f"{error} (write {{{{ and }}}} for literal braces)", file=file, field="instruction") from None
    for name in fields:
        if not name.isidentifier():
            raise InputError(f"placeholder {{{name}}} is not a name like {{bias}}", file=file, field="instruction")
    return list(dict.fromkeys(fields))


def checked_categories(categories: Sequence[str], file: str | None, field: str) -> None:
    """Two or more distinct, non-empty categories, none of them the log's ``<other>``."""
    if len(categories) < 2:
        raise InputError(f"needs two or more categories, not {len(categories)}", file=file, field=field)
    seen: dict[str, int] = {}
    for index, category in enumerate(categories):
        if not category.strip():
            raise InputError(f"category {index + 1} is empty", file=file, field=field)
        if category == OTHER:
            raise InputError(f"category {OTHER!r} is reserved for the remaining mass", file=file, field=field)
        if category in seen:
            raise InputError(f"category {index + 1} ({category!r}) repeats category {seen[category] + 1}",
                             file=file, field=field)
        seen[category] = index


def _concentration(values: Any, n_categories: int, file: str | None, field: str) -> tuple[float, ...]:
    """One positive, finite concentration per category."""
    if not isinstance(values, (list, tuple)) or any(isinstance(a, bool) or not isinstance(a, (int, float))
                                                    for a in values):
        raise InputError("must be a list of numbers", file=file, field=field)
    if len(values) != n_categories:
        raise InputError(f"has {len(values)} values but the task has {n_categories} categories", file=file,
                         field=field)
    if not all(math.isfinite(a) and a > 0 for a in values):
        raise InputError("every value must be positive and finite", file=file, field=field)
    return tuple(float(a) for a in values)


def _shipped_tasks() -> dict[str, Task]:
    tasks = {}
    for path in sorted(SHIPPED_TASKS.glob("*.toml")):
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
        if "categories" not in data:  # ``labels``: the user names the categories
            task = dataclasses.replace(_task_from_table(data, str(path), ("a", "b"), None), categories=())
        else:
            task = _task_from_table(data, str(path), None, None)
        tasks[task.name] = dataclasses.replace(task, source=None)
    return tasks


TASKS: dict[str, Task] = _shipped_tasks()


def get_task(name: str, labels: Sequence[str] | None = None, alpha: Sequence[float] | None = None) -> Task:
    """A task from the registry or a task file, with the user's labels and prior concentration applied.

    ``name`` is a registry name (:func:`known_tasks`) or the path of a TOML
    task file (ending in ``.toml``; :meth:`Task.from_file`). ``labels`` is
    required by (and only allowed for) a task without categories, like
    ``labels``; ``alpha`` must have one positive value per category, and is
    refused for a wind-tunnel task, whose world fixes its prior.
    """
    if name.endswith(".toml"):
        return Task.from_file(name, labels, alpha)
    if name.startswith(WINDTUNNEL_PREFIX):
        if name.removeprefix(WINDTUNNEL_PREFIX) not in WORLDS:
            raise InputError(f"unknown task {name!r}; known tasks: {', '.join(known_tasks())}", field="task")
        if labels or alpha is not None:
            raise InputError(f"task {name!r} takes neither labels nor alpha: its world fixes them", field="task")
        return windtunnel_task(name.removeprefix(WINDTUNNEL_PREFIX))
    if name not in TASKS:
        raise InputError(f"unknown task {name!r} (nor a .toml task file); known tasks: {', '.join(known_tasks())}",
                         field="task")
    task = TASKS[name]
    if not task.categories:
        if not labels:
            raise InputError(f"task {name!r} needs its labels (two or more category names)", field="labels")
        checked_categories(labels, None, "labels")
        task = dataclasses.replace(task, categories=tuple(labels))
    elif labels:
        raise InputError(f"labels only apply to a task without categories, like 'labels', not {name!r}",
                         field="labels")
    if alpha is not None:
        task = dataclasses.replace(task, alpha=_concentration(list(alpha), len(task.categories), None, "alpha"),
                                   mixture=None)
    return task


def known_tasks() -> list[str]:
    """Every task name ``get_task`` accepts: the registry's and one per wind-tunnel world."""
    return sorted(TASKS) + [WINDTUNNEL_PREFIX + world for world in WORLDS]


def draw_episode(task: Task, length: int, seed: int, episode: int) -> np.ndarray:
    """The observations (length,) of one episode: ``pi ~ Dirichlet(alpha)``, then ``length`` draws from ``pi``.

    Under a mixture prior the component is drawn first. Depends only on (seed,
    episode), so any episode can be recomputed alone (and a resumed run
    repeats it exactly).
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(WORLD_STREAM, episode)))
    if task.mixture is None:
        alpha = task.prior
    else:
        weights = np.asarray([weight for weight, _ in task.mixture])
        alpha = task.mixture[rng.choice(len(weights), p=weights / weights.sum())][1]
    pi = rng.dirichlet(alpha)
    return rng.choice(len(task.categories), size=length, p=pi)


def task_from_json(task_json: Mapping[str, Any]) -> Task:
    """Rebuild a task from a log's ``task`` attribute (see :func:`bayesmatrix.data.llmlog.task_of`)."""
    template = task_json["template"]
    return Task(
        name=task_json["name"],
        categories=tuple(task_json["categories"]),
        header=template["header"],
        observation=template["observation"],
        alpha=tuple(float(a) for a in task_json["alpha"]) if "alpha" in task_json else None,
        mixture=tuple(
            (float(c["weight"]), tuple(float(a) for a in c["alpha"])) for c in task_json["mixture"]
        ) if "mixture" in task_json else None,
        instruction=template.get("instruction", ""),
        values=tuple(sorted((str(k), str(v)) for k, v in template.get("values", {}).items())),
        framing=tuple((str(k), tuple(str(v) for v in levels)) for k, levels in template.get("framing", {}).items()),
        stated=tuple(sorted((str(k), str(v)) for k, v in template.get("stated", {}).items())),
        chat=bool(template.get("chat", False)),
    )


def windtunnel_task(world: World | str) -> Task:
    """A wind-tunnel world as the task ``windtunnel-WORLD``, so ``bayesmatrix log`` can log a trained model.

    Its episodes draw ``pi`` from the world's prior (a Dirichlet, or a
    Dirichlet mixture through ``Task.mixture``) under the logger's own seed,
    and are rendered exactly as the model was trained: ``<bos> A C B ...``.
    """
    if isinstance(world, str):
        world = get_world(world)
    prior: dict[str, Any]
    if len(world.weights) == 1:
        prior = {"alpha": world.alphas[0]}
    else:
        prior = {"mixture": tuple(zip(world.weights, world.alphas))}
    return Task(
        name=WINDTUNNEL_PREFIX + world.name,
        categories=world.categories,
        header=PROMPT_HEADER,
        observation=PROMPT_OBSERVATION,
        **prior,
    )
