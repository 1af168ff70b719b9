"""Results come from files: docs/results.md is generated from the runs' manifests, and every figure
in the README's results table is one of docs/results.md's."""

import json
import re

from pipeline.evaluate import results
from tests.helpers import REPO


def readme_table() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start, end = text.index(results.START), text.index(results.END)
    return text[start + len(results.START) : end]


def test_every_figure_in_the_readmes_table_is_in_docs_results():
    table = readme_table()
    figures = re.findall(r"\d+(?:\.\d+)?(?:%| min)", table)
    assert figures, "the README's results table holds no figure"
    generated = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    assert table.strip() in generated, "the README's table is not docs/results.md's: run `make results`"
    for f in figures:
        assert f in generated, f


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_a_submission_row_gives_the_wall_time_of_the_whole_make_run(tmp_path):
    run = {"command": "make submission MODEL=blend DATA=x.zip", "id": "42-1000", "cores": 2, "cpu": "AMD EPYC"}
    other = run | {"id": "43-2000", "command": "make cv MODEL=cnn"}
    write(
        tmp_path / "data/raw/source.json",
        {"run": run | {"started": "2026-12-01T10:00:00Z", "finished": "2026-12-01T10:00:30Z"}},
    )
    write(
        tmp_path / "models/cnn/cv/fold-1/metrics.json",
        {"run": run | {"started": "2026-12-01T10:01:00Z", "finished": "2026-12-01T10:40:00Z"}},
    )
    write(
        tmp_path / "models/old/cv/fold-1/metrics.json",  # another run's: not counted
        {"run": other | {"started": "2026-11-30T08:00:00Z", "finished": "2026-12-01T11:00:00Z"}},
    )
    write(
        tmp_path / "submissions/submission-blend.json",
        {
            "submission_sha256": "s",
            "oof_accuracy": 0.99712,
            "oof_ci95": [0.9966, 0.9976],
            "folds": 5,
            "provenance": {"run": run | {"started": "2026-12-01T11:20:00Z", "finished": "2026-12-01T11:21:00Z"}},
        },
    )

    table, rows = results.submissions_table([tmp_path])

    assert len(rows) == 1
    assert (
        "| `make submission MODEL=blend DATA=x.zip` | submission-blend.csv | 99.71% OOF (5 folds) | 99.66%-99.76% "
        "| 81.0 min | 2 cores, AMD EPYC | 2026-12-01 |"
    ) in table
