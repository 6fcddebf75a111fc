// SmartLamp factory agent: one file for the agents of the fixture and of the lamps
// under test, in the shape of Electric Imp's FactoryTools example agent.
//
// A lamp's agent takes its device's "testresult" (verdict and measurements with
// their limits), keeps it (server.save), and posts it to the fixture's agent URL;
// the fixture's agent passes each result to the fixture, whose LCD shows it.

#require "FactoryTools.lib.nut:2.2.0"

class FixtureAgent {
    constructor() {
        http.onrequest(onRequest.bindenv(this));
        server.log("lamp fixture agent at " + http.agenturl());
    }

    function onRequest(req, res) {
        if (req.method != "POST") {
            res.send(405, "POST a lamp's test result here");
            return;
        }
        try {
            local result = http.jsondecode(req.body);
            if (!("device_id" in result) || !("blessed" in result)) throw "not a result";
            device.send("lamp_result", result);
            res.send(200, "OK");
        } catch (err) {
            res.send(400, "not a lamp's result: " + err);
        }
    }
}

class LampAgent {
    constructor() {
        device.on("testresult", onResult.bindenv(this));
    }

    function onResult(result) {
        server.log(format("lamp %s: self-test %s, %s", result.device_id,
                          result.passed ? "passed" : "FAILED",
                          result.blessed ? "blessed" : "not blessed"));
        server.save({ "testresult": result });
        local fixture = FactoryTools.getFactoryFixtureURL();
        if (fixture == null) {
            server.error("no fixture URL: the result stays with this agent");
            return;
        }
        http.post(fixture, { "Content-Type": "application/json" },
                  http.jsonencode(result)).sendasync(function(resp) {
            if (resp.statuscode != 200) {
                server.error("the fixture did not take the result: " + resp.statuscode);
            }
        });
    }
}

if (FactoryTools.isFactoryFirmware()) {
    if (FactoryTools.isFactoryFixture()) FixtureAgent();
    if (FactoryTools.isDeviceUnderTest()) LampAgent();
} else {
    server.log("SmartLamp factory agent outside the factory: nothing to do");
}
