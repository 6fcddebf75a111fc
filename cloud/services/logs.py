"""Device logs: appended by devices and the cloud, read by page or as a stream."""

from __future__ import annotations

from impfactory.cloud.model import LogEntry
from impfactory.cloud.services.context import Context


class Logs:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.repo = ctx.repos.logs

    def append_log(self, device_id: str, msg: str, type: str = "status") -> None:
        self.ctx.log(device_id, msg, type)

    def device_logs(self, device_id: str, *, page: int = 1, size: int = 100,
                    newest_first: bool = False) -> list[LogEntry]:
        """A page of a device's log (oldest first unless asked otherwise)."""
        return self.repo.page(device_id, size, max(0, page - 1) * size, newest_first)

    def logs_since(self, after_id: int, limit: int = 1000) -> list[LogEntry]:
        """Every log line with id > ``after_id`` (for log streams)."""
        return self.repo.since(after_id, limit)

    def last_log_id(self) -> int:
        """The newest log line's id (0: none), where a new log stream starts."""
        return self.repo.last_id()
