"""Offline stage: synthetic data, models, training, evaluation and export."""
