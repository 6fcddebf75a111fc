// impUnit tests of lib/SmartLamp.device.lib.nut (the .impt.test deviceFile), run by
// `impfactory test` on an emulated impExplorer Kit (or by `impt test run` on a real
// one). The Kit has no factory jig, so the jig's loopback reads open here.

#require "HTS221.device.lib.nut:2.0.1"

class LightTestCase extends ImpTestCase {

    function testFrameIsGreenRedBlueMostSignificantBitFirst() {
        local frame = SmartLampLight.frame([0xFF, 0x00, 0x81]);
        this.assertEqual(24, frame.len());
        for (local i = 0; i < 8; i++) {
            this.assertEqual(0xC0, frame[i], "green 0x00 is all zero bits");
            this.assertEqual(0xF8, frame[8 + i], "red 0xFF is all one bits");
        }
        this.assertEqual(0xF8, frame[16], "blue 0x81: its first bit is 1");
        this.assertEqual(0xC0, frame[17], "blue 0x81: its second bit is 0");
        this.assertEqual(0xF8, frame[23], "blue 0x81: its last bit is 1");
    }

    function testBrightnessScalesEachChannel() {
        this.assertDeepEqual([100, 50, 25], SmartLampLight.scale([200, 100, 50], 50));
        this.assertDeepEqual([0, 0, 0], SmartLampLight.scale([200, 100, 50], 0));
    }

    function testSetKeepsItsStateAndClampsBrightness() {
        local light = SmartLampLight(hardware.spi257, hardware.pin1).configure();
        light.set([10, 20, 30], 150);
        this.assertDeepEqual({ "color": [10, 20, 30], "brightness": 100, "on": true },
                             light.state());
        light.off();
        this.assertEqual(false, light.state().on);
        this.assertThrowsError(light.set, light, [[1, 2], 50]);
    }
}

class SelfTestTestCase extends ImpTestCase {

    _test = null;

    function setUp() {
        hardware.i2c89.configure(CLOCK_SPEED_400_KHZ);
        _test = SmartLampSelfTest(SmartLampSelfTest.findSensor(hardware.i2c89, 0xBE));
        return "self-test ready";
    }

    function testSupplyWithinLimits() {
        this.assertBetween(_test.measure("supply_voltage"), 3.0, 3.6);
    }

    function testSensorIsTheRightPart() {
        this.assertEqual(0xBC, _test.measure("sensor_id"), "not an HTS221");
    }

    function testBoardTemperatureIsARoomTemperature() {
        local t = _test.measure("board_temp");
        this.assertTrue(t != null, "the sensor did not answer");
        this.info(format("board at %.1f degC", t));
        this.assertBetween(t, 5.0, 40.0);
    }

    function testNoJigNoLoopback() {
        this.assertEqual(0, _test.measure("jig_loopback"), "a bare Kit has no pin2-pin5 wire");
    }

    function testRunJudgesEveryMeasurementByItsLimits() {
        local result = _test.run();
        this.assertEqual(SmartLampSelfTest.LIMITS.len(), result.measurements.len());
        foreach (m in result.measurements) {
            this.assertEqual(m.name != "jig_loopback", m.passed, m.name);
        }
        this.assertEqual(false, result.passed, "without the jig the lamp does not pass");
    }
}
