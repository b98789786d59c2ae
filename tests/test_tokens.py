"""Token counting works offline, from the bundled BPE files."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from app.tokens import count_chat, count_text, encoding_for


def test_known_counts() -> None:
    assert count_text("hello world", "gpt-4o-mini") == 2
    assert count_chat([{"role": "user", "content": "hi"}], "gpt-4o-mini") == 8


def test_unknown_models_use_o200k() -> None:
    assert encoding_for("some-local-llama").name == "o200k_base"
    assert encoding_for("gpt-4").name == "cl100k_base"


def test_loads_with_no_network(tmp_path: Path) -> None:
    """A fresh cache dir and every socket refused: the encodings still load."""
    script = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('network disabled in this test')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from app.tokens import count_text\n"
        "print(count_text('hello world', 'gpt-4o-mini'), count_text('hello world', 'gpt-4'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"TIKTOKEN_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "2"]
    assert socket.socket.connect is not None


def test_fits_budget_agrees_with_the_exact_count() -> None:
    from app.tokens import fits_budget

    chat = [{"role": "system", "content": "Be kind. " * 50}, {"role": "user", "content": "Where is it?"}]
    exact = count_chat(chat, "gpt-4o-mini")  # type: ignore[arg-type]
    assert fits_budget(chat, exact, "gpt-4o-mini")  # type: ignore[arg-type]
    assert not fits_budget(chat, exact - 1, "gpt-4o-mini")  # type: ignore[arg-type]
    assert fits_budget(chat, 10_000, "gpt-4o-mini")  # type: ignore[arg-type]
