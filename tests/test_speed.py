"""FLOPs are counted, not guessed: XLA's count agrees with a layer's shapes, and the committed table
(pipeline/speed/flops.json) is what XLA counts now."""

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
def test_the_committed_table_is_xlas_count_now():
    table = json.loads(flops.TABLE.read_text())
    assert {flops.key(m, json.loads(o)) for m, o in flops.architectures()} <= set(table)
    counted = flops.count_many({tuple(key.split(" ", 1)) for key in table})  # one process for all
    for key, value in table.items():
        assert counted[key] == pytest.approx(value, rel=1e-6), key


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
