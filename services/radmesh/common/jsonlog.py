"""JSON lines on stderr, one object per event, with an allow-list of fields.

Patient data never reaches a log: records carry only the fields named in
``ALLOWED_FIELDS`` (service, method, status code, durations, byte counts, ...).
Anything else passed through ``extra=`` is dropped rather than written, so a
careless ``extra={"study": ...}`` cannot leak a name, an ID or pixel data.
Messages themselves are written by radmesh code and hold no request content.
"""

from __future__ import annotations

import json
import logging
import sys
import time

ALLOWED_FIELDS = frozenset({
    "service", "method", "code", "duration_s", "bytes", "port", "metrics_port", "host",
    "stage", "done", "total", "classes", "structures", "lesions", "voxels", "pid", "version",
    "drain_s", "error_id", "peer_count", "sessions", "kind", "count",
    "tls", "auth",  # the modes ("mutual", "token"), never a certificate or a token
})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ALLOWED_FIELDS:
            if key in record.__dict__:
                out[key] = record.__dict__[key]
        if record.exc_info:
            # Exception type and location only: exception messages may quote input.
            etype, _, tb = record.exc_info
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else ""
            out["exception"] = f"{etype.__name__ if etype else 'Exception'} at {where}"
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
