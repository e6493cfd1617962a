"""In-context learning models: how the LLM's predictive follows its in-context examples.

README, "Models". Each row of an ICL log is one prediction ``probs_r`` made after
the in-context examples counted in ``context_counts[r]`` (``n_r``, ``k_r =
sum(n_r)``). Every model names an updater ``q_r`` (the predictive it claims
the LLM computes) and observes the LLM's row around it,

    probs_r ~ Dirichlet(tau * q_r),

with ``probs_r`` clipped at ``epsilon`` and renormalised
(:func:`models.closed_forms.clip_simplex`): the Dirichlet is the robust
observation model only for rows whose every entry is at least ``epsilon``, and
``tau`` says how tightly the LLM follows the updater. Where only tokens
sampled from each row are seen (``observe=("counts",)``), the row is
integrated out: ``counts_r ~ DirichletMultinomial(tau * q_r, N_r)``. The
models differ only in the updater:

- ``icl``            exact Bayes: q = (alpha + n) / (S + k)
- ``icl_framed``     exact Bayes with one prior per framing level f_r of the row
- ``icl_general``    recency decay and temperature around exact Bayes
- ``icl_mixture``    exact Bayes under a Dirichlet-mixture prior
- ``icl_none``       no update: q = m
- ``icl_frequency``  smoothed relative frequency: q = (n + eps) / (k + C eps)

A per-example evidence weight ``lam``, ``(alpha + lam n) / (S + lam k)``, is
not a parameter of any of them: it equals exact Bayes with prior
``alpha / lam``, so the fitted prior absorbs it.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import gammaln
import numpyro
import numpyro.distributions as dist

from bayesmatrix.models.closed_forms import (
    decayed_counts,
    dirichlet_predictive,
    frequency_predictive,
    mixture_predictive,
    tempered,
)
from bayesmatrix.models.matrix import check_observe, observe_rows
from bayesmatrix.models.mixture import labelled_components
from bayesmatrix.models.priors import (
    decay_prior,
    pseudocount_prior,
    strength_prior,
    tau_prior,
    temperature_prior,
)


def icl(*, context_counts, probs=None, counts=None, total_count=None, observe=("probs",), epsilon: float = 1e-6):
    """Exact Bayesian updating from a Dirichlet prior.

    m       ~ Dirichlet(1_C)              prior mean
    s       ~ LogNormal(log 2, 1.5)       strength S = sum(alpha), in examples
    alpha   = s m                         (deterministic site)
    tau     ~ LogNormal(log 10, 3)        precision of the LLM around the updater
    q_r     = (alpha + n_r) / (s + k_r)
    probs_r ~ Dirichlet(tau q_r)
    """
    m = numpyro.sample("m", dist.Dirichlet(jnp.ones(context_counts.shape[-1])))
    s = numpyro.sample("s", strength_prior())
    alpha = numpyro.deterministic("alpha", s * m)
    tau = numpyro.sample("tau", tau_prior())
    _observe(tau, dirichlet_predictive(alpha, context_counts), probs, counts, total_count, observe, epsilon)


def icl_framed(
    *, context_counts, framing, num_framings: int, probs=None, counts=None, total_count=None, observe=("probs",),
    epsilon: float = 1e-6,
):
    """Exact Bayesian updating from a Dirichlet prior of its own for each framing level of the prompt.

    m_f     ~ Dirichlet(1_C)              (plate ``framing``) prior mean under level f
    s_f     ~ LogNormal(log 2, 1.5)       (plate ``framing``) its strength, in examples
    alpha_f = s_f m_f                     (deterministic site, (F, C))
    tau     ~ LogNormal(log 10, 3)        one precision for every level
    q_r     = (alpha_(f_r) + n_r) / (s_(f_r) + k_r)
    probs_r ~ Dirichlet(tau q_r)

    ``framing`` ``(rows,)`` is the level of each row (a log's ``framing``
    variable), ``num_framings`` the number of levels F. The levels' priors are
    independent, not pooled (README, "Models"): each is measured on its own
    rows, and with one level this is :func:`icl`.
    """
    with numpyro.plate("framing", num_framings):
        m = numpyro.sample("m", dist.Dirichlet(jnp.ones(context_counts.shape[-1])))
        s = numpyro.sample("s", strength_prior())
        alpha = numpyro.deterministic("alpha", s[:, None] * m)  # (F, C)
    tau = numpyro.sample("tau", tau_prior())
    _observe(tau, dirichlet_predictive(alpha[framing], context_counts), probs, counts, total_count, observe, epsilon)


def icl_general(
    *, last_example, episode_start, probs=None, counts=None, total_count=None, observe=("probs",),
    epsilon: float = 1e-6,
):
    """A generalised Bayesian updater: exact Bayes when decay = 1 and temperature = 1.

    m           ~ Dirichlet(1_C)
    s           ~ LogNormal(log 2, 1.5)
    alpha       = s m
    decay       ~ Beta(3, 1)              weight of each older example relative to the next
    temperature ~ LogNormal(0, 0.5)
    tau         ~ LogNormal(log 10, 3)
    w_r         = decay w_(r-1) + onehot(y_r),  w = 0 at an episode start
    p_r         = (alpha + w_r) / (s + sum w_r)
    q_r         ∝ p_r^(1 / temperature)
    probs_r     ~ Dirichlet(tau q_r)

    ``last_example`` ``(rows, C)`` is ``onehot(y_r)``, the example that arrived
    just before row r (zeros at an episode start); ``episode_start`` ``(rows,)``
    flags each episode's first row, at which no example has been seen.
    """
    m = numpyro.sample("m", dist.Dirichlet(jnp.ones(last_example.shape[-1])))
    s = numpyro.sample("s", strength_prior())
    alpha = numpyro.deterministic("alpha", s * m)
    decay = numpyro.sample("decay", decay_prior())
    temperature = numpyro.sample("temperature", temperature_prior())
    tau = numpyro.sample("tau", tau_prior())
    weighted_counts = decayed_counts(last_example, episode_start, decay)
    updater = tempered(dirichlet_predictive(alpha, weighted_counts), temperature)
    _observe(tau, updater, probs, counts, total_count, observe, epsilon)


def icl_mixture(
    *, context_counts, components: int = 2, probs=None, counts=None, total_count=None, observe=("probs",),
    epsilon: float = 1e-6,
):
    """Exact Bayesian updating from a K-component Dirichlet-mixture prior.

    w_unlabelled   ~ Dirichlet(1_K)
    m_unlabelled_k ~ Dirichlet(1_C)                   (plate ``component``)
    s_unlabelled_k ~ LogNormal(log 2, 1.5)            (plate ``component``)
    w, m, s        = the components sorted by alpha_k[0]   (deterministic sites)
    alpha_k        = s_k m_k                          (deterministic site ``alpha``, (K, C))
    tau            ~ LogNormal(log 10, 3)
    w'_rk          ∝ w_k B(alpha_k + n_r) / B(alpha_k)   (log space, gammaln)
    q_r            = sum_k w'_rk (alpha_k + n_r) / (s_k + k_r)
    probs_r        ~ Dirichlet(tau q_r)

    Labels as in :func:`models.mixture.mixture`: read ``w``, ``m``, ``s``,
    ``alpha``, not the ``*_unlabelled`` sites.
    """
    w_unlabelled = numpyro.sample("w_unlabelled", dist.Dirichlet(jnp.ones(components)))
    with numpyro.plate("component", components):
        m_unlabelled = numpyro.sample("m_unlabelled", dist.Dirichlet(jnp.ones(context_counts.shape[-1])))
        s_unlabelled = numpyro.sample("s_unlabelled", strength_prior())
    w, _, _, alpha = labelled_components(w_unlabelled, m_unlabelled, s_unlabelled)
    tau = numpyro.sample("tau", tau_prior())
    _observe(tau, mixture_predictive(w, alpha, context_counts), probs, counts, total_count, observe, epsilon)


def icl_none(*, context_counts, probs=None, counts=None, total_count=None, observe=("probs",), epsilon: float = 1e-6):
    """No in-context learning: the predictive ignores the examples.

    m       ~ Dirichlet(1_C)
    tau     ~ LogNormal(log 10, 3)
    probs_r ~ Dirichlet(tau m)

    ``context_counts`` only gives the shape: ignoring it is the hypothesis.
    """
    m = numpyro.sample("m", dist.Dirichlet(jnp.ones(context_counts.shape[-1])))
    tau = numpyro.sample("tau", tau_prior())
    _observe(tau, jnp.broadcast_to(m, context_counts.shape), probs, counts, total_count, observe, epsilon)


def icl_frequency(
    *, context_counts, probs=None, counts=None, total_count=None, observe=("probs",), epsilon: float = 1e-6
):
    """The smoothed relative frequency of the examples.

    pseudocount ~ LogNormal(log 0.1, 2)   eps, added to every count
    tau         ~ LogNormal(log 10, 3)
    q_r         = (n_r + eps) / (k_r + C eps)
    probs_r     ~ Dirichlet(tau q_r)

    This is exact Bayes with the uniform prior ``eps * 1_C``: it tests whether
    the LLM's prior mean ``m`` is needed at all; a small ``eps`` is the raw
    frequency.
    """
    pseudocount = numpyro.sample("pseudocount", pseudocount_prior())
    tau = numpyro.sample("tau", tau_prior())
    _observe(tau, frequency_predictive(context_counts, pseudocount), probs, counts, total_count, observe, epsilon)


def _observe(tau, updater, probs, counts, total_count, observe, epsilon: float) -> None:
    """The LLM's row around the updater, in the ``row`` plate (so the log likelihood is pointwise per row).

    ``observe=("probs",)``: ``probs_r ~ Dirichlet(tau q_r)``, the reported row.
    ``observe=("counts",)``: tokens sampled from that row, the row integrated
    out: ``counts_r ~ DirichletMultinomial(tau q_r, N_r)``. Both: the row and
    the tokens drawn from it (see :func:`models.matrix.observe_rows`).
    """
    check_observe(observe, probs=probs, counts=counts, total_count=total_count)
    with numpyro.plate("row", updater.shape[0]):
        observe_rows(
            dist.Dirichlet(tau * updater),
            lambda total, total_max: PrecisionDirichletMultinomial(tau, updater, total, total_count_max=total_max),
            probs=probs,
            counts=counts,
            total_count=total_count,
            observe=observe,
            explicit=False,
            epsilon=epsilon,
        )


class PrecisionDirichletMultinomial(dist.Distribution):
    """``DirichletMultinomial(tau * q, N)`` with a log density that stays exact as ``tau`` grows.

    With integer counts, ``Gamma(a + n) / Gamma(a)`` is the rising factorial
    ``a (a + 1) ... (a + n - 1)`` (as in :mod:`models.sufficient`), so

        log p(n) = log N! / prod_c n_c!
                   + sum_c sum_(i < n_c) log(q_c + i / tau) - sum_(i < N) log(1 + i / tau),

    the ``log tau`` terms cancelling. At ``tau -> inf`` this is the
    multinomial ``sum_c n_c log q_c``; the gamma-function form loses every
    digit there (differences of ``lgamma`` near ``tau``), and a model whose
    rows follow the updater exactly drives ``tau`` that far. ``total_count_max``
    (known before tracing) bounds ``i``; without it the gamma-function form is used.
    """

    arg_constraints = {"tau": dist.constraints.positive, "updater": dist.constraints.simplex}
    pytree_data_fields = ("tau", "updater", "total_count", "_base")
    pytree_aux_fields = ("total_count_max",)

    def __init__(self, tau, updater, total_count, *, total_count_max: int | None = None, validate_args=None):
        batch_shape = jnp.broadcast_shapes(jnp.shape(tau), jnp.shape(updater)[:-1], jnp.shape(total_count))
        self.tau = jnp.broadcast_to(tau, batch_shape)
        self.updater = jnp.broadcast_to(updater, batch_shape + jnp.shape(updater)[-1:])
        self.total_count = jnp.broadcast_to(total_count, batch_shape)
        self.total_count_max = total_count_max
        self._base = dist.DirichletMultinomial(
            self.tau[..., None] * self.updater, self.total_count, total_count_max=total_count_max
        )
        super().__init__(batch_shape, jnp.shape(updater)[-1:], validate_args=validate_args)

    @dist.constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return dist.constraints.multinomial(self.total_count)

    def sample(self, key, sample_shape=()):
        return self._base.sample(key, sample_shape)

    def log_prob(self, value):
        if self.total_count_max is None:
            return self._base.log_prob(value)
        i = jnp.arange(self.total_count_max)
        inverse_tau = (1.0 / self.tau)[..., None]  # (..., 1)
        below = i < value[..., None]  # (..., C, J): the terms i < n_c
        rising = jnp.where(below, self.updater[..., None] + i * inverse_tau[..., None], 1.0)
        total_below = i < self.total_count[..., None]  # (..., J)
        total_rising = jnp.where(total_below, jnp.log1p(i * inverse_tau), 0.0)
        coefficient = gammaln(self.total_count + 1.0) - jnp.sum(gammaln(value + 1.0), axis=-1)
        return coefficient + jnp.sum(jnp.log(rising), axis=(-2, -1)) - jnp.sum(total_rising, axis=-1)
