// impfactory's Promise (the runner's, Electric Imp's Promise API) tested the way a
// library's tests would use it: with ImpTestCase, run by `impfactory test`.

class PromiseTestCase extends ImpTestCase {

    function testHandlersRunLaterNotInsideThen() {
        local ran = false;
        Promise.resolve(1).then(function(v) { ran = true; });
        this.assertEqual(false, ran);
        return Promise(function(ok, fail) {
            imp.wakeup(0, function() { ran ? ok() : fail("the handler did not run"); });
        });
    }

    function testChainPassesValuesAndCatchesThrows() {
        return Promise.resolve(2)
            .then(function(v) { return v * 3; })
            .then(function(v) { throw "bad " + v; })
            .then(function(v) { return "skipped"; })
            .fail(function(reason) { return reason + ", caught"; })
            .then(function(v) { this.assertEqual("bad 6, caught", v); return v; }.bindenv(this));
    }

    function testMissingHandlersPassThrough() {
        return Promise.reject("r").then(null, null).then(function(v) { throw "fulfilled?"; },
                                                         function(r) { return "passed " + r; });
    }

    function testFinallyGetsTheValueOrTheReason() {
        local seen = [];
        return Promise.all([
            Promise.resolve("v").finally(function(x) { seen.push(x); }),
            Promise.reject("r").finally(function(x) { seen.push(x); })
                .fail(function(e) { return "ok"; })
        ]).then(function(_) { this.assertDeepEqual(["v", "r"], seen); }.bindenv(this));
    }

    function testSettlesOnce() {
        return Promise(function(resolve, reject) {
            resolve(1); reject(2); resolve(3);
        }).then(function(v) { this.assertEqual(1, v); }.bindenv(this));
    }

    function testActionThrowIsARejection() {
        return Promise(function(resolve, reject) { throw "in the action"; })
            .fail(function(e) { this.assertEqual("in the action", e); }.bindenv(this));
    }

    function testResolvingWithAPromiseFollowsIt() {
        local later = Promise(function(ok, fail) { imp.wakeup(1, function() { fail("late"); }); });
        return Promise.resolve(Promise.resolve(later))
            .then(function(v) { throw "should have failed"; },
                  function(r) { this.assertEqual("late", r); }.bindenv(this));
    }

    function testAllKeepsOrderAndCallsFunctions() {
        local started = hardware.millis();
        return Promise.all([
            Promise(function(ok, fail) { imp.wakeup(1.0, function() { ok(1); }); }),
            @() Promise(function(ok, fail) { imp.wakeup(1.5, function() { ok(2); }); }),
            Promise(function(ok, fail) { imp.wakeup(0.5, function() { ok(3); }); })
        ]).then(function(values) {
            this.assertDeepEqual([1, 2, 3], values);
            this.assertEqual(1500, hardware.millis() - started);
        }.bindenv(this));
    }

    function testAllRejectsWithTheFirstRejection() {
        return Promise.all([
            Promise(function(ok, fail) { imp.wakeup(1.0, function() { fail("slow"); }); }),
            Promise(function(ok, fail) { imp.wakeup(0.5, function() { fail("fast"); }); })
        ]).then(function(v) { throw "resolved?"; },
                function(r) { this.assertEqual("fast", r); }.bindenv(this));
    }

    function testAllAndRaceOfNothingResolveWithAnEmptyArray() {
        return Promise.all([Promise.all([]), Promise.race([])]).then(function(values) {
            this.assertDeepEqual([[], []], values);
        }.bindenv(this));
    }

    function testRaceTakesTheFirstToSettle() {
        return Promise.race([
            Promise(function(ok, fail) { imp.wakeup(1, function() { fail(1); }); }),
            @() Promise(function(ok, fail) { imp.wakeup(1.5, function() { ok(2); }); }),
            @() Promise(function(ok, fail) { imp.wakeup(0.5, function() { ok(3); }); })
        ]).then(function(v) { this.assertEqual(3, v); }.bindenv(this));
    }

    function testSerialStartsFunctionsInTurn() {
        local started = hardware.millis();
        local order = [];
        return Promise.serial([
            Promise(function(ok, fail) { imp.wakeup(1, function() { order.push(1); ok(1); }); }),
            function() {
                return Promise(function(ok, fail) {
                    imp.wakeup(1.5, function() { order.push(2); ok(2); });
                });
            },
            Promise(function(ok, fail) { imp.wakeup(0.5, function() { order.push(3); ok(3); }); })
        ]).then(function(last) {
            this.assertEqual(3, last);
            this.assertDeepEqual([3, 1, 2], order);
            this.assertEqual(2500, hardware.millis() - started);
        }.bindenv(this));
    }

    function testSerialNeedsAnArray() {
        return Promise.serial("nope").fail(function(r) {
            this.assertEqual("Promise.serial() not passed an array", r);
        }.bindenv(this));
    }

    function testSerialStopsAtTheFirstRejection() {
        local ran = false;
        return Promise.serial([
            @() Promise.reject("stop"),
            function() { ran = true; return Promise.resolve(); }
        ]).then(function(v) { throw "resolved?"; }, function(r) {
            this.assertEqual("stop", r);
            this.assertEqual(false, ran);
        }.bindenv(this));
    }

    function testLoopRunsWhileTheConditionHolds() {
        local i = 0;
        return Promise.loop(@() i++ < 3, function() {
            return Promise(function(ok, fail) { imp.wakeup(3, function() { ok("counter is " + i); }); });
        }).then(function(v) {
            this.assertEqual("counter is 3", v);
            this.assertEqual(4, i);
        }.bindenv(this));
    }

    function testLoopThatNeverRunsResolvesWithNull() {
        return Promise.loop(@() false, function() { throw "never"; })
            .then(function(v) { this.assertEqual(null, v); }.bindenv(this));
    }

    function testStaticsAndState() {
        this.assertTrue(Promise.resolve(1) instanceof Promise);
        this.assertEqual(0, Promise.STATE_PENDING);
        this.assertEqual("4.0.1", Promise.VERSION);
    }

    function testAnUnhandledRejectionIsLogged() {
        Promise.reject("nobody listens");
        return Promise(function(ok, fail) { imp.wakeup(0.1, function() { ok(); }); });
    }
}
