// The live status page (GET /status) in headless Chromium against the real relay under a
// small, bounded load: every figure on the page is the /stats document it rendered, formatted;
// once the load stops, the page shows exactly what the test itself reads from /stats (within
// one refresh). Saves a screenshot (printed as `screenshot: PATH`).
//
// Run: WSRELAY_BIN=target/debug/wsrelay node test/e2e/status.e2e.mjs (tests/browser.rs does).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
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

// The page's formats, written again here so that a wrong rendering cannot pass.
const get = (doc, p) => p.split('.').reduce((v, k) => (v == null ? undefined : v[k]), doc);
const FORMAT = {
  text: (v) => (v == null ? '–' : String(v)),
  int: (v) => (v == null ? '–' : Number(v).toLocaleString('en-US')),
  us: (v) => (v == null ? '–' : `${(v / 1000).toFixed(1)} µs`),
  sum: (v) => (v == null ? '–' : Object.values(v).reduce((a, b) => a + b, 0).toLocaleString('en-US')),
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

test('the status page shows the /stats figures, live, with charts', async () => {
  const relay = await startRelay(['--metrics-interval', '250']);
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
        s.last.channels.top.length === 4;
    });

    // 1. Every figure is its rendered document, formatted; rates from the last two documents.
    const seen = await readPage(status);
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
    assert.equal(seen.last.relay.version, process.env.WSRELAY_VERSION);
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

    // 2. Load stopped: within a refresh the page shows exactly what /stats says.
    await load.evaluate(() => clearInterval(window.loadTimer));
    let mismatch = 'not compared yet';
    for (let i = 0; i < 100 && mismatch; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const fresh = await stats(relay);
      const now = await readPage(status);
      mismatch = null;
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
