#!/usr/bin/env bash
# CPU runs on this machine: one process, fake multi-device, or several local processes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
usage: launch/local.sh [--devices=N] [--processes=P] [--port=PORT] --gin_file=FILE [...]

Runs python -m t5x_sbs.main on the CPU. --devices=N gives each process N fake devices
(--xla_force_host_platform_device_count), so an 8-device mesh (fsdp, fsdp_tp presets) runs on a
laptop. --processes=P starts P processes joined by jax.distributed on 127.0.0.1:PORT.

  --devices=N            fake CPU devices per process (default 1)
  --processes=P          local processes (default 1)
  --port=PORT            coordinator port for --processes > 1 (default 12355; PORT+1 is the
                         start-up rendezvous that names a missing process)
  --init_timeout=S       seconds every process waits for the others at start-up (default 60)
$COMMON_HELP

example:
  launch/local.sh --devices=8 --gin_file=gin/runs/sbs.gin --gin_file=gin/partitioning/fsdp.gin \\
      --model_dir=/tmp/sbs --dry_run
EOF
}

DEVICES=1
PROCESSES=1
PORT=12355
INIT_TIMEOUT=60
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --devices=*) DEVICES="${1#*=}" ;;
    --processes=*) PROCESSES="${1#*=}" ;;
    --port=*) PORT="${1#*=}" ;;
    --init_timeout=*) INIT_TIMEOUT="${1#*=}" ;;
    --) shift; TRAINER_ARGS+=("$@"); break ;;
    *) parse_common_arg "$1" || die "unknown option $1 (see --help)" ;;
  esac
  shift
done
[[ "$DEVICES" =~ ^[1-9][0-9]*$ ]] || die "--devices must be a positive integer, got '$DEVICES'"
[[ "$PROCESSES" =~ ^[1-9][0-9]*$ ]] || die "--processes must be a positive integer, got '$PROCESSES'"
[[ "$INIT_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "--init_timeout must be a positive integer, got '$INIT_TIMEOUT'"
require_trainer_args
if [[ -z "$PYTHON_BIN" ]]; then
  PYTHON_BIN="python3"
  [[ -x "$REPO_ROOT/.venv/bin/python" ]] && PYTHON_BIN="$REPO_ROOT/.venv/bin/python"
fi
trainer_command

WORKER_LINES=()
for ((i = 0; i < PROCESSES; i++)); do
  worker_env_command "$i" "$PROCESSES" "127.0.0.1:$PORT" JAX_PLATFORMS=cpu "JAX_INITIALIZATION_TIMEOUT=$INIT_TIMEOUT" \
    "XLA_FLAGS=--xla_force_host_platform_device_count=$DEVICES"
  WORKER_LINES+=("$(quote_command "${WORKER_CMD[@]}")")
  if ((DRY_RUN)); then print_worker "worker $i/$PROCESSES host localhost devices $DEVICES" "${WORKER_CMD[@]}"; fi
done
((DRY_RUN)) && exit 0

cd "$REPO_ROOT"
if ((PROCESSES == 1)); then exec "${WORKER_CMD[@]}"; fi
run_all
