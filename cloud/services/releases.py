"""impOS releases: the versions devices may be asked to run, and their images."""

from __future__ import annotations

from impfactory.cloud.errors import InvalidError
from impfactory.cloud.images import impos_blob
from impfactory.cloud.model import ImposRelease, version_key
from impfactory.cloud.services.context import Context


class Releases:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.repo = ctx.repos.releases

    def add_impos_release(self, version: str, data: bytes | None = None,
                          size: int | None = None) -> ImposRelease:
        """Make an impOS version available (a generated blob of ``size`` bytes by default)."""
        if not version or len(version) > 64:
            raise InvalidError("impOS version must be 1-64 characters")
        blob = data if data is not None else impos_blob(version, size or (1 << 20))
        digest = self.ctx.images.put(blob)
        now = self.ctx.now()
        self.repo.put(version, digest, blob, now)
        return ImposRelease(version, digest, len(blob), now)

    def impos_releases(self) -> list[ImposRelease]:
        return sorted(self.repo.list(), key=lambda r: version_key(r.version))

    def is_impos_image(self, digest: str) -> bool:
        """True when ``digest`` names an impOS release."""
        return self.repo.has(digest)
