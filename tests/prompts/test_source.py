"""Hot reload: `PromptSource.watch()` swaps in edited templates and keeps the last good set."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from app.prompts.library import PromptSource, file_states
from app.schemas import CustomerMessage, utc_now
from tests.helpers.files import save
from tests.helpers.polling import until
from tests.helpers.template_cases import UNBOUNDED, UNBOUNDED_REASONS
from tests.helpers.workers import PROMPTS

RELOAD_GUARD_S = 10.0
"""Against a watcher that never reloads: twenty of its 0.5 s looks, under the test's 30 s."""


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    return Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))


@pytest.fixture
async def source(prompts: Path) -> AsyncIterator[PromptSource]:
    """A source of the copied templates with its watch loop running."""
    source = PromptSource.load(prompts)
    task = asyncio.create_task(source.watch())
    yield source
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def versions(source: PromptSource) -> dict[str, str]:
    return source.version_summary()


def template_errors() -> float:
    return REGISTRY.get_sample_value("enricher_template_errors_total") or 0.0


async def reloaded(condition: Callable[[], bool]) -> None:
    """Until the watcher's reload makes `condition()` hold."""

    async def holds() -> bool:
        return condition()

    await until(holds, "a reload", RELOAD_GUARD_S)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    save(path, text.replace(old, new))


def system_part(source: PromptSource, customer: dict[str, str]) -> str:
    library = source.current
    message = CustomerMessage(message_id="m-1", conversation_id="c-1", text="Hello")
    template = library.select(message, customer)
    rendered = library.render(template, message=message, customer=customer, history=[], now=utc_now())
    return rendered.messages[0]["content"]


async def test_an_edit_is_served(source: PromptSource, prompts: Path) -> None:
    before = versions(source)

    edit(prompts / "support_reply.j2", "friendly, concise", "cheerful, brief")
    await reloaded(lambda: versions(source) != before)

    after = versions(source)
    assert after["support_reply.j2"] != before["support_reply.j2"]
    assert {k: v for k, v in after.items() if k != "support_reply.j2"} == {
        k: v for k, v in before.items() if k != "support_reply.j2"
    }
    assert "cheerful, brief" in system_part(source, {"tier": "silver"})


async def test_broken_edit_keeps_the_last_good_set_until_fixed(
    source: PromptSource, prompts: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, errors = versions(source), template_errors()
    path = prompts / "support_reply.j2"
    original = path.read_text(encoding="utf-8")

    def rejections() -> list[str]:
        return [r.__dict__["error"] for r in caplog.records if r.getMessage().startswith("template rejected")]

    edit(path, "{% endblock %}", "{% endblok %}")
    await reloaded(lambda: bool(rejections()))

    assert versions(source) == good
    assert rejections()[0].startswith(f"{path}:")
    assert template_errors() == errors + 1

    save(path, original.replace("friendly, concise", "patient, clear"))
    await reloaded(lambda: versions(source) != good)
    assert template_errors() == errors + 1
    assert "patient, clear" in system_part(source, {})


@pytest.mark.parametrize("case", UNBOUNDED)
async def test_an_edit_with_unbounded_work_keeps_the_last_good_set(
    source: PromptSource, prompts: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    good = versions(source)
    path = prompts / "support_reply.j2"

    def rejections() -> list[str]:
        return [r.__dict__["error"] for r in caplog.records if r.getMessage().startswith("template rejected")]

    edit(path, "friendly, concise", f"friendly, concise {UNBOUNDED[case]}")
    await reloaded(lambda: bool(rejections()))

    assert versions(source) == good
    assert rejections()[0].startswith(f"{path}:")
    assert UNBOUNDED_REASONS[case] in rejections()[0]
    assert "friendly, concise" in system_part(source, {})  # the last good set still renders


async def test_added_and_removed_files_are_changes(source: PromptSource, prompts: Path) -> None:
    variant = prompts / "support_reply_gold_b.j2"
    text = (prompts / "support_reply_gold.j2").read_text(encoding="utf-8")
    save(prompts / "support_reply_gold.j2", text.replace("tier: gold", "tier: gold\nvariant: a"))
    save(variant, text.replace("tier: gold", "tier: gold\nvariant: b"))
    await reloaded(lambda: "support_reply_gold_b.j2" in versions(source))

    variant.unlink()
    await reloaded(lambda: "support_reply_gold_b.j2" not in versions(source))


def fallback_limit(source: PromptSource) -> int | None:
    """The `fallbacks_in_a_row` of the handoff rules in use."""
    return next(r.fallbacks_in_a_row for r in source.current.handoff_rules.rules if r.fallbacks_in_a_row)


async def test_an_edit_of_the_handoff_rules_is_served(source: PromptSource, prompts: Path) -> None:
    assert fallback_limit(source) == 3

    edit(prompts / "handoff.yaml", "fallbacks_in_a_row: 3", "fallbacks_in_a_row: 2")

    await reloaded(lambda: fallback_limit(source) == 2)


async def test_broken_handoff_rules_keep_the_last_good_set_until_fixed(
    source: PromptSource, prompts: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, errors = source.current, template_errors()
    path = prompts / "handoff.yaml"

    edit(path, "fallbacks_in_a_row: 3", "fallbacks_in_a_row: three")
    await reloaded(lambda: template_errors() == errors + 1)

    assert source.current is good
    [rejected] = [
        r.__dict__["error"] for r in caplog.records if r.getMessage().startswith("template rejected")
    ]
    assert rejected.startswith(f"{path}:82: `fallbacks_in_a_row` must be a whole number")

    edit(path, "fallbacks_in_a_row: three", "fallbacks_in_a_row: 4")
    await reloaded(lambda: fallback_limit(source) == 4)


async def test_an_intent_removed_under_a_rule_is_refused(source: PromptSource, prompts: Path) -> None:
    edit(prompts / "handoff.yaml", "    phrases:\n", "    intent: wants_human\n    phrases:\n")
    await reloaded(lambda: source.current.handoff_rules.rules[0].intent == "wants_human")
    good, errors = source.current, template_errors()

    edit(prompts / "intents.yaml", "wants_human:", "wants_a_person:")
    await reloaded(lambda: template_errors() == errors + 1)

    assert source.current is good


def test_file_states_cover_templates_samples_rules_and_tools_only(prompts: Path) -> None:
    (prompts / "notes.txt").write_text("not read by the loader")
    names = {Path(name).relative_to(prompts).as_posix() for name, _, _ in file_states(prompts)}

    assert names == {
        "fallback.j2",
        "handoff.j2",
        "support_reply.j2",
        "support_reply_complaint.j2",
        "support_reply_gold.j2",
        "samples/returning_customer.yaml",
        "samples/returns_question.yaml",
        "samples/upset_customer.yaml",
        "handoff.yaml",
        "intents.yaml",
        "tools.yaml",
    }
