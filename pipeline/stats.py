"""How sure an accuracy is: its 95% interval, and whether two models differ beyond noise.

Both come from scipy: the Wilson score interval of a binomial proportion, and McNemar's exact
test, which is a two-sided binomial test on the rows where exactly one of two models is right.
"""

import numpy as np


def accuracy_ci(correct: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """(low, high) of the Wilson interval for the mean of a boolean array."""
    from scipy.stats import binomtest

    correct = np.asarray(correct, dtype=bool)
    ci = binomtest(int(correct.sum()), len(correct)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def mcnemar(a_correct: np.ndarray, b_correct: np.ndarray) -> dict:
    """Paired test of two models on the same rows: b = only A right, c = only B right, exact p-value."""
    from scipy.stats import binomtest

    a, b_ = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    only_a, only_b = int((a & ~b_).sum()), int((~a & b_).sum())
    p = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {"only_first": only_a, "only_second": only_b, "p_value": p}
