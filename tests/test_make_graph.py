"""Make's graph tells the truth: what a rule runs is what it depends on, a failed request leaves
no trace, nothing reruns without a cause, and `make clean` removes only what was generated."""

import os
import shutil
import subprocess
import time

import pytest

from pipeline import codedeps
from tests.helpers import REPO, run_make, sample_zip

STAGES = ("pipeline.dataset", "pipeline.features", "pipeline.modeling.train", "pipeline.modeling.predict")


def make(root, *args, env=None, ok=True):
    proc = run_make(root, *args, env=env)
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def stages_run(out: str) -> list[str]:
    return [s for s in STAGES if f"-m {s}" in out]


def outputs(root):
    """Every generated file with its mtime."""
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for d in ("data/raw", "data/processed", "models", "submissions")
        for p in (root / d).rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def project(shared, tmp_path_factory):
    """A copy of the project after `make submit EPOCHS=1` (made once per run: conftest.py's `shared`)."""
    return shared.copy("submitted", tmp_path_factory.mktemp("graph") / "project")[0]


@pytest.mark.slow
def test_a_mistyped_data_leaves_the_good_data_usable(project, tmp_path):
    before = outputs(project)
    bad = make(project, "data", f"DATA={tmp_path}/nope.zip", ok=False)
    assert bad.returncode != 0 and f"DATA={tmp_path}/nope.zip: no such file or folder" in bad.stderr
    for args in (["data"], ["submission", "EPOCHS=1"]):  # what used to fail until .make/ was deleted
        out = make(project, *args).stdout
        assert stages_run(out) == [], out
    assert outputs(project) == before


@pytest.mark.slow
def test_the_same_data_zip_with_a_newer_date_remakes_nothing(shared, tmp_path):
    root, _ = shared.copy("submitted", tmp_path / "project")
    data = tmp_path / "digit-recognizer.zip"
    shutil.copyfile(REPO / "data/sample/digit-recognizer-sample.zip", data)
    assert "pipeline.dataset" in stages_run(make(root, "submission", "EPOCHS=1", f"DATA={data}").stdout)
    before = outputs(root)
    time.sleep(0.01)
    shutil.copyfile(REPO / "data/sample/digit-recognizer-sample.zip", data)  # downloaded again: same bytes, newer
    out = make(root, "submission", "EPOCHS=1", f"DATA={data}").stdout
    assert stages_run(out) == [] and outputs(root) == before, out
    data.write_bytes(sample_zip(1000, 200))  # other bytes: the data stage runs
    assert "pipeline.dataset" in stages_run(make(root, "data", f"DATA={data}").stdout)


@pytest.mark.slow
def test_a_second_make_submission_rewrites_nothing(project):
    before = outputs(project)
    out = make(project, "submission", "EPOCHS=1").stdout
    assert stages_run(out) == [] and outputs(project) == before


@pytest.mark.slow
def test_editing_predict_remakes_the_submission_and_nothing_before_it(project):
    time.sleep(0.01)
    os.utime(project / "pipeline/modeling/predict.py")
    out = make(project, "submission", "EPOCHS=1").stdout
    assert stages_run(out) == ["pipeline.modeling.predict"], out


@pytest.mark.parametrize(
    "module, stage",
    [
        ("pipeline/params.py", "pipeline.modeling.train"),
        ("pipeline/modeling/distribute.py", "pipeline.modeling.train"),
        ("pipeline/provenance.py", "pipeline.modeling.train"),
        ("pipeline/csvcheck.py", "pipeline.dataset"),
    ],
)
@pytest.mark.slow
def test_every_module_a_stage_imports_is_a_prerequisite(project, module, stage):
    time.sleep(0.05)  # strictly newer than the previous test's `make -t` touch (Make takes equal times as up to date)
    os.utime(project / module)
    out = make(project, "-n", "submission", "EPOCHS=1").stdout
    assert f"-m {stage}" in out, out
    make(project, "-t", "submission", "EPOCHS=1")  # up to date again (touch, no rebuild) for the next test


def test_code_dependencies_are_read_from_the_imports():
    deps = codedeps.closure(REPO)
    assert {"pipeline/modeling/predict.py", "pipeline/csvcheck.py", "pipeline/files.py"} <= set(
        deps["pipeline.modeling.predict"]
    )
    assert {
        "pipeline/params.py",
        "pipeline/modeling/distribute.py",
        "pipeline/provenance.py",
        "pipeline/modeling/models.py",
    } <= set(deps["pipeline.modeling.train"])
    assert "pipeline/modeling/train.py" not in deps["pipeline.features"]


@pytest.mark.slow
def test_make_clean_leaves_git_status_clean(tmp_path):
    """Generated files are never tracked, so removing them cannot dirty the checkout."""
    root = tmp_path / "clone"
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in tracked:
        if (REPO / name).exists():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "tracked files"]):
        subprocess.run([*git, *args], cwd=root, check=True, capture_output=True)
    make(root, "features")
    make(root, "clean")
    status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout
    assert status == ""
    assert not (root / "data/raw").exists()


@pytest.mark.slow
def test_a_jax_run_prints_only_the_pipelines_lines(project):
    (project / "models/conv_gru/metrics.json").unlink()
    proc = make(project, "train", "EPOCHS=1")
    text = proc.stdout + proc.stderr
    for noise in ("cuda", "cuInit", "oneDNN", "I0000", "E0000", "absl"):
        assert noise not in text, text
    assert "epoch  1/1" in proc.stdout and "backend jax" in proc.stdout


@pytest.mark.slow
def test_a_tensorflow_run_prints_only_the_pipelines_lines(project):
    """Under TensorFlow with op determinism each epoch used to add an E0000 node_def_util line."""
    proc = make(project, "train", "MODEL=mlp", "EPOCHS=2", env={"KERAS_BACKEND": "tensorflow"})
    text = proc.stdout + proc.stderr
    for noise in ("cuda", "cuInit", "oneDNN", "I0000", "E0000", "absl", "NodeDef"):
        assert noise not in text, text
    assert "epoch  2/2" in proc.stdout and "backend tensorflow" in proc.stdout
