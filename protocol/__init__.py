"""Wire formats with no I/O and no clock.

Everything here turns bytes or sample arrays into typed values and back; nothing
here opens a socket, reads a file or looks at the time, so every format can be
proven with property tests in isolation.
"""
