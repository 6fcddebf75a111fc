// SmartLamp application firmware: what a blessed lamp runs at home.
//
// The light (lib/SmartLamp) follows its agent's "set" messages ({color: [r, g, b],
// brightness: 0..100}) and answers with its "state". Every 60 s it reads its board
// temperature and sends it; above 50 degC it derates the light to 20 %. New code
// is taken politely: on a shutdown notice it fades out first, then restarts.

#require "HTS221.device.lib.nut:2.0.1"
#require "SmartLamp.device.lib.nut:1.0.0"

const READ_EVERY_S = 60;
const HOT_DEGC = 50.0;
const DERATED = 20;

hardware.i2c89.configure(CLOCK_SPEED_400_KHZ);
sensor <- SmartLampSelfTest.findSensor(hardware.i2c89, 0xBE);
if (sensor != null) sensor.setMode(HTS221_MODE.ONE_SHOT);
light <- SmartLampLight(hardware.spi257, hardware.pin1).configure();
wanted <- 60;   // the brightness asked for, before any derating

function apply(reading) {
    local hot = reading != null && reading.temperature > HOT_DEGC;
    light.set(light.color, hot && wanted > DERATED ? DERATED : wanted);
}

function lastReading() {
    if (sensor == null) return null;
    local reading = sensor.read();
    return ("error" in reading) ? null : reading;
}

function report() {
    local reading = lastReading();
    apply(reading);
    if (reading != null) {
        server.log(format("board %.1f degC, light %d %%", reading.temperature,
                          light.brightness));
        agent.send("reading", { "temperature": reading.temperature,
                                "humidity": reading.humidity, "state": light.state() });
    }
    imp.wakeup(READ_EVERY_S, report);
}

agent.on("set", function(state) {
    if ("color" in state) light.color = state.color;
    if ("brightness" in state) wanted = state.brightness;
    apply(lastReading());
    server.log(format("light set to [%d, %d, %d] at %d %%", light.color[0], light.color[1],
                      light.color[2], light.brightness));
    agent.send("state", light.state());
});

server.onshutdown(function(reason) {
    server.log("shutdown requested (" + reason + "): fading out");
    light.set(light.color, light.brightness / 2);
    imp.wakeup(0.5, function() {
        light.off();
        server.restart();
    });
});

light.set(light.color, wanted);
server.log("SmartLamp application started on " + hardware.getdeviceid());
report();
