"""The Bayesian wind tunnel: small transformers trained where the exact posterior predictive is known.

README.md, "Wind tunnel". A world draws each sequence's category
distribution from a Dirichlet (or Dirichlet-mixture) prior and emits tokens
from it; a transformer trained on such sequences is scored, position by
position, in bits of KL from the closed-form posterior predictive.

- :mod:`~bayesmatrix.data.windtunnel.worlds`: worlds, sampling, exact predictives,
  prompts (no torch);
- :mod:`~bayesmatrix.data.windtunnel.modeling`: tokenizer, architectures, loading a
  trained folder (torch);
- :mod:`~bayesmatrix.data.windtunnel.training`: training with checkpoints and resume (torch);
- :mod:`~bayesmatrix.data.windtunnel.evaluation`: scoring by position (loading the
  model needs torch; formatting and writing a score do not).

The task of a world, for logging a trained model like any LLM, is
:func:`bayesmatrix.data.tasks.windtunnel_task`.

Importing this package loads no torch: the names of the torch-needing modules
are imported on first use.
"""

import importlib

from bayesmatrix.data.closed_forms import kl_bits
from bayesmatrix.data.windtunnel.worlds import WORLDS, Episodes, World, episodes, get_world

# name -> the submodule that defines it, imported when the name is first used
_LAZY = {
    "Evaluation": "evaluation",
    "evaluate": "evaluation",
    "format_evaluation": "evaluation",
    "write_evaluation": "evaluation",
    "WindTunnelModel": "modeling",
    "load": "modeling",
    "model_predictive": "modeling",
    "shipped_model": "modeling",
    "TrainOptions": "training",
    "TrainResult": "training",
    "train": "training",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "WORLDS",
    "Episodes",
    "Evaluation",
    "TrainOptions",
    "TrainResult",
    "WindTunnelModel",
    "World",
    "episodes",
    "evaluate",
    "format_evaluation",
    "get_world",
    "kl_bits",
    "load",
    "model_predictive",
    "shipped_model",
    "train",
    "write_evaluation",
]
