"""The `Prefer` request header (RFC 7240), as far as vidhook honours it: `wait=N`.

    Prefer: wait=10
    Prefer: respond-async, wait=10; foo=bar
    Prefer: handling=lenient
    Prefer: wait=5

A client may send several preferences, in one header or several; a preference named twice
counts the first time (RFC 7240 §2). One the server does not understand is ignored, never an
error (§2), and so is a `wait` whose value is not a number of seconds.
"""

from __future__ import annotations

from collections.abc import Iterable


def preferred_wait_s(header_values: Iterable[str]) -> int | None:
    """The seconds of the first `wait` preference in the `Prefer` header values, if any.

    None when there is no `wait` preference, or its value is not a non-negative integer.
    """
    for header in header_values:
        for preference in _split(header, ","):
            token, _, value = _split(preference, ";")[0].partition("=")
            if token.strip().lower() != "wait":
                continue
            text = value.strip().strip('"').strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return None


def _split(text: str, separator: str) -> list[str]:
    # Split outside double quotes: a quoted value may itself hold commas or semicolons.
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()] or [""]
