"""Judging runs: per-model reports and side-by-side comparisons of cross-validated runs."""
