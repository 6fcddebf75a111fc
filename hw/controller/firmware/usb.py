# The controller's USB serial link on the Pico (MicroPython): sys.stdin/sys.stdout.
#
# The bench protocol is binary, so Ctrl-C (0x03) must not interrupt the program:
# kbd_intr(-1) turns that off while the controller runs. The host's way back to
# the REPL (mpremote sends "\r\x03") is recognised by the receiver instead
# (wire.Receiver returns -2), and ``release`` gives Ctrl-C back.
import select
import sys

import micropython


class StdioLink:
    def __init__(self):
        self.rx = sys.stdin.buffer
        self.tx = sys.stdout.buffer
        self.poller = select.poll()
        self.poller.register(sys.stdin, select.POLLIN)
        micropython.kbd_intr(-1)

    def read_into(self, buf):
        """Bytes waiting from the host, without blocking; returns how many were read."""
        n = 0
        size = len(buf)
        while n < size and self.poller.poll(0):
            buf[n] = self.rx.read(1)[0]
            n += 1
        return n

    def write(self, data):
        self.tx.write(data)

    def release(self):
        micropython.kbd_intr(3)
