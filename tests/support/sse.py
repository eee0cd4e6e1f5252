"""Reading server-sent events in tests, as a browser's EventSource would (WHATWG HTML §9.2)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Event:
    """One dispatched event, or a run of comment lines (`comments`, nothing else set)."""

    id: str | None = None
    event: str | None = None
    data_lines: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    @property
    def data(self) -> Any:
        return json.loads("\n".join(self.data_lines))


def parse(lines: Iterable[str]) -> Iterator[Event]:
    """Events from a stream's lines (without their line endings), each when its blank line
    comes; comment-only blocks come out too, so a test can see heartbeats."""
    current = Event()
    for line in lines:
        if line == "":
            if current.data_lines or current.comments or current.id is not None:
                yield current
            current = Event()
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            current.comments.append(value)
        elif name == "id":
            current.id = value
        elif name == "event":
            current.event = value
        elif name == "data":
            current.data_lines.append(value)
