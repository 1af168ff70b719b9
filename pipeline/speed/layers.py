"""Where a training step's time goes: each convolution of a model timed alone, against the whole step.

Each Conv2D layer's training work (its forward pass, the gradient of its filters, and the gradient of
its input, except for the first layer's, which training never asks for) runs as one compiled
TensorFlow function on random data at the model's batch size and precision: the oneDNN kernels the
CNN trains with here. Its FLOPs are counted by shape (`flops.layer_flops`, the count a test checks
against XLA's), so each layer gets an achieved GFLOP/s and a share of this machine's peak. Then the
whole training step (augmentation, every layer, the loss, Adam) is timed through `model.fit`, as the
pipeline trains, and the table says what share of it the convolutions are: how much faster the step
could get if everything else cost nothing.

Each time is the fastest of `--repeats` passes: this VM's host sometimes takes its second core away
for minutes (docs/speed.md), and the fastest pass is the one it did not. The spread is kept too.

`make bench-layers` (BENCH_LAYERS_MODEL=cnn by default) writes bench/layers.json and bench/layers.md.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from pipeline import config
from pipeline import params as params_mod
from pipeline.errors import PipelineError, cli
from pipeline.files import write_json, write_text
from pipeline.speed.flops import layer_flops, peak

ROWS_PER_EPOCH = 33_600  # a CV fold's training rows: the epoch times below are scaled to it
STEPS_TIMED = 32  # training steps per timed pass of the whole model


def conv_specs(model) -> list[dict]:
    """The Conv2D layers of a built Keras model, in order: shapes, kernel, strides, padding and the
    training FLOPs per image (forward, filter gradient, and input gradient but for the first)."""
    import keras

    specs = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        forward = layer_flops(layer)
        passes = 2 if not specs else 3
        specs.append(
            {
                "name": layer.name,
                "input": tuple(layer.input.shape[1:]),
                "output": tuple(layer.output.shape[1:]),
                "filters": layer.filters,
                "kernel": tuple(layer.kernel_size),
                "strides": tuple(layer.strides),
                "padding": layer.padding.upper(),
                "input_gradient": passes == 3,
                "train_flops": passes * forward,
            }
        )
    return specs


def _timed(run, repeats: int) -> list[float]:
    """Seconds of each of `repeats` timed calls of `run()`, after one untimed call (which compiles)."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def time_conv(spec: dict, batch: int, dtype: str, repeats: int, calls: int = 10) -> list[float]:
    """Seconds per training pass of one convolution (see conv_specs), each the mean of `calls`."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.cast(rng.standard_normal((batch, *spec["input"]), dtype=np.float32), dtype)
    w = tf.cast(rng.standard_normal((*spec["kernel"], spec["input"][-1], spec["filters"]), dtype=np.float32), dtype)

    @tf.function
    def passes(x, w):
        wanted = [x, w] if spec["input_gradient"] else [w]
        with tf.GradientTape() as tape:
            tape.watch(wanted)
            y = tf.nn.conv2d(x, w, spec["strides"], spec["padding"])
            loss = tf.reduce_sum(tf.cast(y, tf.float32))
        return tape.gradient(loss, wanted)

    def run():
        for _ in range(calls):
            grads = passes(x, w)
        [g.numpy() for g in grads]  # wait for the last call's results

    return [t / calls for t in _timed(run, repeats)]


def time_step(model, batch: int, repeats: int) -> list[float]:
    """Seconds per training step of the whole compiled model, through `model.fit` on random data."""
    rng = np.random.default_rng(0)
    x = rng.random((STEPS_TIMED * batch, config.IMAGE_SIDE, config.IMAGE_SIDE), dtype=np.float32)
    y = rng.integers(0, config.N_CLASSES, len(x))
    return [t / STEPS_TIMED for t in _timed(lambda: model.fit(x, y, batch_size=batch, epochs=1, verbose=0), repeats)]


def profile(p: dict, repeats: int) -> dict:
    """Settings in, timings out (no file read or written): every convolution and the whole training
    step of model `p` (its resolved params.toml settings), timed under TensorFlow."""
    import keras

    from pipeline.modeling.models import build_model
    from pipeline.modeling.trainer import compile_model

    precision = p.get("precision", "float32")
    keras.mixed_precision.set_global_policy(precision)
    model = build_model(p["model"], seed=p["seed"], **params_mod.build_options(p))
    compile_model(model, p, ROWS_PER_EPOCH)
    dtype = keras.mixed_precision.global_policy().compute_dtype
    batch = p["batch_size"]
    specs = conv_specs(model)
    if not specs:
        raise PipelineError(f"model {p['model']} has no Conv2D layer to time: try --model cnn")
    rows = []
    for spec in specs:
        times = time_conv(spec, batch, dtype, repeats)
        rows.append(
            {
                **spec,
                "seconds": min(times),
                "seconds_all": times,
                "gflops": spec["train_flops"] * batch / min(times) / 1e9,
            }
        )
    step = time_step(model, batch, repeats)
    return {
        "model": p["model"],
        "options": params_mod.architecture(p),
        "precision": precision,
        "batch": batch,
        "peak_gflops": peak().get(precision),  # None: bf16 emulated, or the clock unknown
        "peak_how": peak()["how"],
        "convs": rows,
        "step_seconds": min(step),
        "step_seconds_all": step,
        "repeats": repeats,
    }


def markdown(result: dict) -> str:
    peak, batch, step = result["peak_gflops"], result["batch"], result["step_seconds"]

    def share(gflops: float) -> str:
        return f"{gflops / peak:.0%}" if peak else "unknown"

    lines = [
        f"{result['model']} {result['options']}, {result['precision']}, batch {batch}; fastest of "
        f"{result['repeats']} passes each; peak {f'{peak:.0f} GFLOP/s' if peak else 'unknown'} "
        f"({result.get('peak_how', '')})",
        "",
        "| layer | input | filters, kernel, stride | training MFLOP/image | ms/step | GFLOP/s | share of peak |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["convs"]:
        lines.append(
            f"| {r['name']} | {'x'.join(map(str, r['input']))} | {r['filters']}, {r['kernel'][0]}x{r['kernel'][1]}, "
            f"{r['strides'][0]} | {r['train_flops'] / 1e6:.2f} | {r['seconds'] * 1e3:.2f} | {r['gflops']:.0f} | "
            f"{share(r['gflops'])} |"
        )
    conv_s = sum(r["seconds"] for r in result["convs"])
    per_image = sum(r["train_flops"] for r in result["convs"])
    gflops = per_image * batch / conv_s / 1e9
    lines += [
        f"| all convolutions | | | {per_image / 1e6:.2f} | {conv_s * 1e3:.2f} | {gflops:.0f} | {share(gflops)} |",
        "",
        f"Whole training step: {step * 1e3:.1f} ms (an epoch of {ROWS_PER_EPOCH:,} rows: "
        f"{step * ROWS_PER_EPOCH / batch:.1f} s; "
        f"passes {', '.join(f'{t * 1e3:.0f}' for t in result['step_seconds_all'])} ms). The convolutions are "
        f"{conv_s / step:.0%} of it: were the rest free, a step would take {conv_s * 1e3:.1f} ms, "
        f"{step / conv_s:.2f}x faster.",
        "",
    ]
    return "\n".join(lines)


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cnn", help="a model of params.toml with Conv2D layers (default cnn)")
    ap.add_argument("--repeats", type=int, default=5, help="timed passes of each part; the fastest is reported")
    ap.add_argument("overrides", nargs="*", help="parameter overrides, as make's PARAMS=")
    args = ap.parse_args(argv)
    if os.environ.setdefault("KERAS_BACKEND", "tensorflow") != "tensorflow":
        raise PipelineError(
            f"make bench-layers times TensorFlow's oneDNN kernels: unset KERAS_BACKEND "
            f"(it is {os.environ['KERAS_BACKEND']})"
        )
    from pipeline.modeling import backend
    from pipeline.speed import tune

    p = tune.resolve(params_mod.for_model(params_mod.resolve(args.overrides), args.model))  # "auto" precision

    backend.init(p["seed"], "tensorflow")
    result = profile(p, args.repeats)
    table = markdown(result)
    write_json(config.BENCH_DIR / "layers.json", result)
    write_text(config.BENCH_DIR / "layers.md", table)
    print(table + f"-> {config.BENCH_DIR / 'layers.md'}")


if __name__ == "__main__":
    main()
