"""The trainer: typed run configs (`configs`), partitioning, losses, optimizers, the train step,
what every run mode builds (`builder`), the run loop, input pipeline, evaluation, metrics logging,
precompile, distributed start-up and preemption."""
