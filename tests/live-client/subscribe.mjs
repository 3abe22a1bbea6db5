// Subscribes to a flowcloud server with the official `graphql-ws` client and prints what it
// receives as JSON lines: {"connected":true} once acknowledged, then each result, then
// {"complete":true} after COUNT results (or when the server completes the operation).
//
//   node subscribe.mjs WS_URL TOKEN QUERY VARIABLES_JSON COUNT
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, token, query, variables = '{}', count = '1'] = process.argv.slice(2);
if (!url || !token || !query) {
  console.error('usage: node subscribe.mjs WS_URL TOKEN QUERY [VARIABLES_JSON] [COUNT]');
  process.exit(2);
}
const wanted = Number(count);
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${token}` },
  retryAttempts: 0,
  lazy: false,
  on: { connected: () => print({ connected: true }) },
});

let received = 0;
let done = false;
const finish = async (code) => {
  if (done) return;
  done = true;
  print({ complete: true });
  await client.dispose();
  process.exit(code);
};

const unsubscribe = client.subscribe(
  { query, variables: JSON.parse(variables) },
  {
    next: (result) => {
      print(result);
      received += 1;
      if (received >= wanted) {
        unsubscribe();
        finish(0);
      }
    },
    error: (error) => {
      console.error('subscription error:', error instanceof Error ? error.message : JSON.stringify(error));
      process.exit(1);
    },
    complete: () => finish(received >= wanted ? 0 : 1),
  },
);
