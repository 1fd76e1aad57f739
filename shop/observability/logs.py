"""Log lines of every process (web, workers, beat, relay): one event per line, each
carrying the saga at work.

``LOG_FORMAT=console`` (the default) writes readable lines, the saga's fields after
the message; ``LOG_FORMAT=json`` one JSON object per line (python-json-logger). Every
record passes ``CorrelationFilter`` first, which adds the traced headers of the saga
at work (sagas.messaging.correlation: saga_id, mode, step, order_id) and the Celery
task's id, so every logger call carries them without saying so. Credentials that
reach a line anyway (a bearer token, a password in a URL) are masked.

Kept free of Django: gunicorn's master reads it (gunicorn.conf.py) before Django.
"""

import logging
import logging.config
import re

from celery import current_task
from pythonjsonlogger.json import JsonFormatter

from sagas.messaging import correlation, tracing

FORMATS = ("console", "json")
# What an event may add to its line, in the order the console shows them.
EVENT_FIELDS = (
    "status",
    "phase",
    "duration_ms",
    "kind",
    "error_class",
    "attempt",
    "countdown_s",
    "topic",
    "consumer",
    "error",
)
_SECRETS = (
    # Authorization: Bearer <token>, Token <token>, Basic <credentials>
    (re.compile(r"(?i)\b(bearer|token|basic)(\s+)[\w.~+/=-]{8,}"), r"\1\2[redacted]"),
    # password=..., "secret": "...", token: ...
    (
        re.compile(
            r"(?i)\b((?:password|passwd|secret|token|api_key)[\"']?\s*[:=]\s*[\"']?)"
            r"[^\s\"'&,;}]+"
        ),
        r"\1[redacted]",
    ),
    # scheme://user:password@host
    (re.compile(r"(\w+://[^:/\s\"'@]*:)[^@/\s\"']+@"), r"\1[redacted]@"),
)


# gunicorn's request line, without what a client may put there: the query string,
# the referrer and the user agent (tokens travel in them; a client writes them).
ACCESS_LINE = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(D)sus'


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class CorrelationFilter(logging.Filter):
    """Add the saga at work and the Celery task to every record (what the record
    says itself wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            record.msg = ACCESS_LINE
        task_id = getattr(record, "task_id", None) or _task_id(record)
        if task_id:
            record.task_id = task_id
        found = correlation.traced() or (task_id and tracing.seen(task_id)) or {}
        for key, value in found.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _task_id(record: logging.LogRecord) -> str | None:
    """The running task's id; else the id a Celery line names (its ``data``, or its
    arguments: "Soft time limit (3s) exceeded for purchase.x[<id>]")."""
    task = current_task
    if task and task.request.id:
        return task.request.id
    data = getattr(record, "data", None)
    if isinstance(data, dict) and data.get("id"):
        return data["id"]
    if record.name.startswith("celery.") and isinstance(record.args, tuple):
        return next(
            (a for a in record.args if isinstance(a, str) and tracing.seen(a)), None
        )
    return None


class ConsoleLines(logging.Formatter):
    """``time LEVEL logger message key=value ...``: the event's fields, then the
    saga's, then the traceback if any."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = [
            *((key, getattr(record, key, None)) for key in EVENT_FIELDS),
            *correlation.traced(vars(record)).items(),
            ("task_id", getattr(record, "task_id", None)),
        ]
        shown = " ".join(f"{k}={v}" for k, v in fields if v not in (None, ""))
        return super().formatMessage(record) + (f" {shown}" if shown else "")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonLines(JsonFormatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, pid,
    the saga's fields, the event's; Celery's and gunicorn's lines lifted into fields
    (task name and runtime; method, path, status and duration of a request)."""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}{process}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger", "process": "pid"},
            timestamp="time",
        )

    def add_fields(self, log_record: dict, record, message_dict: dict) -> None:
        super().add_fields(log_record, record, message_dict)
        data = log_record.pop("data", None)
        if isinstance(data, dict):  # Celery's task lines
            log_record.setdefault("task", data.get("name"))
            if isinstance(data.get("runtime"), int | float):
                log_record.setdefault("duration_ms", round(data["runtime"] * 1000, 1))
            if data.get("exc"):
                log_record.setdefault("error_class", str(data["exc"]).split("(")[0])
        if record.exc_info and record.exc_info[0] is not None:
            log_record.setdefault("error_class", record.exc_info[0].__name__)
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            log_record.update(_request_fields(record.args))
        if "request" in log_record:  # Django's request lines: its path, no query
            log_record["request"] = getattr(record.request, "path", None)
        # Each value masked on its own, before the line is written as JSON: masking
        # the written text could cut through its escapes and break the line.
        for key, value in log_record.items():
            if isinstance(value, str):
                log_record[key] = redact(value)
        # The time first, as a reader scans lines.
        ordered = {"time": log_record.pop("time", None), **log_record}
        log_record.clear()
        log_record.update(ordered)


def _request_fields(atoms: dict) -> dict:
    """A request as gunicorn's access log sees it; not its query string or headers
    (tokens travel there)."""
    return {
        "method": atoms.get("m"),
        "path": atoms.get("U"),
        "status": atoms.get("s"),
        "duration_ms": round(int(atoms.get("D") or 0) / 1000, 1),
        "bytes": atoms.get("B"),
        "remote_addr": atoms.get("h"),
    }


def logging_config(*, log_format: str, level: str) -> dict:
    """The logging of every process: one handler on the root logger (gunicorn's and
    Django's loggers pass their lines to it), in ``log_format``."""
    if log_format not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}")
    formatter = JsonLines if log_format == "json" else ConsoleLines
    through_root = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"correlation": {"()": CorrelationFilter}},
        "formatters": {"lines": {"()": formatter}},
        "handlers": {
            "lines": {
                "class": "logging.StreamHandler",
                "formatter": "lines",
                "filters": ["correlation"],
            }
        },
        "root": {"handlers": ["lines"], "level": level},
        "loggers": {
            "gunicorn.error": {**through_root, "level": "INFO"},
            "gunicorn.access": {**through_root, "level": "INFO"},
            "django": through_root,  # not also Django's own console handler
        },
    }


def configure(config: dict) -> None:
    """Django's LOGGING_CONFIG, and Celery's logging set-up: the config, and Python's
    warnings as log lines (a worker started as root warns, for one)."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)
