# impfactory: python
# Factory firmware: one file for the BlinkUp fixture and the devices under test,
# shaped like Electric Imp's factory template. It runs as device code on an
# emulated imp (Python with the imp API as globals), never imported as a module.
#
# Fixture: waits for its footswitch (pin1, active low), then flashes BlinkUp with
# the factory WiFi settings on its LED pin (pin8), guarding re-triggers for 10 s.
# DUT: runs declared hardware tests with limits, reports every measurement,
# blesses when all pass, clears its configuration once blessed, and sends the
# result to its agent.
# ruff: noqa: F821  (server, imp, hardware, agent and the constants are imp API globals)

import json

SSID = "factory-wifi"
PASSWORD = "factory-password"
BLINKUP_FLAGS = BLINKUP_FAST
FIXTURE_BUTTON = "pinH"
FIXTURE_LED = "pinM"
RETRIGGER_GUARD_S = 10.0

# (name, unit, low limit, high limit): the DUT's declared measurements.
LIMITS = [
    ("supply_voltage", "V", 3.0, 3.6),
    ("pin_loopback", "", 1, 1),
    ("temperature", "degC", 10.0, 45.0),
]


def is_device_under_test():
    """A DUT knows its fixture's device ID from configparams; a fixture does not."""
    fixture_id = imp.configparams.get("factory_imp_device_id")
    return fixture_id is not None and fixture_id != hardware.getdeviceid()


# --------------------------------------------------------------------- fixture


class Fixture:
    def __init__(self):
        self.guarded = False
        self.button = getattr(hardware, FIXTURE_BUTTON)
        self.led = getattr(hardware, FIXTURE_LED)
        self.led.configure(DIGITAL_OUT, 0 if BLINKUP_FLAGS & BLINKUP_ACTIVEHIGH else 1)
        self.button.configure(DIGITAL_IN_PULLUP, self.changed)
        server.log("fixture ready")

    def changed(self):
        if self.button.read() != 0 or self.guarded:
            return
        self.guarded = True
        imp.wakeup(RETRIGGER_GUARD_S, self.release)
        server.factoryblinkup(SSID, PASSWORD, self.led, BLINKUP_FLAGS)

    def release(self):
        self.guarded = False


# --------------------------------------------------------------------- DUT


def measure_loopback():
    hardware.pin2.configure(DIGITAL_OUT, 0)
    hardware.pin5.configure(DIGITAL_IN)
    hardware.pin2.write(1)
    high = hardware.pin5.read()
    hardware.pin2.write(0)
    low = hardware.pin5.read()
    return 1 if (high, low) == (1, 0) else 0


def measure_temperature():
    # A TMP36-style sensor on pin9: 10 mV/degC with 500 mV offset, 3.3 V full scale.
    hardware.pin9.configure(ANALOG_IN)
    volts = hardware.pin9.read() / 65535.0 * 3.3
    return round((volts - 0.5) * 100.0, 2)


MEASURE = {
    "supply_voltage": lambda: round(hardware.voltage(), 3),
    "pin_loopback": measure_loopback,
    "temperature": measure_temperature,
}


def run_tests():
    results = []
    for name, unit, low, high in LIMITS:
        value = MEASURE[name]()
        results.append({"name": name, "value": value, "unit": unit, "low": low,
                        "high": high, "passed": low <= value <= high})
    passed = all(r["passed"] for r in results)
    server.log("factory tests " + json.dumps({"passed": passed, "measurements": results}))

    def blessed(ok):
        server.log("bless " + ("ok" if ok else "failed"))
        if ok:
            imp.clearconfiguration()
        agent.send("testresult", {"device_id": hardware.getdeviceid(), "mac":
                                  imp.getmacaddress(), "passed": passed, "blessed": ok,
                                  "measurements": results})

    server.bless(passed, blessed)


if is_device_under_test():
    imp.onidle(run_tests)
else:
    fixture = Fixture()
