'use strict';
// Ground-truth event log for the Node.js `ws` peers (same JSON-lines format as
// ../wsclog.py): one object per event with wall-clock time t (epoch seconds),
// peer name and conn = {client, server} as seen by the peer's own socket.
const fs = require('fs');

let fd = null;
let peer = 'node';

function setup(path, name) {
  peer = name;
  fd = fs.openSync(path, 'a');
}

// Wall-clock time with sub-millisecond resolution: performance.timeOrigin is
// the high-resolution wall-clock time at which this process started.
const { performance } = require('perf_hooks');
function now() {
  return Math.round((performance.timeOrigin + performance.now()) * 1000) / 1e6;
}

function log(event, fields) {
  const rec = Object.assign({ t: now(), peer, pid: process.pid, event }, fields || {});
  const line = JSON.stringify(rec);
  if (fd !== null) fs.writeSync(fd, line + '\n');
  process.stderr.write(line + '\n');
}

function ep(ip, port) {
  if (ip && ip.startsWith('::ffff:')) ip = ip.slice(7);
  return ip && ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

// Wrap the TCP socket under a ws connection so that every way our code (or
// ws itself) ends it is logged before it happens.
function watchSocket(socket, by, conn) {
  const origEnd = socket.end;
  socket.end = function (...args) {
    if (!socket.writableEnded) log('fin_sent', { by, conn, how: 'socket.end()' });
    return origEnd.apply(this, args);
  };
  const origDestroy = socket.destroy;
  socket.destroy = function (...args) {
    if (!socket.destroyed) log('socket_closed', { by, conn, how: 'socket.destroy()', note: 'kernel sends FIN unless already sent (RST if unread bytes)' });
    return origDestroy.apply(this, args);
  };
  const origReset = socket.resetAndDestroy;
  socket.resetAndDestroy = function (...args) {
    log('rst_sent', { by, conn, how: 'socket.resetAndDestroy() (SO_LINGER 0 + close)' });
    return origReset.apply(this, args);
  };
  // prepend: log the peer's FIN before ws's own 'end' handler answers it with socket.end()
  socket.prependListener('end', () => log('eof_received', { by, conn }));
  socket.on('error', (e) => log('socket_error', { by, conn, error: e.code || String(e) }));
}

// Log frames our side sends / receives through the ws API.
function watchWs(ws, by, conn) {
  for (const [name, opcode] of [['send', null], ['ping', 9], ['pong', 10]]) {
    const orig = ws[name].bind(ws);
    ws[name] = (data, ...rest) => {
      const buf = data === undefined ? Buffer.alloc(0) : Buffer.from(data);
      const op = opcode !== null ? opcode : (typeof data === 'string' ? 1 : 2);
      const f = { by, conn, opcode: op, opcode_name: { 1: 'text', 2: 'binary', 9: 'ping', 10: 'pong' }[op], payload_length: buf.length };
      if (op === 1 && buf.length <= 64) f.text = buf.toString();
      else if (buf.length <= 32) f.data_hex = buf.toString('hex');
      log('frame_sent', f);
      return orig(data, ...rest);
    };
  }
  const origClose = ws.close.bind(ws);
  ws.close = (code, reason) => {
    if (!ws._closeFrameSent && ws.readyState <= 1) log('frame_sent', { by, conn, opcode: 8, opcode_name: 'close', close_code: code === undefined ? null : code, close_reason: reason === undefined ? null : String(reason) });
    return origClose(code, reason);
  };
  ws.on('message', (data, isBinary) => {
    const f = { by, conn, opcode: isBinary ? 2 : 1, opcode_name: isBinary ? 'binary' : 'text', payload_length: data.length };
    if (!isBinary && data.length <= 64) f.text = data.toString();
    log('frame_recv', f);
  });
  ws.on('ping', (d) => log('frame_recv', { by, conn, opcode: 9, opcode_name: 'ping', payload_length: d.length, data_hex: d.toString('hex') }));
  ws.on('pong', (d) => log('frame_recv', { by, conn, opcode: 10, opcode_name: 'pong', payload_length: d.length, data_hex: d.toString('hex') }));
  ws.on('close', (code, reason) => log('ws_closed', {
    by, conn,
    close_code: code, close_reason: reason.toString(),
    close_frame_sent: !!ws._closeFrameSent, close_frame_received: !!ws._closeFrameReceived,
    note: code === 1006 ? 'ws reports 1006: the TCP connection ended without a closing handshake' : undefined,
  }));
}

// --flag (boolean, for the names in BOOLEAN) or --key value; the rest are actions.
const BOOLEAN = new Set(['no-autopong']);
function parseArgs(argv) {
  const opts = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const k = a.slice(2);
      if (BOOLEAN.has(k)) opts[k] = true; else { opts[k] = argv[i + 1]; i++; }
    } else opts._.push(a);
  }
  return opts;
}

module.exports = { setup, log, ep, watchSocket, watchWs, parseArgs };
