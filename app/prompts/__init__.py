"""Prompt templates as the worker uses them: the file format, the library, hot reload."""
