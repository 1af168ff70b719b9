"""The Make targets as a new user runs them, on the committed sample, in a throwaway copy."""

import json
import signal
import subprocess
import sys
import time

import pytest

from pipeline import csvcheck
from tests.helpers import make, run, sample_zip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def made(shared, tmp_path_factory):
    """A fresh copy of the project after `make submit EPOCHS=1` (made once per run: conftest.py's
    `shared`), and what that make printed."""
    return shared.copy("submitted", tmp_path_factory.mktemp("e2e") / "project")


@pytest.fixture(scope="module")
def project(made):
    return made[0]


def test_make_submit_on_the_sample_writes_a_valid_submission_and_says_why_it_did_not_upload(made):
    project, (out,) = made
    assert "DEMO sample" in out
    assert "not uploaded: its test set is the committed demo sample" in out
    labels = csvcheck.read_submission(project / "submissions/submission.csv", n_expected=1000)
    assert labels.min() >= 0 and labels.max() <= 9
    metrics = json.loads((project / "models/conv_gru/metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and metrics["parameters"] == 28_506
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["params"]["epochs"] == 1
    prov = json.loads((project / "submissions/submission.json").read_text())
    assert prov["model"] == "conv_gru" and prov["data"]["origin"] == "sample"


def test_second_make_submit_does_no_work(project):
    out = make(project, "submit", "EPOCHS=1")
    for stage in ("pipeline.dataset", "pipeline.features", "pipeline.modeling.train", "pipeline.modeling.predict"):
        assert stage not in out


def test_changed_parameter_retrains_only_what_depends_on_it(project):
    out = make(project, "submission", "EPOCHS=1", "SEED=3")
    assert "pipeline.modeling.train" in out and "pipeline.modeling.predict" in out
    assert "pipeline.dataset" not in out and "pipeline.features" not in out


def test_same_data_params_and_seed_give_the_same_submission_byte_for_byte(shared, tmp_path):
    """Retrained in another folder, the model of `make submit EPOCHS=1` writes the same bytes."""
    project, _ = shared.copy("submitted", tmp_path / "project")
    first = (project / "submissions/submission.csv").read_bytes()
    first_acc = json.loads((project / "models/conv_gru/metrics.json").read_text())["val_accuracy"]
    (project / "models/conv_gru/metrics.json").unlink()
    out = make(project, "submission", "EPOCHS=1")
    assert "pipeline.modeling.train" in out  # trained again, not found made
    assert (project / "submissions/submission.csv").read_bytes() == first
    assert json.loads((project / "models/conv_gru/metrics.json").read_text())["val_accuracy"] == first_acc


def test_killed_training_resumes_from_its_last_epoch(project):
    epochs = 5
    make(project, "models/conv_gru/params.json", f"EPOCHS={epochs}")  # killed after 2: 3 epochs to spare
    cmd = [sys.executable, "-m", "pipeline.modeling.train", "--model", "conv_gru"]
    proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    state = None
    while time.time() < deadline:  # wait until at least two epochs are checkpointed
        found = list((project / "models/conv_gru").glob(".work-*/state.json"))
        if found and len(json.loads(found[0].read_text())["history"]) >= 2:
            state = found[0]
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0 and state is not None
    done = len(json.loads(state.read_text())["history"])
    assert 2 <= done < epochs
    resumed = run(cmd, cwd=project)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming conv_gru after epoch {done} of {epochs}" in resumed.stdout
    assert not any(line.startswith("epoch  1/") for line in resumed.stdout.splitlines())  # not from scratch
    metrics = json.loads((project / "models/conv_gru/metrics.json").read_text())
    assert metrics["epochs_run"] == epochs
    assert not state.parent.exists()


def test_demo_data_switches_to_kaggle_once_credentials_appear_and_is_uploaded_once(
    shared, tmp_path, fake_kaggle, kaggle_env
):
    """Without credentials the demo sample is not uploaded, saying why; once they appear (and no local
    source was given) the next `make submit` downloads the competition from the Kaggle API, reruns every
    stage on it, uploads, and reports the reference; a second uploads nothing."""
    root, _ = shared.copy("submitted", tmp_path / "project")
    no_credentials = {k: v for k, v in kaggle_env.items() if k not in ("KAGGLE_USERNAME", "KAGGLE_KEY")}
    out = make(root, "submit", "EPOCHS=1", env=no_credentials | {"KAGGLE_USERNAME": "", "KAGGLE_KEY": ""})
    line = next(ln for ln in out.splitlines() if "not uploaded" in ln)
    assert "committed demo sample" in line and "configure Kaggle credentials" in line
    assert "pipeline.modeling" not in out  # the demo's model was up to date

    fake_kaggle.zip_bytes = sample_zip(1000, 200)  # the competition, as the fake serves it (small: quick)
    out = make(root, "submit", "EPOCHS=1", env=kaggle_env)
    for stage in ("pipeline.dataset", "pipeline.features", "pipeline.modeling.train", "pipeline.modeling.predict"):
        assert f"-m {stage}" in out, out  # the competition's files, retrained
    assert "from the Kaggle API" in out
    assert json.loads((root / "data/raw/source.json").read_text())["origin"] == "kaggle-api"
    assert "uploaded submission.csv to digit-recognizer: ref" in out
    assert fake_kaggle.uploads and fake_kaggle.uploads[-1] == (root / "submissions/submission.csv").read_bytes()
    assert len(csvcheck.read_submission(root / "submissions/submission.csv", n_expected=200)) == 200
    message = fake_kaggle.calls("CreateSubmission")[-1].json["submissionDescription"]
    assert message.startswith("conv_gru | val_acc ") and "| params " in message
    assert fake_kaggle.key not in out
    again = make(root, "submit", "EPOCHS=1", env=kaggle_env)
    assert "already uploaded" in again and len(fake_kaggle.calls("CreateSubmission")) == 1
    history = make(root, "submissions", env=kaggle_env)
    assert "conv_gru | val_acc" in history
