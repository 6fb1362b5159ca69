"""Log records leave the event loop at once: the root logger's handlers (formatting, JSON, the write to stdout)
run on a listener thread behind a queue, so a slow terminal or pipe never stalls ingest, and the per-request cost
on the loop is building the record. The log context is read on the loop (the QueueHandler's filter), where the
task's contextvars are."""

from __future__ import annotations

import atexit
import logging
import queue
from logging.handlers import QueueHandler, QueueListener

from connector.ops.logctx import ContextFilter


class _Handoff(QueueHandler):
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Merge the arguments now (they may change after the call) but leave the formatting to the real handlers.
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
        return record


def queue_root_handlers() -> QueueListener | None:
    """Move the root logger's handlers behind a queue (idempotent); returns the listener (stopped at exit)."""
    root = logging.getLogger()
    if any(isinstance(h, _Handoff) for h in root.handlers) or not root.handlers:
        return None
    handlers = list(root.handlers)
    handoff = _Handoff(queue.SimpleQueue())
    handoff.addFilter(ContextFilter())
    for handler in handlers:
        root.removeHandler(handler)
    root.addHandler(handoff)
    listener = QueueListener(handoff.queue, *handlers, respect_handler_level=True)
    listener.start()
    atexit.register(listener.stop)  # flushes what is queued
    return listener
