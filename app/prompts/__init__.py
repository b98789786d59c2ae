"""Prompt templates as the worker uses them: format, diagnostics, loading, rendering, library, hot reload."""
