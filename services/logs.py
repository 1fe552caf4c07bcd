"""Logging for every ProofNet process, configured in one place.

``configure_logging("text")`` prints the human lines ProofNet always printed;
``configure_logging("json")`` prints one JSON object per line, for log shippers
(Loki, Elasticsearch, ``jq``). Fields passed through ``extra=`` land in the JSON
object, so ``log.info("bid", extra={"job_id": j})`` is queryable.

The configuration is idempotent: a second call replaces the handler the first
one installed instead of adding another, so nothing is printed twice.

uvicorn's access log (one line per HTTP request) is off by default: agents and
explorers poll the node several times a second, and those lines drown the
ones that matter. Servers started with ``uvicorn.run`` should pass
``log_config=None`` so uvicorn keeps the handler installed here (and its lines
come out in the chosen format) rather than installing its own.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from services.errors import UnknownLogFormatError, UnknownLogLevelError

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Libraries that log every request at INFO; kept at WARNING so the agents'
# own lines stay readable.
_CHATTY_LOGGERS = ("httpx", "httpcore")
_ACCESS_LOGGER = "uvicorn.access"
# Marks the handler this module installed, so a second call can replace it.
_HANDLER_MARK = "_proofnet_logs_handler"
# Attributes every LogRecord has; anything else came from ``extra=``. uvicorn's
# ``color_message`` repeats the message with terminal colour codes.
_STANDARD_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def _checked_format(log_format: str) -> str:
    normalised = log_format.strip().lower()
    if normalised not in LOG_FORMATS:
        raise UnknownLogFormatError(log_format, LOG_FORMATS)
    return normalised


def _checked_level(level: str) -> int:
    normalised = level.strip().upper()
    if normalised not in LOG_LEVELS:
        raise UnknownLogLevelError(level, LOG_LEVELS)
    return logging.getLevelNamesMapping()[normalised]


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(
    log_format: str = "text", level: str = "INFO", *, access_log: bool = False
) -> None:
    """Send every logger's records to stderr in ``log_format`` ("text" or "json").

    Raises ``UnknownLogFormatError`` / ``UnknownLogLevelError`` (both
    ``ValueError``) before changing anything. ``access_log=True`` keeps uvicorn's
    per-request lines.
    """
    chosen_format = _checked_format(log_format)
    chosen_level = _checked_level(level)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(chosen_format))
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(chosen_level)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(chosen_level, logging.WARNING))
    # ``disabled`` survives uvicorn's own dictConfig, which resets levels.
    logging.getLogger(_ACCESS_LOGGER).disabled = not access_log
