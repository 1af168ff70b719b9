"""FLOPs are counted, not guessed: XLA's count agrees with a layer's shapes, every registered model
can be counted, and a count is made once, on demand, and cached with the code that built the model."""

import json
import os
import subprocess
import sys

import pytest

from pipeline.speed import flops
from tests.helpers import REPO

JAX = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}


def test_xla_counts_a_convolution_as_its_shapes_say():
    code = (
        "from pipeline.modeling import backend; backend.init(0, 'jax'); "
        "from pipeline.speed import flops; print(*flops.check_one_layer())"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=JAX, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    xla, shapes = map(float, proc.stdout.split())
    assert shapes == 2 * 24 * 24 * 3 * 3 * 32 * 32 + 24 * 24 * 32  # multiply-adds twice, plus the bias
    assert xla == pytest.approx(shapes, rel=0.01)


@pytest.mark.slow
def test_xla_counts_every_registered_model():
    from pipeline import params
    from pipeline.modeling.models import MODELS

    resolved = params.resolve([])
    found = {
        (name, json.dumps(params.architecture(params.for_model(resolved, name)), sort_keys=True)) for name in MODELS
    }
    counted = flops.count_many(found)  # one process for all
    assert len(counted) == len(MODELS) and all(value > 0 for value in counted.values()), counted


def test_a_count_is_made_once_and_cached_with_the_code_that_built_the_model(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(flops, "CACHE", tmp_path / "flops.json")
    monkeypatch.setattr(flops, "count", lambda model, options="{}": calls.append(model) or 1e6 * len(calls))

    def per_image(model):
        flops.per_image.cache_clear()  # a new process: only the file remembers
        return flops.per_image(model)

    assert per_image("mlp") == per_image("mlp") == 1e6 and calls == ["mlp"]
    assert per_image("lstm") == 2e6 and calls == ["mlp", "lstm"]
    code = flops.code_hash()
    assert json.loads((tmp_path / "flops.json").read_text()) == {f"mlp {{}} @{code}": 1e6, f"lstm {{}} @{code}": 2e6}
    monkeypatch.setattr(flops, "code_hash", lambda: "edited")  # a model's code changed: counted again
    assert per_image("mlp") == 3e6 and json.loads((tmp_path / "flops.json").read_text()) == {"mlp {} @edited": 3e6}
    flops.per_image.cache_clear()


@pytest.mark.parametrize("notebook", [False, True])
def test_jax_compiles_into_the_output_roots_cache_outside_a_notebook(tmp_path, notebook):
    env = {k: v for k, v in JAX.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env |= {"PIPELINE_OUT": str(tmp_path), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    if notebook:
        env["KAGGLE_KERNEL_RUN_TYPE"] = "Batch"
    code = (
        "from pipeline.modeling import backend; backend.init(0, 'jax'); import jax, jax.numpy as jnp; "
        "print(jax.jit(lambda a: (a @ a).sum())(jnp.ones((64, 64))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and float(proc.stdout) == 64**3, proc.stderr[-2000:]
    entries = list((tmp_path / ".make/xla-cache").glob("*-cache"))
    assert (not entries) if notebook else entries  # the notebook's output root is its downloaded output
