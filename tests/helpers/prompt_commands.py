"""`enricher prompts` run in this process, and the template parts the tests write."""

from __future__ import annotations

from click.testing import Result
from typer.testing import CliRunner

from app.main import cli

HEADER = "---\nname: support_reply\ndescription: A test template.\nwhen: {channel: email}\n---\n"
USER = "{% block user %}\n<customer_message>\n{{ message.text }}\n</customer_message>\n{% endblock %}\n"


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """`enricher prompts ARGS`, with `env` on top of the (cleared) environment."""
    return CliRunner().invoke(cli, ["prompts", *args], env=env)
