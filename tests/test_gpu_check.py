"""The prepared GPU check runs end to end: here on the CPU, on a cut of the sample, with its epochs cut to one
and its CNN to width 8 (the notebook's run and its report are the point; tests/test_learning.py tests learning)."""

import json

import pytest

from tests.helpers import run, sample_zip, venv_dir

pytestmark = pytest.mark.slow


def test_the_gpu_check_runs_the_notebook_script_and_reports_each_run(tmp_path):
    out = tmp_path / "gpu-check.json"
    data = tmp_path / "data.zip"
    data.write_bytes(sample_zip(500, 100))
    proc = run(
        [
            str(venv_dir() / "bin" / "python"),
            "-m",
            "pipeline.speed.gpu_check",
            "--data",
            str(data),
            "--epochs-scale",
            "0.01",
            "--params",
            "train.cnn.width=8",
            "--only",
            "cnn mixed_float16",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    # One of the four runs (the seed model's notebook run is tests/test_kernel.py's): the CNN in float16.
    assert [(r["check"], r["precision"]) for r in results] == [("cnn mixed_float16", "mixed_float16")]
    for r in results:
        assert r["params"] == ["train.cnn.precision=mixed_float16", "train.cnn.width=8"]
        assert r["epochs"] == 1 and r["returncode"] == 0 and 0 < r["seconds_per_epoch"] < r["wall_seconds"]
        assert 0 <= r["val_accuracy"] <= 1  # one epoch on 450 rows: scored, not yet learnt
    lines = proc.stdout.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("cnn mixed_float16: cnn 1 epochs on no GPU: ")
    assert "validation accuracy" in lines[0] and "mixed_float16" in lines[0]
