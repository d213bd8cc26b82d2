// The browser client in headless Chromium against the real relay binary: connect, subscribe
// and receive; publish acks as the relay handles them today (id ignored); binary messages; a
// cut connection recovers with no loss (history); a silent connection is caught by the
// heartbeat and recovers; a relay restart is reported (new epoch, recovered:false) and new
// messages flow; a gap notice from the drop policy reaches the page; an expiring token closes
// with 4001 and the page stops; the examples/web pages work.
//
// Run: WSRELAY_BIN=target/debug/wsrelay node test/e2e/client.e2e.mjs (tests/browser.rs does).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startRelay, startProxy, stats, launchBrowser, clientPage, events, until, jwt, staticServer } from './harness.mjs';

/** Fast retries so tests do not wait on the default 250 ms..30 s backoff. */
const FAST = { backoff: { base: 50, cap: 200, jitter: 50 }, retries: 100 };

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** Opens client `name` on `url` in the page, subscribed to `channels`, and waits for every reply. */
async function subscriber(page, name, url, channels, options = {}) {
  await page.evaluate(
    ([n, u, chs, opts]) => {
      const c = window.log(n, new window.wsrelay.RelayClient(u, opts));
      chs.forEach((ch) => c.subscribe(ch));
    },
    [name, url, channels, { ...FAST, ...options }],
  );
  await until(
    page,
    ([n, count]) => window.events[n].filter(([t]) => t === 'subscribed').length >= count,
    [name, channels.length],
  );
}

/** Opens a publisher client and waits until it is open. */
async function publisher(page, name, url) {
  await page.evaluate(([n, u, opts]) => window.log(n, new window.wsrelay.RelayClient(u, opts)), [name, url, FAST]);
  await until(page, (n) => window.clients[n].state === 'open' && window.clients[n].id !== null, name);
}

/** Publishes each of `contents` from client `name` on `channel`, in order. */
function publishAll(page, name, channel, contents) {
  return page.evaluate(
    async ([n, ch, cs]) => {
      for (const content of cs) await window.clients[n].publish(ch, content);
    },
    [name, channel, contents],
  );
}

/** Waits until client `name` has received `count` messages. */
function received(page, name, count) {
  return until(page, ([n, k]) => window.events[n].filter(([t]) => t === 'message').length >= k, [name, count]);
}

const seqs = async (page, name) => (await events(page, name, 'message')).map((m) => m.seq);

test('connect, subscribe and receive: exact messages, from, seq; states', async () => {
  const relay = await startRelay();
  const page = await clientPage(browser, relay);
  try {
    await subscriber(page, 'sub', relay.url, ['e2e.basic']);
    await publisher(page, 'pub', relay.url);
    await publishAll(page, 'pub', 'e2e.basic', [{ n: 1 }, 'two', [3]]);
    await received(page, 'sub', 3);
    const from = await page.evaluate(() => window.clients.pub.id);
    assert.deepEqual(await events(page, 'sub', 'message'), [
      { channel: 'e2e.basic', content: { n: 1 }, seq: 1, from, binary: false },
      { channel: 'e2e.basic', content: 'two', seq: 2, from, binary: false },
      { channel: 'e2e.basic', content: [3], seq: 3, from, binary: false },
    ]);
    const [subscribed] = await events(page, 'sub', 'subscribed');
    assert.equal(subscribed.seq, 0);
    assert.equal(subscribed.recovered, null);
    assert.deepEqual((await events(page, 'sub', 'state')).map((s) => s.state), ['open']);
    assert.deepEqual(await events(page, 'sub', 'open'), [{ url: relay.url, resubscribed: 1 }]);
  } finally {
    await page.close();
    await relay.kill();
  }
});

test('acks: the publish promise resolves with the seq the subscribers see', async () => {
  const relay = await startRelay();
  const page = await clientPage(browser, relay);
  try {
    await subscriber(page, 'sub', relay.url, ['e2e.acks']);
    await page.evaluate((u) => window.log('pub', new window.wsrelay.RelayClient(u, { acks: true, ackTimeout: 10000 })), relay.url);
    await until(page, () => window.clients.pub.state === 'open');
    const outcome = await page.evaluate(() =>
      window.clients.pub.publish('e2e.acks', { n: 1 }).then(
        (ack) => ['resolved', ack],
        (error) => ['rejected', error.message],
      ),
    );
    assert.deepEqual(outcome, ['resolved', { channel: 'e2e.acks', seq: 1 }]);
    await received(page, 'sub', 1);
    const [message] = await events(page, 'sub', 'message');
    assert.deepEqual([message.seq, message.content], [1, { n: 1 }]);
    assert.deepEqual(await events(page, 'pub', 'error'), []);
  } finally {
    await page.close();
    await relay.kill();
  }
});

test('binary messages: ArrayBuffer and typed array in, exact bytes and seq out', async () => {
  const relay = await startRelay();
  const page = await clientPage(browser, relay);
  try {
    await subscriber(page, 'sub', relay.url, ['e2e.bin']);
    await publisher(page, 'pub', relay.url);
    await page.evaluate(async () => {
      const pub = window.clients.pub;
      await pub.publish('e2e.bin', new Uint8Array([1, 2, 3, 250]));
      await pub.publish('e2e.bin', new Float32Array([1.5]).buffer);
      await pub.publish('e2e.bin', { json: 'between' });
      await pub.publish('e2e.bin', new ArrayBuffer(0));
    });
    await received(page, 'sub', 4);
    const from = await page.evaluate(() => window.clients.pub.id);
    assert.deepEqual(await events(page, 'sub', 'message'), [
      { channel: 'e2e.bin', content: { bytes: [1, 2, 3, 250] }, seq: 1, from: null, binary: true },
      { channel: 'e2e.bin', content: { bytes: [0, 0, 192, 63] }, seq: 2, from: null, binary: true },
      { channel: 'e2e.bin', content: { json: 'between' }, seq: 3, from, binary: false },
      { channel: 'e2e.bin', content: { bytes: [] }, seq: 4, from: null, binary: true },
    ]);
  } finally {
    await page.close();
    await relay.kill();
  }
});

test('a cut connection resubscribes with since/epoch and recovers every missed message', async () => {
  const relay = await startRelay(['--history-size', '100']);
  const proxy = await startProxy(relay.port);
  const page = await clientPage(browser, relay);
  try {
    await subscriber(page, 'sub', proxy.url, ['e2e.recover']);
    await publisher(page, 'pub', relay.url);
    await publishAll(page, 'pub', 'e2e.recover', [1, 2, 3]);
    await received(page, 'sub', 3);
    const epoch = (await events(page, 'sub', 'subscribed'))[0].epoch;
    // Cut the subscriber off and keep it off while 4..8 are published.
    proxy.refuse(true);
    proxy.dropAll();
    await until(page, () => window.clients.sub.state === 'reconnecting');
    await publishAll(page, 'pub', 'e2e.recover', [4, 5, 6, 7, 8]);
    proxy.refuse(false);
    await received(page, 'sub', 8);
    await publishAll(page, 'pub', 'e2e.recover', [9]);
    await received(page, 'sub', 9);
    assert.deepEqual(await seqs(page, 'sub'), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual((await events(page, 'sub', 'message')).map((m) => m.content), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const subscribed = await events(page, 'sub', 'subscribed');
    assert.deepEqual(subscribed.at(-1), { channel: 'e2e.recover', seq: 8, epoch, recovered: true });
    assert.deepEqual(await events(page, 'sub', 'gap'), []);
    const closes = await events(page, 'sub', 'close');
    assert.equal(closes[0].code, 1006);
    assert.ok(closes.every((c) => c.willReconnect), JSON.stringify(closes));
  } finally {
    await page.close();
    proxy.close();
    await relay.kill();
  }
});

test('a silent connection is detected by the heartbeat, replaced, and recovers with since', async () => {
  const relay = await startRelay(['--history-size', '100']);
  const proxy = await startProxy(relay.port);
  const page = await clientPage(browser, relay);
  try {
    await subscriber(page, 'sub', proxy.url, ['e2e.heartbeat'], { heartbeat: { interval: 300, timeout: 300 } });
    await publisher(page, 'pub', relay.url);
    await publishAll(page, 'pub', 'e2e.heartbeat', ['h1']);
    await received(page, 'sub', 1);
    // The path goes dead: nothing arrives, nothing is closed; the relay keeps publishing.
    proxy.blackholeAll();
    await publishAll(page, 'pub', 'e2e.heartbeat', ['h2', 'h3']);
    await until(page, () => window.events.sub.some(([t]) => t === 'close'));
    await received(page, 'sub', 3);
    const [close] = await events(page, 'sub', 'close');
    assert.deepEqual([close.code, close.reason, close.wasClean, close.willReconnect], [4201, 'heartbeat timeout', false, true]);
    assert.deepEqual((await events(page, 'sub', 'message')).map((m) => [m.seq, m.content]), [[1, 'h1'], [2, 'h2'], [3, 'h3']]);
    const subscribed = await events(page, 'sub', 'subscribed');
    assert.deepEqual(subscribed.map((s) => [s.seq, s.recovered]), [[0, null], [3, true]]);
  } finally {
    await page.close();
    proxy.close();
    await relay.kill();
  }
});

test('relay killed and restarted: recovered:false with a new epoch, then the new numbering flows', async () => {
  let relay = await startRelay(['--history-size', '100']);
  const page = await clientPage(browser, relay);
  try {
    await subscriber(page, 'sub', relay.url, ['e2e.restart']);
    await publisher(page, 'pub', relay.url);
    await publishAll(page, 'pub', 'e2e.restart', ['a1', 'a2', 'a3']);
    await received(page, 'sub', 3);
    const [first] = await events(page, 'sub', 'subscribed');
    await relay.kill();
    await until(page, () => window.clients.sub.state === 'reconnecting' && window.clients.pub.state === 'reconnecting');
    relay = await startRelay(['--history-size', '100'], relay.port);
    // Both clients come back by themselves; the subscriber resubscribes with since 3.
    await until(page, () => window.events.sub.filter(([t]) => t === 'subscribed').length === 2);
    await until(page, () => window.clients.pub.state === 'open');
    const [, again] = await events(page, 'sub', 'subscribed');
    assert.equal(again.recovered, false);
    assert.equal(again.seq, 0);
    assert.notEqual(again.epoch, first.epoch);
    assert.deepEqual(await page.evaluate(() => window.clients.sub.position('e2e.restart')), { seq: 0, epoch: again.epoch });
    await publishAll(page, 'pub', 'e2e.restart', ['b1', 'b2']);
    await received(page, 'sub', 5);
    const messages = await events(page, 'sub', 'message');
    assert.deepEqual(messages.map((m) => [m.seq, m.content]), [[1, 'a1'], [2, 'a2'], [3, 'a3'], [1, 'b1'], [2, 'b2']]);
    assert.deepEqual(await events(page, 'sub', 'gap'), []);
    const states = (await events(page, 'sub', 'state')).map((s) => s.state);
    assert.deepEqual([states[0], states[1], states.at(-1)], ['open', 'reconnecting', 'open']);
  } finally {
    await page.close();
    await relay.kill();
  }
});

test('a gap notice from the drop policy reaches the page; seqs and gaps cover the stream exactly', async () => {
  const relay = await startRelay(['--slow-consumer', 'drop', '--max-queued-bytes', '65536', '--max-message-size', '16384', '--metrics-interval', '100']);
  const proxy = await startProxy(relay.port);
  const page = await clientPage(browser, relay);
  try {
    await subscriber(page, 'sub', proxy.url, ['e2e.gap'], { heartbeat: { interval: 0 } });
    await publisher(page, 'pub', relay.url);
    proxy.pauseDownstream();
    // Publish 1 KiB messages until the relay reports drops for the stalled subscriber
    // (its socket buffers fill first); bounded at 64 MiB.
    let published = 0;
    for (let batch = 0; ; batch++) {
      assert.ok(batch < 64, 'no slow-consumer drop after 64 MiB');
      await page.evaluate(async () => {
        const pad = 'x'.repeat(1000);
        for (let i = 0; i < 1024; i++) await window.clients.pub.publish('e2e.gap', pad);
      });
      published += 1024;
      const before = published;
      const drops = await waitForStats(relay, (s) => s.counters.wsrelay_messages_published_total.json >= before);
      if (drops.counters.wsrelay_queue_drops_total.slow_consumer_drop > 0) break;
    }
    proxy.resumeDownstream();
    await publishAll(page, 'pub', 'e2e.gap', ['last']);
    const total = published + 1;
    await until(page, (n) => window.events.sub.some(([t, m]) => t === 'message' && m.seq === n), total);
    const seen = await page.evaluate(() =>
      window.events.sub.filter(([t]) => t === 'message' || t === 'gap').map(([t, d]) => (t === 'gap' ? [d.from, d.to] : [d.seq, d.seq])),
    );
    const gaps = await events(page, 'sub', 'gap');
    assert.ok(gaps.length >= 1, 'at least one gap notice');
    assert.ok(gaps.every((g) => g.channel === 'e2e.gap' && g.from <= g.to));
    // Messages and gap ranges tile 1..total: in order, no overlap, no hole.
    let next = 1;
    for (const [from, to] of seen) {
      assert.equal(from, next, `range [${from}, ${to}] after ${next - 1}`);
      next = to + 1;
    }
    assert.equal(next, total + 1);
    const last = (await events(page, 'sub', 'message')).at(-1);
    assert.deepEqual([last.seq, last.content], [total, 'last']);
  } finally {
    await page.close();
    proxy.close();
    await relay.kill();
  }
});

/** Polls /stats until `ready(stats)` holds (10 s, then fails); returns that document. */
async function waitForStats(relay, ready) {
  for (let i = 0; i < 500; i++) {
    const s = await stats(relay);
    if (ready(s)) return s;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('stats never reached the expected state');
}

test('an expiring token closes with 4001 and the page stops reconnecting', async () => {
  const secret = 'e2e-secret-0123456789abcdef-0123456789';
  const relay = await startRelay(['--auth-hs256-secret', secret]);
  const page = await clientPage(browser, relay);
  let minted = 0;
  try {
    await page.exposeFunction('mintToken', () => {
      minted += 1;
      const exp = Math.floor(Date.now() / 1000) + 2;
      return jwt({ sub: 'alice', exp, channels: { subscribe: ['e2e.*'], publish: ['e2e.*'] } }, secret);
    });
    await page.evaluate((u) => {
      const c = window.log('sub', new window.wsrelay.RelayClient(u, {
        backoff: { base: 50, cap: 50, jitter: 0 },
        token: () => window.mintToken(),
      }));
      c.subscribe('e2e.auth');
    }, relay.url);
    await until(page, () => window.clients.sub.state === 'closed');
    assert.deepEqual(await events(page, 'sub', 'authenticated'), [{ sub: 'alice' }]);
    assert.equal((await events(page, 'sub', 'subscribed')).length, 1);
    assert.deepEqual(await events(page, 'sub', 'close'), [
      { code: 4001, reason: 'token expired', wasClean: true, willReconnect: false, delay: null },
    ]);
    assert.deepEqual((await events(page, 'sub', 'state')).map((s) => s.state), ['open', 'closed']);
    // Ten backoff periods later: still one connection, one token.
    await page.waitForTimeout(500);
    assert.equal(minted, 1);
    assert.equal((await stats(relay)).counters.wsrelay_handshakes_completed_total, 1);
    assert.equal(await page.evaluate(() => window.clients.sub.state), 'closed');
  } finally {
    await page.close();
    await relay.kill();
  }
});

test('room ticks and presence: batches with every message, members, joins and leaves', async () => {
  const relay = await startRelay(['--tick-for', 'room.*=20', '--presence-for', 'room.*']);
  const page = await clientPage(browser, relay);
  try {
    await page.evaluate(([u, opts]) => {
      const c = window.log('watcher', new window.wsrelay.RelayClient(u, opts));
      c.subscribe('room.e2e', { presence: true });
    }, [relay.url, FAST]);
    await until(page, () => window.events.watcher.some(([t]) => t === 'presence'));
    const watcherId = await page.evaluate(() => window.clients.watcher.id);
    const [list] = await events(page, 'watcher', 'presence');
    assert.deepEqual(list, { channel: 'room.e2e', count: 1, members: [{ id: watcherId, sub: null }] });

    await subscriber(page, 'player', relay.url, ['room.e2e']);
    const playerId = await page.evaluate(() => window.clients.player.id);
    await until(page, () => window.events.watcher.some(([t]) => t === 'join'));
    assert.deepEqual(await events(page, 'watcher', 'join'), [{ channel: 'room.e2e', member: { id: playerId, sub: null } }]);

    await publishAll(page, 'player', 'room.e2e', [{ x: 1 }, { x: 2 }, { x: 3 }]);
    const batched = (n) => window.events[n].filter(([t]) => t === 'batch').flatMap(([, b]) => b.messages).length >= 3;
    await until(page, batched, 'watcher');
    const batches = await events(page, 'watcher', 'batch');
    assert.deepEqual(
      batches.flatMap((b) => b.messages),
      [1, 2, 3].map((x) => ({ content: { x }, seq: x, from: playerId })),
    );
    assert.ok(batches.every((b) => b.channel === 'room.e2e' && b.binary === false));
    // The player gets its own messages in the room's batches too.
    await until(page, batched, 'player');

    await page.evaluate(() => window.clients.player.close());
    await until(page, () => window.events.watcher.some(([t]) => t === 'leave'));
    assert.deepEqual(await events(page, 'watcher', 'leave'), [{ channel: 'room.e2e', member: { id: playerId, sub: null } }]);
  } finally {
    await page.close();
    await relay.kill();
  }
});

test('examples/web: the ticker board shows its demo feed; the room shows another player', async () => {
  const relay = await startRelay(['--slow-consumer-for', 'md.*=conflate']);
  const origin = await staticServer(new URL('../../../../examples/web/', import.meta.url).pathname);
  const ticker = await browser.context.newPage();
  const [room1, room2] = [await browser.context.newPage(), await browser.context.newPage()];
  try {
    await ticker.goto(`${origin}/ticker.html?relay=127.0.0.1:${relay.port}`);
    await until(ticker, () => document.getElementById('state').textContent === 'open');
    await ticker.check('#feed');
    // Some tile shows a price and a seq once the feed runs (the board subscribes to all 24).
    await until(ticker, () => [...document.querySelectorAll('.meta')].some((m) => /seq [1-9]/.test(m.textContent)));
    const tiles = await ticker.evaluate(() => document.querySelectorAll('.tile').length);
    assert.equal(tiles, 24);
    await ticker.uncheck('#feed');

    for (const room of [room1, room2]) {
      await room.goto(`${origin}/room.html?relay=127.0.0.1:${relay.port}&room=e2e`);
      await until(room, () => document.getElementById('state').textContent === 'open');
    }
    await room1.mouse.move(100, 150);
    await room1.mouse.move(120, 160);
    await until(room2, () => document.getElementById('info').textContent.startsWith('1 other player(s)'));
  } finally {
    for (const page of [ticker, room1, room2]) await page.close();
    await relay.kill();
  }
});
