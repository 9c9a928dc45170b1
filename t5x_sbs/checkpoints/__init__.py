"""Checkpoints: the Orbax manager (`manager`), commit records and torn-step checks (`integrity`),
config.json + spiece.model beside them (`model_files`), and INITIAL_CHECKPOINT_PATH loading
(`initial_params`). This module holds the public names callers use as `checkpoints.X`."""
from t5x_sbs.checkpoints.integrity import (  # noqa: F401
    COMMIT_FILE, ORBAX_STEP_METADATA, CheckpointError, complete_steps, incomplete_reason)
from t5x_sbs.checkpoints.manager import (  # noqa: F401
    BEST_DIR, METRICS_ITEM, CheckpointManager, read_json_item, read_state_leaf, resolve_step_dir, restore_step_dir,
    state_metadata)
