"""Which HTTP requests uvicorn's access log keeps.

Agents long-poll ``/events``, health checks and Prometheus hit ``/health`` and ``/metrics``
(an agent's ``/stats`` too), and the explorer polls its API, several times a second: one line
each would drown the lines that matter. With ``proofnet chain serve --access-log`` (or an
agent's ``--access-log``) every other request is logged; these never are (the request
metrics at ``/metrics`` count them all). An event stream (``/events/stream``) is one request
however long it lasts: its line is kept.
"""

from __future__ import annotations

import logging
from typing import Final

POLLING_ROUTES: Final = ("/events", "/health", "/metrics", "/stats")
POLLING_PREFIXES: Final = ("/explorer/api/",)
ACCESS_LOGGER: Final = "uvicorn.access"


def is_polling(path: str) -> bool:
    """Whether ``path`` (query string allowed) is one of the endpoints clients poll."""
    route = path.split("?", 1)[0]
    return route in POLLING_ROUTES or route.startswith(POLLING_PREFIXES)


class PollingFilter(logging.Filter):
    """Drop uvicorn access lines of polling endpoints, and give the others their request as
    fields (``method``, ``path``, ``status``: queryable in ``--log-format json``). uvicorn
    logs each request with the arguments ``(client, method, path, http_version, status)``."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not (isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str)):
            return True
        if is_polling(args[2]):
            return False
        record.client, record.method, record.path = args[0], args[1], args[2]
        record.status = args[4]
        return True


def quiet_polling_access_log() -> None:
    """Install ``PollingFilter`` on uvicorn's access logger (once)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, PollingFilter) for f in logger.filters):
        logger.addFilter(PollingFilter())
