"""``/api/clients/{endpoint}/calibration…``: the calibration backup of a charger (SPMP Calibration).

* ``GET  /api/clients/{endpoint}/calibration``: the stored backup (path, value, when saved);
* ``POST /api/clients/{endpoint}/calibration/backup``: read the device now and replace the backup
  (after a deliberate re-calibration; the backup taken at first registration is otherwise kept);
* ``POST /api/clients/{endpoint}/calibration/restore[?from=OTHER]``: write the backup (of ``OTHER``,
  for a replacement unit with a new name) back to the device in one call.

The logic is :class:`spmp.server.calibration.CalibrationBackups`; these handlers only translate.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from spmp.api.errors import ApiError
from spmp.server import ManagementServer
from spmp.store import CalibrationBackup

__all__ = ["backup_calibration", "get_calibration", "restore_calibration"]


def _backup_json(backup: CalibrationBackup) -> dict[str, Any]:
    return {
        "path": backup.path,
        "value": backup.value,
        "savedAt": backup.saved_at.isoformat().replace("+00:00", "Z"),
    }


async def get_calibration(request: Request) -> JSONResponse:
    server: ManagementServer = request.app.state.server
    endpoint = request.path_params["endpoint"]
    backups = await server.calibration.list(endpoint)
    return JSONResponse({"endpoint": endpoint, "backups": [_backup_json(b) for b in backups]})


def _require_registered(server: ManagementServer, endpoint: str) -> None:
    if server.registration(endpoint) is None:
        raise ApiError(404, "client_not_found", f"client {endpoint!r} is not registered")


async def backup_calibration(request: Request) -> JSONResponse:
    server: ManagementServer = request.app.state.server
    endpoint = request.path_params["endpoint"]
    _require_registered(server, endpoint)
    saved = await server.calibration.backup(endpoint, overwrite=True)
    return JSONResponse({"endpoint": endpoint, "backups": [_backup_json(b) for b in saved]})


async def restore_calibration(request: Request) -> JSONResponse:
    server: ManagementServer = request.app.state.server
    endpoint = request.path_params["endpoint"]
    source = request.query_params.get("from") or endpoint
    _require_registered(server, endpoint)
    if not await server.calibration.list(source):
        raise ApiError(404, "no_calibration_backup", f"there is no calibration backup of {source!r}")
    result = await server.calibration.restore(endpoint, source=source)
    status = 200 if not result.failed else 502
    body = {
        "status": "RESTORED" if not result.failed else "PARTIAL",
        "endpoint": endpoint,
        "source": source,
        "restored": result.restored,
        "failed": result.failed,
    }
    return JSONResponse(body, status_code=status)
