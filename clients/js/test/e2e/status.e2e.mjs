// The live status page (GET /status) in headless Chromium against the real relay under a
// small, bounded load: every figure on the page is the /stats document it rendered, formatted;
// once the load stops, the page shows exactly what the test itself reads from /stats (within
// one refresh). Every data-path exists in /stats (a misspelt one would render "–" on both
// sides). Saves a screenshot (printed as `screenshot: PATH`).
//
// Run: WSRELAY_BIN=target/debug/wsrelay node test/e2e/status.e2e.mjs (tests/browser.rs does;
// WSRELAY_VERSION, when set, is the version the relay must report, else Cargo.toml's).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import os from 'node:os';
import path from 'node:path';

import { startRelay, stats, launchBrowser, clientPage, until } from './harness.mjs';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/**
 * A JetStream nats-server on a random loopback port with a fresh store (NATS_SERVER_BIN, else
 * /usr/sbin/nats-server, as tests/cluster.rs); `null` only when it is missing and
 * WSRELAY_SKIP_NATS=1. `kill()` SIGKILLs it and removes the store.
 */
function startNats() {
  const bin = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';
  if (!existsSync(bin)) {
    if (process.env.WSRELAY_SKIP_NATS === '1') return null;
    throw new Error(`${bin} is missing (apt-get install nats-server, or WSRELAY_SKIP_NATS=1)`);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wsrelay-status-nats-'));
  const child = spawn(bin, ['-a', '127.0.0.1', '-p', '-1', '-js', '-sd', dir, '-n', 'status-n1'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const kill = () => new Promise((done) => {
    const gone = () => { rmSync(dir, { recursive: true, force: true }); done(); };
    if (child.exitCode !== null || child.signalCode !== null) return gone();
    child.once('exit', gone);
    child.kill('SIGKILL');
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { kill(); reject(new Error('nats-server did not listen in 10 s')); }, 10000);
    createInterface({ input: child.stderr }).on('line', (line) => {
      const found = /Listening for client connections on [^\s]+:(\d+)/.exec(line);
      if (!found) return;
      clearTimeout(timer);
      resolve({ url: `nats://127.0.0.1:${found[1]}`, port: Number(found[1]), kill });
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`nats-server exited (${code})`)); });
  });
}

/** The relay's version: WSRELAY_VERSION, or the [package] version of the repository's Cargo.toml. */
function expectedVersion() {
  if (process.env.WSRELAY_VERSION) return process.env.WSRELAY_VERSION;
  const toml = readFileSync(new URL('../../../../Cargo.toml', import.meta.url), 'utf8');
  const found = /^\[package\][^[]*?^version\s*=\s*"([^"]+)"/ms.exec(toml);
  assert.ok(found, 'Cargo.toml has a [package] version');
  return found[1];
}

// The page's formats, written again here so that a wrong rendering cannot pass.
const get = (doc, p) => p.split('.').reduce((v, k) => (v == null ? undefined : v[k]), doc);
const FORMAT = {
  text: (v) => (v == null ? '–' : String(v)),
  int: (v) => (v == null ? '–' : Number(v).toLocaleString('en-US')),
  us: (v) => (v == null ? '–' : `${(v / 1000).toFixed(1)} µs`),
  sum: (v) => (v == null ? '–' : Object.values(v).reduce((a, b) => a + b, 0).toLocaleString('en-US')),
  yesno: (v) => (v == null ? '–' : v ? 'yes' : 'no'),
  server: (v) => (v == null ? '–' : `${v.name} ${v.version} (${v.host}:${v.port})`),
  minutes: (s) => (s == null ? '–' : `${s / 60} min`),
  duration: (ms) => {
    const s = Math.floor(ms / 1000);
    const pad = (n) => String(n).padStart(2, '0');
    return `${Math.floor(s / 3600)}h ${pad(Math.floor(s / 60) % 60)}m ${pad(s % 60)}s`;
  },
};

/** Figures on the page and the documents behind them, read in one go (between renders). */
function readPage(page) {
  return page.evaluate(() => ({
    figures: [...document.querySelectorAll('[data-path]')].map((el) => [el.dataset.path, el.dataset.fmt, el.textContent]),
    rates: [...document.querySelectorAll('[data-rate]')].map((el) => [el.dataset.rate, el.textContent]),
    loops: [...document.querySelectorAll('#loops tbody tr')].map((tr) => [...tr.children].map((td) => td.textContent)),
    top: [...document.querySelectorAll('#top tbody tr')].map((tr) => [...tr.children].map((td) => td.textContent)),
    clusterHidden: document.getElementById('cluster').hidden,
    last: window.wsrelayStatus.last,
    prev: window.wsrelayStatus.prev,
    base: window.wsrelayStatus.base,
  }));
}

function expectedTop(doc) {
  return doc.channels.top.map((c) => [c.channel, ((c.messages * 1000) / c.window_ms).toFixed(1), FORMAT.int(c.seq)]);
}

function expectedLoops(doc) {
  return doc.loops.map((l) => [
    String(l.loop),
    ...['wsrelay_connections_open', 'wsrelay_subscriptions', 'wsrelay_outbox_bytes'].map((g) => FORMAT.int(l.gauges[g])),
  ]);
}

/** Every data-path names a figure of `doc` (the cluster section's only in cluster mode). */
function assertPathsExist(figures, doc, label) {
  let checked = 0;
  for (const [p] of figures) {
    if (p.startsWith('cluster.') && doc.cluster === undefined) continue;
    assert.notEqual(get(doc, p), undefined, `${label}: ${p} is not in /stats`);
    checked += 1;
  }
  assert.ok(checked >= 30, `${checked} paths checked`);
}

const refused = (doc) => Object.values(doc.counters.wsrelay_handshakes_rejected_total).reduce((a, b) => a + b, 0);

test('the status page shows the /stats figures, live, with charts', async () => {
  // Heartbeats every 500 ms of client silence: the RTT figures are real numbers.
  const relay = await startRelay(['--metrics-interval', '250', '--heartbeat-interval', '500']);
  const load = await clientPage(browser, relay);
  const status = await browser.context.newPage();
  try {
    // Small bounded load: 4 channels with 2 subscribers each, 40 messages/s, at most 2000.
    await load.evaluate((url) => {
      const { RelayClient } = window.wsrelay;
      window.subs = [];
      for (let i = 0; i < 8; i++) {
        const c = new RelayClient(url);
        c.subscribe(`load.${i % 4}`);
        window.subs.push(c);
      }
      const pub = new RelayClient(url);
      let sent = 0;
      window.loadTimer = setInterval(() => {
        if (pub.state !== 'open' || sent >= 2000) return;
        for (let ch = 0; ch < 4; ch++) pub.publish(`load.${ch}`, { px: 100 + (sent % 7), n: sent++ });
      }, 100);
      window.pub = pub;
    }, relay.url);

    await status.goto(`${relay.http}/status`);
    await until(status, () => {
      const s = window.wsrelayStatus;
      return s.renders >= 6 && s.prev && s.last.latency.relay.count > s.prev.latency.relay.count &&
        s.last.channels.top.length === 4 && s.last.latency.heartbeat_rtt.count > 0 &&
        s.last.latency.relay_window.count > 0;
    });

    // 1. Every figure is its rendered document, formatted; rates from the last two documents.
    const seen = await readPage(status);
    assertPathsExist(seen.figures, seen.last, 'rendered');
    for (const [p, fmt, text] of seen.figures) {
      assert.equal(text, FORMAT[fmt](get(seen.last, p)), `${p} (${fmt})`);
    }
    // Rates: over the last five polls (the base document is the one five renders back).
    const seconds = (seen.last.relay.uptime_ms - seen.base.relay.uptime_ms) / 1000;
    assert.ok(seen.base.relay.uptime_ms < seen.prev.relay.uptime_ms, 'base precedes prev');
    for (const [spec, text] of seen.rates) {
      const sum = (doc) => spec.split('+').reduce((t, p) => t + get(doc, p), 0);
      assert.equal(text, ((sum(seen.last) - sum(seen.base)) / seconds).toFixed(1), spec);
    }
    assert.deepEqual(seen.loops, expectedLoops(seen.last));
    assert.equal(seen.loops.length, 2);
    assert.equal(seen.last.relay.version, expectedVersion());
    // Not in cluster mode: no cluster member, its section hidden.
    assert.equal(seen.last.cluster, undefined);
    assert.equal(seen.clusterHidden, true);
    // Real figures, not "–": heartbeat round trips and the windowed relay latency.
    for (const p of ['latency.heartbeat_rtt.p50_ns', 'latency.relay_window.p99_ns', 'latency.relay_window.p999_ns']) {
      assert.ok(get(seen.last, p) > 0, `${p} = ${get(seen.last, p)}`);
    }
    assert.equal(seen.last.latency.relay_window.window_s, 300);
    // Opening the page refused nothing (no /favicon.ico 404).
    assert.equal(refused(seen.last), 0);
    assert.deepEqual(seen.top, expectedTop(seen.last));
    assert.deepEqual(seen.top.map(([name]) => name).sort(), ['load.0', 'load.1', 'load.2', 'load.3']);
    // The load is visible: 9 WebSocket clients open, messages flowing.
    assert.equal(seen.last.gauges.wsrelay_connections_open, 9);
    assert.ok(seen.last.counters.wsrelay_messages_delivered_total > 0);

    const dir = path.join(process.env.WSRELAY_ARTIFACTS ?? os.tmpdir(), 'status-page');
    mkdirSync(dir, { recursive: true });
    const shot = path.join(dir, 'status.png');
    await status.setViewportSize({ width: 1280, height: 900 });
    await status.waitForFunction(() => window.wsrelayStatus.renders >= 8, null, { timeout: 20000 });
    await status.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);

    // 2. Load stopped and its clients closed, one refusal made (a counted 404): within a refresh the page shows
    //    exactly what /stats says.
    // The clients close too: with no connection left no heartbeat moves the figures.
    await load.evaluate(() => {
      clearInterval(window.loadTimer);
      for (const c of [...window.subs, window.pub]) c.close();
    });
    assert.equal((await fetch(`${relay.http}/no-such-page`)).status, 404);
    let mismatch = 'not compared yet';
    for (let i = 0; i < 100 && mismatch; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const fresh = await stats(relay);
      const now = await readPage(status);
      assertPathsExist(now.figures, fresh, '/stats');
      mismatch = refused(fresh) === 1 ? null : `refusals ${refused(fresh)}`;
      for (const [p, fmt, text] of now.figures) {
        if (p === 'relay.uptime_ms') continue; // a clock: never equal twice
        const want = FORMAT[fmt](get(fresh, p));
        if (text !== want) mismatch = `${p}: page ${text}, /stats ${want}`;
      }
      if (JSON.stringify(now.loops) !== JSON.stringify(expectedLoops(fresh))) mismatch = 'loops table';
      if (JSON.stringify(now.top) !== JSON.stringify(expectedTop(fresh))) mismatch = 'top channels';
    }
    assert.equal(mismatch, null);
  } finally {
    await status.close();
    await load.close();
    await relay.kill();
  }
});

test('in cluster mode the page shows the node\'s NATS state as /stats has it', async (t) => {
  const nats = await startNats();
  if (!nats) return t.skip('nats-server missing and WSRELAY_SKIP_NATS=1');
  let relay;
  let page;
  let status;
  try {
    relay = await startRelay(['--metrics-interval', '250', '--nats', nats.url, '--node-name', 'status-a']);
    page = await clientPage(browser, relay);
    // Three acknowledged publishes: stored by JetStream, publish → ack latency measured.
    const seqs = await page.evaluate(async (url) => {
      const c = new window.wsrelay.RelayClient(url, { acks: true, ackTimeout: 10000 });
      await new Promise((open) => c.on('open', open));
      const acks = [];
      for (let n = 0; n < 3; n++) acks.push((await c.publish('status.cluster', { n })).seq);
      c.close();
      return acks;
    }, relay.url);
    assert.deepEqual(seqs, [1, 2, 3]);

    status = await browser.context.newPage();
    await status.goto(`${relay.http}/status`);
    await until(status, () => window.wsrelayStatus.renders >= 2);
    let mismatch = 'not compared yet';
    let now;
    for (let i = 0; i < 100 && mismatch; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const fresh = await stats(relay);
      now = await readPage(status);
      assertPathsExist(now.figures, fresh, '/stats');
      mismatch = null;
      for (const [p, fmt, text] of now.figures) {
        if (p === 'relay.uptime_ms') continue;
        const want = FORMAT[fmt](get(fresh, p));
        if (text !== want) mismatch = `${p}: page ${text}, /stats ${want}`;
      }
    }
    assert.equal(mismatch, null);
    assert.equal(now.clusterHidden, false);
    const shown = Object.fromEntries(now.figures.map(([p, , text]) => [p, text]));
    assert.match(shown['cluster.node'], /^status-a\./);
    assert.equal(shown['cluster.nats_connected'], 'yes');
    assert.match(shown['cluster.nats_server'], new RegExp(`^status-n1 \\S+ \\(127\\.0\\.0\\.1:${nats.port}\\)$`));
    assert.equal(shown['cluster.counters.wsrelay_cluster_published_total'], '3');
    assert.match(shown['cluster.latency.publish_ack.p99_ns'], /^\d+\.\d µs$/);
    await status.setViewportSize({ width: 1280, height: 1100 });
    const dir = path.join(process.env.WSRELAY_ARTIFACTS ?? os.tmpdir(), 'status-page');
    mkdirSync(dir, { recursive: true });
    const shot = path.join(dir, 'status-cluster.png');
    await status.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);
  } finally {
    await status?.close();
    await page?.close();
    await relay?.kill();
    await nats.kill();
  }
});
