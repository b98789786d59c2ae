"""What in a customer's text is not what they say: signatures, e-mail addresses, links, and the
ids, order numbers and amounts that contain digits. `without_noise(text)` leaves their words.

An order number, a signature or "Sent from my iPhone" says nothing about what the customer wants,
yet it moves a static embedding (issue 25: a clear request for a person fell from 0.61 to 0.52 with
an order number and a signature after it) and may hold a word a phrase rule would hear. A sign-off
counts as a signature only after a sentence or a line, with a few words (a name, a company) at
most after it: "Thanks, give me a human" keeps its words.
"""

from __future__ import annotations

import re

# Sign-offs after which a name and a company may follow: up to five words to the end.
_CLOSINGS = (
    r"best regards|kind regards|warm regards|regards|best wishes|cheers|yours sincerely|sincerely"
    r"|mit freundlichen gr(?:ü|ue)(?:ß|ss)en|freundliche gr(?:ü|ue)(?:ß|ss)e|viele gr(?:ü|ue)(?:ß|ss)e"
    r"|liebe gr(?:ü|ue)(?:ß|ss)e|beste gr(?:ü|ue)(?:ß|ss)e|gru(?:ß|ss)|mfg"
    r"|bien cordialement|cordialement|bien à vous|salutations distinguées|salutations"
    r"|un saludo|saludos cordiales|cordiales saludos|saludos|atentamente"
)
# Thanks, as a sign-off, leave room for a name only: "Thanks, John".
_THANKS = r"thanks|thank you|many thanks|danke|vielen dank|merci|gracias|muchas gracias"
_NAME = r"(?-i:[A-ZÀ-ÖØ-Þ][\w.'-]*)"
_AFTER_A_SENTENCE = r"(?:(?<=[.!?\n])|(?<=[.!?]\s))[ \t]*"
# A mail program's line, wherever it is: taken out first, so that the signature above it ends the text.
MAIL_PROGRAM = re.compile(
    rf"(?:^|{_AFTER_A_SENTENCE})(?:(?:sent from my|envoyé de mon|enviado desde mi)\b[^\n.!?]*"
    r"|von meinem\s+\S+(?:\s+\S+)?\s+gesendet\b)",
    re.IGNORECASE,
)
SIGNATURE = re.compile(
    rf"{_AFTER_A_SENTENCE}(?:(?:{_CLOSINGS})\b[\s,.!]*(?:[^\s]+\s*){{0,5}}"
    rf"|(?:{_THANKS})\b[\s,.!]*(?:[^\s]+\s*){{0,2}})\Z"
    # "-- John Smith" at the end (a name: "-- get me a human" is no signature), or a "--" line and
    # all after it, as mail programs write a signature
    rf"|(?:^|\s)(?:--|—)[ \t]*{_NAME}(?:[ \t]+{_NAME}){{0,2}}\s*\Z|\n[ \t]*--[ \t]*\n[\s\S]*\Z",
    re.IGNORECASE,
)
ADDRESS = re.compile(r"\S+@\S+|\bhttps?://\S+|\bwww\.\S+", re.IGNORECASE)
# A word with a digit in it: 4411, ABC-991, #4411, 3rd, 12.50 (its punctuation around it stays).
WITH_DIGITS = re.compile(r"[#\w/.-]*\d[\w/-]*")


def without_noise(text: str) -> str:
    """`text` without its signature, addresses, links and words with digits (its punctuation and
    the line breaks between its sentences stay)."""
    without_signature = SIGNATURE.sub(" ", MAIL_PROGRAM.sub(" ", text).rstrip())
    return WITH_DIGITS.sub(" ", ADDRESS.sub(" ", without_signature))
