"""Capture every log line the process writes (Powertools JSON logs, the gateway's access log, any
library's), whichever stream each handler was bound to when it was created, for secret scanning."""

from __future__ import annotations

import io
import logging
from contextlib import contextmanager


class _Tee(io.TextIOBase):
    def __init__(self, original, sink: io.StringIO):
        self.original, self.sink = original, sink

    def write(self, text: str) -> int:
        self.sink.write(text)
        return self.original.write(text)

    def flush(self) -> None:
        self.original.flush()


@contextmanager
def all_log_output(level: int = logging.INFO):
    """Yields a StringIO that receives everything logged at ``level`` (production's) or above: what any
    StreamHandler writes, and every record that reaches the root logger, handled or not."""
    sink = io.StringIO()
    root = logging.getLogger()
    catch_all = logging.StreamHandler(sink)
    catch_all.is_capture = True
    catch_all.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    previous_level = root.level
    root.addHandler(catch_all)
    root.setLevel(level)
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    swapped = []
    for lg in loggers:
        for handler in lg.handlers:
            # Plain StreamHandlers only: not pytest's capture handlers, not another capture's catch-all.
            if type(handler) is not logging.StreamHandler or getattr(handler, "is_capture", False):
                continue
            if not isinstance(handler.stream, _Tee):
                swapped.append((handler, handler.setStream(_Tee(handler.stream, sink))))
    try:
        yield sink
    finally:
        for handler, original in swapped:
            handler.setStream(original)
        root.removeHandler(catch_all)
        root.setLevel(previous_level)
