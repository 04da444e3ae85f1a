"""``python -m spmp.cli``: the ``spmp`` command without its console script (tests run it so)."""

from spmp.cli import app

if __name__ == "__main__":  # pragma: no cover
    app()
