// A graphql-ws client for the subscription tests: subscribes once and prints one JSON line per
// protocol event on stdout ("connected", "next" with its payload, "error", "complete",
// "closed" with the close code and reason). Run with NODE_PATH pointing at node_modules that
// hold graphql-ws and ws.
//
//   node subscription_client.cjs URL QUERY [VARIABLES_JSON] [CONNECTION_PARAMS_JSON]
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
