"""Counted, not guessed: the floating-point operations of one training step, per image.

XLA's cost analysis of the compiled step (forward, backward and the Adam update) of each model at
its params.toml settings, recurrent layers unrolled (XLA counts a loop's body once), without the
augmentation layer (a warp of 28x28 pixels: ~10 kFLOP an
image, nothing next to the layers). It needs the JAX backend, so `python -m pipeline.speed.flops`
runs in a process of its own and prints JSON; `per_image()` runs it and caches the answer.

This machine's peak, for the share of it a run achieves: 2 cores x 2.6 GHz x 2 FMA units x 16
float32 lanes x 2 = 333 GFLOP/s in float32; its AVX512-BF16 dot products do twice that in bfloat16.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

from pipeline import config

PEAK_GFLOPS = {"float32": 2 * 2.6 * 2 * 16 * 2, "mixed_bfloat16": 2 * 2 * 2.6 * 2 * 16 * 2}
BATCH = 128


def layer_flops(layer) -> int:
    """Forward FLOPs per example of a Dense or Conv layer, by its shapes (2 per multiply-add, plus
    its bias): the check on XLA's count."""
    kernel = layer.kernel.shape
    out = layer.output.shape[1:-1]  # spatial positions of the output (none for Dense)
    positions = int(math.prod(out)) if len(out) else 1
    macs = positions * int(math.prod(kernel))
    return 2 * macs + (positions * kernel[-1] if layer.use_bias else 0)


def check_one_layer(batch: int = 8) -> tuple[float, int]:
    """(XLA's count of one Conv2D's forward pass, layer_flops' count by its shapes), per example:
    the test that XLA counts what the shapes say (JAX backend)."""
    import jax
    import keras
    import numpy as np

    inputs = keras.Input((26, 26, 32))
    conv = keras.layers.Conv2D(32, 3, name="conv")
    model = keras.Model(inputs, conv(inputs))
    x = np.zeros((batch, 26, 26, 32), np.float32)
    variables = [v.value for v in model.trainable_variables]
    cost = jax.jit(lambda tv, x: model.stateless_call(tv, [], x)[0]).lower(variables, x).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"]) / batch, layer_flops(conv)


def step_flops(model_name: str, options: dict, batch: int = BATCH) -> float:
    """FLOPs of one compiled training step on `batch` images (JAX backend), from XLA's cost analysis."""
    import jax
    import keras
    import numpy as np

    from pipeline.modeling.models import build_model

    model = build_model(model_name, augment=False, seed=0, **options)
    for layer in model.layers:  # XLA counts a loop's body once: unrolled, every time step is counted
        if hasattr(layer, "unroll"):
            layer.unroll = True
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    def step(trainable, non_trainable, opt_vars, x, y):
        def loss(tv):
            pred, nt = model.stateless_call(tv, non_trainable, x, training=True)
            return loss_fn(y, pred), nt

        (value, nt), grads = jax.value_and_grad(loss, has_aux=True)(trainable)
        tv, ov = optimizer.stateless_apply(opt_vars, grads, trainable)
        return value, tv, nt, ov

    x = np.zeros((batch, config.IMAGE_SIDE, config.IMAGE_SIDE), np.float32)
    y = np.zeros((batch,), np.int32)
    args = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in optimizer.variables],
        x,
        y,
    )
    cost = jax.jit(step).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


# XLA's counts for the architectures params.toml and its presets use, written by
# `python -m pipeline.speed.flops --table` (tests/test_speed.py checks them against XLA's count now;
# `--many '<JSON list of [model, options JSON]>'` counts several in one process).
TABLE = Path(__file__).with_name("flops.json")


def key(model_name: str, options: dict) -> str:
    return f"{model_name} {json.dumps(options, sort_keys=True)}"


@cache
def per_image(model_name: str, options_json: str = "{}") -> float:
    """Training FLOPs per image of a model (`options_json`: its architecture options as JSON): from
    the table when it has them, else counted now (a JAX process of its own, seconds)."""
    known = json.loads(TABLE.read_text()) if TABLE.is_file() else {}
    if key(model_name, json.loads(options_json)) in known:
        return known[key(model_name, json.loads(options_json))]
    return count(model_name, options_json)


def _run(*args: str) -> dict:
    """`python -m pipeline.speed.flops ARGS` in a JAX process of its own; its JSON."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.speed.flops", *args],
        cwd=config.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"counting FLOPs ({' '.join(args)}) failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout)


def count(model_name: str, options_json: str = "{}") -> float:
    return _run(model_name, options_json)["per_image"]


def count_many(found: set[tuple[str, str]]) -> dict[str, float]:
    """{key: per-image count} of several (model, options JSON), all in one process (one start-up)."""
    return _run("--many", json.dumps(sorted(found)))


def architectures() -> set[tuple[str, str]]:
    """(model, options JSON) of every model params.toml and its presets train."""
    from pipeline import params as params_mod
    from pipeline.modeling.models import MODELS

    base = params_mod.load()
    settings = [[]] + [p["overrides"] for p in base.get("presets", {}).values()]
    found = set()
    for overrides in settings:
        resolved = params_mod.resolve(overrides)
        for name in MODELS:
            found.add((name, json.dumps(params_mod.architecture(params_mod.for_model(resolved, name)), sort_keys=True)))
    return found


def write_table() -> dict:
    table = count_many(architectures())
    TABLE.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
    return table


if __name__ == "__main__":
    if sys.argv[1:] == ["--table"]:
        print(json.dumps(write_table(), indent=2))
        raise SystemExit(0)
    if sys.argv[1:2] == ["--many"]:
        from pipeline.modeling import backend

        backend.init(0, "jax")
        counts = {key(m, json.loads(o)): step_flops(m, json.loads(o)) / BATCH for m, o in json.loads(sys.argv[2])}
        print(json.dumps(counts))
        raise SystemExit(0)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("options", nargs="?", default="{}", help="architecture options as JSON, e.g. '{\"width\": 32}'")
    args = ap.parse_args()
    from pipeline.modeling import backend

    backend.init(0, "jax")
    flops = step_flops(args.model, json.loads(args.options))
    print(
        json.dumps(
            {
                "model": args.model,
                "options": json.loads(args.options),
                "batch": BATCH,
                "step_flops": flops,
                "per_image": flops / BATCH,
            }
        )
    )
