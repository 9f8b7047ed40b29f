'use strict';
// Node.js `ws` server used to record wsclose fixtures.
//   node server.js --port 9103 --log LOG [--destroy-on TEXT] [--heartbeat-ms 1000 --max-missed 3]
// Echoes every message.  --destroy-on TEXT: when that text message arrives,
// kill the TCP socket with socket.destroy() (no close frame).  --heartbeat-ms:
// ping every connection periodically; after --max-missed pings in a row
// without a pong, ws.terminate() it (no close frame).
const { WebSocketServer } = require('ws');
const W = require('./wslog');

const o = W.parseArgs(process.argv.slice(2));
W.setup(o.log, o.name || 'server');
const port = Number(o.port);
const host = o.host || '127.0.0.1';
const wss = new WebSocketServer({ host, port });

wss.on('listening', () => W.log('listening', { addr: W.ep(host, port), ws_version: require('ws/package.json').version, node_version: process.version }));

wss.on('connection', (ws, req) => {
  const s = req.socket;
  const conn = { client: W.ep(s.remoteAddress, s.remotePort), server: W.ep(s.localAddress, s.localPort) };
  W.watchSocket(s, 'server', conn);
  W.watchWs(ws, 'server', conn);
  W.log('ws_open', { by: 'server', conn, path: req.url });

  let timer = null;
  if (o['heartbeat-ms']) {
    const every = Number(o['heartbeat-ms']);
    const maxMissed = Number(o['max-missed'] || 1);
    let outstanding = 0;
    let seq = 0;
    ws.on('pong', () => { outstanding = 0; });
    timer = setInterval(() => {
      if (outstanding >= maxMissed) {
        W.log('heartbeat_terminate', { by: 'server', conn, unanswered_pings: outstanding, ping_interval_ms: every, max_missed: maxMissed, how: 'ws.terminate()' });
        clearInterval(timer);
        ws.terminate();
        return;
      }
      outstanding++;
      ws.ping(Buffer.from(`hb${++seq}`));
    }, every);
  }

  ws.on('message', (data, isBinary) => {
    if (!isBinary && o['destroy-on'] && data.toString() === o['destroy-on']) {
      W.log('app_destroy', { by: 'server', conn, how: 'socket.destroy() without a close frame' });
      s.destroy();
      return;
    }
    ws.send(isBinary ? data : data.toString());
  });
  ws.on('close', () => { if (timer) clearInterval(timer); });
});

process.on('SIGTERM', () => {
  W.log('shutdown');
  for (const c of wss.clients) c.terminate();
  wss.close(() => process.exit(0));
});
