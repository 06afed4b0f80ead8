// Runs several operations on one graphql-ws client (one socket) and prints one JSON line per
// event: {"event": "connected"}, {"event": "next"|"error"|"complete", "index": i, ...} where i
// is the operation's place in the list given as JSON: [{"query": ..., "variables": ...}, ...].
//
//   node watch_many.cjs ws://localhost:8000/graphql '[{"query": "subscription { ... }"}]'
"use strict";

const { createClient } = require("graphql-ws");
const WebSocket = require("ws");

const [url, operationsJson] = process.argv.slice(2);
const operations = JSON.parse(operationsJson);

function print(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  retryAttempts: 0,
  lazy: true,
  on: {
    connected: () => print({ event: "connected" }),
    closed: (e) => print({ event: "closed", code: e && e.code, reason: e && e.reason }),
  },
});

operations.forEach((operation, index) => {
  client.subscribe(operation, {
    next: (payload) => print({ event: "next", index, payload }),
    error: (err) =>
      print({
        event: "error",
        index,
        errors: Array.isArray(err) ? err : [{ message: String((err && err.message) || err) }],
      }),
    complete: () => print({ event: "complete", index }),
  });
});

process.on("SIGTERM", () => process.exit(0));
