// The browser client in headless Chromium against two real relays in cluster mode (`--nats`,
// one nats-server with JetStream): the relay the page is connected to is SIGKILLed while a
// publisher keeps publishing through the other relay, then restarted on the same port. The
// stream kept the channel's history and epoch, so the page resubscribes with its last
// seq/epoch, is answered recovered:true and receives every message exactly once, with no gap.
// (A single relay restarted without --nats cannot do this: it starts a new epoch and answers
// recovered:false; client.e2e.mjs tests that case.)
//
// Run: WSRELAY_BIN=target/debug/wsrelay node test/e2e/cluster.e2e.mjs (tests/browser.rs does);
// NATS_SERVER_BIN overrides the nats-server binary (default /usr/sbin/nats-server).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startRelay, startNats, launchBrowser, clientPage, events, until } from './harness.mjs';

/** Fast retries; enough of them to outlast a relay restart with room to spare. */
const FAST = { backoff: { base: 50, cap: 200, jitter: 50 }, retries: 1000 };
/** Messages published in all; some before the kill, some while relay A is down, the rest after. */
const TOTAL = 150;
/** Acked publishes the test waits for while A is down before restarting it. */
const WHILE_DOWN = 40;

let browser;
let nats;
before(async () => {
  nats = await startNats();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await nats?.kill();
});

/** Flags of a relay in the cluster: history kept in the stream, R1 on the one server. */
const clusterArgs = (name) => ['--nats', nats.url, '--node-name', name, '--history-size', '1000'];

/** How many publishes the page's publisher has had acked so far. */
const acked = (page) => page.evaluate(() => window.acks.length);

test('relay killed and restarted in cluster mode: the page recovers with every seq once, no gap', async () => {
  const a = await startRelay(clusterArgs('a'));
  const b = await startRelay(clusterArgs('b'));
  let restarted = null;
  // The module comes from B, which stays up: the page never reloads it.
  const page = await clientPage(browser, b);
  try {
    const channel = 'e2e.cluster';
    await page.evaluate(
      ([ua, ub, ch, opts]) => {
        window.log('sub', new window.wsrelay.RelayClient(ua, opts)).subscribe(ch);
        window.log('pub', new window.wsrelay.RelayClient(ub, { ...opts, acks: true }));
      },
      [a.url, b.url, channel, FAST],
    );
    await until(page, () => window.events.sub.some(([t]) => t === 'subscribed') && window.clients.pub.state === 'open');

    // One publisher on B, paced by its acks (each stored by JetStream), never stopping.
    await page.evaluate(
      ([ch, total]) => {
        window.acks = [];
        window.publishing = (async () => {
          for (let n = 1; n <= total; n++) {
            const ack = await window.clients.pub.publish(ch, { n });
            window.acks.push([n, ack.seq]);
            await new Promise((r) => setTimeout(r, 5));
          }
        })();
      },
      [channel, TOTAL],
    );
    await until(page, () => window.events.sub.filter(([t]) => t === 'message').length >= 20);
    const before = await page.evaluate((ch) => window.clients.sub.position(ch), channel);
    assert.ok(before.epoch, `an epoch before the kill: ${JSON.stringify(before)}`);

    await a.kill();
    const atKill = await acked(page);
    await until(page, () => window.clients.sub.state === 'reconnecting');
    await until(page, (k) => window.acks.length >= k, atKill + WHILE_DOWN);
    const atRestart = await acked(page);
    // The page is still waiting for A: nothing it missed meanwhile has arrived yet.
    assert.equal(await page.evaluate(() => window.clients.sub.state), 'reconnecting');
    restarted = await startRelay(clusterArgs('a'), a.port);
    assert.equal(restarted.port, a.port);

    await page.evaluate(() => window.publishing);
    await until(page, (total) => window.events.sub.filter(([t]) => t === 'message').length >= total, TOTAL);
    // Whatever else might still arrive must have arrived: one more message after the last.
    await page.evaluate(([ch]) => window.clients.pub.publish(ch, { n: 'last' }), [channel]);
    await until(page, (total) => window.events.sub.filter(([t]) => t === 'message').length >= total + 1, TOTAL);

    const acks = await page.evaluate(() => window.acks);
    assert.deepEqual(
      acks.map(([n, seq]) => seq - n),
      acks.map(() => acks[0][1] - 1),
      'one publisher: consecutive seqs',
    );
    const first = acks[0][1];
    const messages = await events(page, 'sub', 'message');
    assert.deepEqual(
      messages.map((m) => [m.seq, m.content]),
      [...acks.map(([n, seq]) => [seq, { n }]), [first + TOTAL, { n: 'last' }]],
      'every seq exactly once, in order, with its content',
    );
    assert.deepEqual(await events(page, 'sub', 'gap'), []);
    assert.ok(atRestart - atKill >= WHILE_DOWN, `published while A was down: ${atRestart - atKill}`);

    // The empty channel had no epoch; the first publish minted one (announced with seq 0,
    // docs/CLUSTER.md); the resubscribe on the restarted A recovered in that epoch.
    const subscribed = await events(page, 'sub', 'subscribed');
    const resumedAt = subscribed[2]?.seq;
    assert.deepEqual(subscribed, [
      { channel, seq: 0, epoch: '', recovered: null },
      { channel, seq: 0, epoch: before.epoch, recovered: false },
      { channel, seq: resumedAt, epoch: before.epoch, recovered: true },
    ]);
    assert.equal(first, 1);
    assert.ok(resumedAt > before.seq && resumedAt <= TOTAL, `resumed at ${resumedAt} after ${before.seq}`);
    const closes = await events(page, 'sub', 'close');
    assert.ok(closes.length >= 1, 'the kill closed the page connection');
    assert.ok(
      closes.every((c) => c.willReconnect && !c.wasClean),
      `reconnecting closes only: ${JSON.stringify(closes)}`,
    );
    const states = (await events(page, 'sub', 'state')).map((s) => s.state);
    assert.deepEqual([states[0], states[1], states[states.length - 1]], ['open', 'reconnecting', 'open']);
    assert.deepEqual(await events(page, 'sub', 'error'), []);
  } finally {
    await page.close();
    await restarted?.kill();
    await b.kill();
    await a.kill();
  }
});
