"""`make bench-layers`: each convolution's training work counted by its shapes and timed alone, and
the whole step beside it (pipeline/speed/layers.py)."""

import json
import os
import subprocess
import sys

from tests.helpers import REPO

TF = {**{k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}, "TF_CPP_MIN_LOG_LEVEL": "3"}


def run_layers(tmp_path, *args, env=TF):
    return subprocess.run(
        [sys.executable, "-m", "pipeline.speed.layers", *args],
        cwd=REPO,
        env={**env, "PIPELINE_OUT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_convolutions_counted_by_shape_first_without_its_input_gradient():
    from pipeline.modeling import backend

    backend.init()  # the shapes are any backend's (the timing is TensorFlow's)
    from pipeline.modeling.models import build_model
    from pipeline.speed.layers import conv_specs

    specs = json.loads(json.dumps(conv_specs(build_model("cnn", augment=True, seed=0, width=8))))  # as in layers.json
    assert [s["name"] for s in specs] == ["conv1_1", "conv1_2", "conv1_3", "conv2_1", "conv2_2", "conv2_3"]
    assert [s["input_gradient"] for s in specs] == [False] + [True] * 5
    # conv1_2 at width 8: 24 x 24 outputs, 3 x 3 x 8 inputs each, 8 filters, no bias; forward,
    # filter gradient and input gradient are each that many multiply-adds.
    assert specs[1]["train_flops"] == 3 * 2 * 24 * 24 * 3 * 3 * 8 * 8
    assert specs[0]["train_flops"] == 2 * 2 * 26 * 26 * 3 * 3 * 1 * 8  # no gradient for the image
    assert specs[2]["output"] == [12, 12, 8] and specs[2]["strides"] == [2, 2]


def test_bench_layers_writes_a_row_per_convolution_and_the_step(tmp_path):
    proc = run_layers(tmp_path, "--repeats", "1", "train.cnn.width=8", "train.cnn.batch_size=16")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "bench" / "layers.json").read_text())
    assert result["options"] == {"width": 8} and result["batch"] == 16
    assert len(result["convs"]) == 6 and all(r["seconds"] > 0 for r in result["convs"])
    assert result["step_seconds"] > 0
    table = (tmp_path / "bench" / "layers.md").read_text()
    assert table.count("| conv") == 6 and "all convolutions" in table and "Whole training step" in table


def test_bench_layers_refuses_another_backend_and_a_model_without_convolutions(tmp_path):
    proc = run_layers(tmp_path, env={**TF, "KERAS_BACKEND": "jax"})
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: make bench-layers times TensorFlow's oneDNN kernels: unset KERAS_BACKEND (it is jax)"
    ]
    proc = run_layers(tmp_path, "--model", "mlp", "--repeats", "1", "train.mlp.batch_size=16")
    assert proc.returncode == 2 and "no Conv2D layer" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "bench" / "layers.json").exists()
