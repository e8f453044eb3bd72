// Compression through wsgate with Node's `ws` (perMessageDeflate):
//
//   node deflate.mjs ws://127.0.0.1:PORT/path [takeover]
//
// It negotiates permessage-deflate (without context takeover unless the
// second argument is "takeover"), sends JSON text messages, a binary
// message, a large text message and a text message in three compressed
// fragments, checks every echo, then closes with 1000 and waits for the
// close reply. It prints the negotiated extension and one line per step,
// and exits 0 only if everything matched.

import WebSocket from 'ws';

const url = process.argv[2];
const takeover = process.argv[3] === 'takeover';
if (!url) {
  console.error('usage: node deflate.mjs ws://host:port/path [takeover]');
  process.exit(2);
}

const fail = (msg) => {
  console.error('FAIL: ' + msg);
  process.exit(1);
};
setTimeout(() => fail('timed out'), 20000).unref();

// A deterministic pseudo-random word stream: compresses about 3:1.
let seed = 42;
const rnd = (n) => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed % n;
};
const words = 'user room message hello world typing presence ack id ts seq ok error retry join leave'.split(' ');
let big = '';
while (big.length < 256 * 1024) big += words[rnd(words.length)] + ' ' + rnd(1000) + ' ';

const expected = [];
for (let i = 0; i < 20; i++) {
  expected.push({ binary: false, data: Buffer.from(JSON.stringify({ seq: i, room: 'lobby', user: 'ada', text: 'hello world '.repeat(50) + '✓' })) });
}
const binary = Buffer.alloc(9000);
for (let i = 0; i < binary.length; i++) binary[i] = i % 9;
expected.push({ binary: true, data: binary });
expected.push({ binary: false, data: Buffer.from(big) });
const euro = Buffer.from('€'); // split across fragments below
const fragments = [
  Buffer.concat([Buffer.from('frag-1 '.repeat(200)), euro.subarray(0, 1)]),
  Buffer.concat([euro.subarray(1), Buffer.from(' frag-2 '.repeat(200))]),
  Buffer.from(' frag-3 ✓'.repeat(200)),
];
expected.push({ binary: false, data: Buffer.concat(fragments) });

const ws = new WebSocket(url, {
  perMessageDeflate: {
    threshold: 0,
    clientNoContextTakeover: !takeover,
    serverNoContextTakeover: !takeover,
  },
});
ws.binaryType = 'nodebuffer';
ws.on('error', (err) => fail('error: ' + err.message));

ws.on('open', () => {
  console.log('open extensions=' + JSON.stringify(ws.extensions));
  if (!ws.extensions.startsWith('permessage-deflate')) fail('permessage-deflate not negotiated');
  for (let i = 0; i < expected.length - 1; i++) {
    ws.send(expected[i].data, { binary: expected[i].binary, compress: true });
  }
  // One compressed text message in three frames: RSV1 on the first only.
  ws.send(fragments[0], { binary: false, fin: false, compress: true });
  ws.send(fragments[1], { binary: false, fin: false, compress: true });
  ws.send(fragments[2], { binary: false, fin: true, compress: true });
});

let got = 0;
ws.on('message', (data, isBinary) => {
  const want = expected[got];
  if (!want) fail('unexpected message');
  if (isBinary !== want.binary) fail(`message ${got}: binary=${isBinary}, want ${want.binary}`);
  if (!Buffer.from(data).equals(want.data)) fail(`message ${got}: echo differs (${data.length} bytes)`);
  got++;
  if (got === expected.length) {
    console.log(`${got} echoes ok`);
    ws.close(1000, 'bye');
  }
});

ws.on('close', (code, reason) => {
  console.log(`close ${code} ${reason.toString()}`);
  if (got !== expected.length) fail(`closed after ${got} echoes`);
  if (code !== 1000) fail(`close code ${code}, want 1000`);
  console.log('PASS');
  process.exit(0);
});
