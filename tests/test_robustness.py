"""Outputs are all-or-nothing, models and submissions are checked before use."""

import errno
import os
import zipfile

import numpy as np
import pytest

from pipeline import files
from pipeline.errors import PipelineError
from pipeline.kaggle.submit import check_provenance, upload_refusal
from pipeline.modeling import backend
from tests.helpers import record

backend.init()


def fail_with(code):
    def boom(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return boom


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_failed_write_is_one_clear_error_and_the_old_file_survives(tmp_path, monkeypatch, code):
    target = tmp_path / "metrics.json"
    files.write_json(target, {"good": True})
    monkeypatch.setattr(os, "fsync", fail_with(code))  # the disk fills up (or turns read-only) mid-write
    with pytest.raises(PipelineError, match=f"cannot write {target}: {os.strerror(code)}"):
        files.write_json(target, {"good": False})
    monkeypatch.undo()
    assert files.read_json(target) == {"good": True}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left behind


def test_an_unwritable_folder_is_one_clear_error(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "mkstemp", fail_with(errno.EROFS))
    with pytest.raises(PipelineError, match="Read-only file system"):
        files.write_text(tmp_path / "x.csv", "ImageId,Label\n")


def test_outputs_keep_ordinary_permissions(tmp_path):
    files.write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o044  # readable by others, as with a plain open()


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from pipeline.modeling.models import build_model

    path = tmp_path_factory.mktemp("model") / "model.keras"
    build_model("conv_gru").save(path)
    record(path.parent / "metrics.json", path.name)  # as `make train` records it
    return path


def test_a_good_model_loads(saved_model):
    from pipeline.modeling.predict import load_model, predict_labels

    labels, proba = predict_labels(load_model(saved_model), np.zeros((2, 28, 28), np.float32))
    assert labels.shape == (2,) and proba.shape == (2, 10)


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda b: os.urandom(len(b)), "is not a Keras model file"),
        (lambda b: b[: len(b) // 2], "is not a Keras model file"),
        (lambda b: b"", "is not a Keras model file"),
    ],
)
def test_a_damaged_model_is_a_clear_error(tmp_path, saved_model, damage, fragment):
    from pipeline.modeling.predict import load_model

    path = tmp_path / "model.keras"
    path.write_bytes(damage(saved_model.read_bytes()))
    record(tmp_path / "metrics.json", path.name)  # damaged before its stage recorded it: its format is checked too
    with pytest.raises(PipelineError, match=fragment):
        load_model(path)


def test_a_model_that_changed_since_its_stage_recorded_it_is_set_aside(tmp_path, saved_model):
    from pipeline.modeling.predict import load_model

    path = tmp_path / "model.keras"
    path.write_bytes(saved_model.read_bytes())
    record(tmp_path / "metrics.json", path.name)
    path.write_bytes(saved_model.read_bytes()[:1000])  # truncated later, by a full disk or a bad copy
    with pytest.raises(
        PipelineError,
        match=r"model.keras is damaged \(1,000 bytes whose sha256 \w+ is not the \w+ \S*"
        r"metrics.json recorded\); set aside as model.keras.damaged and its stage "
        r"marked out of date: rerun the same make command to rebuild it",
    ):
        load_model(path)
    assert not path.exists() and (tmp_path / "model.keras.damaged").exists()
    assert (tmp_path / "metrics.json").stat().st_mtime == 0  # so Make reruns the stage that writes it


def test_an_unrecorded_model_is_refused(tmp_path, saved_model):
    from pipeline.modeling.predict import load_model

    path = tmp_path / "model.keras"
    path.write_bytes(saved_model.read_bytes())
    with pytest.raises(PipelineError, match="model.keras is damaged \\(no stage's manifest records it\\)"):
        load_model(path)


def test_a_zip_that_is_no_keras_model_is_a_clear_error(tmp_path):
    from pipeline.modeling.predict import load_model

    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "not a model")
    record(tmp_path / "metrics.json", path.name)
    with pytest.raises(PipelineError, match="could not be loaded"):
        load_model(path)


def test_a_model_for_other_inputs_is_refused(tmp_path):
    import keras

    from pipeline.modeling.predict import load_model

    inputs = keras.Input((784,))
    path = tmp_path / "flat.keras"
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(inputs)).save(path)
    record(tmp_path / "metrics.json", path.name)
    with pytest.raises(PipelineError, match=r"expects input shape \(None, 784\)"):
        load_model(path)


PROV = {
    "submission": "submission.csv",
    "submission_sha256": "s1",
    "model": "conv_gru",
    "predicted_by": "models/conv_gru/model.keras",
    "predicted_by_sha256": "m1",
    "data": {"test_sha256": "t1", "origin": "kaggle-api", "from_kaggle": True, "path": "x.zip"},
}
SOURCE = {"sha256": {"test.csv": "t1"}}


@pytest.mark.parametrize(
    "sub, model, test, fragment",
    [
        ("s2", "m1", "t1", "changed after it was predicted"),
        ("s1", "m2", "t1", "predicted by an older conv_gru"),
        ("s1", "m1", "t2", "predicted from a different test.csv"),
    ],
)
def test_submission_is_refused_unless_its_provenance_matches(sub, model, test, fragment):
    with pytest.raises(PipelineError, match=fragment):
        check_provenance(PROV, sub, model, {"sha256": {"test.csv": test}})


def test_matching_provenance_passes():
    check_provenance(PROV, "s1", "m1", SOURCE)


def test_only_kaggle_data_with_credentials_is_uploaded():
    assert upload_refusal(PROV, credentials=True) is None
    assert "no Kaggle credentials" in upload_refusal(PROV, credentials=False)
    local = PROV | {"data": PROV["data"] | {"origin": "local", "from_kaggle": False}}
    assert "local data (x.zip)" in upload_refusal(local, credentials=True)
    sample = PROV | {"data": PROV["data"] | {"origin": "sample", "from_kaggle": False}}
    assert "demo sample" in upload_refusal(sample, credentials=True)
