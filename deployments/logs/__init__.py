"""The log bus: Redis Streams carry live lines, the database keeps the history.

The worker writes through `LogWriter` (writer.py): each line is masked (masking.py),
appended with XADD to `shipmate:log:<deployment id>` (bus.py) and inserted in batches
into `LogLine`, keeping the stream entry id so a client can resume from either store
(history.py).
"""

from .bus import (
    discard_stream,
    get_async_redis,
    get_redis,
    publish_event,
    publish_status,
    stream_key,
)
from .history import has_lines_before, history, log_text, parse_event_id
from .masking import MASK, Masker, clean_text, mask
from .writer import LogWriter, LogWriterError

__all__ = [
    "MASK",
    "LogWriter",
    "LogWriterError",
    "Masker",
    "clean_text",
    "discard_stream",
    "get_async_redis",
    "get_redis",
    "has_lines_before",
    "history",
    "log_text",
    "mask",
    "parse_event_id",
    "publish_event",
    "publish_status",
    "stream_key",
]
