// Socket.IO through wsgate (run by proxy/http_node_test.go).
//
//   node socketio.mjs server PORT NAME   a socket.io server on 127.0.0.1:PORT that
//                                        acknowledges each "ping" with {n, server: NAME}
//   node socketio.mjs client URL COUNT   connects with the default transports (HTTP
//                                        long-polling first, then the WebSocket
//                                        upgrade), waits for the upgrade, then emits
//                                        COUNT pings with acknowledgements
//
// The client prints one line per step and exits 0 only if the transport became
// "websocket", every acknowledgement came back with its number, and all of them
// from one server. Cookies (the gateway's sticky cookie) are kept by the client
// in Node with withCredentials: true, as a browser keeps them.

import http from 'node:http';
import { Server } from 'socket.io';
import { io } from 'socket.io-client';

const [mode, arg, third] = process.argv.slice(2);
const fail = (msg) => {
  console.log('FAIL: ' + msg);
  process.exit(1);
};

if (mode === 'server') {
  const httpServer = http.createServer();
  const server = new Server(httpServer, { pingInterval: 5000, pingTimeout: 5000 });
  server.on('connection', (socket) => {
    socket.on('ping', (n, ack) => ack({ n, server: third }));
  });
  httpServer.listen(Number(arg), '127.0.0.1', () => console.log('listening ' + third));
  process.on('SIGTERM', () => process.exit(0));
} else if (mode === 'client') {
  const count = Number(third);
  setTimeout(() => fail('timed out'), 20000).unref();
  const socket = io(arg, { reconnection: false, withCredentials: true, timeout: 10000 });
  socket.on('connect_error', (err) => fail('connect_error: ' + err.message));
  socket.on('disconnect', (reason) => fail('disconnect: ' + reason));
  socket.on('connect', () => {
    console.log('connected over ' + socket.io.engine.transport.name);
    const run = async () => {
      const servers = new Set();
      for (let i = 0; i < count; i++) {
        const res = await socket.timeout(5000).emitWithAck('ping', i);
        if (res.n !== i) fail(`ack ${i} carried ${res.n}`);
        servers.add(res.server);
      }
      const transport = socket.io.engine.transport.name;
      if (transport !== 'websocket') fail('transport is ' + transport + ' after ' + count + ' acks');
      if (servers.size !== 1) fail('acks came from ' + [...servers].join(', '));
      console.log(`acks ${count} from ${[...servers][0]} over ${transport}`);
      socket.off('disconnect');
      socket.close();
      process.exit(0);
    };
    // Wait for the upgrade to WebSocket before counting.
    if (socket.io.engine.transport.name === 'websocket') run().catch((e) => fail(String(e)));
    else socket.io.engine.once('upgrade', () => { console.log('upgraded'); run().catch((e) => fail(String(e))); });
  });
} else {
  console.error('usage: node socketio.mjs server PORT NAME | client URL COUNT');
  process.exit(2);
}
