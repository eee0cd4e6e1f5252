"""JSON as vidhook accepts it from outside: what it stores, encodes or sends must round-trip.

Python's `json` accepts more than vidhook can keep: `json.loads(bytes)` lets UTF-8-encoded
surrogates through, `"\\ud800"` escapes make lone surrogates (which no UTF-8 answer can
carry), `NaN` and `1e999` are not JSON on the way out, integers over 4,300 digits raise a bare
ValueError, and nesting a few hundred deep either overflows the parser or, deeper than what
parses, the encoder of a later answer. Each of those once stored a job whose every read was a
500. So:

- `loads` decodes strict UTF-8, keeps over-long integer literals and non-finite constants as
  markers (so the checks below can name their path), and turns a parser overflow into `NotJson`.
- `issues` walks a decoded value without recursion and lists what cannot be kept, with paths.
- `dumps` is the encoding every answer uses (Starlette's `JSONResponse` settings); it raises
  instead of producing something that is not JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

# Far beyond any real metadata (an object in an object ... 64 times), and far below the depth
# at which Python's parser or encoder overflows its stack.
MAX_DEPTH = 64
# int64 and uint64 need at most 20 digits; anything much longer is not an id but an attack
# on int() (quadratic in the digit count, refused by Python beyond 4,300 digits).
MAX_INT_DIGITS = 32
# A hostile body can hold a million bad values; the answer names the first ones.
MAX_ISSUES = 20

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class OversizedInt:
    """An integer literal longer than MAX_INT_DIGITS, kept as its length instead of converted."""

    digits: int


@dataclass(frozen=True, slots=True)
class NonFinite:
    """`NaN`, `Infinity` or `-Infinity`: accepted by Python's parser, not JSON."""

    literal: str


@dataclass(frozen=True, slots=True)
class JsonIssue:
    """One value that cannot be kept: where it is, a stable type, and a sentence."""

    path: Path
    type: str
    message: str


class NotJson(ValueError):
    """The bytes are not JSON vidhook can read; `type` is a stable key, `offset` a byte or char."""

    def __init__(self, type_: str, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message
        self.offset = offset


def _parse_int(literal: str) -> int | OversizedInt:
    digits = len(literal) - literal.startswith("-")
    return OversizedInt(digits) if digits > MAX_INT_DIGITS else int(literal)


_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_constant=NonFinite)


def loads(raw: bytes) -> Any:
    """Decode `raw` as strict UTF-8 JSON; raises NotJson. Checks of the value are `issues`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotJson(
            "invalid_utf8",
            f"The body is not UTF-8: byte {exc.start} cannot start a character.",
            exc.start,
        ) from exc
    try:
        return _DECODER.decode(text)
    except RecursionError as exc:
        raise NotJson(
            "too_deep", f"The body is nested too deeply; at most {MAX_DEPTH} levels are allowed."
        ) from exc
    except json.JSONDecodeError as exc:
        raise NotJson("invalid_json", f"The body is not valid JSON: {exc}", exc.pos) from exc


def issues(value: Any, path: Path = ()) -> list[JsonIssue]:
    """What in `value` (as `loads` made it) cannot be stored and answered, body order first."""
    found: list[JsonIssue] = []
    stack: list[tuple[Any, Path, int]] = [(value, path, 0)]
    while stack and len(found) < MAX_ISSUES:
        item, here, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                found.append(JsonIssue(here, "too_deep", f"Nested deeper than {MAX_DEPTH} levels."))
                continue
            children: list[tuple[Any, Path, int]] = []
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str) and not _is_utf8(key):
                    found.append(_surrogate((*here, printable(key)), "key"))
                    continue
                children.append((child, (*here, key), depth + 1))
            stack.extend(reversed(children))
        elif isinstance(item, str):
            if not _is_utf8(item):
                found.append(_surrogate(here, "string"))
        elif isinstance(item, OversizedInt):
            found.append(
                JsonIssue(
                    here,
                    "integer_too_long",
                    f"An integer of {item.digits} digits; at most {MAX_INT_DIGITS} allowed.",
                )
            )
        elif isinstance(item, NonFinite) or (isinstance(item, float) and not math.isfinite(item)):
            found.append(JsonIssue(here, "not_finite", "Not a finite number, so not JSON."))
    return found


def dumps(value: Any) -> bytes:
    """Encode as every answer is encoded; raises ValueError or TypeError, never emits non-JSON."""
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def printable(text: str) -> str:
    """`text` with lone surrogates written as `\\udXXX`, safe to put in an answer."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _is_utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _surrogate(path: Path, what: str) -> JsonIssue:
    return JsonIssue(
        path, "invalid_string", f"The {what} holds a lone surrogate (\\ud800-\\udfff), not text."
    )
