"""The trainer: partitioning, losses, optimizers, the train step and run loop, input pipeline,
evaluation, metrics logging, precompile, distributed start-up and preemption."""
