"""Reading the competition's CSVs strictly: every bad cell is reported by file, line and column.

The header is checked from the first line alone, before pandas reads anything, so a wrong
or huge file is refused without being loaded. Rows are then parsed in chunks by pandas'
C parser (quoting off, so a quoted number is an error rather than silently unquoted).
"""

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import N_PIXELS
from pipeline.errors import PipelineError

PIXEL_COLUMNS = [f"pixel{i}" for i in range(N_PIXELS)]
TRAIN_HEADER = ["label", *PIXEL_COLUMNS]
TEST_HEADER = PIXEL_COLUMNS
SUBMISSION_HEADER = ["ImageId", "Label"]

MAX_HEADER_BYTES = 64 * 1024
CHUNK_ROWS = 8192


class CsvError(PipelineError):
    def __init__(self, path, what, line=None, column=None):
        where = str(path)
        if line is not None:
            where += f": line {line}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {what}")


def read_header(path: Path) -> list[str]:
    """The first line's column names; a UTF-8 BOM and CRLF endings are accepted."""
    try:
        with open(path, "rb") as f:
            first = f.readline(MAX_HEADER_BYTES)
    except OSError as exc:
        raise CsvError(path, f"cannot read: {exc.strerror}") from None
    if not first:
        raise CsvError(path, "file is empty")
    if not first.endswith(b"\n") and len(first) == MAX_HEADER_BYTES:
        raise CsvError(path, f"header line is longer than {MAX_HEADER_BYTES} bytes: not a competition CSV", line=1)
    try:
        text = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        raise CsvError(path, "header is not UTF-8 text", line=1) from None
    return text.split(",")


def check_header(path: Path, got: list[str], expected: list[str]) -> None:
    if got == expected:
        return
    if len(got) == 1:
        for delim in (";", "\t", "|", " "):
            if delim in got[0]:
                raise CsvError(path, f"header uses {delim!r} as delimiter; expected ','", line=1)
    if any('"' in name or "'" in name for name in got):
        raise CsvError(path, "header has quoted names; expected bare names like 'pixel0'", line=1)
    seen = set()
    for name in got:
        if name in seen:
            raise CsvError(path, f"column '{name}' appears twice in the header", line=1)
        seen.add(name)
    for i, (g, e) in enumerate(zip(got, expected), start=1):
        if g != e:
            missing = e not in got
            hint = f"'{e}' is missing" if missing else "columns are out of order"
            raise CsvError(path, f"header field {i} is '{g}', expected '{e}' ({hint})", line=1)
    if len(got) > len(expected):
        raise CsvError(
            path,
            f"header has {len(got)} columns, expected {len(expected)}: extra column '{got[len(expected)]}'",
            line=1,
        )
    raise CsvError(
        path, f"header has {len(got)} columns, expected {len(expected)}: '{expected[len(got)]}' is missing", line=1
    )


def _bounds(columns, limits) -> tuple[np.ndarray, np.ndarray]:
    return np.array([limits[c][0] for c in columns]), np.array([limits[c][1] for c in columns])


def _first_out_of_range(table: np.ndarray, columns, limits):
    """(row, column, reason) of the first integer outside its column's range, in reading order."""
    lo, hi = _bounds(columns, limits)
    bad = (table < lo) | (table > hi)
    if not bad.any():
        return None
    i, j = np.unravel_index(np.argmax(bad), bad.shape)
    return i, columns[j], f"{table[i, j]} is outside {lo[j]}-{hi[j]}"


def _first_non_integer(path, header, first_line: int, n_rows: int, limits):
    """Re-read a chunk as text (only when pandas saw a non-integer) to name the first bad cell.

    Checking the text, not the parsed number, is what refuses '12.0', '1e2', 'NaN' and '"5"'.
    """
    text = pd.read_csv(
        path,
        header=0,
        names=header,
        skiprows=range(1, first_line - 1),
        nrows=n_rows,
        dtype=str,
        keep_default_na=False,
        quoting=csv.QUOTE_NONE,
        encoding="utf-8-sig",
        skip_blank_lines=False,
        engine="c",
    )
    text = text.fillna("")
    bad = ~text.apply(lambda column: column.str.fullmatch(r"-?\d+")).to_numpy(dtype=bool)
    cells = text.to_numpy(dtype=str)
    if not bad.any():  # all integer text, too big for int64: a range error
        return _first_out_of_range(cells.astype(np.float64), header, limits)
    i, j = np.unravel_index(np.argmax(bad), bad.shape)
    value, (lo, hi) = cells[i, j], limits[header[j]]
    if value == "":
        reason = "empty cell (or a row too short)"
    elif value[:1] in "\"'":
        reason = f"quoted value {value}: numbers must not be quoted"
    else:
        reason = f"'{value}' is not an integer {lo}-{hi}"
    return i, header[j], reason


def read_digits(path: Path, header: list[str], limits: dict[str, tuple[int, int]]) -> np.ndarray:
    """Validate and parse a competition CSV into a (rows, columns) int array.

    Raises CsvError naming the file, line and column of the first problem.
    """
    path = Path(path)
    check_header(path, read_header(path), header)
    parts = []
    line = 2  # data starts on line 2
    try:
        reader = pd.read_csv(
            path,
            header=0,
            names=header,
            chunksize=CHUNK_ROWS,
            quoting=csv.QUOTE_NONE,
            encoding="utf-8-sig",
            skip_blank_lines=False,  # a blank line is a bad row, and line numbers stay true
            engine="c",
        )
        for chunk in reader:
            if chunk.empty:
                continue
            if all(pd.api.types.is_integer_dtype(t) for t in chunk.dtypes):
                table = chunk.to_numpy(dtype=np.int64)
                bad = _first_out_of_range(table, header, limits)
            else:
                bad = _first_non_integer(path, header, line, len(chunk), limits)
            if bad:
                i, col, reason = bad
                raise CsvError(path, reason, line=line + int(i), column=col)
            parts.append(table)
            line += len(chunk)
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise CsvError(path, f"{m[3]} fields, expected {m[1]}", line=int(m[2])) from None
        raise CsvError(path, f"not a well-formed CSV: {exc}") from None
    except UnicodeDecodeError:
        raise CsvError(path, "not UTF-8 text", line=line) from None
    except OSError as exc:
        raise CsvError(path, f"cannot read: {exc.strerror}") from None
    if line == 2:
        raise CsvError(path, "has a header but no data rows")
    return np.concatenate(parts)


def read_train(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels uint8 (N, 784), labels uint8 (N,)) from a train.csv."""
    limits = {"label": (0, 9)} | {c: (0, 255) for c in PIXEL_COLUMNS}
    table = read_digits(path, TRAIN_HEADER, limits)
    return table[:, 1:].astype(np.uint8), table[:, 0].astype(np.uint8)


def read_test(path: Path) -> np.ndarray:
    limits = {c: (0, 255) for c in PIXEL_COLUMNS}
    return read_digits(path, TEST_HEADER, limits).astype(np.uint8)


def read_submission(path: Path, n_expected: int | None = None) -> np.ndarray:
    """Validate a submission file: header, ImageId 1..N in order, labels 0-9, N rows."""
    limits = {"ImageId": (1, 2**31 - 1), "Label": (0, 9)}
    table = read_digits(path, SUBMISSION_HEADER, limits)
    ids = table[:, 0]
    expected = np.arange(1, len(ids) + 1)
    if not np.array_equal(ids, expected):
        i = int(np.argmax(ids != expected))
        seen = ids[:i]
        what = (
            f"ImageId {ids[i]} is a duplicate"
            if ids[i] in seen
            else f"ImageId {ids[i]} where {expected[i]} was expected (ImageIds must run 1..N in test order)"
        )
        raise CsvError(path, what, line=i + 2, column="ImageId")
    if n_expected is not None and len(ids) != n_expected:
        raise CsvError(path, f"has {len(ids)} rows but test.csv has {n_expected}")
    return table[:, 1]
