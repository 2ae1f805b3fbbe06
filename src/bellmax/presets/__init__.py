"""Tuned hyperparameters per (algorithm, environment) as plain JSON, each with its provenance."""
