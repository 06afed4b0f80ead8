// Watch a Quiver subscription with the graphql-ws client: subscribes once and prints one JSON
// line per protocol event on stdout ("connected", "next" with its payload, "error",
// "complete", "closed" with the close code and reason). The subscription tests run it.
//
//   npm install graphql-ws ws
//   node watch_changes.cjs ws://localhost:8000/graphql \
//     'subscription ($after: String) { authorChanged(after: $after) { op cursor after { name } } }' \
//     '{"after": null}' '{"Authorization": "Bearer <key>"}'
//
// To resume after a disconnect, pass the last printed `extensions.cursor` as "after".
// (NODE_PATH may point at the node_modules holding graphql-ws and ws.)
"use strict";

const { createClient } = require("graphql-ws");
const WebSocket = require("ws");

const [url, query, variablesJson, paramsJson] = process.argv.slice(2);
const variables = variablesJson ? JSON.parse(variablesJson) : undefined;
const connectionParams = paramsJson ? JSON.parse(paramsJson) : undefined;

function print(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams,
  retryAttempts: 0,
  lazy: true,
  on: {
    connected: () => print({ event: "connected" }),
    closed: (e) => {
      print({ event: "closed", code: e && e.code, reason: e && e.reason });
      process.exit(0);
    },
  },
});

client.subscribe(
  { query, variables },
  {
    next: (payload) => print({ event: "next", payload }),
    error: (err) => {
      if (Array.isArray(err)) {
        print({ event: "error", errors: err });
      } else if (err && typeof err.code === "number") {
        print({ event: "closed", code: err.code, reason: err.reason });
      } else {
        print({ event: "error", errors: [{ message: String((err && err.message) || err) }] });
      }
      process.exit(0);
    },
    complete: () => {
      print({ event: "complete" });
      process.exit(0);
    },
  },
);

process.on("SIGTERM", () => process.exit(0));
