// impfactory's example application firmware: what a blessed production device
// (an imp001 Explorer Kit) runs. It reads its HTS221 every 60 s, logs the reading
// and sends it to its agent, and takes new code politely: on a shutdown notice it
// finishes the reading in hand, then restarts.

#require "HTS221.device.lib.nut:2.0.1"

const INTERVAL_S = 60;

sensor <- HTS221(hardware.i2c89, 0xBE);
sensor.setMode(HTS221_MODE.ONE_SHOT);
readings <- [];

function sample() {
    sensor.read(function(reading) {
        if ("error" in reading) {
            server.error("sensor: " + reading.error);
        } else {
            readings.append(reading.temperature);
            server.log(format("temperature %.2f", reading.temperature));
            agent.send("temperature", reading.temperature);
        }
        imp.wakeup(INTERVAL_S, sample);
    });
}

server.onshutdown(function(reason) {
    server.log("shutdown requested (" + reason + "): finishing up");
    imp.wakeup(1, server.restart.bindenv(server));
});

server.log("application started on " + hardware.getdeviceid());
sample();
