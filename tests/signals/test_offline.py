"""Every model loads and answers in a process that cannot reach the network at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.workers import PROMPTS

# Run first in the child (as sitecustomize): any connection attempt, even a DNS look-up, raises.
NO_NETWORK = """
import socket

def refuse(*args, **kwargs):
    raise OSError("network use in an offline test")

socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
"""

CHILD = """
import json, socket, sys
from pathlib import Path
try:
    socket.create_connection(("127.0.0.1", 9))
except OSError as error:
    refused = str(error)
from app.signals.models import SignalModels
models = SignalModels.load(Path(sys.argv[1]))
signals = models.detect("Ich will mein Geld zurück, schreiben Sie an max@beispiel.de")
masked = models.read(["call +44 20 7946 0958"])[1]
print(json.dumps({"refused": refused, "signals": signals.as_record(), "masked": masked.texts}))
"""


def test_models_load_and_answer_without_network(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(NO_NETWORK)
    home = tmp_path / "home"  # no model cache of a developer's to fall back on
    home.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path.cwd())]),
        "HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "FTLANG_CACHE": str(tmp_path / "ftlang"),
        "no_proxy": "*",
    }

    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(PROMPTS)], env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer["refused"] == "network use in an offline test"
    assert answer["signals"] == {"language": "de", "sentiment": None, "intent": "refund", "pii": ["email"]}
    assert answer["masked"] == ["call [PHONE_1]"]
    assert not (tmp_path / "ftlang").exists()
