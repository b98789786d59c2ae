"""Editing the files a running worker watches, as a support team's editor saves them."""

from __future__ import annotations

from pathlib import Path


def save(path: Path, text: str) -> None:
    """Replace the file in one step, as editors that save atomically do: a watcher never sees it
    half written. (One written in place can be read empty, then whole: two reloads of one save.)"""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
