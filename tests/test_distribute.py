"""Data-parallel training through the frameworks' own engines, on a CPU split in two."""

import json
from pathlib import Path

import pytest

from tests.helpers import copy_project, make, run, run_module

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("distribute"))
    make(root, "features")
    return root


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_data_parallel_training_uses_two_devices(project, backend):
    env = {"KERAS_BACKEND": backend, "PIPELINE_CPU_DEVICES": "2"}
    out = f"models/dp-{backend}"
    proc = run_module(
        "pipeline.params",
        "--model",
        "conv_gru",
        "--out",
        f"{out}/params.json",
        "train.distribute=on",
        "train.conv_gru.epochs=1",
        cwd=project,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    proc = run_module("pipeline.modeling.train", "--model", "conv_gru", "--out", out, "--quiet", cwd=project, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((project / out / "metrics.json").read_text())
    assert metrics["backend"] == backend
    assert metrics["replicas"] == 2
    assert metrics["epochs_run"] == 1 and 0.0 < metrics["val_accuracy"] <= 1.0


def test_training_and_prediction_run_where_tensorflow_is_not_installed(project, tmp_path):
    """A GPU box with JAX but no TensorFlow: nothing on the training path may need TF."""
    import sys
    import sysconfig

    site = tmp_path / "site"
    site.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(("tensorflow", "tensorboard", "tf_keras")):
            (site / entry.name).symlink_to(entry)
    env = {"KERAS_BACKEND": "jax", "PYTHONPATH": str(site)}
    python = [sys.executable, "-S"]  # no site-packages but the filtered copy above
    proc = run([*python, "-c", "import tensorflow"], cwd=project, env=env)
    assert proc.returncode != 0  # really absent
    out = "models/conv_gru"
    proc = run(
        [
            *python,
            "-m",
            "pipeline.params",
            "--model",
            "conv_gru",
            "--out",
            f"{out}/params.json",
            "train.conv_gru.epochs=1",
        ],
        cwd=project,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    proc = run(
        [*python, "-m", "pipeline.params", "--predict", "--model", "conv_gru", "--out", f"{out}/predict.json"],
        cwd=project,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    for module in ("pipeline.modeling.train", "pipeline.modeling.predict"):
        proc = run([*python, "-m", module, "--model", "conv_gru"], cwd=project, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert (project / "submissions/submission.csv").exists()
