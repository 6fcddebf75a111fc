"""Firmware images by SHA-256: immutable, so cached once and served block by block.

Device and agent code are UTF-8 text; impOS images are binary blobs. Every image
is named by the SHA-256 of its bytes, so a cached block can never go stale and a
device resuming a download asks for the same name again.
"""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from collections.abc import Callable

from impfactory.protocol import cloudlink as cl

DEFAULT_IMPOS_SIZE = 1 << 20


def sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def impos_blob(version: str, size: int = DEFAULT_IMPOS_SIZE) -> bytes:
    """A reproducible stand-in impOS image: ``size`` pseudo-random bytes seeded by version."""
    return random.Random(f"impOS {version}").randbytes(size)


class ImageCache:
    """Images by SHA-256, loaded on a miss by ``loader(sha)`` and kept (LRU by bytes)."""

    def __init__(
        self,
        loader: Callable[[str], bytes | None],
        chunk_size: int = cl.DEFAULT_CHUNK_SIZE,
        max_bytes: int = 256 << 20,
    ) -> None:
        self.loader = loader
        self.chunk_size = chunk_size
        self.max_bytes = max_bytes
        self._images: OrderedDict[str, bytes] = OrderedDict()
        self._block_shas: dict[str, list[str | None]] = {}
        self._wire: dict[str, list[bytes | None]] = {}
        self._roots: dict[str, str] = {}  # image SHA-256 -> its blocks_sha
        self._bytes = 0

    def put(self, data: bytes) -> str:
        """Cache ``data`` and return its SHA-256."""
        digest = sha256(data)
        self._store(digest, data)
        return digest

    def get(self, digest: str) -> bytes | None:
        """The image with this SHA-256, or None when nobody has it."""
        data = self._images.get(digest)
        if data is not None:
            self._images.move_to_end(digest)
            return data
        data = self.loader(digest)
        if data is None or sha256(data) != digest:
            return None
        self._store(digest, data)
        return data

    def ref(self, kind: cl.ImageKind, data: bytes) -> cl.ImageRef:
        """Cache ``data`` and describe it for an offer."""
        digest = self.put(data)
        return cl.ImageRef(kind, digest, len(data), self.chunk_size, self.blocks_sha(digest))

    def offer_ref(self, kind: cl.ImageKind, digest: str, size: int) -> cl.ImageRef:
        """An offer's description of a stored image, with its block list when the image
        can be had (the chunks are served from the same bytes)."""
        return cl.ImageRef(kind, digest, size, self.chunk_size, self.blocks_sha(digest))

    def blocks_sha(self, digest: str) -> str | None:
        """``ImageRef.blocks_sha`` of an image: each block hashed once, kept for its
        chunks too (they carry the same digests); None when nobody has the image."""
        data = self.get(digest)
        if data is None:
            return None
        root = self._roots.get(digest)
        if root is not None:
            return root
        total = -(-len(data) // self.chunk_size)
        shas = self._block_shas.setdefault(digest, [None] * total)
        digests = []
        for index, known in enumerate(shas):
            if known is None:
                start = index * self.chunk_size
                known = shas[index] = sha256(data[start:start + self.chunk_size])
            digests.append(bytes.fromhex(known))
        root = self._roots[digest] = cl.block_list_sha(digests)
        return root

    def chunk(self, device_id: str, digest: str, index: int) -> cl.Chunk | None:
        """Block ``index`` of an image as a message, or None (unknown image or block)."""
        data = self.get(digest)
        if data is None:
            return None
        total = -(-len(data) // self.chunk_size)
        if index >= total:
            return None
        start = index * self.chunk_size
        block = memoryview(data)[start:start + self.chunk_size]  # a view: sent, not copied
        shas = self._block_shas.setdefault(digest, [None] * total)
        block_sha = shas[index]
        if block_sha is None:
            block_sha = shas[index] = sha256(block)
        return cl.Chunk(device_id=device_id, sha=digest, index=index, total=total,
                        block_sha=block_sha, data=block)

    def encoded(self, chunk: cl.Chunk) -> tuple[str, bytes]:
        """``cl.encode(chunk)``, its payload made once per block of a cached image.

        A block's payload names no device (only the topic does), and an image named by
        its SHA-256 never changes, so a hundred devices fetching one impOS share one
        encoding of each block: the cloud's cost per chunk is then the publish alone."""
        blocks = self._wire.get(chunk.sha)
        if blocks is None or chunk.index >= len(blocks) or len(blocks) != chunk.total:
            if chunk.sha not in self._images:
                return cl.encode(chunk)
            blocks = self._wire[chunk.sha] = [None] * chunk.total
        payload = blocks[chunk.index]
        if payload is None:
            payload = blocks[chunk.index] = cl.encode(chunk)[1]
        return cl.topic(chunk.device_id, cl.Direction.DOWN, cl.Chunk.KIND), payload

    def _store(self, digest: str, data: bytes) -> None:
        if digest in self._images:
            self._images.move_to_end(digest)
            return
        self._images[digest] = data
        self._bytes += len(data)
        while self._bytes > self.max_bytes and len(self._images) > 1:
            gone, old = self._images.popitem(last=False)
            self._block_shas.pop(gone, None)
            self._wire.pop(gone, None)
            self._roots.pop(gone, None)
            self._bytes -= len(old)
