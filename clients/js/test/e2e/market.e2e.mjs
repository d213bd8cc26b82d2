// Market primitives of the browser client in headless Chromium against the real relay binary
// (issue 16): a keyed snapshot then live messages with no gap or duplicate at the seam, the
// same snapshot as a binary frame, and a throttled subscription that ends on the latest value.
//
// Run: WSRELAY_BIN=target/debug/wsrelay node test/e2e/market.e2e.mjs (tests/browser.rs does).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startRelay, launchBrowser, clientPage, events, until } from './harness.mjs';

const FAST = { backoff: { base: 50, cap: 200, jitter: 50 }, retries: 100 };

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** Opens client `name` on `url` and waits until it is open. */
async function open(page, name, url) {
  await page.evaluate(([n, u, opts]) => window.log(n, new window.wsrelay.RelayClient(u, opts)), [name, url, FAST]);
  await until(page, (n) => window.clients[n].state === 'open', name);
}

/** Subscribes client `name` to `channel` with `options` and waits for `subscribed`. */
async function subscribe(page, name, channel, options = {}) {
  await page.evaluate(([n, ch, o]) => window.clients[n].subscribe(ch, o), [name, channel, options]);
  await until(page, (n) => window.events[n].some(([t]) => t === 'subscribed'), name);
}

/** Publishes `[key, content]` pairs from `name` on `channel`, in one burst. */
function publishKeyed(page, name, channel, pairs) {
  return page.evaluate(
    ([n, ch, ps]) => {
      for (const [key, content] of ps) window.clients[n].publish(ch, content, { key });
    },
    [name, channel, pairs],
  );
}

const messages = (page, name, count) =>
  until(page, ([n, k]) => window.events[n].filter(([t]) => t === 'message').length >= k, [name, count]);

test('a keyed snapshot, then live messages from seq+1 (JSON and binary snapshots)', async () => {
  const relay = await startRelay(['--snapshot-for', 'board.*']);
  const page = await clientPage(browser, relay);
  try {
    await open(page, 'pub', relay.url);
    await open(page, 'probe', relay.url);
    await subscribe(page, 'probe', 'board.1');
    await publishKeyed(page, 'pub', 'board.1', [['a', 1], ['b', 2], ['a', 3]]);
    await messages(page, 'probe', 3); // numbered: 1, 2, 3
    await open(page, 'late', relay.url);
    await subscribe(page, 'late', 'board.1');
    await open(page, 'lateBin', relay.url);
    await subscribe(page, 'lateBin', 'board.1', { binary: true });
    const expected = {
      channel: 'board.1',
      seq: 3,
      entries: [
        { key: 'b', content: 2, seq: 2, binary: false },
        { key: 'a', content: 3, seq: 3, binary: false },
      ],
    };
    for (const name of ['late', 'lateBin']) {
      await until(page, (n) => window.events[n].some(([t]) => t === 'snapshot'), name);
      const [snapshot] = await events(page, name, 'snapshot');
      const [subscribed] = await events(page, name, 'subscribed');
      assert.equal(subscribed.seq, 3, `${name}: subscribed at the snapshot's seq`);
      assert.deepEqual({ channel: snapshot.channel, seq: snapshot.seq, entries: snapshot.entries }, expected, name);
      assert.equal(snapshot.epoch, subscribed.epoch, `${name}: one numbering`);
    }
    await publishKeyed(page, 'pub', 'board.1', [['a', 4]]);
    for (const name of ['late', 'lateBin']) {
      await messages(page, name, 1);
      const live = (await events(page, name, 'message')).map((m) => [m.seq, m.content, m.key]);
      assert.deepEqual(live, [[4, 4, 'a']], `${name}: live from seq 4, no duplicate of 1-3`);
    }
  } finally {
    await page.close();
    await relay.kill();
  }
});

test('a throttled subscription gets fewer messages than published and ends on the latest value', async () => {
  const relay = await startRelay();
  const page = await clientPage(browser, relay);
  try {
    await open(page, 'pub', relay.url);
    await open(page, 'slow', relay.url);
    await subscribe(page, 'slow', 'px.1', { throttleMs: 100 });
    await open(page, 'all', relay.url);
    await subscribe(page, 'all', 'px.1');
    const [subscribed] = await events(page, 'slow', 'subscribed');
    assert.equal(subscribed.throttleMs, 100, 'the relay echoes the interval');
    const burst = Array.from({ length: 200 }, (_, i) => ['BTC', i]);
    await publishKeyed(page, 'pub', 'px.1', burst);
    await messages(page, 'all', 200); // every publish numbered and delivered unthrottled
    await until(
      page,
      (n) => window.events[n].filter(([t]) => t === 'message').some(([, m]) => m.content === 199),
      'slow',
    );
    const got = await events(page, 'slow', 'message');
    assert.ok(got.length < 200, `throttled: ${got.length} deliveries for 200 publishes in one burst`);
    assert.deepEqual(got.at(-1).content, 199, 'the last delivery is the latest value');
    const contents = got.map((m) => m.content);
    assert.deepEqual(contents, [...contents].sort((x, y) => x - y), 'never an older value after a newer one');
  } finally {
    await page.close();
    await relay.kill();
  }
});
