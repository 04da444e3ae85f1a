"""The REST API's bearer token: given explicitly, taken from ``SPMP_API_TOKEN``, or made at first start.

A generated token is kept in ``<data_dir>/api-token`` (mode 0600, created with that mode so it is
never readable by others, not even briefly) and reused on every later start, so operators' scripts
keep working across restarts. The caller prints it once, when ``created`` is True; it is never logged.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TOKEN_FILE = "api-token"
ENV_VAR = "SPMP_API_TOKEN"
MIN_LENGTH = 16
"""Shorter explicit tokens are refused: a bearer token is the only thing guarding device control."""


class TokenError(ValueError):
    """The explicit token is unusable, or the token file cannot be read or written."""


def generate_token() -> str:
    """A new random token: 32 bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def load_or_create_token(data_dir: str | os.PathLike[str], explicit: str | None = None) -> tuple[str, bool]:
    """The token to use and whether it was just created (then print it once).

    Order: ``explicit`` (``--api-token``), then the ``SPMP_API_TOKEN`` environment variable, then the
    token file in ``data_dir``, else a new token written to that file.
    """
    for source, candidate in (("--api-token", explicit), (ENV_VAR, os.environ.get(ENV_VAR))):
        if candidate is not None and candidate != "":
            return _checked(candidate, source), False
    directory = Path(data_dir)
    path = directory / TOKEN_FILE
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    except OSError as exc:
        raise TokenError(f"cannot read the API token file {path}: {exc.strerror}") from None
    if existing:
        return _checked(existing, str(path)), False
    token = generate_token()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # O_EXCL: if another process created the file meanwhile, fail instead of overwriting its token.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
    except FileExistsError:
        return _checked(path.read_text(encoding="utf-8").strip(), str(path)), False
    except OSError as exc:
        raise TokenError(f"cannot write the API token file {path}: {exc.strerror}") from None
    return token, True


def _checked(token: str, source: str) -> str:
    token = token.strip()
    if len(token) < MIN_LENGTH:
        raise TokenError(f"the API token from {source} is shorter than {MIN_LENGTH} characters")
    if any(c.isspace() or not c.isprintable() for c in token):
        raise TokenError(f"the API token from {source} contains spaces or control characters")
    return token
