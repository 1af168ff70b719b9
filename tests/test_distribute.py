"""Data-parallel training through the frameworks' own engines, on a CPU split in two."""

import json

import pytest

from tests.helpers import copy_project, run, run_module, venv_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("distribute"))
    proc = run(["make", f"VENV={venv_dir()}", "features"], cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_data_parallel_training_uses_two_devices(project, backend):
    env = {"KERAS_BACKEND": backend, "PIPELINE_CPU_DEVICES": "2"}
    out = f"models/dp-{backend}"
    proc = run_module("pipeline.params", "--model", "conv_gru", "--out", f"{out}/params.json",
                      "train.distribute=true", "train.conv_gru.epochs=1", cwd=project, env=env)
    assert proc.returncode == 0, proc.stderr
    proc = run_module("pipeline.modeling.train", "--model", "conv_gru", "--out", out, "--quiet", cwd=project, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((project / out / "metrics.json").read_text())
    assert metrics["backend"] == backend
    assert metrics["replicas"] == 2
    assert metrics["epochs_run"] == 1 and 0.0 < metrics["val_accuracy"] <= 1.0
