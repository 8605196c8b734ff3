"""Predictive monitoring and self-healing: metrics intake, forecasts, and acting before a breach."""
