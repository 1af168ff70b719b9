"""How good a model's probabilities are, and how sure an accuracy is.

The log loss (sklearn's, on row-normalised probabilities) for every stage that reports one; the
95% interval of an accuracy and whether two models differ beyond noise, both from scipy: the Wilson
score interval of a binomial proportion, and McNemar's exact test, which is a two-sided binomial
test on the rows where exactly one of two models is right.
"""

import numpy as np


def log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean cross-entropy of (N, C) probabilities: the loss Keras reports. Rows are normalised first
    (a float32 softmax sums to 1 only to ~1e-7, a blend's mix to its rounding); 0.0 for no rows."""
    from sklearn.metrics import log_loss as sk_log_loss

    if not len(y_true):
        return 0.0
    proba = np.asarray(proba, dtype=np.float64)
    proba = proba / proba.sum(axis=1, keepdims=True)
    return float(sk_log_loss(y_true, proba, labels=np.arange(proba.shape[1])))


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
