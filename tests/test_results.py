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


def test_a_blend_quotes_its_figure_and_each_members_alone():
    prov = {
        "oof_accuracy": 0.9960,
        "oof_ci95": [0.9953, 0.9965],
        "folds": 5,
        "member_oof_accuracy": {"cnn": 0.9958, "conv_gru": 0.9930},
        "member_oof_ci95": {"cnn": [0.9951, 0.9964], "conv_gru": [0.9922, 0.9938]},
    }
    assert results.figure(prov) == (
        "99.60% OOF (5 folds); alone: cnn 99.58%, conv_gru 99.30%",
        "99.53%-99.65%; cnn 99.51%-99.64%, conv_gru 99.22%-99.38%",
    )


def test_results_are_a_log_earlier_runs_rows_and_sections_stay_and_a_repeated_kfold_quotes_both_figures(tmp_path):
    run = {"command": "make submission MODEL=cnn CV=1", "id": "7-1", "cores": 2, "cpu": "AMD EPYC (AVX2, no bf16)"}
    write(
        tmp_path / "submissions/submission-cnn-cv.json",
        {
            "submission_sha256": "s",
            "oof_accuracy": 0.9962,
            "oof_ci95": [0.9956, 0.9968],
            "folds": 5,
            "repeats": 2,
            "oof_ensemble_accuracy": 0.9967,
            "oof_ensemble_ci95": [0.9961, 0.9972],
            "provenance": {"run": run | {"started": "2026-12-07T07:00:00Z", "finished": "2026-12-07T08:40:00Z"}},
        },
    )
    earlier_row = "| `make submission` | submission.csv | 99.19% on its split | ±0.15 | 3.6 min | x | 2026-12-01 |"
    previous = (
        "# Results\n\n## Submissions\n\n| command | writes | quotes | 95% interval | wall time | machine | date |\n"
        f"|---|---|---|---|---|---|---|\n{earlier_row}\n\n## Accuracy per compute (`make frontier`)\nold frontier\n"
    )

    text = results.document([tmp_path], previous)

    assert earlier_row in text  # made in another clone, on another day: kept
    assert text.index(earlier_row) < text.index("submission-cnn-cv.csv")
    assert (
        "| 99.62% OOF (5 folds); 99.67% with each row's 2 out-of-fold models averaged (2 x 5 folds) "
        "| 99.56%-99.68%; 99.61%-99.72% |"
    ) in text
    assert (
        "## Accuracy per compute (`make frontier`)\nold frontier" in text
    )  # no frontier in this root: the earlier one
    assert results.document([tmp_path], text) == text  # made again, nothing doubles
    # The same run read again, written otherwise (here: its .venv time no longer known), replaces its row.
    fresh_row = next(line for line in text.splitlines() if "submission-cnn-cv.csv" in line)
    drifted = text.replace(fresh_row, fresh_row.replace("| 100.0 min |", "| 100.0 min (+ 1.0 min building .venv) |"))
    assert drifted != text and results.document([tmp_path], drifted) == text
    # A row whose command was not a make command (a stage run by hand) stays too.
    by_hand = "| `python -m pipeline.modeling.predict` | submission.csv | 99.00% | ±0.15 | 1.0 min | x | 2026-12-02 |"
    assert by_hand in results.document([tmp_path], text.replace(earlier_row, f"{earlier_row}\n{by_hand}"))
