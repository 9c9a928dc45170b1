"""`t5x-sbs sweep --config FILE`: the paper's grid, resumable, with tables and plots (`experiments.sweep`)."""
from __future__ import annotations

import argparse
import dataclasses

from t5x_sbs.experiments import runner, sweep


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="sweep JSON file (see configs/sweeps/)")
    parser.add_argument("--out_dir", default=None, help="override the config's out_dir")
    parser.add_argument("--dry_run", action="store_true", help="list the cells and their state, train nothing")


def run(args: argparse.Namespace) -> int:
    config = sweep.load_config(args.config)
    if args.out_dir:
        config = dataclasses.replace(config, out_dir=args.out_dir)
    if args.dry_run:
        for state, cell in sweep.cell_states(config):
            print(f"{state}  {cell.name}")
        return 0
    counts = sweep.run_grid(config, runner.sweep_cell)
    paths = sweep.write_reports(config, runner.size_params(config))
    with open(paths["md"], encoding="utf-8") as f:
        print(f.read())
    print(f"cells run: {counts['run']}, skipped (already done): {counts['skipped']}")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
