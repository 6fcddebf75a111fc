// SmartLamp application agent: the lamp's web API at its agent URL.
//
//   GET  <agent URL>            the lamp's last state, as JSON
//   POST <agent URL>  {"color": [r, g, b], "brightness": 0..100}   set the light
//
// The device answers every "set" with its "state"; its "reading" every minute
// carries the board temperature.

lastState <- server.load().rawin("state") ? server.load().state : null;

device.on("state", function(state) {
    lastState = state;
    server.save({ "state": state });
});

device.on("reading", function(reading) {
    server.log(format("lamp at %.1f degC", reading.temperature));
});

http.onrequest(function(req, res) {
    if (req.method == "GET") {
        res.header("Content-Type", "application/json");
        res.send(200, http.jsonencode({ "state": lastState }));
        return;
    }
    if (req.method != "POST") {
        res.send(405, "GET the lamp's state or POST a new one");
        return;
    }
    try {
        local wanted = http.jsondecode(req.body);
        if (typeof wanted != "table") throw "a JSON object";
        if (!device.isconnected()) {
            res.send(503, "the lamp is offline");
            return;
        }
        device.send("set", wanted);
        res.send(202, "sent");
    } catch (err) {
        res.send(400, "expected " + err);
    }
});
