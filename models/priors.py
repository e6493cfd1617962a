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
- Mixture components get these priors independently and identically; their
  labels are fixed afterwards (``models.closed_forms.sort_components``).
"""

from __future__ import annotations

import math

import numpyro.distributions as dist

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
