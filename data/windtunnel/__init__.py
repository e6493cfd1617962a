"""The Bayesian wind tunnel: small transformers trained where the exact posterior predictive is known.

DESIGN.md §1 ("Wind tunnels"). A world draws each sequence's category
distribution from a Dirichlet (or Dirichlet-mixture) prior and emits tokens
from it; a transformer trained on such sequences is scored, position by
position, in bits of KL from the closed-form posterior predictive.

- :mod:`data.windtunnel.worlds`: worlds, sampling, exact predictives, KL, prompts
  (no torch);
- :mod:`data.windtunnel.modeling`: tokenizer, architectures, loading a trained folder;
- :mod:`data.windtunnel.training`: training with checkpoints and resume;
- :mod:`data.windtunnel.evaluation`: scoring by position.
"""

from bayesmatrix.data.windtunnel.evaluation import Evaluation, evaluate, format_evaluation, write_evaluation
from bayesmatrix.data.windtunnel.modeling import WindTunnelModel, load, model_predictive, shipped_model
from bayesmatrix.data.windtunnel.training import TrainOptions, TrainResult, train
from bayesmatrix.data.windtunnel.worlds import WORLDS, Episodes, World, episodes, get_world, icl_task, kl_bits

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
    "icl_task",
    "kl_bits",
    "load",
    "model_predictive",
    "shipped_model",
    "train",
    "write_evaluation",
]
