"""The light between a fixture's LED and a DUT's sensor, played out in time.

``shine`` sends one ``FixtureFlash`` through an ``hw.optical.OpticalChannel`` and
feeds the DUT's light sensor chunk by chunk on the shared clock, so the DUT sees
the BlinkUp last as long as the fixture flashes it (its LED timeline shows the
reception honestly) while each chunk is one numpy array, not a Python loop. When
the flash is over the DUT is told (``Device.end_light``), so the decoder's last
bits never wait for light that will not come.
"""

from __future__ import annotations

from impfactory.clock import Clock
from impfactory.firmware.device import Device
from impfactory.firmware.signals import FixtureFlash
from impfactory.hw.optical import OpticalChannel


async def shine(flash: FixtureFlash, dut: Device, channel: OpticalChannel, clock: Clock,
                chunk_s: float = 0.25) -> int:
    """Play ``flash`` into ``dut``'s sensor through ``channel``; return samples fed."""
    samples = channel.transmit(flash.light_symbols, flash.symbol_rate)
    rate = channel.config.sample_rate
    step = max(1, round(chunk_s * rate))
    for start in range(0, len(samples), step):
        dut.feed_light(samples[start:start + step], rate)
        await clock.sleep(step / rate)
    dut.end_light()
    return len(samples)
