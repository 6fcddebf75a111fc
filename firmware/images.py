"""Fetching an image (impOS, device code) block by block, checked by SHA-256.

The device asks only for the blocks it lacks, at most ``MAX_BLOCKS_PER_REQUEST``
per request, all requests at once (the whole window in flight); the waiting fetch
is woken only when the last block is in, a block arrives damaged or the link is
lost, not once per block (at 100 devices × 64 blocks those wake-ups were a large
part of a download's CPU). A block of the wrong size, or whose bytes do not match
the SHA-256 its chunk names, is dropped and asked for again at once
(``on_bad_block`` hears of it); when every block is in, the whole image must match
the size and SHA-256 of the offer (which the cloud sealed), or it is discarded and
fetched again. An offer that lists its blocks (``ImageRef.blocks_sha``) is checked
by that list of the digests taken as the blocks came, so the image's bytes are
hashed once, not twice. After ``max_rounds`` failed rounds the fetch raises
``FirmwareImageError``: a corrupt or short image is never returned, so it never
runs.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

from impfactory.firmware.cloudclient import CloudClient
from impfactory.firmware.errors import CloudClientError, FirmwareImageError
from impfactory.protocol import cloudlink as cl

ROUND_TIMEOUT = 10.0
REFETCHES = 3
"""Times one round asks again for a block that arrived damaged."""


Blocks = dict[int, bytes | memoryview]
"""An image's blocks by index, as they arrived (views into the received messages)."""


async def fetch_image(client: CloudClient, ref: cl.ImageRef, max_rounds: int = 4,
                      round_timeout: float = ROUND_TIMEOUT, blocks: Blocks | None = None,
                      on_bad_block: Callable[[int, str], Any] | None = None) -> bytes:
    """Download the image ``ref`` names; return its bytes once it matches the offer.

    ``blocks`` keeps what has arrived; pass the same dict after a lost link and
    only the missing blocks are asked for (the image is named by its SHA-256).
    A lost link raises ``CloudClientError`` at once.
    """
    blocks = await fetch_blocks(client, ref, max_rounds, round_timeout, blocks, on_bad_block)
    return b"".join(blocks[i] for i in range(ref.total))


async def fetch_blocks(client: CloudClient, ref: cl.ImageRef, max_rounds: int = 4,
                       round_timeout: float = ROUND_TIMEOUT, blocks: Blocks | None = None,
                       on_bad_block: Callable[[int, str], Any] | None = None) -> Blocks:
    """``fetch_image`` without putting the image together: its blocks, every one and
    the whole checked. What impOS does with an update (written block by block, never
    needed in one piece); ``fetch_image`` joins them for code."""
    total = ref.total
    blocks = {} if blocks is None else blocks
    arrived = asyncio.Event()
    problems: list[str] = []
    damaged: list[int] = []
    asked: dict[int, int] = {}
    digests: dict[int, bytes] = {}  # SHA-256 of each block checked here, by index
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
        why = None
        if len(chunk.data) != expected_len(chunk.index):
            why = f"is {len(chunk.data)} bytes, not {expected_len(chunk.index)}"
        elif not chunk.intact:
            why = "does not match its SHA-256"
        if why is not None:
            problems.append(f"block {chunk.index} {why}")
            if on_bad_block is not None:
                on_bad_block(chunk.index, why)
            if chunk.index not in blocks:
                damaged.append(chunk.index)
                arrived.set()
            return
        blocks[chunk.index] = chunk.data
        digests[chunk.index] = bytes.fromhex(chunk.block_sha)  # (intact: its bytes' digest)
        if len(blocks) == total:  # a good block needs no one woken until the last one
            arrived.set()

    async def ask(indices: list[int]) -> None:
        for start in range(0, len(indices), cl.MAX_BLOCKS_PER_REQUEST):
            window = tuple(indices[start:start + cl.MAX_BLOCKS_PER_REQUEST])
            await client.send(cl.ChunkRequest(client.device_id, sha=ref.sha, blocks=window))

    client.sink_chunks(ref.sha, sink)
    try:
        for _ in range(max_rounds):
            asked.clear()
            given_up: set[int] = set()
            await ask([i for i in range(total) if i not in blocks])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + round_timeout
            while len(blocks) < total:
                if not damaged:  # (one may have come in while we asked for others)
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
                bad = {i for i in damaged if i not in blocks}
                damaged.clear()
                again = sorted(i for i in bad if asked.get(i, 0) < REFETCHES)
                for i in again:
                    asked[i] = asked.get(i, 0) + 1
                await ask(again)
                spent = {i for i in bad if i not in again}
                given_up.update(spent)
                if given_up and all(i in given_up for i in range(total) if i not in blocks):
                    break  # what is missing keeps arriving damaged: end this round now
            if len(blocks) < total:
                problems.append(f"{total - len(blocks)} of {total} blocks missing")
                continue
            if _whole(ref, blocks, digests):
                return blocks
            problems.append("image does not match its SHA-256"
                            + (" (its offer's block list)" if ref.blocks_sha else ""))
            blocks.clear()
            digests.clear()
    finally:
        client.sink_chunks(ref.sha, None)
    raise FirmwareImageError(
        f"{ref.kind.value} image {ref.sha[:12]} not fetched after {max_rounds} rounds: "
        + "; ".join(problems[-3:])
    )


def _whole(ref: cl.ImageRef, blocks: Blocks, digests: dict[int, bytes]) -> bool:
    """Are ``blocks`` the image the (sealed) offer names? By its block list when the
    offer has one: every block was hashed as it came, so only the list is hashed now
    (a block kept from an earlier link has no digest here yet and is hashed once);
    else by the SHA-256 of all their bytes, in order."""
    total = ref.total
    if sum(len(blocks[i]) for i in range(total)) != ref.size:
        return False
    if ref.blocks_sha is None:
        whole = hashlib.sha256()
        for i in range(total):
            whole.update(blocks[i])
        return whole.hexdigest() == ref.sha
    listed = [digests.get(i) or hashlib.sha256(blocks[i]).digest() for i in range(total)]
    return cl.block_list_sha(listed) == ref.blocks_sha
