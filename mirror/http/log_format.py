"""Log lines as text (the default) or, with ``log_format = "json"``, one JSON object per
line: the app's log and the access log, for a log pipeline that parses fields."""

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

from mirror.http.access_log import ACCESS_LOGGER
from mirror.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# With several serving processes (``serve --workers``): which one wrote the line.
TEXT_FORMAT_WITH_PID = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
# uvicorn's access line: client, method, path with query, HTTP version, status.
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


class JsonFormatter(logging.Formatter):
    def __init__(self, *, name_process: bool = False) -> None:
        super().__init__()
        self._name_process = name_process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._name_process:
            entry["pid"] = record.process
        args = record.args
        if record.name == ACCESS_LOGGER and isinstance(args, tuple) and len(args) == 5:
            entry.update(zip(_ACCESS_FIELDS, args, strict=True))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(settings: Settings, *, name_process: bool = False) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the app and uvicorn's loggers; ``name_process``
    puts the pid in each line."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter, "name_process": name_process}
        if settings.log_format == "json"
        else {"format": TEXT_FORMAT_WITH_PID if name_process else TEXT_FORMAT}
    )
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "line"},
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            ACCESS_LOGGER: {"handlers": ["access"], "level": level, "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": level},
    }


def configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings))
