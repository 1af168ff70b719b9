"""The user's guide works on any machine: README.md and docs/ hold no path of the machine the runs
were made on, and `make results` writes each command as a reader would type it in a checkout."""

import json
import re

import pytest

from pipeline.evaluate import results
from tests.helpers import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
# An absolute path starting a word (after a space, `=`, a quote, a backtick or a bracket). Allowed: the
# folders every Kaggle notebook has (/kaggle/...), every Linux (/proc/, /dev/), and the placeholder /path/.
ABSOLUTE = re.compile(r"""(?:^|[\s=`'"(\[])(/[A-Za-z][\w.-]*/\S*)""")
EVERYWHERE = ("/kaggle/", "/proc/", "/dev/", "/path/")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_path_of_one_machine_in_the_readme_or_docs(doc):
    found = [
        f"{doc.relative_to(REPO)}:{n}: {path}"
        for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1)
        for path in ABSOLUTE.findall(line)
        if not path.startswith(EVERYWHERE)
    ]
    assert not found, found


def test_the_check_finds_a_machine_path():
    assert ABSOLUTE.findall("| `make submission DATA=/work/shared/data/x.zip` |") == ["/work/shared/data/x.zip`"]
    assert ABSOLUTE.findall("`~/.kaggle/kaggle.json`, https://www.kaggle.com/settings, models/<m>/cv/") == []


def test_a_command_is_written_relative_to_the_checkout(tmp_path):
    root = tmp_path / "work" / "checkout"
    data = tmp_path / "work" / "shared" / "digits.zip"
    assert results.portable(f"make submission MODEL=blend DATA={data}", root) == (
        "make submission MODEL=blend DATA=../shared/digits.zip"
    )
    assert (
        results.portable(f"make bench 'DATA={data}' OUT={root}/out", root)
        == "make bench 'DATA=../shared/digits.zip' OUT=out"
    )
    assert results.portable("make submission DATA=../shared/digits.zip PARAMS=a=/b", root) == (
        "make submission DATA=../shared/digits.zip PARAMS=a=/b"  # as typed; a value's own `=/` is no path
    )


def test_make_results_writes_no_absolute_data_path(tmp_path):
    data = f"DATA={REPO.parent}/shared/data/digit-recognizer.zip"
    times = {"started": "2026-12-01T10:00:00Z", "finished": "2026-12-01T10:30:00Z"}
    run = {"command": f"make submission MODEL=cnn CV=1 {data}", "id": "7-1", "cores": 2, "cpu": "x"} | times
    manifests = {
        "submissions/submission-cnn-cv.json": {"submission_sha256": "s", "val_accuracy": 0.99, "run": run},
        "bench/results.json": {"make_command": f"make bench {data}", "wall_seconds": 60, "started": times["started"]},
    }
    for name, manifest in manifests.items():
        (tmp_path / name).parent.mkdir(parents=True)
        (tmp_path / name).write_text(json.dumps(manifest))
    table, _ = results.submissions_table([tmp_path])
    bench = results.bench_run(tmp_path / "bench/results.json")
    assert "`make submission MODEL=cnn CV=1 DATA=../shared/data/digit-recognizer.zip`" in table
    assert "`make bench DATA=../shared/data/digit-recognizer.zip`" in bench
    assert str(REPO.parent) not in table + bench
