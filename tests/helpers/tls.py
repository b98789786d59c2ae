"""TLS for tests: a throwaway CA with server and client certificates (openssl), and stunnel
terminating TLS in front of the embedded broker, which speaks PLAINTEXT only."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

from app.polling import NotYet, poll
from devstack.broker import EmbeddedBroker
from devstack.processes import ManagedProcess, free_port
from tests.helpers.debian import debian_command

KEY_PASSWORD = "pem-pass"  # of `client_key_encrypted`, which the settings must refuse, not prompt for
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Pki:
    """PEM files: a CA, a server certificate for 127.0.0.1 and a client certificate it signed,
    and a second CA that signed neither."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_key_encrypted: Path
    other_ca: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    constraints = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]
    _openssl(
        "req",
        "-x509",
        *EC_KEY,
        *constraints,
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
    )
    return cert, key


def _leaf(directory: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    cert, key, request = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
    _openssl("req", "-new", *EC_KEY, "-keyout", key, "-out", request, "-subj", f"/CN={name}")
    (directory / f"{name}.ext").write_text(extensions + "\n")
    signing = ["-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-extfile", directory / f"{name}.ext"]
    _openssl("x509", "-req", "-in", request, *signing, "-out", cert, "-days", "2")
    return cert, key


def make_pki(directory: Path) -> Pki:
    """Generate the files into `directory` with the openssl command line (skip without one)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is not installed")
    ca = _ca(directory, "test-ca")
    server_extensions = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
    server = _leaf(directory, "server", ca, server_extensions)
    client = _leaf(directory, "client", ca, "extendedKeyUsage=clientAuth")
    encrypted = directory / "client-encrypted.key"
    _openssl("pkey", "-in", client[1], "-aes256", "-passout", f"pass:{KEY_PASSWORD}", "-out", encrypted)
    return Pki(ca[0], *server, *client, encrypted, _ca(directory, "other-ca")[0])


def stunnel_binary() -> str:
    """stunnel, installed from Debian's stunnel4 package when missing; skips where it cannot be."""
    return debian_command("stunnel4", "stunnel4", "stunnel")


class TlsBroker:
    """The embedded broker reachable over TLS only: stunnel listens on `bootstrap_servers`, requires
    a client certificate signed by `pki.ca` and forwards to the broker, which advertises stunnel's
    address, so that clients come back through TLS after bootstrapping too."""

    def __init__(self, pki: Pki, log_dir: Path) -> None:
        self.pki = pki
        self.port = free_port()
        self.broker = EmbeddedBroker(advertised=self.bootstrap_servers, log_path=log_dir / "broker.log")
        config = log_dir / "stunnel.conf"
        config.write_text(
            f"""foreground = yes
pid =
[kafka]
accept = 127.0.0.1:{self.port}
connect = 127.0.0.1:{self.broker.port}
cert = {pki.server_cert}
key = {pki.server_key}
CAfile = {pki.ca}
verifyChain = yes
requireCert = yes
"""
        )
        self.stunnel = ManagedProcess(
            "stunnel", [stunnel_binary(), str(config)], log_path=log_dir / "stunnel.log"
        )

    @property
    def bootstrap_servers(self) -> str:
        """The TLS address, for KAFKA_BOOTSTRAP_SERVERS."""
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start stunnel, wait until it accepts connections, then start the broker behind it."""

        async def listening() -> None:
            self.stunnel.check_alive()
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                raise NotYet(f"stunnel not listening on {self.bootstrap_servers}") from None
            writer.close()

        self.stunnel.start()
        try:
            await poll(listening, 10.0, 0.1)
            await self.broker.start()
        except BaseException:
            self.stunnel.stop()
            raise

    def stop(self) -> None:
        """Stop the broker and stunnel."""
        self.broker.stop()
        self.stunnel.stop(grace_s=5.0)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
