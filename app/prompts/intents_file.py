"""`prompts/intents.yaml`, the example phrases of each intent, read with each problem at its line.

The file is a mapping of intent names to lists of phrases. It is read node by node (`yaml.compose`)
rather than loaded, since loading forgets what a checker must report: the line of each entry, and
a name given twice (YAML keeps the last one, silently).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from app.errors import TemplateError

FILE_NAME = "intents.yaml"
UNKNOWN = "unknown"
NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
STR_TAG = "tag:yaml.org,2002:str"


@dataclass(frozen=True)
class Example:
    """One example phrase, its intent and its line in the file (1-based)."""

    intent: str
    text: str
    line: int


@dataclass(frozen=True)
class IntentSet:
    """The intents of a file and their examples, in file order."""

    path: Path
    examples: tuple[Example, ...]

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        """The intent names, in file order (worked out once: labels and checks ask often)."""
        return tuple(dict.fromkeys(example.intent for example in self.examples))


def read_intents(path: Path) -> tuple[IntentSet, list[TemplateError]]:
    """The usable part of the file, and a problem (`file:line`) for each mistake in it."""
    problems: list[TemplateError] = []

    def problem(line: int, message: str) -> None:
        problems.append(TemplateError(message, f"{path}:{line}"))

    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except OSError as error:
        return IntentSet(path, ()), [TemplateError(f"cannot read the file: {error.strerror}", str(path))]
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else 1
        problem(line, f"not valid YAML: {error.problem}")
        return IntentSet(path, ()), problems
    if root is not None and not isinstance(root, yaml.MappingNode):
        problem(1, "the file must be intent names, each followed by `- example` lines")
        return IntentSet(path, ()), problems
    examples: list[Example] = []
    names: dict[str, int] = {}
    texts: dict[str, Example] = {}
    for key, value in root.value if root else []:
        line = key.start_mark.line + 1
        name = key.value if isinstance(key, yaml.ScalarNode) else ""
        if not NAME.fullmatch(name) or name == UNKNOWN:
            problem(line, _name_problem(name))
            continue
        if name in names:
            problem(line, f"intent `{name}` is listed twice (first on line {names[name]}): merge the lists")
            continue
        names[name] = line
        if not isinstance(value, yaml.SequenceNode) or not value.value:
            problem(line, f"intent `{name}` has no examples: add `- example` lines below it")
            continue
        for item in value.value:
            item_line = item.start_mark.line + 1
            if not isinstance(item, yaml.ScalarNode) or item.tag != STR_TAG:
                problem(item_line, "this example is not text: write a phrase, in quotes if YAML misreads it")
                continue
            text = " ".join(item.value.split())
            if not text:
                problem(item_line, "this example is empty")
                continue
            earlier = texts.get(text.casefold())
            if earlier is not None:
                problem(
                    item_line, f'"{text}" is already an example of `{earlier.intent}` (line {earlier.line})'
                )
                continue
            example = Example(name, text, item_line)
            texts[text.casefold()] = example
            examples.append(example)
    if not examples and not problems:
        problem(1, "no intents: add `name:` lines, each followed by `- example` lines")
    return IntentSet(path, tuple(examples)), problems


def load_intents(path: Path) -> IntentSet:
    """The file's intents; a TemplateError (the first problem, with its line) unless it is clean."""
    intents, problems = read_intents(path)
    if problems:
        raise problems[0]
    return intents


def _name_problem(name: str) -> str:
    if name == UNKNOWN:
        return "`unknown` is what messages like no intent get: choose another name"
    return (
        f"`{name}` cannot be an intent name: use lower case letters, digits and `_`, "
        "starting with a letter, at most 40 characters"
    )
