"""Counted, not guessed: the floating-point operations of one training step, per image.

XLA's cost analysis of the compiled step (forward, backward and the Adam update) of each model at
its params.toml settings, recurrent layers unrolled (XLA counts a loop's body once), without the
augmentation layer (a warp of 28x28 pixels: ~10 kFLOP an
image, nothing next to the layers). It needs the JAX backend, so `python -m pipeline.speed.flops`
runs in a process of its own and prints JSON; `per_image()` runs it the first time a model (its
options, its code) is asked for, and caches the answer in the checkout's .make/flops.json.

The peak a run's rate is a share of is the machine's at hand (`peak()`), from its flags, cores and clock.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
from functools import cache

from pipeline import config
from pipeline.files import write_json

BATCH = 128
FMA_UNITS = 2  # vector FMA pipes per core: 2 on AMD's Zen 2-5 and Intel's big cores since Haswell


def peak(cpu: dict | None = None, cores: int | None = None) -> dict:
    """This machine's peak GFLOP/s by precision, and how it was derived: cores x GHz x FMA units x
    float32 lanes (16 with AVX-512, 8 with AVX2) x 2 (a multiply and an add). bfloat16 doubles it
    where the CPU has native bf16 dot products (AVX512_BF16); elsewhere bf16 is emulated and has no
    peak of its own (None). None where the clock is not known."""
    from pipeline.speed import tune

    cpu, cores = cpu or tune.cpu(), cores or tune.cores()
    flags = set(cpu["flags"])
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    if not cpu["ghz"]:
        return {"float32": None, "mixed_bfloat16": None, "how": f"{cpu['brand']}: clock not known, so no peak"}
    fp32 = cores * cpu["ghz"] * FMA_UNITS * lanes * 2
    native_bf16 = bool(flags & {"avx512_bf16", "amx_bf16"})
    how = (
        f"{cpu['brand']}: {cores} cores x {cpu['ghz']:g} GHz x {FMA_UNITS} FMA units x {lanes} float32 lanes x 2 "
        f"= {fp32:.0f} GFLOP/s float32; "
        + (f"bf16 dot products twice that ({2 * fp32:.0f})" if native_bf16 else "no native bf16 (emulated: no peak)")
    )
    return {"float32": fp32, "mixed_bfloat16": 2 * fp32 if native_bf16 else None, "how": how}


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


def key(model_name: str, options: dict) -> str:
    return f"{model_name} {json.dumps(options, sort_keys=True)}"


def code_hash() -> str:
    """The code that builds a model and counts it: a model edited since a count is counted again."""
    from pipeline import codedeps

    files = {*codedeps.closure(config.ROOT)["pipeline.modeling.models"], "pipeline/speed/flops.py"}
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + (config.ROOT / name).read_bytes())
    return digest.hexdigest()[:12]


# XLA's counts so far: made on demand, never committed. In the checkout, not the output root: a
# count is the code's, whatever OUT= the runs write to (and every test of this checkout shares it).
CACHE = config.ROOT / ".make" / "flops.json"


def _cached() -> dict:
    try:
        return json.loads(CACHE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@cache
def per_image(model_name: str, options_json: str = "{}") -> float:
    """Training FLOPs per image of a model (`options_json`: its architecture options as JSON): XLA's
    count, made the first time a model, its options and its code are asked for (a JAX process of
    its own, seconds) and cached (CACHE)."""
    code = code_hash()
    entry = f"{key(model_name, json.loads(options_json))} @{code}"
    known = _cached()
    if entry not in known:
        value = count(model_name, options_json)
        # Counts of older code are dropped; others' counts written meanwhile are kept.
        known = {k: v for k, v in _cached().items() if k.endswith(f" @{code}")} | {entry: value}
        try:
            write_json(CACHE, known)
        except OSError:
            pass  # a read-only checkout: counted again next time
    return known[entry]


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


if __name__ == "__main__":
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
