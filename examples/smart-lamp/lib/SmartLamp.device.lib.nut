// SmartLamp: the lamp's own device library, shared by its factory firmware (the
// DUT's self-test) and its application (the light). Its impUnit tests are in
// ../tests; impfactory resolves `#require "SmartLamp.device.lib.nut:1.0.0"` from
// this folder when given `--lib lib`.
//
// The lamp is an impExplorer Kit: the light is its WS2812B RGB LED on spi257
// (MOSI pin7), powered through pin1; an HTS221 on i2c89 watches the board's
// temperature. In the factory the test jig also wires pin2 to pin5.

// ------------------------------------------------------------------- the light

class SmartLampLight {
    static VERSION = "1.0.0";

    // WS2812B timing made with SPI at 7.5 MHz: one SPI byte per LED bit.
    static SPI_KHZ = 7500;
    static BIT_0 = 0xC0;
    static BIT_1 = 0xF8;

    _spi = null;
    _power = null;
    color = null;
    brightness = 0;

    constructor(spi, powerPin) {
        _spi = spi;
        _power = powerPin;
        color = [255, 180, 100];   // warm white
        brightness = 0;
    }

    // Power the LED and clock the bus; the light stays off until set().
    function configure() {
        _power.configure(DIGITAL_OUT, 1);
        _spi.configure(MSB_FIRST, SPI_KHZ);
        return this;
    }

    // Show `rgb` ([r, g, b], 0..255) at `percent` brightness (0..100).
    function set(rgb, percent) {
        if (typeof rgb != "array" || rgb.len() != 3) throw "a colour is [r, g, b]";
        color = rgb;
        brightness = percent < 0 ? 0 : (percent > 100 ? 100 : percent);
        _spi.write(SmartLampLight.frame(SmartLampLight.scale(color, brightness)));
        return this;
    }

    function off() {
        return set(color, 0);
    }

    function state() {
        return { "color": color, "brightness": brightness, "on": brightness > 0 };
    }

    // [r, g, b] at `percent` of full brightness, each channel rounded down.
    static function scale(rgb, percent) {
        local out = [];
        foreach (c in rgb) out.append((c * percent / 100).tointeger());
        return out;
    }

    // The 24 SPI bytes of one pixel: green, red, blue, most significant bit first.
    static function frame(rgb) {
        local bytes = blob(24);
        foreach (channel in [rgb[1], rgb[0], rgb[2]]) {
            for (local bit = 7; bit >= 0; bit--) {
                bytes.writen((channel >> bit) & 1 ? SmartLampLight.BIT_1 : SmartLampLight.BIT_0,
                             'b');
            }
        }
        return bytes;
    }
}

// ------------------------------------------------------------------- the self-test

// The factory's hardware tests: each measurement declared with its unit and limits,
// run on the board, judged against its limits. `sensor` is an HTS221 (Electric Imp's
// library, which the firmware #requires: see findSensor) or null when none answers.
class SmartLampSelfTest {
    static VERSION = "1.0.0";

    static LIMITS = [
        { "name": "supply_voltage", "unit": "V",    "low": 3.0,  "high": 3.6 },
        { "name": "sensor_id",      "unit": "",     "low": 0xBC, "high": 0xBC },
        { "name": "board_temp",     "unit": "degC", "low": 5.0,  "high": 40.0 },
        { "name": "jig_loopback",   "unit": "",     "low": 1,    "high": 1 }
    ];

    _sensor = null;

    constructor(sensor) {
        _sensor = sensor;
        if (sensor != null) {
            try {
                sensor.setMode(HTS221_MODE.ONE_SHOT);
            } catch (err) {
                server.error("sensor: " + err);   // its measurements will say so
            }
        }
    }

    // The HTS221 at `address` on `i2c`, or null (logged) when it does not answer.
    static function findSensor(i2c, address) {
        try {
            return HTS221(i2c, address);
        } catch (err) {
            server.error(format("no sensor at 0x%02X: %s", address, err.tostring()));
        }
        return null;
    }

    // Every measurement: { passed, measurements: [{name, value, unit, low, high, passed}] }.
    function run() {
        local results = [];
        local passed = true;
        foreach (limit in LIMITS) {
            local value = measure(limit.name);
            local ok = value != null && value >= limit.low && value <= limit.high;
            passed = passed && ok;
            results.append({ "name": limit.name, "value": value, "unit": limit.unit,
                             "low": limit.low, "high": limit.high, "passed": ok });
        }
        return { "passed": passed, "measurements": results };
    }

    // One measurement by name; null when the hardware does not answer.
    function measure(name) {
        try {
            if (name == "supply_voltage") return hardware.voltage();
            if (name == "sensor_id" || name == "board_temp") {
                if (_sensor == null) throw "no sensor";
            }
            if (name == "sensor_id") return _sensor.getDeviceID();
            if (name == "board_temp") {
                local reading = _sensor.read();
                if ("error" in reading) throw reading.error;
                return reading.temperature;
            }
            if (name == "jig_loopback") return loopback();
            throw "no measurement called " + name;
        } catch (err) {
            server.error(name + ": " + err);
        }
        return null;
    }

    // The jig wires pin2 to pin5: drive one, read the other both ways.
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
