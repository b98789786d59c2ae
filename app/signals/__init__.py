"""Embedded models: language, sentiment and intent of customer texts (`models.py`); their personal
data found and masked (`pii.py`)."""
