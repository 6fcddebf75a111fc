// Promise for `impfactory test`: the API of Electric Imp's Promise library (4.x),
// written for impfactory (MIT). What it keeps of Electric Imp's behaviour:
//
//   * the action runs at once; its resolve/reject settle the promise once;
//   * handlers never run inside then(): always later, from imp.wakeup(0, ...);
//   * a promise resolved with a promise (anything with a then() method) follows it;
//   * then(onFulfilled, onRejected) returns a new promise settled by the handler's
//     result (or its throw); a missing handler passes the value or reason on;
//     fail(f) is then(null, f), finally(f) is then(f, f);
//   * a rejection with no handler at all is logged with server.log:
//     "Unhandled promise rejection: <reason>";
//   * Promise.resolve/reject, and Promise.all/race/serial/loop over arrays of
//     promises or of functions that return promises (called when their turn comes).

Promise <- (function() {
    local PromiseClass = null;

    PromiseClass = class {
        static VERSION = "4.0.1";
        static STATE_PENDING = 0;
        static STATE_FULFILLED = 1;
        static STATE_REJECTED = 2;

        _state = 0;
        _value = null;
        _waiting = null;   // [[onFulfilled, onRejected, resolveNext, rejectNext], ...]
        _observed = false; // then() was called on it

        constructor(action) {
            _waiting = [];
            local promise = this;
            try {
                action(function(value = null) { promise._follow(value); },
                       function(reason = null) { promise._settle(2, reason); });
            } catch (error) {
                _settle(2, error);
            }
        }

        function then(onFulfilled = null, onRejected = null) {
            local entry = [typeof onFulfilled == "function" ? onFulfilled : null,
                           typeof onRejected == "function" ? onRejected : null,
                           null, null];
            local next = PromiseClass(function(resolveNext, rejectNext) {
                entry[2] = resolveNext;
                entry[3] = rejectNext;
            });
            _observed = true;
            _waiting.push(entry);
            _wake();
            return next;
        }

        function fail(onRejected) {
            return then(null, onRejected);
        }

        function finally(onSettled) {
            return then(onSettled, onSettled);
        }

        // --- inside ---------------------------------------------------------------

        static function _isThenable(value) {
            return typeof value == "instance" && ("then" in value)
                && typeof value.then == "function";
        }

        function _follow(value) {
            if (_state != 0) return;
            if (PromiseClass._isThenable(value)) {
                local promise = this;
                value.then(function(v) { promise._follow(v); },
                           function(r) { promise._settle(2, r); });
                return;
            }
            _settle(1, value);
        }

        function _settle(state, value) {
            if (_state != 0) return;
            _state = state;
            _value = value;
            _wake();
        }

        function _wake() {
            if (_state == 0) return;
            local promise = this;
            imp.wakeup(0, function() { promise._deliver(); });
        }

        function _deliver() {
            local entries = _waiting;
            _waiting = [];
            if (_state == 2 && !_observed) {
                server.log("Unhandled promise rejection: " + _value);
            }
            foreach (entry in entries) _handle(entry);
        }

        function _handle(entry) {
            local handler = _state == 1 ? entry[0] : entry[1];
            local resolveNext = entry[2];
            local rejectNext = entry[3];
            if (handler == null) {
                if (_state == 1) resolveNext(_value); else rejectNext(_value);
                return;
            }
            local result = null;
            try {
                result = handler(_value);
            } catch (error) {
                rejectNext(error);
                return;
            }
            resolveNext(result);
        }

        // --- the class methods ------------------------------------------------------

        static function resolve(value = null) {
            return PromiseClass(function(ok, notOk) { ok(value); });
        }

        static function reject(reason = null) {
            return PromiseClass(function(ok, notOk) { notOk(reason); });
        }

        static function all(series) {
            return PromiseClass._together(series, true);
        }

        static function race(series) {
            return PromiseClass._together(series, false);
        }

        // Every item at once; resolve with every value (in order) or with the first.
        static function _together(series, every) {
            return PromiseClass(function(resolve, reject) {
                local count = series.len();
                local values = array(count);
                if (count == 0) {
                    resolve(values);
                    return;
                }
                local outstanding = count;
                local watch = function(item, index) {
                    item.then(function(value) {
                        if (!every) {
                            resolve(value);
                            return;
                        }
                        values[index] = value;
                        outstanding -= 1;
                        if (outstanding == 0) resolve(values);
                    }, reject);
                };
                foreach (index, item in series) {
                    watch(typeof item == "function" ? item() : item, index);
                }
            });
        }

        // One item after the other; resolve with the last value, reject at the first failure.
        static function serial(series) {
            if (typeof series != "array") {
                return PromiseClass.reject("Promise.serial() not passed an array");
            }
            local position = 0;
            return PromiseClass.loop(@() position < series.len(), function() {
                local item = series[position];
                position += 1;
                return typeof item == "function" ? item() : item;
            });
        }

        // while (condition()) await next(); resolve with the last value.
        static function loop(condition, next) {
            return PromiseClass(function(resolve, reject) {
                local last = null;
                local turn = null;
                turn = function() {
                    if (!condition()) {
                        resolve(last);
                        return;
                    }
                    next().then(function(value) {
                        last = value;
                        imp.wakeup(0, turn);
                    }, reject);
                };
                imp.wakeup(0, turn);
            });
        }
    };

    return PromiseClass;
})();
