"""The typed configs of a run and the one place gin fills them.

Gin files bind the configurables named here (RunConfig, EvalConfig, T5Config, OptimizerConfig,
MeshConfig, LossConfig; T5X macro names in gin/runs/*.gin). They are read from gin exactly once,
by `from_gin` at an entry point (t5x_sbs.main, or `configs_from_gin` for Python callers such as
the experiments), and then passed down explicitly as a `TrainConfigs`; nothing below reads gin
for them. The tasks' data settings (`tasks.config.*`: data dir, vocabulary, fractions, teacher
files) stay gin-configured: the tasks read them lazily when a dataset is built (the data edge).
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os

import gin

from t5x_sbs import gin_paths
from t5x_sbs.models.config import T5Config
from t5x_sbs.records import InputError
from t5x_sbs.tasks import catalog, config as task_config
from t5x_sbs.trainer.optimizers import OptimizerConfig
from t5x_sbs.trainer.partitioning import MeshConfig
from t5x_sbs.trainer.train_step import LossConfig

# Defaults bound before the user's files, so gin/hardware/*.gin or a flag may override them.
DEFAULT_BINDINGS = ["PEAK_FLOPS_PER_DEVICE = None", "INITIAL_CHECKPOINT_PATH = None", "SPM_PATH = None"]
# Macros code reads with gin.query_parameter (no gin file references them).
CODE_MACROS = {"NUM_DEVICES", "DEVICE_MEMORY_GB", "MODEL_DIR", "MIXTURE_OR_TASK_NAME"}


@gin.configurable
@dataclasses.dataclass(frozen=True)
class RunConfig:
    model_dir: str = gin.REQUIRED
    mixture_or_task_name: str = gin.REQUIRED
    task_feature_lengths: dict = dataclasses.field(default_factory=lambda: {"inputs": 256, "targets": 256})
    train_steps: int = 1000
    batch_size: int = 64
    loss_mode: str = "mixture"  # paired | mixture | shared_encoder (one encoder pass for both targets)
    pack: bool = True
    # > 0: batches sorted by length over windows of this many batches and padded to length buckets,
    # one unit a row (pack: a paired example's two rows share it); t5x_sbs.trainer.length_buckets. 0: off.
    length_bucket_window: int = 0
    initial_checkpoint_path: str | None = None
    seed: int = 0
    num_microbatches: int = 1
    log_every: int = 10
    eval_every: int | None = None  # teacher-forced validation loss; None: about 4 times a run
    infer_eval_every: int | None = None  # decode + metrics on validation; None: = eval_every
    eval_batches: int = 8
    test_batches: int | None = None  # final test on the best checkpoint: None = the whole split
    checkpoint_every: int | None = None  # None: = eval_every
    keep_checkpoints: int = 3
    peak_flops_per_device: float | None = None
    auto_vocab_size: int = 512  # SentencePiece size trained when no SPM_PATH is given
    # Stop after this many in-training inference evaluations without a better validation metric.
    early_stopping_patience: int | None = None
    use_cached: bool = False  # read the tasks' SeqIO cache (seqio cache_tasks_main) for training
    prefetch_batches: int = 2  # host batches built ahead on a thread; 0: on the main thread (benchmarks)

    def __post_init__(self):
        """Bad numbers fail when the config is built, before any work (names the gin macro)."""
        checks = (("train_steps", "TRAIN_STEPS", 1), ("batch_size", "BATCH_SIZE", 1), ("num_microbatches", None, 1),
                  ("log_every", None, 1), ("eval_batches", None, 1), ("keep_checkpoints", None, 1),
                  ("eval_every", "EVAL_EVERY", 1), ("infer_eval_every", None, 1), ("checkpoint_every", None, 1),
                  ("test_batches", None, 1), ("prefetch_batches", None, 0), ("length_bucket_window", None, 0))
        for field, macro, least in checks:
            value = getattr(self, field)
            if value is None and field not in ("train_steps", "batch_size", "num_microbatches", "log_every"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                where = f"RunConfig.{field}" + (f" (gin {macro})" if macro else "")
                raise ValueError(f"{where} must be an integer >= {least}, got {value!r}")

    def interval(self, name: str) -> int:
        """EVAL/INFER/CHECKPOINT intervals, defaulting to a quarter of the run (at most 1000)."""
        auto = max(1, min(1000, -(-self.train_steps // 4)))
        value = {"eval": self.eval_every, "infer": self.infer_eval_every or self.eval_every,
                 "checkpoint": self.checkpoint_every or self.eval_every}[name]
        return int(value or auto)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The eval / infer run modes (t5x_sbs.trainer.evaluation)."""

    split: str = "test"
    checkpoint_path: str | None = None  # a MODEL_DIR (its best/ if kept, else latest) or a step dir
    output_path: str | None = None
    input_file: str | None = None  # infer: raw input texts, one per line (the label prefix is added)
    max_batches: int | None = None


@dataclasses.dataclass(frozen=True)
class TrainConfigs:
    """Everything a train / eval / infer / precompile run is built from, passed down explicitly."""

    run: RunConfig
    model: T5Config
    optimizer: OptimizerConfig
    mesh: MeshConfig
    loss: LossConfig

    def with_run(self, **changes) -> "TrainConfigs":
        return dataclasses.replace(self, run=dataclasses.replace(self.run, **changes))


def from_gin(**run_overrides) -> TrainConfigs:
    """The typed configs as the parsed gin files and bindings give them: the one place they are
    read from gin (entry points only). `run_overrides` replace RunConfig fields."""
    return TrainConfigs(run=RunConfig(**run_overrides), model=T5Config.from_gin(), optimizer=OptimizerConfig(),
                        mesh=MeshConfig(), loss=LossConfig())


# ----------------------------------------------------------------------------- parsing
def parse_gin(files: list[str], bindings: list[str], search_paths: list[str] = (".",), *,
              defaults: list[str] = (), check_macros: bool = True) -> None:
    """Parses gin files (found here, in `search_paths` or the shipped gin files) and bindings on
    top of DEFAULT_BINDINGS and `defaults`; an unused macro binding is an error (`check_macros`)."""
    catalog.register_all()  # the tasks' configurables (tasks.config.*, tasks.pretrain.*) exist
    for path in [*search_paths, str(gin_paths.shipped_root())]:
        gin.add_config_file_search_path(path)
    gin.parse_config([*DEFAULT_BINDINGS, *defaults])
    for path in files:
        found = gin_paths.find(path, search_paths)
        if found is None:
            raise InputError(path, None, None, "gin file not found (looked here, in --gin_search_path and the shipped gin files)")
        if os.path.isdir(found):
            raise InputError(found, None, None, "is a directory, not a gin file")
    gin.parse_config_files_and_bindings(list(files), list(bindings), finalize_config=False)
    if check_macros:
        check_macros_used(bindings)


def configs_from_gin(files: list[str], bindings: list[str], search_paths: list[str] = (".",)) -> TrainConfigs:
    """A run's typed configs from gin files and bindings, parsed in isolation: the gin state is
    cleared first, so nothing an earlier run bound leaks in. The parsed state is left in place on
    purpose: the tasks read their data settings (`tasks.config.*`) from it while the run builds
    datasets. The one helper Python callers (experiments, benchmarks) use instead of gin."""
    gin.clear_config()
    task_config.use_vocabulary(None)  # an earlier run's resolved vocabulary, as its gin state
    parse_gin(files, bindings, search_paths)
    return from_gin()


def bind_data_edge(bindings: list[str]) -> None:
    """A fresh gin state holding only `bindings`: the tasks' data settings (`tasks.config.*`,
    read lazily while datasets are built) and a caller's typed-config overrides, which
    `with_gin_overrides` then applies. For Python callers that build their TrainConfigs directly."""
    gin.clear_config()
    task_config.use_vocabulary(None)  # an earlier run's resolved vocabulary, as its gin state
    parse_gin([], bindings)


def with_gin_overrides(built: TrainConfigs) -> TrainConfigs:
    """`built` with every field the parsed gin state binds on RunConfig, T5Config, OptimizerConfig,
    MeshConfig or LossConfig replaced: a sweep's `gin_bindings` override its cells' typed configs."""
    def over(config, cls):
        return dataclasses.replace(config, **gin.get_bindings(cls)) if gin.get_bindings(cls) else config

    return TrainConfigs(run=over(built.run, RunConfig), model=over(built.model, T5Config),
                        optimizer=over(built.optimizer, OptimizerConfig), mesh=over(built.mesh, MeshConfig),
                        loss=over(built.loss, LossConfig))


@contextlib.contextmanager
def gin_scope():
    """Clears the gin state on leaving the block, so a run's bindings (its tasks' data settings
    included) end with it; the companion of `configs_from_gin` for Python callers."""
    try:
        yield
    finally:
        gin.clear_config()


def model_config_from_gin(files: list[str], bindings: list[str], search_paths: list[str] = (".",)) -> T5Config:
    """Only the T5Config of model gin files (no run file, so run macros may go unused), parsed in
    isolation; the gin state is cleared again afterwards."""
    gin.clear_config()
    try:
        parse_gin(files, bindings, search_paths, check_macros=False)
        return T5Config.from_gin()
    finally:
        gin.clear_config()


def check_macros_used(bindings: list[str]) -> None:
    """A `--gin.NAME=VALUE` macro that nothing references is a typo (`TRAIN_STEPZ`): an error."""
    config = gin.config._CONFIG  # gin has no public walk over the parsed bindings
    used: set[str] = set(CODE_MACROS)

    def walk(value):
        if isinstance(value, gin.config.ConfigurableReference) and value.selector == "gin.macro":
            used.add(value.scoped_selector.rsplit("/", 1)[0])
        elif isinstance(value, (list, tuple, set)):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    for params in config.values():
        walk(list(params.values()))
    for binding in bindings:
        name = binding.split("=", 1)[0].strip()
        if name and "." not in name and "/" not in name and name not in used:
            close = difflib.get_close_matches(name, sorted(used), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise InputError(f"--gin.{name}", None, None,
                             f"macro {name} is used by no loaded gin file or configurable{hint}")
