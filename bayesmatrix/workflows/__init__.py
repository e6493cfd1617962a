"""End-to-end workflows: applications that log, fit, check and report, above the analysis layer.

- :mod:`.demo`: the demo on SmolLM2 (``bayesmatrix demo``);
- :mod:`.windtunnel_loop`: the wind-tunnel loop closed with the shipped models
  (``bayesmatrix windtunnel loop``).

They import the library layers (data, models, inference, analysis) and run
other subcommands as their own processes where a user would, never the
command line's modules.
"""
