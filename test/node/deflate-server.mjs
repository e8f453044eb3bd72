// An echo upstream served by Node's `ws` with perMessageDeflate, for
// wsgate's compression tests (proxy/deflate_node_test.go):
//
//   node deflate-server.mjs [takeover]
//
// It listens on 127.0.0.1 (a free port), prints "listening PORT", echoes
// every message as it came (text or binary), compressed (a message over
// 64 KiB in fragments of 64 KiB), and exits when its standard input closes.

import { WebSocketServer } from 'ws';

const takeover = process.argv[2] === 'takeover';
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  maxPayload: 1 << 20,
  perMessageDeflate: {
    threshold: 0,
    serverNoContextTakeover: !takeover,
    clientNoContextTakeover: !takeover,
  },
});
wss.on('listening', () => console.log('listening ' + wss.address().port));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    const step = 64 * 1024;
    if (data.length <= step) {
      ws.send(data, { binary: isBinary, compress: true });
      return;
    }
    for (let i = 0; i < data.length; i += step) {
      ws.send(data.subarray(i, i + step), { binary: isBinary, compress: true, fin: i + step >= data.length });
    }
  });
});
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
