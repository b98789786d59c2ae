"""The help-center the worker retrieves from: articles read and checked, split into passages, searched."""
