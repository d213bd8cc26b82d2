// Unit tests of dist/client.js against a fake WebSocket and a fake clock (fake_ws.mjs):
// close-code ranges, backoff bounds, retries, re-auth with a token function per connect,
// resubscribe with since/epoch, duplicate drop, gaps, heartbeat, publish and acks.

import { test, beforeEach, afterEach, mock } from 'node:test';
import assert from 'node:assert/strict';

import { RelayClient, reconnectAdvice, backoffDelay, parseBinary, encodeBinaryPublish } from '../../dist/client.js';
import { FakeWebSocket, FakeClock, settle, record } from './fake_ws.mjs';

const URL = 'ws://127.0.0.1:1/';

const clock = new FakeClock();
beforeEach(() => {
  FakeWebSocket.reset();
  clock.install();
});
afterEach(() => clock.uninstall());

/** A client on the fake socket; jitter source fixed so delays are exact. */
async function client(options = {}) {
  const c = new RelayClient(URL, { WebSocket: FakeWebSocket, random: () => 0.5, ...options });
  await settle();
  return c;
}

function binaryDelivery(channel, seq, payload) {
  const out = new Uint8Array(2 + channel.length + 8 + payload.length);
  const view = new DataView(out.buffer);
  out[0] = 1;
  out[1] = channel.length;
  out.set(new TextEncoder().encode(channel), 2);
  view.setUint32(2 + channel.length, Math.floor(seq / 2 ** 32));
  view.setUint32(6 + channel.length, seq % 2 ** 32);
  out.set(payload, 10 + channel.length);
  return out.buffer;
}

function binaryGap(channel, from, to) {
  const out = new Uint8Array(2 + channel.length + 16);
  const view = new DataView(out.buffer);
  out[0] = 2;
  out[1] = channel.length;
  out.set(new TextEncoder().encode(channel), 2);
  view.setUint32(6 + channel.length, from);
  view.setUint32(14 + channel.length, to);
  return out.buffer;
}

test('close codes follow the convention: 4000-4099 never, 4100-4199 backoff, 4200-4299 at once', () => {
  for (const code of [4000, 4001, 4003, 4008, 4099, 1002, 1003, 1007, 1008, 1009]) {
    assert.equal(reconnectAdvice(code), 'never', `code ${code}`);
  }
  for (const code of [4100, 4101, 4102, 4199, 1000, 1001, 1006, 1011, 4300]) {
    assert.equal(reconnectAdvice(code), 'backoff', `code ${code}`);
  }
  for (const code of [4200, 4201, 4299]) assert.equal(reconnectAdvice(code), 'at-once', `code ${code}`);
});

test('backoff is min(base * 2^n, cap) plus jitter in [0, jitter)', () => {
  const b = { base: 100, cap: 1000, jitter: 50 };
  assert.deepEqual([0, 1, 2, 3, 4, 5, 60].map((n) => backoffDelay(n, b, () => 0)), [100, 200, 400, 800, 1000, 1000, 1000]);
  assert.equal(backoffDelay(2, b, () => 0.999999), 449);
  for (let n = 0; n < 40; n++) {
    for (const r of [0, 0.1, 0.5, 0.9, 0.999999]) {
      const d = backoffDelay(n, b, () => r);
      const floor = Math.min(100 * 2 ** n, 1000);
      assert.ok(d >= floor && d < floor + 50 && Number.isInteger(d), `n=${n} r=${r} d=${d}`);
    }
  }
});

test('unexpected closes reconnect with exponential backoff, reset after an open', async () => {
  const c = await client({ backoff: { base: 100, cap: 1000, jitter: 10 } });
  const events = record(c);
  FakeWebSocket.last().open();
  FakeWebSocket.last().serverClose(4100, 'slow consumer');
  assert.equal(c.state, 'reconnecting');
  const delays = [events.find(([t]) => t === 'close')[1].delay];
  c.on('close', (e) => delays.push(e.delay));
  for (let i = 0; i < 3; i++) {
    clock.tick(delays.at(-1));
    await settle();
    FakeWebSocket.last().serverClose(1006);
  }
  assert.deepEqual(delays, [105, 205, 405, 805]);
  assert.equal(FakeWebSocket.all.length, 4);
  assert.deepEqual(events.find(([t]) => t === 'close')[1], {
    code: 4100, reason: 'slow consumer', wasClean: true, willReconnect: true, delay: 105,
  });
  clock.tick(805);
  await settle();
  FakeWebSocket.last().open();
  assert.equal(c.attempts, 0);
  FakeWebSocket.last().serverClose(1001);
  assert.equal(delays.at(-1), 105);
  c.close();
});

test('4000-4099 stops for good; 4200-4299 reconnects at once', async () => {
  const c = await client();
  const states = [];
  c.on('state', (e) => states.push(e.state));
  FakeWebSocket.last().open();
  FakeWebSocket.last().serverClose(4200, 'draining');
  clock.tick(0);
  await settle();
  assert.equal(FakeWebSocket.all.length, 2);
  FakeWebSocket.last().open();
  FakeWebSocket.last().serverClose(4001, 'unauthorized');
  assert.equal(c.state, 'closed');
  clock.tick(3_600_000);
  await settle();
  assert.equal(FakeWebSocket.all.length, 2, 'no attempt after 4001');
  assert.deepEqual(states, ['open', 'reconnecting', 'open', 'closed']);
});

test('gives up after `retries` consecutive failed attempts', async () => {
  const c = await client({ retries: 2, backoff: { base: 10, cap: 10, jitter: 0 } });
  const closes = [];
  c.on('close', (e) => closes.push([e.code, e.willReconnect]));
  for (let i = 0; i < 3; i++) {
    FakeWebSocket.last().serverClose(1006);
    clock.tick(10);
    await settle();
  }
  assert.deepEqual(closes, [[1006, true], [1006, true], [1006, false]]);
  assert.equal(c.state, 'closed');
  assert.equal(FakeWebSocket.all.length, 3);
});

test('the token function is called before every connect and auth goes first', async () => {
  let calls = 0;
  const c = await client({ token: async () => `t${++calls}`, backoff: { base: 10, cap: 10, jitter: 0 } });
  c.subscribe('md.a');
  FakeWebSocket.last().open();
  FakeWebSocket.last().serverClose(1006);
  clock.tick(10);
  await settle();
  FakeWebSocket.last().open();
  assert.equal(calls, 2);
  assert.deepEqual(FakeWebSocket.all[0].json()[0], { type: 'auth', token: 't1' });
  assert.deepEqual(FakeWebSocket.all[1].json(), [
    { type: 'auth', token: 't2' },
    { type: 'subscribe', channel: 'md.a' },
  ]);
  c.close();
});

test('a failing token source counts as a failed attempt and is retried', async () => {
  let calls = 0;
  const c = await client({
    token: () => {
      calls += 1;
      if (calls === 1) throw new Error('no token yet');
      return 'ok';
    },
    backoff: { base: 10, cap: 10, jitter: 0 },
  });
  const events = record(c);
  assert.equal(FakeWebSocket.all.length, 0);
  clock.tick(10);
  await settle();
  FakeWebSocket.last().open();
  assert.deepEqual(FakeWebSocket.last().json()[0], { type: 'auth', token: 'ok' });
  assert.equal(c.state, 'open');
  assert.deepEqual(events.map(([t]) => t), ['state', 'open']);
  c.close();
});

test('reconnect resubscribes with the last seq and epoch; replayed duplicates are dropped', async () => {
  const c = await client({ backoff: { base: 10, cap: 10, jitter: 0 } });
  const seen = [];
  c.on('message', (m) => seen.push(m.seq));
  c.subscribe('md.a');
  c.subscribe('md.b');
  FakeWebSocket.last().open();
  const ws = FakeWebSocket.last();
  ws.recv({ type: 'subscribed', channel: 'md.a', seq: 5, epoch: 'E1' });
  ws.recv({ type: 'message', channel: 'md.a', content: { px: 1 }, from: 'x', seq: 6 });
  ws.recv({ type: 'message', channel: 'md.a', content: { px: 2 }, from: 'x', seq: 7 });
  ws.serverClose(1006);
  clock.tick(10);
  await settle();
  const ws2 = FakeWebSocket.last();
  ws2.open();
  assert.deepEqual(ws2.json(), [
    { type: 'subscribe', channel: 'md.a', since: 7, epoch: 'E1' },
    { type: 'subscribe', channel: 'md.b' },
  ]);
  ws2.recv({ type: 'subscribed', channel: 'md.a', seq: 9, epoch: 'E1', recovered: true });
  for (const seq of [6, 7, 8, 9, 8, 10]) {
    ws2.recv({ type: 'message', channel: 'md.a', content: seq, from: 'x', seq });
  }
  assert.deepEqual(seen, [6, 7, 8, 9, 10]);
  assert.deepEqual(c.position('md.a'), { seq: 10, epoch: 'E1' });
  c.close();
});

test('recovered:false in the same epoch reports the skipped range as a gap', async () => {
  const c = await client({ backoff: { base: 10, cap: 10, jitter: 0 } });
  c.subscribe('md.a');
  FakeWebSocket.last().open();
  FakeWebSocket.last().recv({ type: 'subscribed', channel: 'md.a', seq: 3, epoch: 'E1' });
  FakeWebSocket.last().serverClose(1006);
  clock.tick(10);
  await settle();
  const events = record(c);
  FakeWebSocket.last().open();
  FakeWebSocket.last().recv({ type: 'subscribed', channel: 'md.a', seq: 40, epoch: 'E1', recovered: false });
  FakeWebSocket.last().recv({ type: 'message', channel: 'md.a', content: 41, from: 'x', seq: 41 });
  assert.deepEqual(events.filter(([t]) => t !== 'state' && t !== 'open'), [
    ['subscribed', { channel: 'md.a', seq: 40, epoch: 'E1', recovered: false }],
    ['gap', { channel: 'md.a', from: 4, to: 40 }],
    ['message', { channel: 'md.a', content: 41, seq: 41, from: 'x', binary: false }],
  ]);
  c.close();
});

test('a new epoch (relay restarted) restarts the numbering: seq 1 is not a duplicate', async () => {
  const c = await client({ backoff: { base: 10, cap: 10, jitter: 0 } });
  c.subscribe('md.a');
  FakeWebSocket.last().open();
  FakeWebSocket.last().recv({ type: 'subscribed', channel: 'md.a', seq: 50, epoch: 'E1' });
  FakeWebSocket.last().serverClose(1006);
  clock.tick(10);
  await settle();
  const events = record(c);
  FakeWebSocket.last().open();
  FakeWebSocket.last().recv({ type: 'subscribed', channel: 'md.a', seq: 0, epoch: 'E2', recovered: false });
  FakeWebSocket.last().recv({ type: 'message', channel: 'md.a', content: 'x', from: 'p', seq: 1 });
  assert.deepEqual(events.filter(([t]) => t === 'subscribed' || t === 'gap' || t === 'message'), [
    ['subscribed', { channel: 'md.a', seq: 0, epoch: 'E2', recovered: false }],
    ['message', { channel: 'md.a', content: 'x', seq: 1, from: 'p', binary: false }],
  ]);
  c.close();
});

test('gap notices (JSON and binary) reach the app and advance the position', async () => {
  const c = await client();
  const events = record(c);
  c.subscribe('md.a');
  FakeWebSocket.last().open();
  const ws = FakeWebSocket.last();
  ws.recv({ type: 'subscribed', channel: 'md.a', seq: 0, epoch: 'E' });
  ws.recv({ type: 'gap', channel: 'md.a', from: 1, to: 4 });
  ws.recv(binaryGap('md.a', 5, 9));
  ws.recv(binaryDelivery('md.a', 9, [1]));
  ws.recv(binaryDelivery('md.a', 10, [7, 8]));
  const got = events.filter(([t]) => t === 'gap' || t === 'message');
  assert.deepEqual(got.slice(0, 2), [
    ['gap', { channel: 'md.a', from: 1, to: 4 }],
    ['gap', { channel: 'md.a', from: 5, to: 9 }],
  ]);
  assert.equal(got.length, 3, 'seq 9 was covered by the gap: dropped');
  const [, m] = got[2];
  assert.deepEqual({ ...m, content: [...new Uint8Array(m.content)] }, {
    channel: 'md.a', content: [7, 8], seq: 10, from: null, binary: true,
  });
  c.close();
});

test('heartbeat: a ping every interval; silence past the timeout drops and reconnects', async () => {
  const c = await client({ heartbeat: { interval: 1000, timeout: 500 }, backoff: { base: 10, cap: 10, jitter: 0 } });
  const closes = [];
  c.on('close', (e) => closes.push(e));
  FakeWebSocket.last().open();
  const ws = FakeWebSocket.last();
  clock.tick(1000);
  assert.deepEqual(ws.json(), [{ type: 'ping' }]);
  ws.recv({ type: 'pong' });
  clock.tick(1000);
  assert.equal(ws.json().length, 2);
  clock.tick(499);
  assert.equal(c.state, 'open');
  clock.tick(1);
  assert.equal(c.state, 'reconnecting');
  assert.equal(ws.readyState, 3);
  assert.deepEqual(closes, [{ code: 4201, reason: 'heartbeat timeout', wasClean: false, willReconnect: true, delay: 10 }]);
  c.close();
});

test('a handshake that does not complete within connectTimeout is dropped and retried', async () => {
  const c = await client({ connectTimeout: 1000, backoff: { base: 10, cap: 10, jitter: 0 } });
  const closes = [];
  c.on('close', (e) => closes.push(e));
  clock.tick(999);
  assert.equal(c.state, 'connecting');
  clock.tick(1);
  assert.equal(FakeWebSocket.all[0].readyState, 3);
  assert.deepEqual(closes, [{ code: 1006, reason: 'connect timeout', wasClean: false, willReconnect: true, delay: 10 }]);
  clock.tick(10);
  await settle();
  assert.equal(FakeWebSocket.all.length, 2);
  c.close();
});

test('publish resolves once sent; rejects when not open; binary goes over the data plane', async () => {
  const c = await client();
  await assert.rejects(c.publish('md.a', 1), /not open/);
  await assert.rejects(c.publish('bad channel', 1), /invalid channel/);
  FakeWebSocket.last().open();
  assert.equal(await c.publish('md.a', { px: 1 }, { key: 'BTC' }), undefined);
  await c.publish('md.a', new Uint8Array([9, 8]));
  const ws = FakeWebSocket.last();
  assert.deepEqual(JSON.parse(ws.sent[0]), { type: 'message', channel: 'md.a', content: { px: 1 }, key: 'BTC' });
  assert.deepEqual([...new Uint8Array(ws.sent[1])], [1, 4, 109, 100, 46, 97, 9, 8]);
  assert.deepEqual([...new Uint8Array(encodeBinaryPublish('c', new Uint8Array([1, 2, 3]).subarray(1)))], [1, 1, 99, 2, 3]);
  c.close();
});

test('with acks: publish sends an id and settles on ack, error or close', async () => {
  const c = await client({ acks: true, ackTimeout: 1000 });
  FakeWebSocket.last().open();
  const ws = FakeWebSocket.last();
  const first = c.publish('md.a', 1);
  const second = c.publish('md.a', 2);
  const third = c.publish('md.a', 3);
  assert.deepEqual(ws.json().map((m) => m.id), ['p1', 'p2', 'p3']);
  ws.recv({ type: 'ack', id: 'p1', channel: 'md.a', seq: 12 });
  ws.recv({ type: 'error', id: 'p2', message: 'forbidden: md.a' });
  assert.deepEqual(await first, { channel: 'md.a', seq: 12 });
  await assert.rejects(second, /forbidden: md.a/);
  clock.tick(1000);
  await assert.rejects(third, /ack timeout/);
  const fourth = c.publish('md.a', 4);
  assert.equal(ws.json().at(-1).id, 'p4');
  ws.serverClose(1001);
  await assert.rejects(fourth, /connection closed \(1001\)/);
  c.close();
});

test('parseBinary refuses truncated input', () => {
  assert.equal(parseBinary(new Uint8Array([1]).buffer), null);
  assert.equal(parseBinary(new Uint8Array([1, 1, 97, 0, 0]).buffer), null);
  assert.equal(parseBinary(new Uint8Array([3, 0, 0, 0, 0, 0, 0, 0, 0, 0]).buffer), null);
  assert.deepEqual(parseBinary(binaryGap('g', 2, 3)), { type: 'gap', channel: 'g', from: 2, to: 3 });
});

test('close() stops for good and a throwing listener does not break the client', async () => {
  const c = await client();
  const reported = mock.method(console, 'error', () => {});
  let later = 0;
  c.on('open', () => {
    throw new Error('app bug');
  });
  const removed = () => {
    throw new Error('removed listener called');
  };
  c.on('open', () => later++);
  c.on('open', removed).off('open', removed);
  FakeWebSocket.last().open();
  reported.mock.restore();
  assert.equal(c.state, 'open');
  assert.equal(later, 1);
  assert.deepEqual(reported.mock.calls.map((call) => call.arguments[0].message), ['app bug']);
  c.close();
  assert.equal(FakeWebSocket.last().closedWith, 1000);
  assert.equal(c.state, 'closed');
  clock.tick(60_000);
  await settle();
  assert.equal(FakeWebSocket.all.length, 1);
});

function binaryBatch(channel, entries) {
  const enc = new TextEncoder();
  const parts = [new Uint8Array([3, channel.length]), enc.encode(channel)];
  for (const { seq, from, payload } of entries) {
    const f = enc.encode(from);
    const head = new Uint8Array(14 + f.length);
    const view = new DataView(head.buffer);
    view.setUint32(4, seq);
    view.setUint16(8, f.length);
    head.set(f, 10);
    view.setUint32(10 + f.length, payload.length);
    parts.push(head, new Uint8Array(payload));
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out.buffer;
}

test('batches (JSON and binary) come as one event, advance the position, drop replayed entries', async () => {
  const c = await client();
  const events = record(c);
  c.subscribe('room.1');
  FakeWebSocket.last().open();
  const ws = FakeWebSocket.last();
  ws.recv({ type: 'subscribed', channel: 'room.1', seq: 2, epoch: 'E' });
  ws.recv({ type: 'batch', channel: 'room.1', messages: [
    { content: { x: 1 }, seq: 2, from: 'a' },
    { content: 'y', seq: 3, from: 'b' },
  ] });
  ws.recv(binaryBatch('room.1', [{ seq: 4, from: 'a', payload: [9, 8] }]));
  ws.recv({ type: 'batch', channel: 'room.1', messages: [{ content: 0, seq: 4, from: 'a' }] });
  const batches = events.filter(([t]) => t === 'batch').map(([, d]) => d);
  assert.equal(batches.length, 2, 'a batch of already-seen entries emits nothing');
  assert.deepEqual(batches[0], { channel: 'room.1', binary: false, messages: [{ content: 'y', seq: 3, from: 'b' }] });
  const [entry] = batches[1].messages;
  assert.deepEqual([batches[1].binary, entry.seq, entry.from, [...new Uint8Array(entry.content)]], [true, 4, 'a', [9, 8]]);
  assert.deepEqual(c.position('room.1'), { seq: 4, epoch: 'E' });
  assert.equal(parseBinary(binaryBatch('r', [{ seq: 1, from: 'a', payload: [1] }]).slice(0, 12)), null);
  c.close();
});

test('presence: subscribe asks for it (again after a reconnect); list, join, leave, ask again', async () => {
  const c = await client({ backoff: { base: 10, cap: 10, jitter: 0 } });
  const events = record(c);
  c.subscribe('room.p', { presence: true });
  FakeWebSocket.last().open();
  const ws = FakeWebSocket.last();
  assert.deepEqual(ws.json(), [{ type: 'subscribe', channel: 'room.p', presence: true }]);
  const alice = { id: '0-1-1', sub: 'alice' };
  ws.recv({ type: 'subscribed', channel: 'room.p', seq: 0, epoch: 'E' });
  ws.recv({ type: 'presence', channel: 'room.p', count: 1, members: [alice] });
  ws.recv({ type: 'join', channel: 'room.p', member: { id: '1-2-1', sub: null } });
  ws.recv({ type: 'leave', channel: 'room.p', member: alice });
  c.presence('room.p');
  assert.deepEqual(ws.json().slice(-1), [{ type: 'presence', channel: 'room.p' }]);
  assert.deepEqual(events.filter(([t]) => ['presence', 'join', 'leave'].includes(t)), [
    ['presence', { channel: 'room.p', count: 1, members: [alice] }],
    ['join', { channel: 'room.p', member: { id: '1-2-1', sub: null } }],
    ['leave', { channel: 'room.p', member: alice }],
  ]);
  ws.serverClose(1006);
  clock.tick(10);
  await settle();
  FakeWebSocket.last().open();
  assert.deepEqual(FakeWebSocket.last().json(), [
    { type: 'subscribe', channel: 'room.p', since: 0, epoch: 'E', presence: true },
  ]);
  assert.throws(() => new RelayClient(URL, { WebSocket: FakeWebSocket }).presence('room.p'), /not open/);
  c.close();
});
test('snapshots, keyed messages and throttled subscriptions', async () => {
  const c = await client({ backoff: { base: 10, cap: 10, jitter: 0 } });
  const snapshots = [];
  const messages = [];
  const subscribed = [];
  c.on('snapshot', (e) => snapshots.push(e));
  c.on('message', (m) => messages.push(m));
  c.on('subscribed', (e) => subscribed.push([e.throttleMs, e.recovered]));
  assert.throws(() => c.subscribe('b.x', { throttleMs: 5 }), RangeError);
  c.subscribe('b.1', { throttleMs: 100, binary: true });
  FakeWebSocket.last().open();
  const ws = FakeWebSocket.last();
  assert.deepEqual(ws.json(), [{ type: 'subscribe', channel: 'b.1', throttle_ms: 100, binary: true }]);
  ws.recv({ type: 'subscribed', channel: 'b.1', seq: 4, epoch: 'E', throttle_ms: 100 });
  ws.recv({ type: 'snapshot', channel: 'b.1', seq: 4, epoch: 'E', entries: [{ key: 'a', content: 1, seq: 3 }] });
  ws.recv({ type: 'message', channel: 'b.1', content: null, from: 'x', seq: 5, key: 'a', delete: true });
  // Collected, asserted here: the client catches what a listener throws (an assert inside one
  // could never fail the test).
  assert.deepEqual(subscribed, [[100, null]]);
  assert.deepEqual(snapshots[0].entries, [{ key: 'a', content: 1, seq: 3, binary: false }]);
  assert.deepEqual([messages[0].key, messages[0].delete], ['a', true]);
  ws.serverClose(1006);
  clock.tick(10);
  await settle();
  const ws2 = FakeWebSocket.last();
  ws2.open();
  assert.deepEqual(ws2.json(), [
    { type: 'subscribe', channel: 'b.1', since: 5, epoch: 'E', throttle_ms: 100, binary: true },
  ]);
  c.close();
});

test('parseBinary reads a binary snapshot and refuses it truncated', () => {
  const enc = new TextEncoder();
  const parts = [
    [5, 3], enc.encode('b.1'), [0, 0, 0, 0, 0, 0, 0, 9], [1], enc.encode('E'), [0, 0, 0, 2],
    [0, 1], enc.encode('a'), [0, 0, 0, 0, 0, 0, 0, 7], [0, 0, 0, 7], enc.encode('{"x":1}'),
    [1, 0], [0, 0, 0, 0, 0, 0, 0, 9], [0, 0, 0, 2], [0xde, 0xad],
  ];
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  const snap = parseBinary(bytes.buffer);
  assert.equal(snap.type, 'snapshot');
  assert.deepEqual([snap.channel, snap.seq, snap.epoch], ['b.1', 9, 'E']);
  assert.deepEqual(snap.entries[0], { key: 'a', content: { x: 1 }, seq: 7, binary: false });
  assert.equal(snap.entries[1].key, null);
  assert.deepEqual([...new Uint8Array(snap.entries[1].content)], [0xde, 0xad]);
  for (let len = 0; len < bytes.length; len++) assert.equal(parseBinary(bytes.slice(0, len).buffer), null, `len ${len}`);
});

test('without a WebSocket constructor the client throws at once, saying what to pass', () => {
  const runtime = Object.getOwnPropertyDescriptor(globalThis, 'WebSocket');
  try {
    // Node 18-21 without a flag: there is no globalThis.WebSocket.
    Object.defineProperty(globalThis, 'WebSocket', { value: undefined, configurable: true, writable: true });
    assert.throws(() => new RelayClient('ws://127.0.0.1:1/'), {
      name: 'TypeError',
      message: 'no WebSocket in this runtime: pass options.WebSocket (Node < 22: the ws package)',
    });
    assert.throws(() => new RelayClient('ws://127.0.0.1:1/', { WebSocket: 42 }), TypeError);
  } finally {
    if (runtime) Object.defineProperty(globalThis, 'WebSocket', runtime);
    else delete globalThis.WebSocket;
  }
});
