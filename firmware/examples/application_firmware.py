# impfactory: python
# Application firmware: what a blessed production device runs. It samples its
# temperature sensor every 60 s, logs it and sends it to its agent, and takes
# new code politely: on a shutdown notice it finishes the reading in hand, then
# restarts.
# ruff: noqa: F821  (server, imp, hardware, agent and the constants are imp API globals)

INTERVAL_S = 60.0
readings = []


def read_temperature():
    hardware.pin9.configure(ANALOG_IN)
    volts = hardware.pin9.read() / 65535.0 * 3.3
    return round((volts - 0.5) * 100.0, 2)


def sample():
    value = read_temperature()
    readings.append(value)
    server.log(f"temperature {value:.2f}")
    agent.send("temperature", value)
    imp.wakeup(INTERVAL_S, sample)


def on_shutdown(reason):
    server.log(f"shutdown requested ({reason}): finishing up")
    imp.wakeup(1.0, server.restart)


server.onshutdown(on_shutdown)
server.log("application started on " + hardware.getdeviceid())
sample()
