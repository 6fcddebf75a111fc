// Drive Electric Imp's own imp-central-api client from Python, one call per line.
//
// Usage: node drive.js ENDPOINT   (e.g. http://127.0.0.1:PORT/v5)
//
// stdin, one JSON object per line:  {"id": 1, "call": "deviceGroups.create", "args": [...]}
// stdout, one JSON object per line: {"id": 1, "ok": true, "result": <resolved value>}
//                                or {"id": 1, "ok": false, "status": 404, "message": "...",
//                                    "body": <error body>}
// "call" names a method of an ImpCentralApi member (auth, accounts, products, deviceGroups,
// devices, deployments, webhooks); the library itself validates the arguments and builds
// every HTTP request, so the server sees exactly what the real client sends.
'use strict';

const readline = require('readline');
const ImpCentralApi = require('imp-central-api');

const endpoint = process.argv[2];
if (!endpoint) {
    process.stderr.write('usage: node drive.js ENDPOINT\n');
    process.exit(2);
}
const api = new ImpCentralApi(endpoint);

// Log streams take callbacks, which JSON cannot carry: these two calls stand in.
// "logStreams.open" [format] creates a stream whose messages and state changes are kept;
// "logStreams.drain" returns (and forgets) what arrived since the last drain.
const streamed = [];
const special = {
    'logStreams.open': (format) => api.logStreams.create(
        (message) => streamed.push({ message }), (state) => streamed.push({ state }),
        (error) => streamed.push({ error: String(error.message || error) }), format || 'json'),
    'logStreams.drain': () => Promise.resolve(streamed.splice(0)),
};

function reply(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

async function run(msg) {
    if (special[msg.call]) {
        try {
            const result = await special[msg.call](...(msg.args || []));
            return { id: msg.id, ok: true, result: result === undefined ? null : result };
        } catch (err) {
            return { id: msg.id, ok: false, status: err.statusCode || 0,
                     message: String(err.message || err), body: null };
        }
    }
    const [member, method] = String(msg.call).split('.');
    const target = api[member];
    if (!target || typeof target[method] !== 'function') {
        return { id: msg.id, ok: false, status: 0, message: 'no such call: ' + msg.call };
    }
    try {
        const result = await target[method](...(msg.args || []));
        return { id: msg.id, ok: true, result: result === undefined ? null : result };
    } catch (err) {
        return {
            id: msg.id, ok: false, status: err.statusCode || 0,
            message: String(err.message || err), body: err.body === undefined ? null : err.body,
        };
    }
}

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on('line', (line) => {
    if (!line.trim()) {
        return;
    }
    let msg;
    try {
        msg = JSON.parse(line);
    } catch (err) {
        reply({ id: null, ok: false, status: 0, message: 'bad JSON line: ' + err.message });
        return;
    }
    queue = queue.then(() => run(msg)).then(reply);
});
rl.on('close', () => { queue.then(() => process.exit(0)); });
