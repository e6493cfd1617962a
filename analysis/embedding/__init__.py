"""Embedding compression and continuity: held-out density, choice of rank, compression ratio, Lipschitz bounds.

The LLM holds its enormous matrix as a continuous map from a
prompt's embedding to a row. This module measures how well the low-rank map
of :mod:`models.embedding` stands in for the LLM on rows it never saw, and how
continuous the LLM's own map is.

- **Held-out rows.** One fixed random split of the rows into training,
  validation and test (70/15/15). The embedding model is fitted by SVI on the
  training rows only; the rank is the smallest whose validation density is
  within one standard error of the best (:func:`choose_rank`); the test rows
  are scored once, by the posterior predictive density
  ``log mean_j Dirichlet(p_r | s_j m_r(theta_j))``. Two baselines, fitted on the
  same training rows: one global Dirichlet that ignores the embedding
  (maximum likelihood), and nearest neighbours in embedding space (a row's
  mean is the mean of its ``k`` nearest training rows, ``k`` chosen on the
  validation rows, scored by a Dirichlet whose precision is fitted on the
  training rows by leave-one-out), once with the arithmetic mean of the
  neighbours' rows and once with their geometric mean (renormalised), which
  suits the Dirichlet's ``log p`` terms better.
- **Compression ratio** = rows x columns / parameters of the composed map from
  the raw hidden state: the feature projection folds into ``V`` and the
  centring into ``b``, so the count is ``C R + D_raw R + C + 1``.
- **Continuity.** For many prompt pairs (random pairs plus each row with its
  nearest neighbour, so that small distances are represented), the
  Jensen-Shannon divergence in bits between the two rows against the
  Euclidean distance of their embedding features. The empirical Lipschitz
  bound is a high quantile (and the max) of the ratio JS / distance. The same
  ratios of the fitted map's means ``m_r`` give its empirical bound, and
  ``max_{c,c'} ||W_c - W_c'|| / (4 ln 2)`` with ``W = U V^T`` bounds it
  analytically (JS <= symmetric KL / 4, and the symmetric KL of two softmaxes
  is at most the range of their logit difference). JS is quadratic in a small
  change of a distribution, so at small distances the ratio is small; the
  bound is an envelope, not a derivative.

Arrays first: every measure is a small function on NumPy arrays
(:mod:`.measures`); then :mod:`.study` fits the model and runs the protocol on
an LLM log (:func:`embedding_study`) and writes the files (:func:`write_study`);
the continuity plot is :func:`bayesmatrix.analysis.plots.embedding.plot_continuity`.
``bayesmatrix embedding LOG`` runs the study from the command line.

References: Minka (2000), "Estimating a Dirichlet distribution" (the global
Dirichlet); Lin (1991), "Divergence measures based on the Shannon entropy"
(Jensen-Shannon); Björck & Golub (1973) (principal angles).
"""

from bayesmatrix.analysis.embedding.measures import (
    EPSILON,
    LIPSCHITZ_QUANTILES,
    SPLIT_FRACTIONS,
    NeighbourBaseline,
    choose_rank,
    compression_ratio,
    dirichlet_log_density,
    fit_concentration,
    fit_dirichlet,
    js_bits,
    lipschitz_ratios,
    lipschitz_summary,
    map_lipschitz_bound,
    map_subspace_angles,
    nearest_pairs,
    neighbour_baseline,
    neighbour_means,
    principal_angles,
    random_pairs,
    split_rows,
    squared_distances,
)
from bayesmatrix.analysis.embedding.study import (
    NEIGHBOURS,
    RANKS,
    EmbeddingFit,
    EmbeddingStudy,
    embedding_study,
    fit_embedding_model,
    format_study,
    posterior_mean_map,
    posterior_mean_rows,
    predictive_log_density,
    prepare_rows,
    shrink_log,
    write_study,
)

__all__ = [
    "EPSILON", "LIPSCHITZ_QUANTILES", "NEIGHBOURS", "RANKS", "SPLIT_FRACTIONS",
    "EmbeddingFit", "EmbeddingStudy", "NeighbourBaseline",
    "choose_rank", "compression_ratio", "dirichlet_log_density", "embedding_study",
    "fit_concentration", "fit_dirichlet", "fit_embedding_model", "format_study", "js_bits",
    "lipschitz_ratios", "lipschitz_summary", "map_lipschitz_bound", "map_subspace_angles", "nearest_pairs",
    "neighbour_baseline", "neighbour_means", "posterior_mean_map", "posterior_mean_rows",
    "predictive_log_density", "prepare_rows", "principal_angles", "random_pairs", "shrink_log",
    "split_rows", "squared_distances", "write_study",
]
