"""In-context learning tasks: categories rendered into a prompt, one observation at a time.

An ICL episode (README.md, "Logging") draws a row distribution ``pi ~ Dirichlet(alpha)``,
samples ``K`` observations from it and writes them into one prompt::

    Coin flips: H, T, H,

The text before the first observation is the task's ``header``; each
observation is its ``observation`` format with the category's symbol in place
of ``{}`` (here ``" {},"``). The LLM's predictive for observation ``k`` is read
at the token just before the token that spells observation ``k``, so one
rendering gives the predictives after 0, 1, ..., K observations.

The registry ``TASKS`` holds the shipped tasks: ``coin`` (H/T), ``die`` (1-6)
and ``labels`` (words the user names); ``windtunnel-WORLD`` names the task
of a wind-tunnel world (:mod:`bayesmatrix.data.windtunnel.worlds`, see
:func:`windtunnel_task`), whose prior may be a Dirichlet mixture: an episode then draws a component ``z ~
Categorical(w)`` and ``pi ~ Dirichlet(alpha_z)``. A log's ``task``
attribute is :meth:`Task.to_json` plus the episode settings, and
:func:`task_from_json` rebuilds the task from it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from bayesmatrix.data.errors import InputError
from bayesmatrix.data.windtunnel.worlds import PROMPT_HEADER, PROMPT_OBSERVATION, WORLDS, World, get_world

# Episodes draw from numpy streams keyed (WORLD_STREAM, episode) under the user's seed.
WORLD_STREAM = 0
# ``windtunnel-dirichlet`` is the task of the wind-tunnel world ``dirichlet``.
WINDTUNNEL_PREFIX = "windtunnel-"


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
        categories: the symbols as written in the prompt, e.g. ``("H", "T")``.
        header: text before the first observation, e.g. ``"Coin flips:"``.
        observation: one observation, ``{}`` standing for the symbol, e.g. ``" {},"``.
        alpha: the prior's Dirichlet concentration, one per category;
            ``None`` means all ones.
        mixture: a Dirichlet-mixture prior instead, as ``(weight, alpha)``
            pairs (weights summing to 1); ``alpha`` is then ``None``.
    """

    name: str
    categories: tuple[str, ...]
    header: str
    observation: str = " {},"
    alpha: tuple[float, ...] | None = None
    mixture: tuple[tuple[float, tuple[float, ...]], ...] | None = None

    @property
    def prior(self) -> tuple[float, ...]:
        """The Dirichlet concentration episodes draw ``pi`` from (all ones unless set); not for a mixture."""
        if self.mixture is not None:
            raise ValueError(f"task {self.name!r} has a Dirichlet-mixture prior; see Task.mixture")
        return self.alpha if self.alpha is not None else (1.0,) * len(self.categories)

    def render(self, observations: Sequence[int]) -> tuple[str, list[ObservationSpan]]:
        """The prompt for a sequence of category indices, and where each observation sits in it."""
        before, after = self.observation.split("{}")
        text = self.header
        spans = []
        for category in observations:
            symbol = self.categories[category]
            piece_start = len(text)
            symbol_start = piece_start + len(before)
            text += before + symbol + after
            spans.append(ObservationSpan(piece_start, symbol_start, symbol_start + len(symbol)))
        return text, spans

    def to_json(self) -> dict[str, Any]:
        """The task as plain JSON values (``episodes``, ``length`` are added by the logger)."""
        prior: dict[str, Any]
        if self.mixture is None:
            prior = {"alpha": list(self.prior)}
        else:
            prior = {"mixture": [{"weight": weight, "alpha": list(alpha)} for weight, alpha in self.mixture]}
        return {
            "name": self.name,
            "categories": list(self.categories),
            **prior,
            "template": {"header": self.header, "observation": self.observation},
        }


TASKS: dict[str, Task] = {
    "coin": Task("coin", ("H", "T"), "Coin flips:"),
    "die": Task("die", tuple(str(face) for face in range(1, 7)), "Die rolls:"),
    # The categories are the user's labels; the registry entry holds the rendering.
    "labels": Task("labels", (), "Labels:"),
}


def get_task(name: str, labels: Sequence[str] | None = None, alpha: Sequence[float] | None = None) -> Task:
    """A task from the registry, with the user's labels and prior concentration applied.

    ``labels`` is required by (and only allowed for) the ``labels`` task;
    ``alpha`` must have one positive value per category, and is refused for a
    wind-tunnel task, whose world fixes its prior.
    """
    if name.startswith(WINDTUNNEL_PREFIX):
        if name.removeprefix(WINDTUNNEL_PREFIX) not in WORLDS:
            raise InputError(f"unknown task {name!r}; known tasks: {', '.join(known_tasks())}", field="task")
        if labels or alpha is not None:
            raise InputError(f"task {name!r} takes neither labels nor alpha: its world fixes them", field="task")
        return windtunnel_task(name.removeprefix(WINDTUNNEL_PREFIX))
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; known tasks: {', '.join(known_tasks())}", field="task")
    task = TASKS[name]
    if name == "labels":
        if not labels:
            raise InputError("task 'labels' needs its labels (two or more category names)", field="labels")
        task = dataclasses.replace(task, categories=tuple(labels))
    elif labels:
        raise InputError(f"labels only apply to the task 'labels', not {name!r}", field="labels")
    if alpha is not None:
        alpha = tuple(float(a) for a in alpha)
        if len(alpha) != len(task.categories):
            raise InputError(
                f"has {len(alpha)} values but task {name!r} has {len(task.categories)} categories", field="alpha"
            )
        if not all(math.isfinite(a) and a > 0 for a in alpha):
            raise InputError("every value must be positive and finite", field="alpha")
        task = dataclasses.replace(task, alpha=alpha)
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
