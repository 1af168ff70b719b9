"""The strict CSV reader: every kind of bad cell is named by file, line and column."""

import os
import time

import numpy as np
import pytest

from pipeline import csvcheck
from tests.helpers import PIXELS, TRAIN_HEADER, csv_text, digits_table


def write(tmp_path, text, name="train.csv", binary=False):
    path = tmp_path / name
    path.write_bytes(text if binary else text.encode())
    return path


def good_train(rows=3):
    return csv_text(TRAIN_HEADER, digits_table(rows))


def with_cell(row: int, col: int, value: str) -> str:
    table = digits_table(3)
    table[row][col] = value
    return csv_text(TRAIN_HEADER, table)


def with_header(header) -> str:
    return (
        csv_text(header, [r[: len(header)] + [] for r in digits_table(2)])
        if len(header) <= 785
        else csv_text(header, [r + ["0"] * (len(header) - 785) for r in digits_table(2)])
    )


BAD_TRAIN = {
    # case: (file text, fragment the one-line message must contain)
    "empty file": ("", "file is empty"),
    "header only": (",".join(TRAIN_HEADER) + "\n", "no data rows"),
    "missing column": (with_header(TRAIN_HEADER[:-1]), "'pixel783' is missing"),
    "extra column": (with_header([*TRAIN_HEADER, "extra"]), "extra column 'extra'"),
    "duplicated column": (with_header([*TRAIN_HEADER[:-1], "pixel5"]), "column 'pixel5' appears twice"),
    "renamed column": (
        with_header([*TRAIN_HEADER[:6], "px5", *TRAIN_HEADER[7:]]),
        "header field 7 is 'px5', expected 'pixel5'",
    ),
    "columns out of order": (
        with_header([TRAIN_HEADER[0], TRAIN_HEADER[2], TRAIN_HEADER[1], *TRAIN_HEADER[3:]]),
        "out of order",
    ),
    "non-numeric cell": (with_cell(1, 11, "abc"), "line 3, column 'pixel10': 'abc' is not an integer 0-255"),
    "empty cell": (with_cell(0, 5, ""), "line 2, column 'pixel4': empty cell"),
    "NaN": (with_cell(2, 100, "NaN"), "line 4, column 'pixel99': 'NaN' is not an integer 0-255"),
    "float pixel": (with_cell(1, 1, "12.5"), "line 3, column 'pixel0': '12.5' is not an integer 0-255"),
    "integral float pixel": (with_cell(1, 2, "12.0"), "line 3, column 'pixel1': '12.0' is not an integer 0-255"),
    "exponent pixel": (with_cell(0, 3, "1e2"), "line 2, column 'pixel2': '1e2' is not an integer 0-255"),
    "pixel 256": (with_cell(2, 784, "256"), "line 4, column 'pixel783': 256 is outside 0-255"),
    "pixel -1": (with_cell(0, 300, "-1"), "line 2, column 'pixel299': -1 is outside 0-255"),
    "label 10": (with_cell(1, 0, "10"), "line 3, column 'label': 10 is outside 0-9"),
    "label -1": (with_cell(2, 0, "-1"), "line 4, column 'label': -1 is outside 0-9"),
    "semicolon delimiter": (csv_text(TRAIN_HEADER, digits_table(2), sep=";"), "header uses ';' as delimiter"),
    "tab delimiter": (csv_text(TRAIN_HEADER, digits_table(2), sep="\t"), "header uses '\\t' as delimiter"),
    "quoted numbers": (
        csv_text(TRAIN_HEADER, [[f'"{v}"' for v in r] for r in digits_table(2)]),
        "line 2, column 'label': quoted value",
    ),
    "row with an extra field": (
        csv_text(TRAIN_HEADER, digits_table(3)).replace("\n", ",7\n", 3).replace(",7\n", "\n", 2),
        "line 3: 786 fields, expected 785",
    ),
    "blank line": (
        good_train(2).replace("\n", "\n\n", 2).replace("\n\n", "\n", 1),
        "line 3, column 'label': empty cell",
    ),
    "short row": (good_train(3).rsplit(",", 1)[0] + "\n", "line 4, column 'pixel783': empty cell"),
}


@pytest.mark.parametrize("case", BAD_TRAIN, ids=list(BAD_TRAIN))
def test_bad_train_file_is_refused_with_file_line_and_column(tmp_path, case):
    text, fragment = BAD_TRAIN[case]
    path = write(tmp_path, text)
    with pytest.raises(csvcheck.CsvError) as info:
        csvcheck.read_train(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert fragment in message
    assert "\n" not in message


def test_non_utf8_header_is_refused(tmp_path):
    path = write(tmp_path, b"\xff\xfelabel,pixel0\n", binary=True)
    with pytest.raises(csvcheck.CsvError, match="not UTF-8"):
        csvcheck.read_train(path)


@pytest.mark.parametrize(
    "bom, eol", [("\ufeff", "\n"), ("", "\r\n"), ("\ufeff", "\r\n")], ids=["BOM", "CRLF", "BOM+CRLF"]
)
def test_bom_and_crlf_are_accepted(tmp_path, bom, eol):
    table = digits_table(4)
    plain = csvcheck.read_train(write(tmp_path, csv_text(TRAIN_HEADER, table), "plain.csv"))
    other = csvcheck.read_train(write(tmp_path, bom + csv_text(TRAIN_HEADER, table, eol=eol), "other.csv"))
    for a, b in zip(plain, other):
        np.testing.assert_array_equal(a, b)


def test_values_and_row_order_survive_parsing(tmp_path):
    table = digits_table(5)
    pixels, labels = csvcheck.read_train(write(tmp_path, csv_text(TRAIN_HEADER, table)))
    assert pixels.dtype == np.uint8 and pixels.shape == (5, 784)
    np.testing.assert_array_equal(labels, [int(r[0]) for r in table])
    np.testing.assert_array_equal(pixels, np.array(table, dtype=int)[:, 1:])


def test_a_huge_file_with_a_bad_header_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.csv"
    with open(path, "wb") as f:
        f.write(b"label;pixel0;pixel1\n")
        f.seek(2 * 1024**3)  # a sparse 2 GB file: costs no disk, but reading it would take a while
        f.write(b"\n")
    assert os.path.getsize(path) > 2 * 1024**3
    start = time.perf_counter()
    with pytest.raises(csvcheck.CsvError, match="delimiter"):
        csvcheck.read_train(path)
    assert time.perf_counter() - start < 5  # a functional bound: reading 2 GB would take far longer


def test_header_line_without_end_is_refused(tmp_path):
    path = write(tmp_path, "x" * (csvcheck.MAX_HEADER_BYTES + 10))
    with pytest.raises(csvcheck.CsvError, match="header line is longer"):
        csvcheck.read_train(path)


def test_test_file_has_no_label_column(tmp_path):
    path = write(tmp_path, csv_text(PIXELS, digits_table(2, labelled=False)), "test.csv")
    assert csvcheck.read_test(path).shape == (2, 784)
    with pytest.raises(csvcheck.CsvError, match="header field 1 is 'label'"):
        csvcheck.read_test(write(tmp_path, good_train(), "test2.csv"))


BAD_SUBMISSIONS = {
    "wrong header": ("ImageID,Label\n1,3\n2,4\n", 2, "header field 1 is 'ImageID', expected 'ImageId'"),
    "duplicate ImageId": ("ImageId,Label\n1,3\n1,4\n", 2, "line 3, column 'ImageId': ImageId 1 is a duplicate"),
    "missing ImageId": (
        "ImageId,Label\n1,3\n3,4\n4,1\n",
        3,
        "line 3, column 'ImageId': ImageId 3 where 2 was expected",
    ),
    "label 10": ("ImageId,Label\n1,10\n2,4\n", 2, "line 2, column 'Label': 10 is outside 0-9"),
    "label -1": ("ImageId,Label\n1,3\n2,-1\n", 2, "line 3, column 'Label': -1 is outside 0-9"),
    "row count differs from test.csv": ("ImageId,Label\n1,3\n2,4\n", 3, "has 2 rows but test.csv has 3"),
}


@pytest.mark.parametrize("case", BAD_SUBMISSIONS, ids=list(BAD_SUBMISSIONS))
def test_bad_submission_is_refused(tmp_path, case):
    text, n_test, fragment = BAD_SUBMISSIONS[case]
    path = write(tmp_path, text, "submission.csv")
    with pytest.raises(csvcheck.CsvError) as info:
        csvcheck.read_submission(path, n_expected=n_test)
    assert fragment in str(info.value)


def test_good_submission_returns_labels(tmp_path):
    path = write(tmp_path, "ImageId,Label\n1,3\n2,4\n3,9\n", "submission.csv")
    np.testing.assert_array_equal(csvcheck.read_submission(path, n_expected=3), [3, 4, 9])


def test_an_integer_too_big_for_64_bits_is_out_of_range(tmp_path):
    path = write(tmp_path, with_cell(1, 7, "99999999999999999999"))
    with pytest.raises(csvcheck.CsvError, match="line 3, column 'pixel6': 1e\\+20 is outside 0-255"):
        csvcheck.read_train(path)
