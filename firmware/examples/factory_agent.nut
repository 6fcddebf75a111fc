// impfactory's example factory agent: the server-side half of factory_firmware.nut,
// in the shape of Electric Imp's FactoryTools example agent. One file for the
// agents of the BlinkUp fixture and of the devices under test.
//
// DUT's agent: takes its device's "testresult" (the verdict and every measurement
// with its limits), keeps it with server.save, posts it to the fixture's agent URL
// (FactoryTools.getFactoryFixtureURL()) and, when RESULTS_URL names one, to the
// factory's web service for test results.
// Fixture's agent: DUT agents post their results to its URL; it checks each one
// and passes it to the fixture, whose LCD then shows "Passed = true" (or false)
// under the DUT's ID and lights its green (or red) LED.

#require "FactoryTools.lib.nut:2.2.0"

// The factory's web service for test results ("" for none): results are posted to
// RESULTS_URL + "/testresult.json".
const RESULTS_URL = "";

// Post one DUT's result as JSON; log what became of it.
function postResult(url, result, who) {
    local headers = { "Content-Type": "application/json" };
    http.post(url, headers, http.jsonencode(result)).sendasync(function(resp) {
        if (resp.statuscode >= 200 && resp.statuscode < 300) {
            server.log(who + " took the result of " + result.device_id);
        } else {
            server.error(format("%s did not take the result of %s: %d %s", who,
                                result.device_id, resp.statuscode, resp.body));
        }
    });
}

// ------------------------------------------------------------------- fixture

class FixtureAgent {
    constructor() {
        http.onrequest(onRequest.bindenv(this));
        server.log("fixture agent ready at " + http.agenturl());
    }

    function onRequest(req, res) {
        if (req.method != "POST") {
            res.send(405, "POST a DUT's test result here");
            return;
        }
        local result = null;
        try {
            result = http.jsondecode(req.body);
        } catch (err) {
            res.send(400, "not JSON: " + err);
            return;
        }
        if (typeof result != "table" || !("device_id" in result) || !("blessed" in result)) {
            res.send(400, "a DUT's result has its device_id and whether it was blessed");
            return;
        }
        device.send("dut_result", result);
        res.send(200, "OK");
    }
}

// ------------------------------------------------------------------- DUT

class DutAgent {
    constructor() {
        device.on("testresult", onResult.bindenv(this));
    }

    function onResult(result) {
        server.log(format("DUT %s: tests %s, %s", result.device_id,
                          result.passed ? "passed" : "FAILED",
                          result.blessed ? "blessed" : "not blessed"));
        server.save({ "last_result": result });
        local fixture = FactoryTools.getFactoryFixtureURL();
        if (fixture == null) {
            server.error("no factory fixture URL: the result stays with this agent");
        } else {
            postResult(fixture, result, "the fixture");
        }
        if (RESULTS_URL != "") postResult(RESULTS_URL + "/testresult.json", result,
                                          "the results service");
    }
}

// ------------------------------------------------------------------- start

if (FactoryTools.isFactoryFixture()) {
    role <- FixtureAgent();
} else if (FactoryTools.isDeviceUnderTest()) {
    role <- DutAgent();
} else {
    server.log("not running in the factory: nothing to do");
}
