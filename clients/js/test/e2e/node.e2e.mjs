// The client in Node (no browser) against the real relay binary, once per WebSocket
// implementation: the `ws` package passed as the `WebSocket` option (how Node 18-21 use the
// client), and the runtime's own `globalThis.WebSocket` where there is one (Node >= 22, or
// Node 20.10+ started with --experimental-websocket; tests/browser.rs starts it so, and sets
// WSRELAY_EXPECT_RUNTIME_WEBSOCKET=1 so that a missing one fails instead of going untested).
// Each: connect, subscribe, JSON and binary publish with acks, exact deliveries; a cut
// connection recovers every missed message with since/epoch; close.
//
// Run: WSRELAY_BIN=target/debug/wsrelay node --experimental-websocket test/e2e/node.e2e.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { WebSocket as WsPackage } from 'ws';

import { RelayClient } from '../../dist/client.js';
import { startRelay, startProxy } from './harness.mjs';

/** Fast retries so the test does not wait on the default backoff. */
const FAST = { backoff: { base: 50, cap: 200, jitter: 50 }, retries: 100 };
const TYPES = ['open', 'close', 'state', 'message', 'gap', 'subscribed', 'error'];

const implementations = [['the ws package (WebSocket option)', WsPackage]];
if (globalThis.WebSocket) implementations.push([`Node ${process.version}'s own WebSocket`, globalThis.WebSocket]);

test('this runtime has its own WebSocket when tests/browser.rs says it must', () => {
  if (process.env.WSRELAY_EXPECT_RUNTIME_WEBSOCKET === '1') {
    assert.equal(typeof globalThis.WebSocket, 'function', `Node ${process.version}: no globalThis.WebSocket`);
  }
  console.log(`implementations tested: ${implementations.map(([name]) => name).join('; ')}`);
});

/** Every event of `client`, in order, as `[type, detail]`. */
function record(client) {
  const log = [];
  for (const type of TYPES) client.on(type, (detail) => log.push([type, detail]));
  return log;
}
const of = (log, type) => log.filter(([t]) => t === type).map(([, d]) => d);
const bytes = (content) => (content instanceof ArrayBuffer ? [...new Uint8Array(content)] : content);

/** Polls `ready()` every 10 ms; fails after 10 s naming `what`. */
async function waitFor(ready, what) {
  const deadline = Date.now() + 10000;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

for (const [name, WebSocket] of implementations) {
  test(`Node with ${name}: publish, acks, binary, and recovery after a cut`, async () => {
    const relay = await startRelay(['--history-size', '100']);
    const proxy = await startProxy(relay.port);
    const sub = new RelayClient(proxy.url, { ...FAST, WebSocket });
    const pub = new RelayClient(relay.url, { ...FAST, WebSocket, acks: true });
    const subLog = record(sub);
    const pubLog = record(pub);
    try {
      const channel = 'node.e2e';
      sub.subscribe(channel);
      await waitFor(() => of(subLog, 'subscribed').length === 1 && pub.state === 'open' && pub.id !== null, 'open');
      const acks = [];
      acks.push(await pub.publish(channel, { n: 1 }));
      acks.push(await pub.publish(channel, new Uint8Array([1, 2, 250])));
      acks.push(await pub.publish(channel, 'three'));
      assert.deepEqual(acks, [{ channel, seq: 1 }, undefined, { channel, seq: 3 }]);
      await waitFor(() => of(subLog, 'message').length === 3, '3 messages');
      const from = pub.id;
      assert.deepEqual(
        of(subLog, 'message').map((m) => ({ ...m, content: bytes(m.content) })),
        [
          { channel, content: { n: 1 }, seq: 1, from, binary: false },
          { channel, content: [1, 2, 250], seq: 2, from: null, binary: true },
          { channel, content: 'three', seq: 3, from, binary: false },
        ],
      );
      const [first] = of(subLog, 'subscribed');
      assert.deepEqual([first.seq, first.recovered], [0, null]);

      // Cut the subscriber off and keep it off while 4..6 are published.
      proxy.refuse(true);
      proxy.dropAll();
      await waitFor(() => sub.state === 'reconnecting', 'reconnecting');
      for (const n of [4, 5, 6]) assert.deepEqual(await pub.publish(channel, n), { channel, seq: n });
      proxy.refuse(false);
      await waitFor(() => of(subLog, 'message').length === 6, '6 messages');
      assert.deepEqual(await pub.publish(channel, 7), { channel, seq: 7 });
      await waitFor(() => of(subLog, 'message').length === 7, '7 messages');
      assert.deepEqual(
        of(subLog, 'message').map((m) => [m.seq, bytes(m.content)]),
        [[1, { n: 1 }], [2, [1, 2, 250]], [3, 'three'], [4, 4], [5, 5], [6, 6], [7, 7]],
      );
      assert.deepEqual(of(subLog, 'subscribed').at(-1), { channel, seq: 6, epoch: first.epoch, recovered: true });
      assert.deepEqual(of(subLog, 'gap'), []);
      const closes = of(subLog, 'close');
      assert.equal(closes[0].code, 1006);
      assert.ok(closes.every((c) => c.willReconnect), JSON.stringify(closes));

      sub.close();
      pub.close();
      assert.deepEqual([sub.state, pub.state], ['closed', 'closed']);
      assert.deepEqual([...of(subLog, 'error'), ...of(pubLog, 'error')], []);
    } finally {
      sub.close();
      pub.close();
      proxy.close();
      await relay.kill();
    }
  });
}
