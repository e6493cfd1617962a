"""Analysis: ArviZ diagnostics, LOO comparison, calibration, metrics, plots and the report."""
