"""Device link keys (protocol/linksec.py): registered modules and their sessions."""

from __future__ import annotations

from impfactory.cloud.services.context import Context


class Links:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.repo = ctx.repos.links

    def save_link(self, device_id: str, link_key: bytes) -> None:
        """A module registered: its new link key; no session yet."""
        with self.ctx.tx():
            self.repo.save(device_id, link_key, self.ctx.now())

    def link_of(self, device_id: str) -> tuple[bytes, str | None] | None:
        """(link key, current session) of a registered device, else None."""
        return self.repo.get(device_id)

    def set_link_session(self, device_id: str, session: str | None) -> None:
        with self.ctx.tx():
            self.repo.set_session(device_id, session)

    def registrations(self, device_id: str) -> int:
        """How many times the module ``device_id`` has registered (0: never)."""
        return self.repo.registrations(device_id)

    def registered_modules(self) -> int:
        """How many modules ever registered."""
        return self.repo.count()
