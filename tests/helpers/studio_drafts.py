"""Drafts of `prompts/support_reply.j2` for the studio's tests: one the mock LLM answers visibly
differently, and broken ones with the line their problem is reported on."""

from __future__ import annotations

from tests.helpers.template_cases import UNBOUNDED
from tests.helpers.workers import PROMPTS

FILE = "support_reply.j2"
CURRENT = (PROMPTS / FILE).read_text(encoding="utf-8")
PROFILE_LINE = "Customer profile:\n"
# The mock greets by the first `name:` line of the system message: the current file's is the
# customer's profile, the draft's comes before it.
PERSONA = "Studio Draft"
DRAFT = CURRENT.replace(PROFILE_LINE, f"name: {PERSONA}\n{PROFILE_LINE}", 1)
UNCLOSED_IF = CURRENT.replace(PROFILE_LINE, "{% if customer.name is defined %}\n" + PROFILE_LINE, 1)
IF_LINE = CURRENT.split("\n").index(PROFILE_LINE.strip()) + 1
UNCLOSED_IF_LINE = UNCLOSED_IF.split("\n").index("{% endblock %}") + 1
"""Where the unclosed `{% if %}` is noticed: its problem names both lines."""
MISSPELT_FIELD = CURRENT.replace("description:", "wen: {tier: gold}\ndescription:", 1)
MISSPELT_FIELD_LINE = 3
# Each of the sandbox's unbounded cases on a line of its own, before the profile.
UNBOUNDED_DRAFTS = {
    case: CURRENT.replace(PROFILE_LINE, f"{code}\n{PROFILE_LINE}", 1) for case, code in UNBOUNDED.items()
}
UNBOUNDED_LINE = IF_LINE
"""Where each unbounded draft's code is."""

assert CURRENT not in (DRAFT, UNCLOSED_IF, MISSPELT_FIELD), "the template changed: update the drafts"
