"""Timing runs: `make bench` against a plain notebook baseline, FLOP counts and the accuracy/compute frontier."""
