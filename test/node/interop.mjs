// Interop check of wsgate with a non-Go client: Node's `ws` package.
//
//   node interop.mjs ws://127.0.0.1:PORT/path
//
// Through the gateway to an echoing upstream it sends a text message, a
// binary message and a text message in three fragments (with a code point
// split across two of them), checks each echo, pings and waits for the pong,
// then closes with 4000 "done" and waits for the close reply. It prints one
// line per step and exits 0 only if everything matched.

import WebSocket from 'ws';

const url = process.argv[2];
if (!url) {
  console.error('usage: node interop.mjs ws://host:port/path');
  process.exit(2);
}

const fail = (msg) => {
  console.error('FAIL: ' + msg);
  process.exit(1);
};
setTimeout(() => fail('timed out'), 15000).unref();

const binary = Buffer.alloc(70000);
for (let i = 0; i < binary.length; i++) binary[i] = (i * 7 + (i >> 9)) & 0xff;
const euro = Buffer.from('€'); // 3 bytes, split across fragments below
const fragments = [
  Buffer.concat([Buffer.from('frag-1 '), euro.subarray(0, 1)]),
  Buffer.concat([euro.subarray(1), Buffer.from(' frag-2 ')]),
  Buffer.from('frag-3 ✓'),
];

// What the echo must bring back, in order.
const expected = [
  { binary: false, data: Buffer.from('hello from node ✓') },
  { binary: true, data: binary },
  { binary: false, data: Buffer.concat(fragments) },
];

const ws = new WebSocket(url, { perMessageDeflate: false });
ws.binaryType = 'nodebuffer';

ws.on('error', (err) => fail('error: ' + err.message));

ws.on('open', () => {
  console.log('open');
  ws.send(expected[0].data.toString('utf8'));
  ws.send(binary, { binary: true });
  // One text message in three frames: FIN clear on all but the last.
  ws.send(fragments[0], { binary: false, fin: false });
  ws.send(fragments[1], { binary: false, fin: false });
  ws.send(fragments[2], { binary: false, fin: true });
});

let got = 0;
let ponged = false;

ws.on('message', (data, isBinary) => {
  const want = expected[got];
  if (!want) fail('unexpected message');
  if (isBinary !== want.binary) fail(`message ${got}: binary=${isBinary}, want ${want.binary}`);
  if (!Buffer.from(data).equals(want.data)) fail(`message ${got}: echo differs (${data.length} bytes)`);
  console.log(`echo ${got} ok (${data.length} bytes, ${isBinary ? 'binary' : 'text'})`);
  got++;
  if (got === expected.length) ws.ping('node-ping');
});

ws.on('pong', (data) => {
  if (data.toString() !== 'node-ping') fail('pong payload ' + JSON.stringify(data.toString()));
  console.log('pong ok');
  ponged = true;
  ws.close(4000, 'done');
});

ws.on('close', (code, reason) => {
  console.log(`close ${code} ${reason.toString()}`);
  if (got !== expected.length || !ponged) fail(`closed after ${got} echoes, pong=${ponged}`);
  if (code !== 4000) fail(`close code ${code}, want 4000`);
  console.log('PASS');
  process.exit(0);
});
