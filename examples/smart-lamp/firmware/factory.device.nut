// SmartLamp factory firmware: one file for the BlinkUp fixture and the lamps under
// test (DUTs), in the shape of Electric Imp's FactoryTools example. Deploy it to
// the fixture group and to its DUT target.
//
// Fixture (an imp005 on the Factory BlinkUp Box): the green button or the
// footswitch flashes the factory WiFi into the lamp in front of it (BLINKUP_FAST
// on pinM), guards re-triggers for 10 s, and shows the last lamp's verdict on its
// LCD (sent by its agent, see factory.agent.nut).
// DUT (a lamp: an imp001 on an impExplorer Kit in the test jig): runs the
// SmartLampSelfTest (lib/), blesses itself when every measurement is within its
// limits, lights the lamp green (blessed) or red (not), clears its configuration
// once blessed so it ships unconfigured, and sends its results to its agent.

#require "FactoryTools.lib.nut:2.2.0"
#require "CFAx33KL.device.lib.nut:2.0.0"
#require "HTS221.device.lib.nut:2.0.1"
#require "SmartLamp.device.lib.nut:1.0.0"

const SSID = "factory-wifi";
const PASSWORD = "factory-password";
const RETRIGGER_GUARD_S = 10;

// ------------------------------------------------------------------- fixture

class LampFixture {
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
        hal.BLINKUP_PIN.configure(DIGITAL_OUT, 1);    // active low: off
        foreach (button in [hal.GREEN_BTN, hal.FOOTSWITCH]) {
            button.configure(DIGITAL_IN, onButton(button));
        }
        lcd = CFAx33KL(hal.LCD_UART);
        show("SmartLamp", "ready");
        agent.on("lamp_result", showResult.bindenv(this));
        server.log("lamp fixture ready");
    }

    // A press reads 1, its release 0: the BlinkUp starts on the release.
    function onButton(button) {
        return function() {
            if (button.read() == 1 || guarded) return;
            guarded = true;
            imp.wakeup(RETRIGGER_GUARD_S, function() { guarded = false; }.bindenv(this));
            hal.LED_RED.write(0);
            hal.LED_GREEN.write(0);
            show("SmartLamp", "BlinkUp...");
            server.factoryblinkup(SSID, PASSWORD, hal.BLINKUP_PIN, BLINKUP_FAST);
            show("SmartLamp", "ready");
        }.bindenv(this);
    }

    function show(line1, line2) {
        lcd.clearAll();
        lcd.setLine1(line1);
        lcd.setLine2(line2);
    }

    function showResult(result) {
        local verdict = result.blessed ? "PASS" : "FAIL";
        show(result.device_id, verdict);
        (result.blessed ? hal.LED_GREEN : hal.LED_RED).write(1);
        server.log("lamp " + result.device_id + ": " + verdict);
    }
}

// ------------------------------------------------------------------- lamp under test

class LampUnderTest {
    constructor() {
        hardware.i2c89.configure(CLOCK_SPEED_400_KHZ);
        local sensor = SmartLampSelfTest.findSensor(hardware.i2c89, 0xBE);
        local result = SmartLampSelfTest(sensor).run();
        server.log(format("lamp self-test %s (%d measurements)",
                          result.passed ? "passed" : "FAILED", result.measurements.len()));
        local light = SmartLampLight(hardware.spi257, hardware.pin1).configure();
        server.bless(result.passed, function(blessed) {
            server.log("bless " + (blessed ? "ok" : "failed"));
            light.set(blessed ? [0, 255, 0] : [255, 0, 0], 100);   // the operator's verdict
            if (blessed) imp.clearconfiguration();
            result.device_id <- hardware.getdeviceid();
            result.mac <- imp.getmacaddress();
            result.blessed <- blessed;
            agent.send("testresult", result);
        });
    }
}

// ------------------------------------------------------------------- start

FactoryTools.isFactoryFirmware(function(inFactory) {
    if (!inFactory) {
        server.log("SmartLamp factory firmware outside the factory: nothing to do");
        return;
    }
    if (FactoryTools.isFactoryFixture()) {
        LampFixture();
    } else if (FactoryTools.isDeviceUnderTest()) {
        LampUnderTest();
    }
});
