"""The priors every model shares, in one place, with the reasons for each choice.

They are functions, not module constants, so that importing ``models`` does not
start JAX (``inference.runtime.configure`` must run first).

- strength ``s = sum(alpha)`` ~ LogNormal(log 2, 1.5): a prior worth about two
  observations, 95% between 0.1 and 38. In the ICL models ``s`` is counted in
  in-context examples.
- ``tau`` ~ LogNormal(log 10, 3): the precision of ``probs_r ~ Dirichlet(tau * q_r)``.
  Loose LLMs give ``tau`` of a few; a wind-tunnel transformer that matches the
  posterior to 1e-4 bits needs thousands, so the prior spans 0.03 to 3600.
- ``decay`` ~ Beta(3, 1): median 0.79, density rising to its maximum at 1 (exact
  Bayes). On NUTS's logit scale the tail towards 1 falls only like ``exp(-u)``,
  so the sampler reaches decay = 0.99 and beyond when the data say so.
- ``temperature`` ~ LogNormal(0, 0.5): centred on 1 (calibrated), 95% in 0.38–2.7.
- ``pseudocount`` ~ LogNormal(log 0.1, 2): the add-``eps`` smoothing of the
  frequency model; small values are the raw frequency.
- Mixture components are ordered by strength (:class:`SortedLogNormal`).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpyro.distributions as dist
from jax import random
from jax.scipy.special import gammaln
from numpyro.distributions import constraints
from numpyro.distributions.util import promote_shapes, validate_sample

STRENGTH_LOC, STRENGTH_SCALE = math.log(2.0), 1.5
TAU_LOC, TAU_SCALE = math.log(10.0), 3.0
DECAY_A, DECAY_B = 3.0, 1.0
TEMPERATURE_LOC, TEMPERATURE_SCALE = 0.0, 0.5
PSEUDOCOUNT_LOC, PSEUDOCOUNT_SCALE = math.log(0.1), 2.0


def strength_prior() -> dist.Distribution:
    return dist.LogNormal(STRENGTH_LOC, STRENGTH_SCALE)


def tau_prior() -> dist.Distribution:
    return dist.LogNormal(TAU_LOC, TAU_SCALE)


def decay_prior() -> dist.Distribution:
    return dist.Beta(DECAY_A, DECAY_B)


def temperature_prior() -> dist.Distribution:
    return dist.LogNormal(TEMPERATURE_LOC, TEMPERATURE_SCALE)


def pseudocount_prior() -> dist.Distribution:
    return dist.LogNormal(PSEUDOCOUNT_LOC, PSEUDOCOUNT_SCALE)


def component_strength_prior(components: int) -> dist.Distribution:
    """``s_1 < ... < s_K``: the strength prior for K components, sorted to label them."""
    return SortedLogNormal(STRENGTH_LOC, STRENGTH_SCALE, components)


class SortedLogNormal(dist.Distribution):
    """The order statistics of ``size`` independent LogNormal(loc, scale) draws.

    Density ``size! * prod_k LogNormal(x_k | loc, scale)`` on ``x_1 < ... < x_K``;
    sampling sorts independent draws. A mixture's likelihood is the same under
    every relabelling of its components, so this prior is the exchangeable
    LogNormal prior restricted to one labelling: chains agree on which
    component is which. It identifies components whose strengths differ; two
    components of (nearly) equal strength leave the labels weakly identified.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.positive_ordered_vector
    reparametrized_params = ["loc", "scale"]
    pytree_data_fields = ("loc", "scale")
    pytree_aux_fields = ("size",)

    def __init__(self, loc=0.0, scale=1.0, size: int = 2, *, validate_args=None):
        self.loc, self.scale = promote_shapes(loc, scale)
        self.size = int(size)
        batch_shape = jnp.broadcast_shapes(jnp.shape(loc), jnp.shape(scale))
        super().__init__(batch_shape=batch_shape, event_shape=(self.size,), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape + self.event_shape
        loc = jnp.expand_dims(self.loc, -1)
        scale = jnp.expand_dims(self.scale, -1)
        return jnp.sort(jnp.exp(loc + scale * random.normal(key, shape)), axis=-1)

    @validate_sample
    def log_prob(self, value):
        loc = jnp.expand_dims(self.loc, -1)
        scale = jnp.expand_dims(self.scale, -1)
        iid = dist.LogNormal(loc, scale).log_prob(value).sum(-1)
        return iid + gammaln(self.size + 1.0)
