"""Dropout's cost on this machine: flax's nn.Dropout (a float32 uniform per element) vs ours
(t5x_sbs.models.layers.Dropout: two 16-bit draws per threefry word), jitted, forward only.

Shapes: the attention weights of a packed batch (rows x heads x length x length), where most of a
step's dropout elements are. Prints ms per call for each and `ratio: flax / ours` (> 1: ours faster).

    python benchmarks/dropout_cost.py                  # 24 x 4 x 176 x 176, rate 0.1
    python benchmarks/dropout_cost.py --shape 8 12 512 512
"""
from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (puts the repo on sys.path)


def ms_per_call(fn, x, key, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(x, key))
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(x, key)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[24, 4, 176, 176])
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from t5x_sbs.models.layers import Dropout

    x = jnp.ones(args.shape, jnp.float32)
    timings = {}
    for name, module in (("flax nn.Dropout", nn.Dropout(args.rate)), ("ours", Dropout(args.rate))):
        fn = jax.jit(lambda v, k, m=module: m.apply({}, v, deterministic=False, rngs={"dropout": k}))
        timings[name] = ms_per_call(fn, x, jax.random.key(0), args.repeats)
        print(f"{name}: {timings[name]:.2f} ms per call on {tuple(args.shape)} "
              f"({x.size / timings[name] / 1e3:.1f} M elements/s)")
    print(f"ratio: {timings['flax nn.Dropout'] / timings['ours']:.2f}")


if __name__ == "__main__":
    main()
