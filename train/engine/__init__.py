"""Training loop, optimisation schedules, checkpoints and evaluation."""
