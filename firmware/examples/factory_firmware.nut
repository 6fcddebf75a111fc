// impfactory's example factory firmware: one file for the BlinkUp fixture and the
// devices under test, in the shape of Electric Imp's FactoryTools example.
//
// Fixture (an imp005 Factory BlinkUp Box): waits for its green button or its
// footswitch, flashes BlinkUp with the factory WiFi settings on pinM, guards
// re-triggers for 10 s, and shows what it is doing on its CFAx33KL LCD.
// DUT (an imp001 Explorer Kit): runs declared hardware tests with limits (supply,
// the HTS221 sensor's identity and readings, a pin loopback on the test jig),
// blesses when all pass, clears its configuration once blessed, and sends every
// measurement to its agent.

#require "FactoryTools.lib.nut:2.2.0"
#require "CFAx33KL.device.lib.nut:2.0.0"
#require "HTS221.device.lib.nut:2.0.1"

const SSID = "factory-wifi";
const PASSWORD = "factory-password";
const RETRIGGER_GUARD_S = 10;
const FIXTURE_BANNER = "impfactory";

BLINKUP_FLAGS <- BLINKUP_FAST;

// The DUT's declared measurements: what is measured, its unit and its limits.
LIMITS <- [
    { "name": "supply_voltage", "unit": "V",    "low": 3.0,  "high": 3.6 },
    { "name": "sensor_id",      "unit": "",     "low": 0xBC, "high": 0xBC },
    { "name": "temperature",    "unit": "degC", "low": 10.0, "high": 45.0 },
    { "name": "humidity",       "unit": "%rH",  "low": 5.0,  "high": 95.0 },
    { "name": "pin_loopback",   "unit": "",     "low": 1,    "high": 1 }
];

// ------------------------------------------------------------------- fixture

class Fixture {
    hal = null;
    lcd = null;
    guarded = false;

    constructor() {
        hal = {
            "LED_RED": hardware.pinF,
            "LED_GREEN": hardware.pinE,
            "BLINKUP_PIN": hardware.pinM,
            "GREEN_BTN": hardware.pinC,
            "FOOTSWITCH": hardware.pinH,
            "LCD_UART": hardware.uart2
        };
        imp.enableblinkup(true);
        hal.LED_RED.configure(DIGITAL_OUT, 0);
        hal.LED_GREEN.configure(DIGITAL_OUT, 0);
        hal.BLINKUP_PIN.configure(DIGITAL_OUT, (BLINKUP_FLAGS & BLINKUP_ACTIVEHIGH) ? 0 : 1);
        foreach (button in [hal.GREEN_BTN, hal.FOOTSWITCH]) {
            button.configure(DIGITAL_IN, _trigger(button));
        }
        lcd = CFAx33KL(hal.LCD_UART);
        show(FIXTURE_BANNER);
        agent.on("dut_result", showResult.bindenv(this));
        server.log("fixture ready");
    }

    // A button press reads 1, its release 0: BlinkUp starts on the release.
    function _trigger(button) {
        return function() {
            if (button.read()) {
                hal.LED_GREEN.write(1);
                return;
            }
            hal.LED_GREEN.write(0);
            if (!guarded) sendBlinkUp();
        }.bindenv(this);
    }

    function sendBlinkUp() {
        guarded = true;
        imp.wakeup(RETRIGGER_GUARD_S, function() { guarded = false; }.bindenv(this));
        show("Sending BlinkUp");
        server.factoryblinkup(SSID, PASSWORD, hal.BLINKUP_PIN, BLINKUP_FLAGS);
        show(FIXTURE_BANNER);
    }

    function show(line2) {
        lcd.clearAll();
        lcd.setLine1("Electric Imp");
        lcd.setLine2(line2);
    }

    function showResult(result) {
        lcd.clearAll();
        lcd.setLine1(result.device_id);
        lcd.setLine2("Passed = " + result.blessed);
        (result.blessed ? hal.LED_GREEN : hal.LED_RED).write(1);
    }
}

// ------------------------------------------------------------------- DUT

class DeviceUnderTest {
    i2c = null;
    sensor = null;

    constructor() {
        i2c = hardware.i2c89;
        i2c.configure(CLOCK_SPEED_400_KHZ);
        local results = [];
        local passed = true;
        foreach (limit in LIMITS) {
            local value = measure(limit.name);
            local ok = value != null && value >= limit.low && value <= limit.high;
            passed = passed && ok;
            results.append({ "name": limit.name, "value": value, "unit": limit.unit,
                             "low": limit.low, "high": limit.high, "passed": ok });
        }
        server.log(format("factory tests %s (%d measurements)",
                          passed ? "passed" : "FAILED", results.len()));
        server.bless(passed, function(blessed) {
            server.log("bless " + (blessed ? "ok" : "failed"));
            if (blessed) imp.clearconfiguration();
            agent.send("testresult", { "device_id": hardware.getdeviceid(),
                                       "mac": imp.getmacaddress(), "passed": passed,
                                       "blessed": blessed, "measurements": results });
        });
    }

    // One measurement by name; null when the hardware does not answer.
    function measure(name) {
        try {
            switch (name) {
                case "supply_voltage":
                    return hardware.voltage();
                case "sensor_id":
                    return htsSensor().getDeviceID();
                case "temperature":
                    return htsReading().temperature;
                case "humidity":
                    return htsReading().humidity;
                case "pin_loopback":
                    return loopback();
            }
        } catch (err) {
            server.error(name + ": " + err);
        }
        return null;
    }

    function htsSensor() {
        if (sensor == null) {
            sensor = HTS221(i2c, 0xBE);
            sensor.setMode(HTS221_MODE.ONE_SHOT);
        }
        return sensor;
    }

    function htsReading() {
        local reading = htsSensor().read();
        if ("error" in reading) throw reading.error;
        return reading;
    }

    // The test jig wires Grove connector 1 (pin2) to connector 2 (pin5).
    function loopback() {
        hardware.pin2.configure(DIGITAL_OUT, 0);
        hardware.pin5.configure(DIGITAL_IN);
        hardware.pin2.write(1);
        local high = hardware.pin5.read();
        hardware.pin2.write(0);
        local low = hardware.pin5.read();
        return (high == 1 && low == 0) ? 1 : 0;
    }
}

// ------------------------------------------------------------------- start

FactoryTools.isFactoryFirmware(function(inFactory) {
    if (!inFactory) {
        server.log("not running in the factory: nothing to do");
        return;
    }
    if (FactoryTools.isFactoryFixture()) {
        Fixture();
    } else if (FactoryTools.isDeviceUnderTest()) {
        DeviceUnderTest();
    }
});
