"""The ARQ worker, running for real against the test Redis, in a background thread."""

from __future__ import annotations

import asyncio
import signal
import threading

from arq.worker import Worker

from service.settings import Settings
from workers.main import create_worker


class WorkerThread:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._worker: Worker | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="arq-worker")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._worker = create_worker(self.settings, handle_signals=False)
        self._ready.set()
        try:
            self._loop.run_until_complete(self._worker.async_run())
        except asyncio.CancelledError:
            pass
        finally:
            self._loop.run_until_complete(self._worker.close())
            self._loop.close()

    def start(self) -> WorkerThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        """SIGTERM the worker and wait for it to end: within its shutdown grace, plus room.

        A worker still running after `stop` would keep serving (and fail a later test when
        it finally ends), so not ending in time is this test's failure, here.
        """
        if self._worker is not None:
            self._loop.call_soon_threadsafe(self._worker.handle_sig, signal.SIGTERM)
        self._thread.join(timeout=self.settings.shutdown_grace_s + 10)
        if self._thread.is_alive():
            raise AssertionError(
                f"the worker did not stop within SHUTDOWN_GRACE_S "
                f"({self.settings.shutdown_grace_s:g} s) + 10 s"
            )
