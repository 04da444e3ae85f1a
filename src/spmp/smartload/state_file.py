"""The rules engine's state in a file: what a charger restart must not lose (docs/smart-load.md, Persistence).

:class:`StateFile` keeps :meth:`RuleEngine.snapshot` as JSON in the charger's data directory
(``smart-load.json``): the rules, which of them hold which targets, and each held target's original
value, the one to restore when the battery recovers. :meth:`StateFile.save` is atomic (a temporary file
in the same directory, fsynced, then renamed over the old one, and the directory fsynced): a power cut
leaves either the old state or the new one, never half a file. A file that cannot be read is moved
aside (``smart-load.json.corrupt``), logged as an error, and the charger starts without state rather
than not at all.

:func:`rebase` handles a clock that went back across the restart (a simulated clock starting again, a
wall clock corrected): the snapshot's times are shifted so that its last sample is "now", as if the
downtime had been zero; dwell times keep their meaning and the engine never sees time run backwards.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path as FilePath
from typing import Any

__all__ = ["STATE_FILE_NAME", "StateFile", "rebase"]

log = logging.getLogger(__name__)

STATE_FILE_NAME = "smart-load.json"


class StateFile:
    """A JSON snapshot file written atomically; see the module docstring."""

    def __init__(self, path: FilePath) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        """The saved snapshot, or None when there is none (or it was unreadable and moved aside)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            aside = self.path.with_name(self.path.name + ".corrupt")
            os.replace(self.path, aside)
            log.error("smart-load state unreadable, moved aside", extra={"path": str(aside), "error": str(exc)})
            return None
        return data

    def save(self, snapshot: Mapping[str, Any]) -> None:
        """Replace the file with ``snapshot``, atomically (OSError when it cannot be written)."""
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        text = json.dumps(snapshot, sort_keys=True, separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # the rename itself durable (not on every platform)
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def rebase(snapshot: Mapping[str, Any], now: float) -> dict[str, Any]:
    """``snapshot`` with its times shifted back so that its last sample is at most ``now``.

    Unchanged when the clock did not go back (the usual case: a wall clock).
    """
    data = dict(snapshot)
    last = data.get("last_t")
    if not isinstance(last, int | float) or last <= now:
        return data
    shift = now - float(last)

    def moved(value: Any) -> Any:
        return value + shift if isinstance(value, int | float) and not isinstance(value, bool) else value

    data["last_t"] = now
    data["rules"] = [
        {**rule, "since": moved(rule.get("since")), "pending_since": moved(rule.get("pending_since"))}
        for rule in data.get("rules", [])
    ]
    data["last_change"] = {path: moved(when) for path, when in dict(data.get("last_change", {})).items()}
    log.warning("smart-load state from a later clock; times shifted", extra={"shift_s": shift})
    return data
