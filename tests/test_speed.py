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
    code = "from pipeline.modeling import backend; backend.init(0, 'jax'); from pipeline.speed import flops; print(*flops.check_one_layer())"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=JAX, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    xla, shapes = map(float, proc.stdout.split())
    assert shapes == 2 * 24 * 24 * 3 * 3 * 32 * 32 + 24 * 24 * 32  # multiply-adds twice, plus the bias
    assert xla == pytest.approx(shapes, rel=0.01)


@pytest.mark.slow
def test_the_committed_table_is_xlas_count_now():
    table = json.loads(flops.TABLE.read_text())
    assert {flops.key(m, json.loads(o)) for m, o in flops.architectures()} <= set(table)
    for key, value in table.items():
        model, options = key.split(" ", 1)
        assert flops.count(model, options) == pytest.approx(value, rel=1e-6), key
