"""A root log handler that keeps every line of the test run, rendered by vidhook's formatter,
and finds the ones that carry a secret, a webhook token or a data URI."""

from __future__ import annotations

import logging
import re
import threading

from service.logs import configure_logging, formatter

# Patterns no line may match, whatever the test: an unmasked `token=` (or its percent-encoded
# form inside a `fal_webhook=` URL), a data URI, a key made by `vidhook keys create`.
PATTERNS = {
    "webhook token": re.compile(r"(?:[?&]|%3F|%26)token(?:=|%3D)(?!\*\*\*)", re.I),
    "data URI": re.compile(r"data:[\w.+-]+/[\w.+-]+;base64,", re.I),
    "stored API key": re.compile(r"vhk_[A-Za-z0-9_-]{20,}"),
}


class LogCapture(logging.Handler):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(formatter())
        self.secrets = secrets
        self.lines: list[str] = []
        self._lines_lock = threading.Lock()

    def install(self) -> None:
        """Configure logging as `vidhook api|worker` does, then listen beside its handler."""
        configure_logging("info")
        logging.getLogger().addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self._lines_lock:
            self.lines.append(line)

    def leaks(self, lines: list[str] | None = None) -> list[tuple[str, str]]:
        """(what leaked, line) for every line carrying something no log may carry."""
        with self._lines_lock:
            checked = list(self.lines if lines is None else lines)
        found: list[tuple[str, str]] = []
        for line in checked:
            for secret in self.secrets:
                if secret in line:
                    found.append(("secret", line))
            for reason, pattern in PATTERNS.items():
                if pattern.search(line):
                    found.append((reason, line))
        return found
