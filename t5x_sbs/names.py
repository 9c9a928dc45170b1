"""Names shared by every stage: feature keys, task ids, prefixes, statuses.

One place, so the tasks, the feature converter, the loss and the teacher agree.
"""

# Per-target-token task identity carried through packing (feature `decoder_task_ids`).
# 0 marks padding; the loss averages each task over its own tokens.
PAD_TASK_ID = 0
LABEL_TASK_ID = 1
RATIONALE_TASK_ID = 2
TASK_IDS = {"label": LABEL_TASK_ID, "rationale": RATIONALE_TASK_ID}

# How step-by-step rows reach the loss (RunConfig.loss_mode, gin LOSS_MODE): 'mixture' packs rows
# of the SeqIO mixture; 'paired' keeps each example's label and rationale rows in one batch;
# 'shared_encoder' encodes the input once for both targets (t5x_sbs.trainer.shared_encoder).
LOSS_MODES = ("paired", "mixture", "shared_encoder")

# Prefixes: the paper code's defaults, and the paper text's spelling one flag away.
PREFIXES = {
    "code": {"label": "predict: ", "rationale": "explain: "},
    "paper": {"label": "[label] ", "rationale": "[rationale] "},
}

# Model features (T5X names) plus ours.
ENCODER_DECODER_FEATURES = (
    "encoder_input_tokens",
    "decoder_input_tokens",
    "decoder_target_tokens",
    "decoder_loss_weights",
    "encoder_segment_ids",
    "decoder_segment_ids",
    "encoder_positions",
    "decoder_positions",
    "decoder_task_ids",
)

# Teacher record statuses: every example ends in exactly one.
STATUSES = ("ok", "unparseable", "blocked", "truncated", "failed")

# Mixture names: {dataset}_{standard|sbs}_{gold|llm}.
def mixture_name(dataset: str, method: str, label_source: str) -> str:
    if method not in ("standard", "sbs") or label_source not in ("gold", "llm"):
        raise ValueError(f"unknown method/label source: {method!r}/{label_source!r}")
    return f"{dataset}_{method}_{label_source}"

# The NLI labels in the datasets' own integer order (ANLI, e-SNLI, TFDS): label i is NLI_LABELS[i].
NLI_LABELS = ("entailment", "neutral", "contradiction")
