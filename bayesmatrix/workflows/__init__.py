"""End-to-end workflows: applications that log, fit, check and report, above the analysis layer.

- :mod:`.demo`: the demo on SmolLM2 (``bayesmatrix demo``);
- :mod:`.study`: one ICL task over a list of models (``bayesmatrix study``);
- :mod:`.sweep`: wind tunnels of seven sizes trained, scored and studied with
  :mod:`.study` (``bayesmatrix windtunnel sweep``);
- :mod:`.phenomena`: chain of thought, long contexts and hallucination on one LLM
  (``bayesmatrix phenomena``);
- :mod:`.windtunnel_loop`: the wind-tunnel loop closed with the shipped models
  (``bayesmatrix windtunnel loop``), which runs ``log`` and ``fit`` as their own
  processes, as a user would.

They import the library layers (data, models, inference, analysis), never the
command line's modules.
"""
