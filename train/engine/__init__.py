"""Training loop, objectives (plain or distillation), optimisation schedules, mixup, data-parallel
helpers, checkpoints and evaluation."""
