"""What the mock LLM takes from the help-center passages a prompt carries: the best passage's opening.

The shipped templates put each passage in the user part as
`<article id="…" title="…">heading path, then the passage's text</article>`, best first
(prompts/support_reply.j2). The mock answers from the first of them: its first sentences, up to
QUOTED_CHARS, Markdown emphasis left out, so `make run` and the tests see the reply answer from
the article.
"""

from __future__ import annotations

import re

QUOTED_CHARS = 240
_ARTICLE = re.compile(r'<article\b[^>]*\btitle="(?P<title>[^"]*)"[^>]*>\n?(?P<body>.*?)</article>', re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_EMPHASIS = re.compile(r"[*_`]{1,3}")


def help_center_answer(prompt: str) -> str | None:
    """The sentence the mock says of the first passage in `prompt`, or None when it carries none:
    `From our help-center ("Our returns policy"): After the 30-day window …`."""
    found = _ARTICLE.search(prompt)
    if found is None:
        return None
    _heading, _, text = found.group("body").partition("\n")  # the first line is the heading path
    words = " ".join(_EMPHASIS.sub("", text).split())
    if not words:
        return None
    said = ""
    for sentence in _SENTENCE_END.split(words):
        if said and len(said) + len(sentence) >= QUOTED_CHARS:
            break
        said = f"{said} {sentence}".strip()
    return f'From our help-center ("{found.group("title")}"): {said[:QUOTED_CHARS]}'
