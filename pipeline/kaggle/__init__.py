"""Talking to Kaggle: the API client, notebooks (`make kernel`), uploads and the submission history."""
