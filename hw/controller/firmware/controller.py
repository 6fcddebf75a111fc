# The bench controller (MicroPython, Raspberry Pi Pico): the bench protocol on USB
# serial, driving the bench's LED, sensors, DUT power, fixture button and UART.
#
#     host ==USB== Receiver -> handle() -> replies (cached for a retried request)
#                   timers:  symbol clock -> PWM duty of the light-out LED
#                            light-in     -> ADC -> ring -> LIGHT_IN_SAMPLES
#                            status       -> TCS34725 over I2C -> ring -> STATUS_SAMPLES
#                            button       -> one shot: the relay opens again
#
# Time comes from the board's timers, never from when frames arrive: a sample's
# offset is the count of timer ticks since its stream started. Timer callbacks
# allocate nothing (rings and buffers are made at boot; callbacks are bound once),
# and the main loop sends what the rings hold at least every FLUSH_MS.
#
# The same file is the emulated controller: hw/controller/sim.py runs it under
# CPython against simulated ``machine`` peripherals wired to emulated boards.
import time
from array import array

import lightout
import machine
import wire
from micropython import const

PROTOCOL_VERSION = const(1)
CAP_LIGHT_OUT = const(0x01)
CAP_LIGHT_IN = const(0x02)
CAP_STATUS = const(0x04)
CAP_POWER = const(0x08)
CAP_BUTTON = const(0x10)
CAP_UART = const(0x20)

MAX_LIGHT_MHZ = const(20000000)  # light-out symbols and light-in samples: 20 kHz
MAX_STATUS_MHZ = const(2000000)  # colour reads: 2 kHz
LIGHT_RING = const(4096)  # light-in samples held between flushes (a power of two)
STATUS_RING = const(1024)  # RGB samples held between flushes (a power of two)
LIGHT_PER_FRAME = const(510)
RGB_PER_FRAME = const(340)
FLUSH_MS = const(10)
ACTIVE_HIGH = const(0x01)

# TCS34725 registers, addressed through its command byte (0x80 | type | register)
TCS_CMD = const(0x80)
TCS_AUTO = const(0x20)
TCS_ENABLE = const(0x00)
TCS_ATIME = const(0x01)
TCS_CONTROL = const(0x0F)
TCS_ID = const(0x12)
TCS_CDATAL = const(0x14)
TCS_IDS = (0x44, 0x4D)  # TCS34725, TCS34727

REQUESTS = {
    wire.IDENTIFY: "IDENTIFY", wire.LIGHT_OUT: "LIGHT_OUT",
    wire.LIGHT_IN_START: "LIGHT_IN_START", wire.STATUS_START: "STATUS_START",
    wire.STREAM_STOP: "STREAM_STOP", wire.POWER: "POWER", wire.BUTTON: "BUTTON",
    wire.UART_CONFIG: "UART_CONFIG", wire.UART_TX: "UART_TX",
}
# payload sizes of the fixed-size requests (LIGHT_OUT takes 9 or more, UART_TX any)
SIZES = {
    wire.IDENTIFY: 0, wire.LIGHT_IN_START: 4, wire.STATUS_START: 4, wire.STREAM_STOP: 1,
    wire.POWER: 1, wire.BUTTON: 2, wire.UART_CONFIG: 4,
}


class Replay:
    """The last request served and the frames it was answered with."""

    def __init__(self):
        self.body = b""
        self.frames = []


class Controller:
    def __init__(self, link, config, serial=None):
        self.link = link
        self.config = config
        self.name = config["name"]
        self.serial = serial or _board_serial()
        self.rx = wire.Receiver()
        self.tx = wire.Sender(link)
        self.inbox = bytearray(256)
        self.replay = Replay()
        self.recording = None  # frames of the request being served
        self.requests = 0
        self.caps = 0

        # light-out: PWM LED and its symbol clock
        self.pwm = machine.PWM(machine.Pin(config["led_pin"]))
        self.pwm.init(freq=config["led_pwm_hz"], duty_u16=0)
        self.player = lightout.Player(config["light_out_max"])
        self.lo_timer = machine.Timer(-1)
        self.lo_i = 0
        self.lo_done = False
        self.caps |= CAP_LIGHT_OUT

        # light-in: ADC into a ring of u16
        self.adc = machine.ADC(config["light_in_adc"])
        self.li_ring = array("H", bytes(2 * LIGHT_RING))
        self.li_timer = machine.Timer(-1)
        self.li = Stream(LIGHT_RING)
        self.caps |= CAP_LIGHT_IN

        # status sense: TCS34725 colour sensor into a ring of RGB triples
        self.i2c = machine.I2C(config["i2c_id"], sda=machine.Pin(config["sda_pin"]),
                               scl=machine.Pin(config["scl_pin"]), freq=config["i2c_hz"])
        self.tcs = config["colour_addr"]
        self.rgbc = bytearray(8)
        self.full = config["colour_full"]
        self.st_ring = bytearray(3 * STATUS_RING)
        self.st_timer = machine.Timer(-1)
        self.st = Stream(STATUS_RING)
        self.st_errors = 0
        if self._colour_sensor_init():
            self.caps |= CAP_STATUS

        # DUT power, the fixture button's relay, the DUT's UART
        self.power = machine.Pin(config["power_pin"], machine.Pin.OUT,
                                 value=config["power_at_boot"])
        self.button = machine.Pin(config["button_pin"], machine.Pin.OUT, value=0)
        self.button_timer = machine.Timer(-1)
        self.caps |= CAP_POWER | CAP_BUTTON
        self.uart_buf = bytearray(wire.MAX_PAYLOAD)
        self.baud = config["uart_baud"]
        self.uart = machine.UART(config["uart_id"], baudrate=self.baud,
                                 tx=machine.Pin(config["uart_tx_pin"]),
                                 rx=machine.Pin(config["uart_rx_pin"]), rxbuf=2048)
        self.caps |= CAP_UART

        # timer callbacks, bound once: a bound method made in a callback would allocate
        self._symbol_cb = self._symbol_tick
        self._light_cb = self._light_tick
        self._status_cb = self._status_tick
        self._release_cb = self._release_button
        self.last_flush = time.ticks_ms()

    # ------------------------------------------------------------ the main loop

    def run(self):
        """Serve the host forever (on the board); returns when the host wants the REPL."""
        while self.poll():
            machine.idle()
        self.stop_streams()
        self.link.release()

    def poll(self):
        """One turn of the main loop: read the host, answer, send what the timers made.

        Returns False when the host asked for MicroPython's REPL.
        """
        if self.lo_done:
            self._light_out_done()
        n = self.link.read_into(self.inbox)
        for i in range(n):
            size = self.rx.feed(self.inbox[i])
            if size > 0:
                self._serve(size)
            elif size == -1:
                self._send_error(0, wire.BAD_FRAME, "frame failed its COBS or CRC check")
            elif size == -2:
                return False
        self._flush(False)
        return True

    # ------------------------------------------------------------ requests

    def _serve(self, size):
        body = self.rx.body
        self.requests += 1
        if body[0] != wire.VERSION:
            self._send_error(body[2], wire.BAD_VERSION,
                             "this controller speaks bench protocol " + str(PROTOCOL_VERSION))
            return
        request = bytes(body[0:size])
        if request == self.replay.body:
            for frame in self.replay.frames:  # a retried request: answer again, do not redo
                self.link.write(frame)
            return
        self.replay.body = request
        self.replay.frames = self.recording = []
        try:
            self._handle(body[1], body[2], size - 2)
        finally:
            self.recording = None

    def _handle(self, kind, seq, end):
        n = end - wire.HEADER
        body = self.rx.body
        if kind not in REQUESTS:
            self._refuse(seq, wire.UNKNOWN_TYPE, f"0x{kind:02x} is not a request")
            return
        want = SIZES.get(kind)
        if (want is not None and n != want) or (kind == wire.LIGHT_OUT and n < 9):
            self._refuse(seq, wire.BAD_PAYLOAD, REQUESTS[kind] + " payload of " + str(n)
                         + " bytes")
            return
        at = wire.HEADER
        if kind == wire.IDENTIFY:
            self._identity(seq)
        elif kind == wire.POWER:
            if body[at] > 1:
                self._refuse(seq, wire.BAD_PAYLOAD, "power must be 0 or 1")
                return
            self.power.value(body[at])
            self._ack(seq, kind)
        elif kind == wire.BUTTON:
            ms = (body[at] << 8) | body[at + 1]
            if ms == 0:
                self._refuse(seq, wire.BAD_PAYLOAD, "button press of 0 ms")
                return
            # the release is armed first: the relay never stays closed for want of it
            self.button_timer.init(mode=machine.Timer.ONE_SHOT, period=ms,
                                   callback=self._release_cb)
            self.button.value(1)
            self._ack(seq, kind)
        elif kind == wire.LIGHT_OUT:
            self._light_out(seq, at, end)
        elif kind == wire.LIGHT_IN_START or kind == wire.STATUS_START:
            self._start_stream(seq, kind, wire.get_u32(body, at))
        elif kind == wire.STREAM_STOP:
            which = body[at]
            if which > 2:
                self._refuse(seq, wire.BAD_PAYLOAD, "no stream " + str(which))
                return
            self._stop(which)
            self._ack(seq, kind)
        elif kind == wire.UART_CONFIG:
            baud = wire.get_u32(body, at)
            if baud:
                self.uart.init(baudrate=baud)
            else:
                self.uart.deinit()
            self.baud = baud
            self._ack(seq, kind)
        elif kind == wire.UART_TX:
            if not self.baud:
                self._refuse(seq, wire.UNSUPPORTED, "UART pass-through is disabled")
                return
            self.uart.write(body[at:end])
            self._ack(seq, kind)

    def _identity(self, seq):
        body = self.tx.body
        at = wire.HEADER
        body[at] = PROTOCOL_VERSION
        at = wire.put_text(body, at + 1, self.name)
        at = wire.put_text(body, at, self.serial)
        body[at] = self.caps >> 8
        body[at + 1] = self.caps & 0xFF
        body[at + 2] = wire.MAX_PAYLOAD >> 8
        body[at + 3] = wire.MAX_PAYLOAD & 0xFF
        self._reply(wire.IDENTITY, seq, at + 4 - wire.HEADER)

    def _light_out(self, seq, at, end):
        body = self.rx.body
        rate = wire.get_u32(body, at)
        flags = body[at + 4]
        if rate == 0 or rate > MAX_LIGHT_MHZ:
            self._refuse(seq, wire.RATE, str(rate) + " mHz symbol rate")
            return
        player = self.player
        before, symbols, stream_rate = player.state, player.n, player.rate_mhz
        refused = player.chunk(seq, rate, flags, wire.get_u32(body, at + 5), body, at + 9, end)
        if refused == wire.BUSY:
            self._refuse(seq, refused, "a light-out is still playing")
        elif refused == wire.BAD_SEQUENCE:
            self._refuse(seq, refused, "chunk at offset " + str(wire.get_u32(body, at + 5))
                         + " (" + str(rate) + " mHz) does not continue the "
                         + lightout.STATE_NAMES[before].lower() + " stream (" + str(symbols)
                         + " symbols, " + str(stream_rate) + " mHz)")
        elif refused:
            self._refuse(seq, refused, "light-out longer than " + str(len(player.symbols))
                         + " symbols")
        else:
            self._ack(seq, wire.LIGHT_OUT)
            if player.state == lightout.PLAYING:
                self._play(rate, flags & ACTIVE_HIGH)

    def _play(self, rate_mhz, active_high):
        """Start the symbol clock: symbol 0 now, symbol i at i periods, dark after the last."""
        self.lo_i = 1
        self.lo_done = False
        self.pwm.init(duty_u16=self.player.symbols[0] * 257, invert=not active_high)
        self.lo_timer.init(freq=rate_mhz / 1000, callback=self._symbol_cb)

    def _start_stream(self, seq, kind, rate_mhz):
        limit = MAX_LIGHT_MHZ if kind == wire.LIGHT_IN_START else MAX_STATUS_MHZ
        if rate_mhz == 0 or rate_mhz > limit:
            self._refuse(seq, wire.RATE, str(rate_mhz) + " mHz is outside 0.."
                         + str(limit) + " mHz")
            return
        if kind == wire.STATUS_START and not self.caps & CAP_STATUS:
            self._refuse(seq, wire.UNSUPPORTED, "no colour sensor answers on I2C")
            return
        freq = rate_mhz / 1000
        if kind == wire.LIGHT_IN_START:
            self.li_timer.deinit()
            self.li.start(seq)
            self.li_timer.init(freq=freq, callback=self._light_cb)
        else:
            self.st_timer.deinit()
            self.st.start(seq)
            self.st_timer.init(freq=freq, callback=self._status_cb)
        self._ack(seq, kind)

    def _stop(self, which):
        """Stop a stream (0 all, 1 light-in, 2 status) after sending every sample it took."""
        if which != 2:
            self.li_timer.deinit()
        if which != 1:
            self.st_timer.deinit()
        self._flush(True)
        if which != 2:
            self.li.active = False
        if which != 1:
            self.st.active = False

    def stop_streams(self):
        self.li_timer.deinit()
        self.st_timer.deinit()
        self.lo_timer.deinit()
        self.pwm.duty_u16(0)

    # ------------------------------------------------------------ timer callbacks

    def _symbol_tick(self, timer):
        i = self.lo_i
        if i < self.player.n:
            self.pwm.duty_u16(self.player.symbols[i] * 257)
            self.lo_i = i + 1
        else:
            self.pwm.duty_u16(0)
            timer.deinit()
            self.lo_done = True

    def _light_tick(self, timer):
        w = self.li.take()
        if w >= 0:
            self.li_ring[w] = self.adc.read_u16()

    def _status_tick(self, timer):
        w = self.st.take()
        if w < 0:
            return
        at = 3 * w
        ring = self.st_ring
        try:
            self.i2c.readfrom_mem_into(self.tcs, TCS_CMD | TCS_AUTO | TCS_CDATAL, self.rgbc)
        except OSError:
            self.st_errors += 1
            ring[at] = ring[at + 1] = ring[at + 2] = 0
        else:
            c = self.rgbc
            full = self.full
            for k in range(3):  # R, G, B counts (little-endian u16 after C)
                v = ((c[2 + 2 * k] | (c[3 + 2 * k] << 8)) * 255) // full
                ring[at + k] = v if v < 255 else 255

    def _release_button(self, timer):
        self.button.value(0)

    # ------------------------------------------------------------ frames out

    def _flush(self, everything):
        """Send what the rings hold: a frame's worth at once, the rest every FLUSH_MS."""
        if self.lo_done:
            self._light_out_done()
        now = time.ticks_ms()
        due = everything or time.ticks_diff(now, self.last_flush) >= FLUSH_MS
        if self.li.active:
            self._flush_light(due)
        if self.st.active:
            self._flush_status(due)
        if due:
            self.last_flush = now
            self._flush_uart()

    def _light_out_done(self):
        self.lo_done = False
        n = self.player.played()
        wire.put_u32(self.tx.body, wire.HEADER, n)
        self.tx.send(wire.LIGHT_OUT_DONE, self.player.seq, 4)

    def _flush_light(self, due):
        s = self.li
        body = self.tx.body
        ring = self.li_ring
        while True:
            count = s.sendable(LIGHT_PER_FRAME, due)
            if not count:
                return
            wire.put_u32(body, wire.HEADER, s.offset())
            r = s.r
            at = wire.HEADER + 4
            for _ in range(count):
                v = ring[r]
                body[at] = v >> 8
                body[at + 1] = v & 0xFF
                at += 2
                r = (r + 1) & (LIGHT_RING - 1)
            self.tx.send(wire.LIGHT_IN_SAMPLES, s.seq, 4 + 2 * count)
            lost = s.consumed(r, count)
            if lost:
                self._send_error(s.seq, wire.OVERFLOW, "light-in lost " + str(lost) + " samples")

    def _flush_status(self, due):
        s = self.st
        body = self.tx.body
        ring = self.st_ring
        while True:
            count = s.sendable(RGB_PER_FRAME, due)
            if not count:
                return
            wire.put_u32(body, wire.HEADER, s.offset())
            r = s.r
            at = wire.HEADER + 4
            for _ in range(count):
                body[at] = ring[3 * r]
                body[at + 1] = ring[3 * r + 1]
                body[at + 2] = ring[3 * r + 2]
                at += 3
                r = (r + 1) & (STATUS_RING - 1)
            self.tx.send(wire.STATUS_SAMPLES, s.seq, 4 + 3 * count)
            lost = s.consumed(r, count)
            if lost:
                self._send_error(s.seq, wire.OVERFLOW, "status lost " + str(lost) + " samples")

    def _flush_uart(self):
        if not self.baud:
            return
        while self.uart.any():
            n = self.uart.readinto(self.uart_buf)
            if not n:
                return
            body = self.tx.body
            body[wire.HEADER:wire.HEADER + n] = self.uart_buf[0:n]
            self.tx.send(wire.UART_RX, 0, n)

    # ------------------------------------------------------------ replies

    def _reply(self, kind, seq, n):
        size = self.tx.send(kind, seq, n)
        if self.recording is not None:
            self.recording.append(bytes(self.tx.wire[0:size]))

    def _ack(self, seq, of):
        self.tx.body[wire.HEADER] = of
        self._reply(wire.ACK, seq, 1)

    def _refuse(self, seq, code, message):
        self.tx.body[wire.HEADER] = code
        end = wire.put_text(self.tx.body, wire.HEADER + 1, message)
        self._reply(wire.ERROR, seq, end - wire.HEADER)

    def _send_error(self, seq, code, message):
        """An ERROR that answers no request of ours to replay (a bad frame, an overflow)."""
        self.tx.body[wire.HEADER] = code
        end = wire.put_text(self.tx.body, wire.HEADER + 1, message)
        self.tx.send(wire.ERROR, seq, end - wire.HEADER)

    # ------------------------------------------------------------ the colour sensor

    def _colour_sensor_init(self):
        """Power the TCS34725 up and set its integration and gain; False when it is absent."""
        try:
            ident = self.i2c.readfrom_mem(self.tcs, TCS_CMD | TCS_ID, 1)[0]
            if ident not in TCS_IDS:
                return False
            cfg = self.config
            self.i2c.writeto_mem(self.tcs, TCS_CMD | TCS_ATIME, bytes([cfg["colour_atime"]]))
            self.i2c.writeto_mem(self.tcs, TCS_CMD | TCS_CONTROL, bytes([cfg["colour_gain"]]))
            self.i2c.writeto_mem(self.tcs, TCS_CMD | TCS_ENABLE, b"\x01")  # PON
            time.sleep_ms(3)
            self.i2c.writeto_mem(self.tcs, TCS_CMD | TCS_ENABLE, b"\x03")  # PON | AEN
        except OSError:
            return False
        return True


class Stream:
    """A sample stream's ring: the timer callback writes at ``w``, the main loop reads at ``r``.

    ``written`` and ``sent`` count samples since the stream started. A callback
    that finds the ring full drops its sample and counts it in ``gap``, which
    sits after sample ``gap_at``; the loop sends up to the gap, then skips it,
    so the host sees lost samples as a jump in ``offset``, never as a shift.
    """

    def __init__(self, size):
        self.size = size
        self.seq = 0
        self.active = False
        self.r = self.w = 0
        self.written = self.sent = 0
        self.gap = self.gap_at = self.skipped = 0

    def start(self, seq):
        self.seq = seq
        self.r = self.w = 0
        self.written = self.sent = 0
        self.gap = self.gap_at = self.skipped = 0
        self.active = True

    def take(self):
        """In the timer callback: the ring index to write, or -1 (full: the sample is lost)."""
        if self.written - self.sent == self.size:
            if not self.gap:
                self.gap_at = self.written
            self.gap += 1
            return -1
        w = self.w
        self.w = (w + 1) & (self.size - 1)
        self.written += 1
        return w

    def sendable(self, per_frame, due):
        """How many samples the next frame carries (0: none yet)."""
        state = machine.disable_irq()
        fill = self.written - self.sent
        if self.gap:
            fill = self.gap_at - self.sent
        machine.enable_irq(state)
        if fill >= per_frame:
            return per_frame
        return fill if due else 0

    def offset(self):
        return self.sent + self.skipped

    def consumed(self, r, count):
        """``count`` samples went out; returns the samples lost after them (0: none)."""
        state = machine.disable_irq()
        self.r = r
        self.sent += count
        lost = 0
        if self.gap and self.sent == self.gap_at:
            lost = self.gap
            self.skipped += lost
            self.gap = 0
        machine.enable_irq(state)
        return lost


def _board_serial():
    try:
        return "".join(f"{b:02X}" for b in machine.unique_id())
    except (AttributeError, OSError):
        return "PICO"
