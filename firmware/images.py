"""Fetching an image (impOS, device code) block by block, checked by SHA-256.

The device asks only for the blocks it lacks, at most ``MAX_BLOCKS_PER_REQUEST``
per request and a window of requests in flight; a block of the wrong size or for
another image is dropped and asked for again; when every block is in, the whole
image must match its size and SHA-256, or it is discarded and fetched again. After
``max_rounds`` failed rounds the fetch raises ``FirmwareImageError``: a corrupt or
short image is never returned, so it never runs.
"""

from __future__ import annotations

import asyncio
import hashlib

from impfactory.firmware.cloudclient import CloudClient
from impfactory.firmware.errors import CloudClientError, FirmwareImageError
from impfactory.protocol import cloudlink as cl

ROUND_TIMEOUT = 10.0


async def fetch_image(client: CloudClient, ref: cl.ImageRef, max_rounds: int = 4,
                      round_timeout: float = ROUND_TIMEOUT,
                      blocks: dict[int, bytes] | None = None) -> bytes:
    """Download the image ``ref`` names; return its bytes once its SHA-256 matches.

    ``blocks`` keeps what has arrived; pass the same dict after a lost link and
    only the missing blocks are asked for (the image is named by its SHA-256).
    A lost link raises ``CloudClientError`` at once.
    """
    total = ref.total
    blocks = {} if blocks is None else blocks
    arrived = asyncio.Event()
    problems: list[str] = []
    lost = False

    def expected_len(index: int) -> int:
        return ref.chunk_size if index < total - 1 else ref.size - ref.chunk_size * (total - 1)

    def sink(chunk: cl.Chunk | None) -> None:
        nonlocal lost
        if chunk is None:
            lost = True
            arrived.set()
            return
        if chunk.total != total or chunk.index >= total:
            problems.append(f"block {chunk.index}/{chunk.total} does not fit {total} blocks")
            return
        if len(chunk.data) != expected_len(chunk.index):
            problems.append(f"block {chunk.index} is {len(chunk.data)} bytes")
            return
        blocks[chunk.index] = chunk.data
        arrived.set()

    client.sink_chunks(ref.sha, sink)
    try:
        for _ in range(max_rounds):
            missing = [i for i in range(total) if i not in blocks]
            for start in range(0, len(missing), cl.MAX_BLOCKS_PER_REQUEST):
                window = tuple(missing[start:start + cl.MAX_BLOCKS_PER_REQUEST])
                await client.send(cl.ChunkRequest(client.device_id, sha=ref.sha, blocks=window))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + round_timeout
            while len(blocks) < total:
                arrived.clear()
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(arrived.wait(), left)
                except TimeoutError:
                    break
                if lost:
                    raise CloudClientError(
                        f"link lost with {len(blocks)} of {total} blocks of {ref.sha[:12]}")
            if len(blocks) < total:
                problems.append(f"{total - len(blocks)} of {total} blocks missing")
                continue
            image = b"".join(blocks[i] for i in range(total))
            if len(image) == ref.size and hashlib.sha256(image).hexdigest() == ref.sha:
                return image
            problems.append("image does not match its SHA-256")
            blocks.clear()
    finally:
        client.sink_chunks(ref.sha, None)
    raise FirmwareImageError(
        f"{ref.kind.value} image {ref.sha[:12]} not fetched after {max_rounds} rounds: "
        + "; ".join(problems[-3:])
    )
