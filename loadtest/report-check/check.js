// Renders a wsrelay-swarm HTML report in headless Chromium and checks it.
//
// usage: node check.js REPORT.html RUN.json SCREENSHOT.png
//
// Uses the system's Chromium (CHROMIUM env, default /usr/bin/chromium) through playwright-core;
// never downloads a browser. Checks that every chart rendered as SVG with drawn lines, that the
// figures printed in the summary equal the run's --json output, and saves a full-page
// screenshot. Exits non-zero with a reason on any mismatch.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const CHARTS = ['latency', 'distribution', 'throughput', 'connections', 'cpu'];

function fail(message) {
  console.error(`report-check: ${message}`);
  process.exit(1);
}

// The summary cells and where the same figure is in the JSON.
function expectedCells(json) {
  const errors = Object.values(json.errors || {}).reduce((a, b) => a + b, 0);
  const f = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1));
  return {
    connections_ready: String(json.connections.ready),
    connections_failed: String(json.connections.failed),
    sent: String(json.sent),
    expected: String(json.expected),
    received: String(json.received),
    loss: String(json.loss),
    latency_p50_us: f(json.latency_us.p50),
    latency_p99_us: f(json.latency_us.p99),
    latency_p999_us: f(json.latency_us.p999),
    latency_max_us: f(json.latency_us.max),
    errors: String(errors),
  };
}

async function main() {
  const [reportPath, jsonPath, screenshotPath] = process.argv.slice(2);
  if (!reportPath || !jsonPath || !screenshotPath) {
    fail('usage: node check.js REPORT.html RUN.json SCREENSHOT.png');
  }
  const json = JSON.parse(fs.readFileSync(jsonPath, 'utf8'));
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) {
    fail(`no Chromium at ${executablePath} (apt-get install -y chromium)`);
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'swarm-report-check-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1400, height: 900 },
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    // The report must be self-contained: any request other than the file itself fails.
    const outside = [];
    page.on('request', (request) => {
      if (!request.url().startsWith('file:')) outside.push(request.url());
    });
    await page.goto('file://' + path.resolve(reportPath), { waitUntil: 'load' });

    for (const chart of CHARTS) {
      const svg = await page.$(`svg[data-chart="${chart}"]`);
      if (!svg) fail(`chart ${chart} is missing`);
      const box = await svg.boundingBox();
      if (!box || box.width < 100 || box.height < 100) fail(`chart ${chart} is not laid out`);
      const drawn = await svg.$$eval('polyline.series', (lines) =>
        lines.map((l) => l.points.numberOfItems));
      if (drawn.length === 0 || Math.max(...drawn) < 2) {
        fail(`chart ${chart} draws no line (points per line: ${JSON.stringify(drawn)})`);
      }
    }

    const cells = await page.$$eval('td[data-key]', (tds) =>
      Object.fromEntries(tds.map((td) => [td.dataset.key, td.textContent.trim()])));
    const expected = expectedCells(json);
    for (const [key, value] of Object.entries(expected)) {
      if (cells[key] !== value) fail(`summary ${key} shows ${cells[key]}, the JSON says ${value}`);
    }

    const embedded = await page.$eval('#report-json', (el) => JSON.parse(el.textContent));
    if (embedded.received !== json.received || embedded.sent !== json.sent) {
      fail('the embedded JSON differs from the run\'s --json output');
    }
    // The per-second series counts every reply (warm-up and drain too): never fewer.
    const perSecond = json.series.received.reduce((a, b) => a + b, 0);
    if (perSecond < json.received) {
      fail(`per-second received (${perSecond}) is below the window's (${json.received})`);
    }
    if (outside.length > 0) fail(`the report fetched outside resources: ${outside.join(', ')}`);

    await page.screenshot({ path: screenshotPath, fullPage: true });
    console.log(`report-check: ${CHARTS.length} charts drawn, ${Object.keys(expected).length} ` +
      `figures equal the JSON; screenshot ${screenshotPath}`);
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().catch((e) => fail(e.stack || String(e)));
