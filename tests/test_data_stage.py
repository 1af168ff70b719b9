"""The data stage as a user runs it: every bad input ends in one line, exit 2, and leaves the
data already in place untouched; zips are extracted safely."""

import json

import pytest

from pipeline import config
from pipeline.datasource import Source, choose_source
from pipeline.errors import PipelineError
from tests.helpers import (
    TRAIN_HEADER,
    competition_files,
    copy_project,
    csv_text,
    digits_table,
    error_line,
    make_zip,
    run_module,
)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project copy whose data/raw already holds good data (from the committed sample)."""
    root = copy_project(tmp_path_factory.mktemp("project"))
    proc = run_module("pipeline.dataset", "--data", "data/sample/digit-recognizer-sample.zip", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert "5,000 train and 1,000 test rows" in proc.stdout
    return root


def raw_state(root):
    return {p.name: p.read_bytes() for p in sorted((root / "data/raw").iterdir())}


def bad_zips(tmp):
    good = competition_files()
    sample = (config.SAMPLE_ZIP).read_bytes()
    cases = {
        "bad cell in train.csv": (
            make_zip(
                tmp / "cell.zip",
                competition_files(
                    train_text=csv_text(TRAIN_HEADER, [r[:50] + ["300"] + r[51:] for r in digits_table(3)])
                ),
            ),
            "train.csv: line 2, column 'pixel49': 300 is outside 0-255",
        ),
        "truncated zip": (tmp / "truncated.zip", "not a readable zip file"),
        "not a zip": (tmp / "notzip.zip", "not a readable zip file"),
        "zip without train.csv": (
            make_zip(tmp / "notrain.zip", {k: v for k, v in good.items() if k != "train.csv"}),
            "no train.csv in the zip",
        ),
        "zip escaping the folder": (
            make_zip(tmp / "escape.zip", good | {"../evil.csv": "x"}),
            "refused: member '../evil.csv' would be written outside",
        ),
        "zip with an absolute path": (
            make_zip(tmp / "abs.zip", good | {"/tmp/evil.csv": "x"}),
            "refused: member '/tmp/evil.csv'",
        ),
        "sample_submission rows differ": (
            make_zip(tmp / "rows.zip", good | {"sample_submission.csv": "ImageId,Label\n1,0\n"}),
            "has 1 rows but test.csv has 12",
        ),
        "folder missing test.csv": (tmp / "folder", "no test.csv in this folder"),
        "no such path": (tmp / "nowhere.zip", "no such file or folder"),
    }
    (tmp / "truncated.zip").write_bytes(sample[: len(sample) // 2])
    (tmp / "notzip.zip").write_text("this is not a zip\n")
    (tmp / "folder").mkdir()
    (tmp / "folder/train.csv").write_text(good["train.csv"])
    return cases


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return bad_zips(tmp_path_factory.mktemp("bad"))


CASES = [
    "bad cell in train.csv",
    "truncated zip",
    "not a zip",
    "zip without train.csv",
    "zip escaping the folder",
    "zip with an absolute path",
    "sample_submission rows differ",
    "folder missing test.csv",
    "no such path",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_source_is_refused_and_good_data_stays(project, corpus, case):
    path, fragment = corpus[case]
    before = raw_state(project)
    proc = run_module("pipeline.dataset", "--data", str(path), cwd=project)
    line = error_line(proc)
    assert fragment in line
    assert raw_state(project) == before  # earlier good outputs untouched
    leftovers = [p.name for p in (project / "data").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no staging folder left behind
    assert not (project / "evil.csv").exists() and not (project / "data/evil.csv").exists()


def test_good_zip_installs_the_files_and_the_manifest(tmp_path):
    root = copy_project(tmp_path)
    zip_path = make_zip(tmp_path / "comp.zip", competition_files(n_train=40, n_test=15))
    proc = run_module("pipeline.dataset", "--data", str(zip_path), cwd=root)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((root / "data/raw/source.json").read_text())
    assert manifest["origin"] == "local" and manifest["from_kaggle"] is False
    assert manifest["rows"] == {"train": 40, "test": 15}
    assert sorted(p.name for p in (root / "data/raw").iterdir()) == sorted(
        [*config.RAW_FILES, "arrays.npz", "source.json"]
    )


def mount(input_root, *parts, files=None):
    """The competition's three files in input_root/parts..., as Kaggle mounts them."""
    folder = input_root.joinpath(*parts)
    folder.mkdir(parents=True)
    for name, text in (files or competition_files(n_train=3, n_test=2)).items():
        (folder / name).write_text(text)
    return folder


def test_source_order(tmp_path):
    notebook = tmp_path / "input"
    never = lambda: pytest.fail("the Kaggle API must not be consulted when a local source exists")  # noqa: E731
    assert choose_source(str(tmp_path), notebook, never) == Source("local", tmp_path)
    mounted = mount(notebook, "competitions", "digit-recognizer")
    assert choose_source(None, notebook, never) == Source("kaggle-notebook", mounted)
    assert choose_source(None, tmp_path / "absent", lambda: True).origin == "kaggle-api"
    assert choose_source(None, tmp_path / "absent", lambda: False) == Source("sample", config.SAMPLE_ZIP)
    with pytest.raises(PipelineError, match="no such file"):
        choose_source(str(tmp_path / "missing.zip"), notebook, never)


@pytest.mark.parametrize(
    "parts",
    [
        ("competitions", "digit-recognizer"),  # pushed notebooks, 2026
        ("digit-recognizer",),  # older notebooks
        ("datasets", "someone", "mnist-as-kaggle-csv"),  # found by the search, under any name
        ("my-upload", "v2", "csv"),
    ],
)
def test_the_competition_is_found_wherever_kaggle_mounts_it(tmp_path, parts):
    from pipeline.datasource import find_competition

    root = tmp_path / "input"
    mount(
        root,
        "competitions",
        "titanic",
        files={
            "train.csv": "PassengerId,Survived\n1,0\n",
            "test.csv": "x\n",
            "sample_submission.csv": "PassengerId,Survived\n",
        },
    )
    assert find_competition(root) is None
    assert find_competition(root / "nothing-here") is None
    mount(root, *parts)
    assert find_competition(root) == root.joinpath(*parts)


def test_a_notebook_without_the_competition_lists_what_its_input_holds(tmp_path):
    root = tmp_path / "input"
    mount(root, "competitions", "titanic", files={"train.csv": "PassengerId\n", "gender_submission.csv": "x\n"})
    (root / "datasets" / "me" / "weights").mkdir(parents=True)
    with pytest.raises(PipelineError) as caught:
        choose_source(None, root, lambda: False, in_notebook=True)
    message = str(caught.value)
    assert message.startswith(
        f"the digit-recognizer competition's files (train.csv, test.csv, sample_submission.csv) "
        f"are nowhere under {root}, which holds: "
    )
    assert "competitions/titanic/gender_submission.csv, competitions/titanic/train.csv, datasets/me/weights" in message
    assert message.endswith("attach the digit-recognizer competition to this notebook")
    with pytest.raises(PipelineError, match="which holds: nothing \\(no such folder\\)"):
        choose_source(None, tmp_path / "absent", lambda: False, in_notebook=True)


def test_a_zip_of_the_competition_folder_is_accepted(tmp_path):
    """Users often re-zip the folder they unpacked: digit-recognizer/train.csv, ..."""
    from pipeline.dataset import extract_competition_zip

    files = {f"digit-recognizer/{name}": text for name, text in competition_files().items()}
    zip_path = make_zip(tmp_path / "rezipped.zip", files | {"__MACOSX/._train.csv": "junk"})
    dest = tmp_path / "out"
    dest.mkdir()
    extract_competition_zip(zip_path, dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted(config.RAW_FILES)
