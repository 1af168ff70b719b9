"""`python -m pipeline.kaggle.submissions`: your past submissions to the competition, newest first."""

from __future__ import annotations

import argparse

from pipeline.config import COMPETITION
from pipeline.errors import cli
from pipeline.kaggle import client as kaggle_client

COLUMNS = {"date": "date (UTC)", "status": "status", "public_score": "public score", "description": "message"}


def format_table(rows: list[dict]) -> str:
    """rows as kaggle_client.submissions() returns them, as an aligned text table."""
    import pandas as pd

    table = pd.DataFrame(rows, columns=list(COLUMNS)).rename(columns=COLUMNS)
    table = table.fillna("-").astype(str)
    # Text reads best left-aligned: pad each column to its width, then let pandas lay them out.
    formatters = {col: f"{{:<{max(table[col].str.len().max(), len(col))}}}".format for col in table.columns}
    text = table.to_string(index=False, justify="left", formatters=formatters)
    return "\n".join(line.rstrip() for line in text.splitlines())


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.kaggle.submissions",
        description=f"List your submissions to the Kaggle {COMPETITION} competition, newest first.",
    )
    parser.parse_args(argv)
    rows = kaggle_client.submissions()
    if not rows:
        print(f"no submissions to {COMPETITION} yet")
        return 0
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
