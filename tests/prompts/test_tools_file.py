"""Reading prompts/tools.yaml: the OpenAI declarations, each mistake at its line; templates naming tools."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.prompts.library import PromptLibrary
from app.prompts.tools_file import read_tools
from tests.helpers.workers import PROMPTS

HTTP_TOOL = """\
tools:
  - name: delivery_estimate
    description: When the parcel arrives.
    parameters:
      type: object
      properties:
        tracking_number: {type: string}
        postcode: {type: string}
      required: [tracking_number]
    timeout_s: 1.5
    http:
      url: https://tracking.example/v1/parcels/{tracking_number}
      headers: {Authorization: "Bearer ${TRACKING_TOKEN}"}
      keep: [status, eta]
"""


def test_the_shipped_tools_are_clean_and_declared_as_openai_tools() -> None:
    tools, problems = read_tools(PROMPTS / "tools.yaml")

    assert problems == []
    [order_status] = tools.tools
    declaration = order_status.declaration()
    assert declaration["type"] == "function"
    assert declaration["function"]["name"] == "order_status"
    assert declaration["function"]["parameters"]["required"] == ["order_id"]
    assert order_status.lookup is not None
    assert (order_status.lookup.table, order_status.lookup.key, order_status.timeout_s) == (
        "orders",
        "order_id",
        2,
    )


def test_an_http_tool_keeps_its_request(tmp_path: Path) -> None:
    path = tmp_path / "tools.yaml"
    path.write_text(HTTP_TOOL)

    tools, problems = read_tools(path)

    assert problems == []
    [tool] = tools.tools
    assert tool.http is not None
    assert (tool.http.method, tool.http.keep, tool.timeout_s) == ("GET", ("status", "eta"), 1.5)
    assert tool.http.variables == {"TRACKING_TOKEN"}
    assert tools.pick(None) == tools.pick(["delivery_estimate"]) == (tool,)
    assert tools.pick([]) == ()


def test_no_file_means_no_tools(tmp_path: Path) -> None:
    assert read_tools(tmp_path / "tools.yaml") == (read_tools(tmp_path / "none.yaml")[0], [])
    assert read_tools(tmp_path / "tools.yaml")[0].tools == ()


@pytest.mark.parametrize(
    ("old", "new", "line", "problem"),
    [
        ("name: delivery_estimate", "name: delivery estimate", 2, "`name` may only use letters"),
        ("timeout_s: 1.5", "timeout_s: 90", 10, "`timeout_s` Input should be less than or equal to 30"),
        ("      keep: [status, eta]", "      kept: [status]", 14, "`http.kept` is not a known field"),
        ("{type: string}\n        postcode", "{type: strin}\n        postcode", 7, "not a valid JSON Schema"),
        ("      type: object", "      type: array", 5, "must be a schema of `type: object`"),
        ("{tracking_number}", "{parcel}", 12, "{parcel} must be a required property"),
        ("https://tracking.example", "https://{postcode}.example", 12, "not in its host"),
        ("https://tracking.example", "ftp://tracking.example", 12, "must be an http(s) URL"),
        ("    http:", "    lookup: {table: orders, key: tracking_number}\n    http:", 2, "exactly one of"),
        ("required: [tracking_number]", "required: [postcode]", 12, "{tracking_number} must be a required"),
    ],
)
def test_each_mistake_is_reported_at_its_line(
    tmp_path: Path, old: str, new: str, line: int, problem: str
) -> None:
    path = tmp_path / "tools.yaml"
    assert old in HTTP_TOOL
    path.write_text(HTTP_TOOL.replace(old, new, 1))

    tools, problems = read_tools(path)

    assert tools.tools == ()
    assert [error.location for error in problems] == [f"{path}:{line}"]
    assert problem in problems[0].reason


def test_a_lookup_by_an_argument_the_tool_does_not_require_and_a_second_tool_of_a_name(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tools.yaml"
    shipped = (PROMPTS / "tools.yaml").read_text()
    path.write_text(
        shipped + "  - name: order_status\n    description: again\n    parameters: {type: object, properties:"
        " {order_id: {type: string}}, required: [order_id]}\n    lookup: {table: orders, key: order_id}\n"
        "  - name: by_sku\n    description: x\n    parameters: {type: object}\n"
        "    lookup: {table: orders, key: sku}\n"
    )
    start = len(shipped.splitlines()) + 1

    tools, problems = read_tools(path)

    assert [tool.name for tool in tools.tools] == ["order_status"]
    assert [(error.location, error.reason.split(":")[0]) for error in problems] == [
        (f"{path}:{start}", "a tool named 'order_status' is on line 30 already"),
        (f"{path}:{start + 7}", "`sku` must be a required property of `parameters`"),
    ]


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    return Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))


def test_a_template_may_name_only_declared_tools_and_gets_every_tool_by_default(prompts: Path) -> None:
    library = PromptLibrary.load(prompts)
    default = next(t for t in library.templates if t.path.name == "support_reply.j2")
    assert [tool.name for tool in library.tools_for(default)] == ["order_status"]

    path = prompts / "support_reply_gold.j2"
    path.write_text(
        path.read_text().replace("description:", "tools: [order_status, refund]\ndescription:", 1)
    )

    templates, problems = PromptLibrary.check(prompts)

    assert [error.location for error in problems] == [f"{path}:3"]  # after `---` and `name:`
    assert "names 'refund', not a tool of tools.yaml: it has order_status" in problems[0].reason
    assert path not in [template.path for template in templates]


def test_a_template_naming_no_tools_gets_none(prompts: Path) -> None:
    path = prompts / "support_reply_gold.j2"
    path.write_text(path.read_text().replace("description:", "tools: []\ndescription:", 1))

    library = PromptLibrary.load(prompts)

    gold = next(t for t in library.templates if t.path == path)
    assert library.tools_for(gold) == ()


def test_a_broken_tools_file_fails_the_set_at_its_line(prompts: Path) -> None:
    (prompts / "tools.yaml").write_text("tools:\n  - name: x\n")

    _, problems = PromptLibrary.check(prompts)

    assert [error.location for error in problems][:1] == [f"{prompts / 'tools.yaml'}:2"]
