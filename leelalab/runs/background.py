"""Work prepared in a background thread while the main thread runs the network.

Python-side preparation (move generation, encoding) holds the GIL; torch's kernels release
it. :class:`Background` computes the next items in a daemon thread while the caller runs
forward passes on the current one, and :func:`fast_thread_switches` makes the interpreter
hand the GIL back quickly between kernels.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def fast_thread_switches() -> Iterator[None]:
    """The preparation thread is pure Python and would hold the GIL for the default 5 ms
    switch interval, stalling the forward pass between kernels (torch releases the GIL in
    them); a short interval hands it back quickly. Restored on exit."""
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(min(switch_interval, _SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(switch_interval)


_SWITCH_INTERVAL = 0.0005
_DONE = object()


class Background:
    """Iterates ``items`` computed in a daemon thread, up to ``ahead`` items before use.

    Python-side preparation then overlaps the forward passes. An exception in the thread is
    raised by the iteration; :meth:`close` (or leaving the ``with`` block) stops the thread.
    """

    def __init__(self, items: Iterator[Any], ahead: int = 2) -> None:
        self._items = items
        self._buffer: queue.Queue[Any] = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="leelalab-prepare", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for item in self._items:
                if not self._put((item, None)):
                    return
        except BaseException as error:  # handed to the consumer
            self._put((_DONE, error))
            return
        self._put((_DONE, None))

    def __iter__(self) -> Iterator[Any]:
        while True:
            item, error = self._buffer.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
