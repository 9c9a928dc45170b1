"""The teacher stage: prompts an LLM (or replays stored outputs) for rationales and labels.

Modules: `prompting` (templates in prompts/*.json + hash), `backends` (the interface and
`--teacher` resolution), `gemini`, `replay`, `scripted` (backends), `runner` (concurrency,
parsing, feedback), `batch` (Batch API), `annotation` (one run as a library call), `store`
(resumable JSONL), `ledger`, `optimize` (prompt search); the commands are in `t5x_sbs.cli`.
"""
