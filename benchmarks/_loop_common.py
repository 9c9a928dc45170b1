"""What the train-loop benchmarks share: a tiny-model gin run on real data through
`train_loop.train` (the real loop: restore, input pipeline, prefetch, lagged metrics, saves), and
a timer on the jitted train step that the loop calls."""
from __future__ import annotations

import contextlib
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TQDM_MININTERVAL", "60")  # the loop's progress bar: a line a minute, not a line a step
DEFAULT_DATA_DIR = os.path.join(os.path.dirname(REPO), "shared", "data")
TINY_MODEL = ["T5Config.vocab_size = 256", "T5Config.d_model = 32", "T5Config.d_kv = 8", "T5Config.d_ff = 64",
              "T5Config.num_heads = 2", "T5Config.dropout_rate = 0.0", "RunConfig.auto_vocab_size = 256"]


def add_run_args(parser) -> None:
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--task", default="svamp_sbs_llm", help="a registered mixture or task")
    parser.add_argument("--inputs", type=int, default=128)
    parser.add_argument("--targets", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="fewer repeats / steps (< 2 minutes)")


def bindings(args, model_dir: str, steps: int, *extra: str) -> list[str]:
    return TINY_MODEL + [
        f"MODEL_DIR = '{model_dir}'", f"MIXTURE_OR_TASK_NAME = '{args.task}'", f"DATA_DIR = '{args.data_dir}'",
        f"TRAIN_STEPS = {steps}", f"BATCH_SIZE = {args.batch}",
        f"TASK_FEATURE_LENGTHS = {{'inputs': {args.inputs}, 'targets': {args.targets}}}",
        "RunConfig.eval_batches = 1", "RunConfig.test_batches = 1", "RunConfig.log_every = 1000000", *extra]


def run_train(binding_list: list[str]) -> dict:
    """`t5x-sbs train` with gin/models/t5_1_1/tiny.gin + gin/runs/sbs.gin and these bindings."""
    from t5x_sbs.trainer import configs, train_loop

    return train_loop.train(configs.configs_from_gin(["gin/models/t5_1_1/tiny.gin", "gin/runs/sbs.gin"], binding_list,
                                                     search_paths=[REPO]))


def use_compilation_cache(directory: str) -> None:
    """A persistent XLA cache, so every timed run after the first compiles nothing (as a
    restarted production job with a cache): what is left is the loop's own start-up."""
    from t5x_sbs.experiments.runner import enable_compilation_cache

    enable_compilation_cache(directory)


class StepTimer:
    """Wall times (perf_counter) at which each train step was dispatched and, for the first,
    when its loss was ready; `after_step(n)` is called after step n (1-based) is dispatched."""

    def __init__(self, after_step=None):
        self.dispatched: list[float] = []
        self.first_ready: float | None = None
        self.after_step = after_step

    def wrap(self, jitted):
        import jax

        def timed(state, batch, rng):
            out = jitted(state, batch, rng)
            self.dispatched.append(time.perf_counter())
            if self.first_ready is None:
                jax.block_until_ready(out[1]["loss"])
                self.first_ready = time.perf_counter()
            if self.after_step:
                self.after_step(len(self.dispatched))
            return out

        return timed


@contextlib.contextmanager
def timed_steps(timer: StepTimer):
    """Within the block, the Trainer that `train_loop.train` builds runs its steps through `timer`."""
    from t5x_sbs.trainer import train_loop

    original = train_loop.build

    def build(*args, **kwargs):
        model_config, part, trainer = original(*args, **kwargs)
        trainer.train_step = timer.wrap(trainer.train_step)
        return model_config, part, trainer

    train_loop.build = build
    try:
        yield timer
    finally:
        train_loop.build = original


def quiet_logs() -> None:
    import logging

    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
