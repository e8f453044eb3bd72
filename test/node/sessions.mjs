// Sessions API check with Node's `ws` client (run by
// proxy/sessions_node_test.go).
//
//   node sessions.mjs ws://127.0.0.1:PORT/path
//
// It connects, prints "open", then one line per message the gateway pushes
// ("text <data>" or "binary <hex>") and, when the session is closed, "close
// <code> <reason>", and exits 0. It sends nothing itself.

import WebSocket from 'ws';

const url = process.argv[2];
if (!url) {
  console.error('usage: node sessions.mjs ws://host:port/path');
  process.exit(2);
}
setTimeout(() => {
  console.error('FAIL: timed out');
  process.exit(1);
}, 15000).unref();

const ws = new WebSocket(url);
ws.on('open', () => console.log('open'));
ws.on('message', (data, isBinary) => {
  if (isBinary) console.log('binary ' + Buffer.from(data).toString('hex'));
  else console.log('text ' + data.toString());
});
ws.on('close', (code, reason) => {
  console.log(`close ${code} ${reason.toString()}`);
  process.exit(0);
});
ws.on('error', (err) => {
  console.error('FAIL: ' + err.message);
  process.exit(1);
});
