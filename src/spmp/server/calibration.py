"""Calibration backup: keep each charger's sensor calibration on the server, restore it on demand.

SPMP v0.1 (Calibration): voltage and current sensors are calibrated at the factory and the values
are stored on the unit, in resource 5821 (Current Calibration) of every Voltage (3316) and Current
(3317) instance; the server backs them up. :class:`CalibrationBackups` does that:

* when a client registers and announces 3316 or 3317 instances, it reads those objects (one Read
  per object) and stores every 5821 value it finds (``Store.put_calibration_backup``, one record per
  endpoint and path);
* **the first backup of a path is kept**: a later registration does not overwrite it, because a
  unit that lost its calibration (reset, replaced board) registers with default values, and those
  are exactly what must not replace the good ones. ``backup(endpoint, overwrite=True)`` (REST:
  ``POST /api/clients/{endpoint}/calibration/backup``) takes a new backup after a deliberate
  re-calibration;
* ``restore(endpoint)`` (REST: ``POST /api/clients/{endpoint}/calibration/restore``) writes every
  backed-up value back to the device; ``source=`` restores another endpoint's values onto this one
  (a replacement unit registered under a new name).

Failures never disturb the registration: a device that does not answer or has no 5821 is logged
and skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from spmp.lwm2m.errors import Lwm2mError
from spmp.lwm2m.node import Object, ObjectInstance, SingleResource
from spmp.lwm2m.objects import ids
from spmp.lwm2m.path import Path
from spmp.server.errors import ServerError
from spmp.store import CalibrationBackup

if TYPE_CHECKING:
    from spmp.server.registrations import ClientSession, RegistrationEvent
    from spmp.server.server import ManagementServer

__all__ = ["CALIBRATED_OBJECTS", "CALIBRATION_RESOURCE", "CalibrationBackups", "RestoreResult"]

log = logging.getLogger(__name__)

CALIBRATED_OBJECTS = (ids.VOLTAGE, ids.CURRENT)
CALIBRATION_RESOURCE = 5821


@dataclass(slots=True)
class RestoreResult:
    """What a restore wrote (paths) and what it could not (path → reason)."""

    restored: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class CalibrationBackups:
    """Backs up calibration values at registration and restores them; see the module docstring."""

    def __init__(self, server: ManagementServer, *, on_register: bool = True, timeout: float = 30.0) -> None:
        self.server = server
        self.timeout = timeout
        self.taken = 0
        """Backup records written since start."""
        if on_register:
            server.registrations_manager.listeners.append(self._on_registration)

    def _on_registration(self, kind: RegistrationEvent, session: ClientSession) -> None:
        if kind != "registered":
            return
        # Instances are stored as "/o/i" (normalised at registration): the object id is the first part.
        if not any(int(p.split("/", 2)[1]) in CALIBRATED_OBJECTS for p in session.registration.instances):
            return
        # Background work (queued, rate-limited; the server owns and cancels it): never holds up a Register.
        self.server.background.submit(session, self._backup_session)

    async def _backup_session(self, session: ClientSession) -> None:
        await self._backup_quietly(session.endpoint)

    async def _backup_quietly(self, endpoint: str) -> None:
        try:
            saved = await self.backup(endpoint)
        except ServerError as exc:
            log.info("calibration backup failed", extra={"endpoint": endpoint, "error": str(exc)})
            return
        except Exception:
            log.exception("calibration backup failed", extra={"endpoint": endpoint})
            return
        if saved:
            log.info("calibration backed up", extra={"endpoint": endpoint, "values": len(saved)})

    async def read(self, endpoint: str) -> dict[str, float]:
        """The device's current calibration values, path → value (only paths that have one)."""
        registration = self.server.registration(endpoint)
        present = set() if registration is None else {Path.parse(p).object_id for p in registration.instances}
        values: dict[str, float] = {}
        for object_id in CALIBRATED_OBJECTS:
            if object_id not in present:
                continue
            result = await self.server.read(endpoint, Path.of(object_id), timeout=self.timeout)
            node = result.node
            instances = node.instances.values() if isinstance(node, Object) else []
            if isinstance(node, ObjectInstance):
                instances = [node]
            for instance in instances:
                resource = instance.resources.get(CALIBRATION_RESOURCE)
                if isinstance(resource, SingleResource) and isinstance(resource.value, int | float):
                    path = Path.of(object_id, instance.id or 0, CALIBRATION_RESOURCE)
                    values[str(path)] = float(resource.value)
        return values

    async def backup(self, endpoint: str, *, overwrite: bool = False) -> list[CalibrationBackup]:
        """Read and store the device's calibration; existing records are kept unless ``overwrite``."""
        values = await self.read(endpoint)
        store = self.server.store
        existing = set() if overwrite else {b.path for b in await store.list_calibration_backups(endpoint)}
        saved = []
        for path, value in sorted(values.items()):
            if path in existing:
                continue
            backup = CalibrationBackup(endpoint, path, value)
            await store.put_calibration_backup(backup)
            saved.append(backup)
        self.taken += len(saved)
        return saved

    async def list(self, endpoint: str) -> list[CalibrationBackup]:
        return await self.server.store.list_calibration_backups(endpoint)

    async def restore(self, endpoint: str, *, source: str | None = None) -> RestoreResult:
        """Write the backed-up values (of ``source``, default ``endpoint``) to ``endpoint``."""
        backups = await self.server.store.list_calibration_backups(source or endpoint)
        result = RestoreResult()
        model = self.server.model_for(endpoint)
        for backup in backups:
            try:
                path = Path.parse(backup.path)
                object_model = model.object_model(path.object_id or 0)
                resource_model = None if object_model is None else object_model.resource(CALIBRATION_RESOURCE)
                if resource_model is None or path.resource_id != CALIBRATION_RESOURCE:
                    raise ServerError(f"{backup.path} is not a calibration resource")
                node = SingleResource(CALIBRATION_RESOURCE, backup.value, resource_model.type)
                await self.server.write(endpoint, path, node, timeout=self.timeout)
            except (ServerError, Lwm2mError) as exc:
                result.failed[backup.path] = str(exc)
                continue
            result.restored.append(backup.path)
        log.info(
            "calibration restored",
            extra={"endpoint": endpoint, "source": source or endpoint, "restored": len(result.restored)},
        )
        return result
