"""services.logs: one place that makes every process log as text or as JSON lines."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest

from protocol.errors import ProofNetError
from services.errors import UnknownLogFormatError, UnknownLogLevelError
from services.logs import (
    JsonFormatter,
    configure_logging,
)


def _ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, "_proofnet_logs_handler", False)]


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Leave the root logger and uvicorn's access logger as the test found them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access = logging.getLogger("uvicorn.access")
    disabled = access.disabled
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    access.disabled = disabled


def _record() -> logging.LogRecord:
    return logging.LogRecord("proofnet.solver", logging.INFO, __file__, 1, "bid", None, None)


def test_json_lines_carry_level_logger_message_and_extras(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json", "info")
    logging.getLogger("proofnet.solver").info("bid on %s", "job-1", extra={"job_id": "job-1"})
    line = capsys.readouterr().err.strip().splitlines()[-1]
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "proofnet.solver"
    assert entry["message"] == "bid on job-1"
    assert entry["job_id"] == "job-1"
    assert entry["ts"].endswith("+00:00")


def test_json_formats_exceptions_inside_the_object() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = _record()
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert "RuntimeError: boom" in entry["exception"]
    assert "exc_info" not in entry and "args" not in entry
    assert "\n" not in JsonFormatter().format(record)


def test_text_is_the_human_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("text", "INFO")
    logging.getLogger("proofnet.verifier").warning("challenged job-2")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.endswith("WARNING proofnet.verifier: challenged job-2")
    with pytest.raises(ValueError):
        json.loads(line)


def test_idempotent_one_handler_and_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("text")
    configure_logging("json")
    configure_logging("json")
    assert len(_ours()) == 1
    logging.getLogger("proofnet.x").info("once")
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "once" in ln]
    assert len(lines) == 1


def test_level_filters_records(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("text", "warning")
    logging.getLogger("proofnet.x").info("hidden")
    assert "hidden" not in capsys.readouterr().err


def test_uvicorn_access_log_off_by_default_and_on_by_request() -> None:
    configure_logging()
    assert logging.getLogger("uvicorn.access").disabled
    configure_logging(access_log=True)
    assert not logging.getLogger("uvicorn.access").disabled


def test_unknown_format_and_level_are_typed_value_errors() -> None:
    before = _ours()
    with pytest.raises(UnknownLogFormatError) as caught:
        configure_logging("yaml")
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ProofNetError)
    assert caught.value.message == "'yaml'; use text or json"
    with pytest.raises(UnknownLogLevelError, match="debug, info, warning, error or critical"):
        configure_logging("text", "loud")
    assert _ours() == before


def test_uvicorn_colour_duplicate_is_left_out() -> None:
    record = _record()
    record.color_message = "\x1b[32mbid\x1b[0m"
    assert "color_message" not in json.loads(JsonFormatter().format(record))


LONG_RUNNING = (
    ("chain", "serve"),
    ("solver", "run"),
    ("verifier", "run"),
    ("worker",),
    ("testnet", "up"),
    ("demo",),
)


@pytest.mark.parametrize("command", LONG_RUNNING, ids=" ".join)
def test_every_long_running_command_takes_log_format(command: tuple[str, ...]) -> None:
    from typer.testing import CliRunner

    from services.cli import _register, app

    _register()
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--log-format" in result.output
    if command in {("chain", "serve"), ("solver", "run"), ("verifier", "run")}:
        assert "--access-log" in result.output  # off unless asked for


def test_polled_routes_never_reach_the_access_log_and_others_do() -> None:
    from services.node.access_log import PollingFilter

    def line(path: str) -> logging.LogRecord:
        args = ("127.0.0.1:5", "GET", path, "1.1", 200)
        return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "%s", args, None)

    kept = PollingFilter()
    for path in ("/events?since=3&timeout=5", "/health", "/metrics", "/stats"):
        assert not kept.filter(line(path)), path
    for path in ("/jobs/ab", "/events/stream?since=3", "/leaves/ab"):
        assert kept.filter(line(path)), path
