"""The output guard: what an LLM answer must not say before it is published (`output.py`)."""
