"""Structured, quiet-by-default logging for every SPMP process.

Log with a short event message and the facts as ``extra`` fields, never by formatting them into
the message::

    log = logging.getLogger(__name__)
    log.info("registered", extra={"ep": "charger-17", "lifetime": 300})

:func:`configure` installs one handler on the root logger that writes one line per record, either
``key=value`` pairs (the default, for people) or JSON objects (for log shippers)::

    ts=2024-05-01T10:00:00.123Z level=info logger=spmp.server msg=registered ep=charger-17 lifetime=300

A :class:`SecretFilter` on that handler replaces the value of every field whose name looks like a
secret (``psk``, ``key``, ``secret``, ``token``, ``password``, ...) with ``***``, in ``extra``
fields, in mapping arguments, and in ``name=value`` / ``"name": "value"`` text inside messages,
so a PSK or a password never reaches a log line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

__all__ = [
    "REDACTED",
    "JsonFormatter",
    "KeyValueFormatter",
    "LogFormat",
    "SecretFilter",
    "configure",
    "is_secret_key",
    "redact",
    "redact_argv",
]

REDACTED = "***"

LogFormat = Literal["kv", "json"]

_SECRET_WORDS = frozenset(
    {
        "psk",
        "key",
        "secret",
        "token",
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "credential",
        "credentials",
        "apikey",
        "privkey",
        "cookie",
        "authorization",
    }
)
"""A field is secret when one of the words of its name is one of these (``psk``, ``dtls_psk``, ``apiKey``)."""

_SECRET_SUFFIXES = ("key", "secret", "token", "password", "passwd", "psk")
"""... or when a word ends with one of these (``privatekey``, ``authpassword``, ``bearertoken``)."""

_PUBLIC_WORDS = frozenset({"id", "identity", "ids", "len", "length", "type", "types", "name", "names", "count", "hint"})
"""... unless it names something about the secret that is not the secret (``psk_identity``, ``key_id``)."""

_NOT_SECRET = frozenset({"keywords", "keyword", "monkey", "keys"})
"""Words that merely end like a secret word."""

# The fields every LogRecord has; anything else on a record came from ``extra``.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

_NAME_SEP = re.compile(r"(?P<quote>[\"']?)(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)(?P=quote)\s*[=:]\s*")
_TEXT_VALUE = re.compile(r"\"[^\"]*\"|'[^']*'|[^\s,;&)}\]]+")


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def is_secret_key(name: str) -> bool:
    """Whether a field called ``name`` must never be logged (``psk``, ``dtls.key``, ``apiToken``)."""
    words = _words(name)
    if not words or any(word in _PUBLIC_WORDS for word in words):
        return False
    return any(word in _SECRET_WORDS or (word not in _NOT_SECRET and word.endswith(_SECRET_SUFFIXES)) for word in words)


def redact(value: Any, *, _depth: int = 0) -> Any:
    """A copy of ``value`` with secret-named entries of mappings (nested, in lists too) replaced."""
    if _depth > 8:
        return value
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and is_secret_key(k) else redact(v, _depth=_depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        items = [redact(v, _depth=_depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def redact_text(text: str) -> str:
    """Replace the values in ``psk=...``, ``token: ...`` and ``"password": "..."`` inside free text."""
    pieces: list[str] = []
    position = 0
    for match in _NAME_SEP.finditer(text):
        if match.start() < position or not is_secret_key(match.group("name")):
            continue
        value = _TEXT_VALUE.match(text, match.end())
        if value is None:
            continue
        pieces.append(text[position : match.end()])
        pieces.append(REDACTED)
        position = value.end()
    if not pieces:
        return text
    pieces.append(text[position:])
    return "".join(pieces)


_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)[^/@\s]*(?=@)")


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with the values of secret options masked, fit for a log line.

    ``--psk-key 0011``, ``--api-token=abc`` and ``--bts-password x`` become ``--psk-key ***``,
    ``--api-token=***`` and ``--bts-password ***`` (an option is secret when :func:`is_secret_key`
    says its name is; ``--key-file PATH`` names a file, not a secret, and stays). The password of a
    URL (``postgresql://user:pw@host``) is masked wherever it appears.
    """
    masked: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            masked.append(REDACTED)
            hide_next = False
            continue
        if arg.startswith("--") and len(arg) > 2:
            name, eq, _ = arg[2:].partition("=")
            if is_secret_key(name) and not name.endswith("-file"):
                if eq:
                    masked.append(f"--{name}={REDACTED}")
                else:
                    masked.append(arg)
                    hide_next = True
                continue
        masked.append(_URL_PASSWORD.sub(rf"\g<head>{REDACTED}", arg))
    return masked


class SecretFilter(logging.Filter):
    """Redact secrets in a record in place; never drops a record.

    Put it on handlers (as :func:`configure` does) so it sees records of every logger, including
    those of libraries.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in list(record.__dict__.items()):
            if name in _RECORD_FIELDS:
                continue
            record.__dict__[name] = REDACTED if is_secret_key(name) else redact(value)
        if isinstance(record.args, Mapping):
            record.args = redact(record.args)
        elif isinstance(record.args, tuple):
            record.args = tuple(redact(arg) for arg in record.args)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a broken format string: let logging report it as usual
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_FIELDS and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


_BARE = re.compile(r"[A-Za-z0-9_.:/@+\-\[\]]+")


def _kv_value(value: Any) -> str:
    text = value if isinstance(value, str) else (value.hex() if isinstance(value, bytes) else str(value))
    if text and _BARE.fullmatch(text):
        return text
    return json.dumps(text, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=info logger=spmp.x msg="..." key=value ...`` (logfmt), one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update(_extras(record))
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{key}={_kv_value(value)}" for key, value in fields.items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the same fields as :class:`KeyValueFormatter`."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update(_extras(record))
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return json.dumps(fields, ensure_ascii=False, default=lambda v: v.hex() if isinstance(v, bytes) else str(v))


class _SpmpHandler(logging.StreamHandler[TextIO]):
    """The handler :func:`configure` installs (calling it again replaces it).

    Without an explicit stream it writes to whatever ``sys.stderr`` is at the time of each record,
    so redirecting or capturing stderr later (tests, daemons) keeps working.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def parse_level(level: str | int) -> int:
    """``"info"``, ``"INFO"``, ``"20"`` or ``20`` → 20; raises ValueError for anything else."""
    if isinstance(level, int):
        return level
    text = level.strip().upper()
    if text.isdigit():
        return int(text)
    found = logging.getLevelNamesMapping().get(text)
    if found is None:
        raise ValueError(f"unknown log level {level!r} (use DEBUG, INFO, WARNING, ERROR or CRITICAL)")
    return found


def configure(level: str | int = "WARNING", fmt: LogFormat = "kv", stream: TextIO | None = None) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (stderr) as structured lines.

    Idempotent: a second call replaces the handler the first one installed. Returns the handler.
    """
    numeric = parse_level(level)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing, _SpmpHandler):
            root.removeHandler(existing)
            existing.close()
    handler = _SpmpHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    handler.addFilter(SecretFilter())
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)
    return handler
