"""Kaggle Digit Recognizer pipeline: one module per stage, each a pure worker plus a thin main().

Nothing heavy happens at import time: Keras and the Kaggle client are imported inside the
functions that need them, so `python -m pipeline.dataset` starts in a fraction of a second.
"""
