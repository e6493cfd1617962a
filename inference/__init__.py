"""Inference drivers (NUTS, SVI) and run directories."""
