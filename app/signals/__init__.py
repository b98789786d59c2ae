"""Embedded models: language, sentiment, intent and personal data of customer texts (`models.py`)."""
