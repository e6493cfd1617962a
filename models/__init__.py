"""NumPyro models of the matrix, Dirichlet mixtures, embedding compression and in-context learning. Imports nothing of ours."""
