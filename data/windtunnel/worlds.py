"""Wind-tunnel worlds: sequence corpora whose exact posterior predictive is known in closed form.

A world is a Dirichlet mixture prior over the category distribution of a
sequence (README.md, "Wind tunnel"). Each sequence tells this story::

    z  ~ Categorical(w)             which mixture component (one component: a plain Dirichlet)
    pi ~ Dirichlet(alpha_z)         the sequence's own category distribution
    y_1, ..., y_K ~ Categorical(pi) its tokens, independent given pi

and is rendered as ``<bos> y_1 y_2 ... y_K`` in a word-level vocabulary.
Because the prior is conjugate, the Bayes-optimal next-token distribution
after ``k`` tokens with category counts ``n`` is exact:

- one component: ``(alpha + n) / (sum(alpha) + k)``;
- a mixture: ``sum_j w'_j (alpha_j + n) / (sum(alpha_j) + k)`` with
  ``w'_j ∝ w_j DirMult(n | alpha_j)`` (z is marginalised out in closed form;
  the multinomial coefficient is the same for every component and cancels).

Positions are 1-based and name the token being predicted: the predictive at
position ``k`` is the distribution of ``y_k`` given ``y_1 .. y_(k-1)``.

The closed form is :func:`bayesmatrix.data.closed_forms.mixture_predictive`, the
NumPy twin of the models' own (a test checks that they agree). This module does
not import torch, so analysis code can score predictives without it.

References: Agarwal, Dalal & Misra (2025), "The Bayesian geometry of transformer
attention" (wind tunnels); Dalal & Hall (1983), J. R. Stat. Soc. B 45, 278-286
(mixtures of conjugate priors).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple

import numpy as np
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.closed_forms import categorical, mixture_predictive

BOS = "<bos>"
PAD = "<pad>"
UNK = "<unk>"
SPECIAL_TOKENS = (PAD, BOS, UNK)
# How a sequence is written as text: the header, then " {}" per token. The
# word-level tokenizer turns this text back into exactly one token per symbol.
PROMPT_HEADER = BOS
PROMPT_OBSERVATION = " {}"

# Stream tags for numpy's SeedSequence: training batches and held-out
# evaluation sequences come from different streams whatever seeds are chosen.
TRAIN_STREAM = 0
HELD_OUT_STREAM = 1
# The seed of the held-out sequences used by `evaluate` and the learning curves.
HELD_OUT_SEED = 20250101


@dataclasses.dataclass(frozen=True)
class World:
    """A Dirichlet-mixture world.

    Attributes:
        name: registry name.
        categories: token strings of the categories, in column order.
        weights: mixture weights ``w`` (components,), summing to 1.
        alphas: Dirichlet concentrations ``alpha_j`` (components, categories).
    """

    name: str
    categories: tuple[str, ...]
    weights: tuple[float, ...]
    alphas: tuple[tuple[float, ...], ...]

    def __post_init__(self):
        alphas = np.asarray(self.alphas, dtype=float)
        if alphas.ndim != 2 or alphas.shape != (len(self.weights), len(self.categories)):
            raise InputError(
                f"alphas have shape {alphas.shape}, expected (components, categories) = "
                f"({len(self.weights)}, {len(self.categories)})",
                field="alphas",
            )
        if not (np.all(np.isfinite(alphas)) and np.all(alphas > 0)):
            raise InputError("every concentration must be positive and finite", field="alphas")
        if abs(sum(self.weights) - 1.0) > 1e-9 or min(self.weights) <= 0:
            raise InputError("mixture weights must be positive and sum to 1", field="weights")
        if len(set(self.categories)) != len(self.categories) or set(self.categories) & set(SPECIAL_TOKENS):
            raise InputError("category tokens must be distinct and not special tokens", field="categories")

    @property
    def num_categories(self) -> int:
        return len(self.categories)

    def sample(self, rng: np.random.Generator, num_sequences: int, length: int) -> "Sequences":
        """Draw sequences from the world's generative story (module docstring)."""
        component = rng.choice(len(self.weights), size=num_sequences, p=np.asarray(self.weights))
        # Every row is overwritten below; this draw stays because the shipped
        # models were trained on exactly this random stream.
        pi = rng.dirichlet(np.ones(self.num_categories), size=num_sequences)
        for j, alpha in enumerate(self.alphas):
            chosen = component == j
            pi[chosen] = rng.dirichlet(np.asarray(alpha), size=int(chosen.sum()))
        tokens = categorical(rng, pi, length)  # (num_sequences, length), every token at once
        return Sequences(tokens=tokens, pi=pi, component=component)

    def predictive(self, tokens: np.ndarray) -> np.ndarray:
        """Exact posterior predictive at positions 1..L of each sequence: (sequences, L, categories)."""
        return mixture_predictive(self.weights, self.alphas, context_counts(tokens, self.num_categories))

    def windowed_predictive(self, tokens: np.ndarray, visible: int) -> np.ndarray:
        """The posterior predictive from the last ``visible`` tokens only (all of them where fewer).

        By exchangeability this is the exact predictive of an observer that
        sees only those tokens. ``E KL(predictive || windowed_predictive)`` is
        therefore the least KL any model with that receptive field can reach.
        """
        counts = context_counts(tokens, self.num_categories)
        if visible < tokens.shape[1]:
            dropped = np.zeros_like(counts)
            dropped[:, visible:] = counts[:, :-visible] if visible > 0 else counts
            counts = counts - dropped
        return mixture_predictive(self.weights, self.alphas, counts)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "categories": list(self.categories),
            "weights": list(self.weights),
            "alphas": [list(alpha) for alpha in self.alphas],
        }

    @classmethod
    def from_json(cls, spec: Mapping[str, Any]) -> "World":
        return cls(
            name=str(spec["name"]),
            categories=tuple(str(c) for c in spec["categories"]),
            weights=tuple(float(w) for w in spec["weights"]),
            alphas=tuple(tuple(float(a) for a in alpha) for alpha in spec["alphas"]),
        )


class Sequences(NamedTuple):
    """Sequences drawn from a world."""

    tokens: np.ndarray
    """(sequences, length) int: the category index of each token."""
    pi: np.ndarray
    """(sequences, categories): the category distribution each sequence drew."""
    component: np.ndarray
    """(sequences,) int: the mixture component each sequence drew ``pi`` from."""


WORLDS: dict[str, World] = {
    # A skewed Dirichlet: a prior worth 3.5 tokens, mean (4/7, 2/7, 1/7).
    "dirichlet": World("dirichlet", ("A", "B", "C"), (1.0,), ((2.0, 1.0, 0.5),)),
    # Two modes the context has to tell apart: "mostly A" (prior worth 7
    # tokens) and a more diffuse "mostly C" (worth 4 tokens).
    "mixture": World("mixture", ("A", "B", "C"), (0.6, 0.4), ((4.0, 2.0, 1.0), (0.5, 0.5, 3.0))),
}


def get_world(name: str) -> World:
    if name not in WORLDS:
        raise InputError(f"unknown world {name!r}; known worlds: {', '.join(WORLDS)}", field="world")
    return WORLDS[name]


def context_counts(tokens: np.ndarray, num_categories: int) -> np.ndarray:
    """Category counts before each position: (sequences, L, categories); row k counts y_1..y_(k-1)."""
    tokens = np.asarray(tokens)
    onehot = np.eye(num_categories, dtype=np.int64)[tokens]  # (sequences, L, categories)
    counts = np.cumsum(onehot, axis=1) - onehot
    return counts


def held_out_rng(seed: int = HELD_OUT_SEED) -> np.random.Generator:
    """The generator of held-out sequences: a stream no training batch is drawn from."""
    return np.random.default_rng([seed, HELD_OUT_STREAM])


def train_rng(seed: int, step: int) -> np.random.Generator:
    """The generator of training batch ``step``: a function of (seed, step), so a resumed run sees the same data."""
    return np.random.default_rng([seed, TRAIN_STREAM, step])


def render(tokens, categories) -> str:
    """The text of one sequence (or a prefix of it): ``"<bos> A C B"``."""
    return PROMPT_HEADER + "".join(PROMPT_OBSERVATION.format(categories[t]) for t in tokens)


class Episodes(NamedTuple):
    """A world's sequences as prompts, for logging a trained model's in-context predictives."""

    categories: tuple[str, ...]
    """Token strings of the categories, in column order."""
    tokens: np.ndarray
    """(episode, length) int: category index of each token."""
    prompts: list[list[str]]
    """``prompts[e][k - 1]``: the text before token ``k`` of episode ``e`` (``"<bos>"``, ``"<bos> A"``, ...)."""
    texts: list[str]
    """The whole of each episode as one text; one forward pass gives every position's predictive."""
    context_counts: np.ndarray
    """(episode, length, categories) int: counts of each category before each position."""
    predictive: np.ndarray
    """(episode, length, categories): the exact posterior predictive at each position."""
    pi: np.ndarray
    """(episode, categories): each episode's category distribution."""
    template: dict[str, str]
    """``{"header": "<bos>", "observation": " {}"}``: the rendering, in the form of :mod:`bayesmatrix.data.tasks`."""


def episodes(world: World | str, num_episodes: int, length: int, seed: int = HELD_OUT_SEED) -> Episodes:
    """Draw held-out episodes of a world and render them as prompts (held-out stream, see :func:`held_out_rng`)."""
    if isinstance(world, str):
        world = get_world(world)
    if num_episodes < 1 or length < 1:
        raise InputError("need at least one episode of at least one token", field="episodes")
    drawn = world.sample(held_out_rng(seed), num_episodes, length)
    prompts = [[render(row[:k], world.categories) for k in range(length)] for row in drawn.tokens]
    texts = [render(row, world.categories) for row in drawn.tokens]
    return Episodes(
        categories=world.categories,
        tokens=drawn.tokens,
        prompts=prompts,
        texts=texts,
        context_counts=context_counts(drawn.tokens, world.num_categories),
        predictive=world.predictive(drawn.tokens),
        pi=drawn.pi,
        template={"header": PROMPT_HEADER, "observation": PROMPT_OBSERVATION},
    )
