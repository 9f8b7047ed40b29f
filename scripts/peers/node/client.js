'use strict';
// Node.js `ws` client used to record wsclose fixtures.
//   node client.js --url ws://127.0.0.1:9103/ --log LOG [--no-autopong] ACTION...
// Actions: send:text:WORDS  send:bin:HEX  recv  sleep:S  reset (socket.resetAndDestroy(): RST,
// no close frame)  wait-closed:S  (wait until the server ends the connection).
const WebSocket = require('ws');
const W = require('./wslog');

const o = W.parseArgs(process.argv.slice(2));
W.setup(o.log, o.name || 'client');
const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));

async function main() {
  const ws = new WebSocket(o.url, { autoPong: !o['no-autopong'] });
  let conn = null;
  const inbox = [];
  let waiter = null;
  let closed = false;
  const closedP = new Promise((resolve) => ws.on('close', () => { closed = true; resolve(); if (waiter) waiter(null); }));
  ws.on('message', (d) => { inbox.push(d); if (waiter) { const w = waiter; waiter = null; w(inbox.shift()); } });
  ws.on('error', (e) => W.log('ws_error', { by: 'client', conn, error: String(e) }));
  await new Promise((resolve, reject) => {
    // 'open' is emitted right after ws attached the upgraded socket (and
    // before any frame is read from it).
    ws.on('open', () => {
      const s = ws._socket;
      conn = { client: W.ep(s.localAddress, s.localPort), server: W.ep(s.remoteAddress, s.remotePort) };
      W.watchSocket(s, 'client', conn);
      W.watchWs(ws, 'client', conn);
      resolve();
    });
    ws.on('unexpected-response', (req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
  W.log('ws_open', { by: 'client', conn, autopong: !o['no-autopong'] });
  for (const act of o._) {
    const [kind, ...restParts] = act.split(':');
    const rest = restParts.join(':');
    if (kind === 'send') {
      const [typ, ...v] = rest.split(':');
      if (typ === 'text') ws.send(v.join(':'));
      else ws.send(Buffer.from(v.join(':'), 'hex'));
    } else if (kind === 'recv') {
      if (inbox.length) inbox.shift(); else if (!closed) await new Promise((r) => { waiter = r; });
    } else if (kind === 'sleep') {
      await sleep(Number(rest));
    } else if (kind === 'reset') {
      W.log('app_reset', { by: 'client', conn, how: 'ws._socket.resetAndDestroy()' });
      ws._socket.resetAndDestroy();
    } else if (kind === 'wait-closed') {
      await Promise.race([closedP, sleep(Number(rest))]);
    } else throw new Error(`unknown action ${act}`);
  }
  await Promise.race([closedP, sleep(5)]);
  W.log('exit');
  process.exit(0);
}

main().catch((e) => { W.log('client_error', { error: String(e) }); process.exit(1); });
