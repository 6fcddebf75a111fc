// ImpTestCase for `impfactory test`: the test-case API of Electric Imp's impUnit
// (1.x, as `impt test run` deploys it), written for impfactory (MIT).
//
// A test case is a class that extends ImpTestCase; its methods whose names start
// with "test" are its tests, run in name order between setUp() and tearDown().
// Each may return a value (shown after "Success: ") or a Promise (the test passes
// when it resolves, fails when it rejects). The assertions throw their message,
// worded as impUnit words it; `assertions` counts the assertions made.
//
// The runner is impfactory's (Python): it calls the glue below (__imptest) and
// hears back through the natives the test engine installs (__imptest_host):
// info(message), failed(message) (an assertion failed: where?), settled(token,
// ok, value) (a returned promise settled) and command(text) (runCommand).

class ImpTestCase {
    runner = null;    // impUnit's runner object; impfactory runs tests from outside
    session = null;   // the test session's name
    assertions = 0;

    function info(message = "") {
        ::__imptest_host.info(message);
    }

    function runCommand(command = "") {
        ::__imptest_host.command(command);
    }

    function assertTrue(condition, message = "Failed to assert that condition is true") {
        assertions++;
        if (!condition) throw ::__imptest_host.failed(message);
    }

    function assertEqual(expected, actual, message = "Expected value: %s, got: %s") {
        assertions++;
        if (expected != actual) {
            throw ::__imptest_host.failed(format(message, expected + "", actual + ""));
        }
    }

    function assertGreater(actual, cmp, message = "Failed to assert that %s > %s") {
        assertions++;
        if (actual <= cmp) throw ::__imptest_host.failed(format(message, actual + "", cmp + ""));
    }

    function assertLess(actual, cmp, message = "Failed to assert that %s < %s") {
        assertions++;
        if (actual >= cmp) throw ::__imptest_host.failed(format(message, actual + "", cmp + ""));
    }

    function assertClose(expected, actual, maxDiff, message = "Expected value: %s±%s, got: %s") {
        assertions++;
        if (math.fabs(expected - actual) > maxDiff) {
            throw ::__imptest_host.failed(format(message, expected + "", maxDiff + "",
                                                 actual + ""));
        }
    }

    function assertBetween(actual, min, max,
                           message = "Expected value the range of %s..%s, got %s") {
        assertions++;
        local low = min < max ? min : max;
        local high = min < max ? max : min;
        if (actual < low || actual > high) {
            throw ::__imptest_host.failed(format(message, low + "", high + "", actual + ""));
        }
    }

    function assertDeepEqual(expected, actual,
                             message = "Comparison failed on '%s': expected %s, got %s") {
        assertions++;
        local problem = ::__imptest.difference(expected, actual, message, true, "", 0);
        if (problem == null) {
            problem = ::__imptest.difference(actual, expected, message, false, "", 0);
        }
        if (problem != null) throw ::__imptest_host.failed(problem);
    }

    function assertThrowsError(fn, ctx, args = [],
                               message = "Function was expected to throw an error") {
        assertions++;
        local callArgs = [ctx];
        callArgs.extend(args);
        try {
            fn.acall(callArgs);
        } catch (error) {
            return error;
        }
        throw ::__imptest_host.failed(message);
    }
}

// What impfactory's runner calls. Not for tests.
__imptest <- {

    // {caseName: {setUp = bool, tearDown = bool, tests = ["testA", ...]}}
    function discover() {
        local found = {};
        foreach (name, value in ::getroottable()) {
            if (typeof value != "class" || value == ::ImpTestCase) continue;
            local ancestor = value.getbase();
            while (ancestor != null && ancestor != ::ImpTestCase) ancestor = ancestor.getbase();
            if (ancestor == null) continue;
            local tests = [];
            foreach (member, memberValue in value) {
                if (typeof member == "string" && member.len() >= 4
                    && member.slice(0, 4) == "test" && typeof memberValue == "function") {
                    tests.push(member);
                }
            }
            tests.sort();
            found[name] <- {
                setUp = ("setUp" in value) && typeof value.setUp == "function",
                tearDown = ("tearDown" in value) && typeof value.tearDown == "function",
                tests = tests
            };
        }
        return found;
    }

    function create(name, session) {
        local instance = ::getroottable()[name]();
        instance.session = session;
        return instance;
    }

    // Run one method; a returned thenable reports back through settled(token, ...).
    function step(instance, method, token) {
        local result = instance[method]();
        if (typeof result == "instance" && ("then" in result)
            && typeof result.then == "function") {
            result.then(function(value) { ::__imptest_host.settled(token, true, value); },
                        function(reason) { ::__imptest_host.settled(token, false, reason); });
            return {async = true, assertions = instance.assertions};
        }
        return {async = false, value = result, assertions = instance.assertions};
    }

    function assertions(instance) {
        return instance.assertions;
    }

    // The first difference between two values as impUnit reports it, or null.
    function difference(lhs, rhs, message, forward, path, level) {
        local shown = path.len() == 0 ? path : path.slice(1);
        if (level > 32) return "Possible cyclic reference at " + shown;
        if (typeof lhs != typeof rhs) {
            return format("Values are not the same type, typeof lhs = %s, typeof rhs = %s",
                          typeof lhs, typeof rhs);
        }
        local kind = typeof lhs;
        if (kind == "table" || kind == "class" || kind == "array") {
            foreach (key, value in lhs) {
                local where = path + "." + key;
                if (!(key in rhs)) {
                    return format(message, where.slice(1), forward ? value + "" : "none",
                                  forward ? "none" : value + "");
                }
                local inner = difference(lhs[key], rhs[key], message, forward, where, level + 1);
                if (inner != null) return inner;
            }
            return null;
        }
        if (kind == "blob") {
            if (lhs.len() != rhs.len()) {
                return format("Blob lengths unequal, lhs.len() == %d, rhs.len() == %d",
                              lhs.len(), rhs.len());
            }
            for (local i = 0; i < lhs.len(); i++) {
                if (lhs[i] != rhs[i]) {
                    return format("Blobs are the same length (%d bytes), but the contents "
                                  + "are not identical.", lhs.len());
                }
            }
            return null;
        }
        if (kind == "null" || rhs == lhs) return null;
        return format(message, shown, lhs + "", rhs + "");
    }
};

__module_impUnit_exports <- {ImpTestCase = ImpTestCase};
