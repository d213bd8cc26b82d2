// End-to-end harness: the real relay binary (WSRELAY_BIN), a TCP proxy the tests control,
// Debian's nats-server for cluster mode, and Debian's Chromium driven by playwright-core.
// Everything listens on 127.0.0.1 only; every process started here is killed by its PID when
// the test process exits, also on failure, and every directory it made is removed.

import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

import { chromium } from 'playwright-core';

const RELAY_BIN = process.env.WSRELAY_BIN;
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Relay and nats-server processes alive, killed on exit whatever happens. */
const children = new Set();
/** Directories to remove on exit (nats-server stores). */
const scratch = new Set();
const killAll = () => {
  for (const child of children) child.kill('SIGKILL');
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
};
process.on('exit', killAll);
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    killAll();
    process.exit(1);
  });
}

/**
 * Starts `wsrelay` on 127.0.0.1 (`port` 0: any free port) with two loops plus `args`, and
 * resolves once it logged its address.
 */
export function startRelay(args = [], port = 0) {
  if (!RELAY_BIN) throw new Error('WSRELAY_BIN is not set (the path of target/debug/wsrelay)');
  const child = spawn(RELAY_BIN, ['--bind', '127.0.0.1', '--port', String(port), '--threads', '2', ...args], {
    env: { ...process.env, RUST_LOG: 'info', NO_COLOR: '1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  const log = [];
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stderr });
    lines.on('line', (line) => {
      log.push(line);
      const found = /listening on ws:\/\/127\.0\.0\.1:(\d+)/.exec(line);
      if (found) {
        const relay = {
          port: Number(found[1]),
          pid: child.pid,
          log,
          url: `ws://127.0.0.1:${found[1]}/`,
          http: `http://127.0.0.1:${found[1]}`,
          /** SIGKILL, then resolves once the process is gone. */
          kill: () =>
            new Promise((done) => {
              if (child.exitCode !== null || child.signalCode !== null) return done();
              child.once('exit', () => done());
              child.kill('SIGKILL');
            }),
        };
        resolve(relay);
      }
    });
    child.on('exit', (code) => reject(new Error(`relay exited (${code}) before listening:\n${log.join('\n')}`)));
    child.on('error', reject);
  });
}

/**
 * The nats-server binary: `NATS_SERVER_BIN`, else Debian's `/usr/sbin/nats-server` (off a
 * non-root PATH), else `nats-server` on the PATH.
 */
export function natsServerBin() {
  if (process.env.NATS_SERVER_BIN) return process.env.NATS_SERVER_BIN;
  if (existsSync('/usr/sbin/nats-server')) return '/usr/sbin/nats-server';
  return 'nats-server';
}

/**
 * Starts one nats-server with JetStream on a random loopback port (`-p -1`: the server picks
 * it, so no port race) with a fresh store directory, and resolves once it is ready, with
 * `{url, pid, kill()}`. Killed by PID and its store removed when the test process exits.
 */
export function startNats() {
  const store = mkdtempSync(path.join(os.tmpdir(), 'wsrelay-e2e-nats-'));
  scratch.add(store);
  const child = spawn(natsServerBin(), ['-a', '127.0.0.1', '-p', '-1', '-js', '-sd', store], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  const log = [];
  let port = null;
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stderr });
    lines.on('line', (line) => {
      log.push(line);
      const found = /Listening for client connections on 127\.0\.0\.1:(\d+)/.exec(line);
      if (found) port = Number(found[1]);
      if (port !== null && /Server is ready/.test(line)) {
        resolve({
          url: `nats://127.0.0.1:${port}`,
          pid: child.pid,
          log,
          kill: () =>
            new Promise((done) => {
              if (child.exitCode !== null || child.signalCode !== null) return done();
              child.once('exit', () => done());
              child.kill('SIGKILL');
            }),
        });
      }
    });
    child.on('exit', (code) => reject(new Error(`nats-server exited (${code}) before ready:\n${log.join('\n')}`)));
    child.on('error', (error) => reject(new Error(`${natsServerBin()}: ${error.message} (apt-get install -y nats-server)`)));
  });
}

/** GET /stats of a relay, parsed. */
export async function stats(relay) {
  const response = await fetch(`${relay.http}/stats`);
  return response.json();
}

/**
 * A TCP proxy in front of the relay on `targetPort`, so a test can cut a browser's
 * connection, refuse new ones, or stop reading from the relay (a slow consumer).
 */
export async function startProxy(targetPort) {
  const pairs = new Set();
  const silenced = new Set();
  let refusing = false;
  let paused = false;
  const server = net.createServer((client) => {
    if (refusing) return client.destroy();
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = { client, upstream };
    pairs.add(pair);
    client.pipe(upstream);
    if (paused) upstream.pause();
    else upstream.pipe(client);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('error', end);
      socket.on('close', end);
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    port,
    url: `ws://127.0.0.1:${port}/`,
    /** Destroys every proxied connection (the browser sees 1006). */
    dropAll() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
    },
    /** While true, new connections are closed at once. */
    refuse(on) {
      refusing = on;
    },
    /** Stops reading from the relay: its socket buffers fill, then its outbox. */
    pauseDownstream() {
      paused = true;
      for (const { client, upstream } of pairs) {
        upstream.unpipe(client);
        upstream.pause();
      }
    },
    /** Silences every current connection in both directions without closing it (a dead
     * network path); new connections pass. */
    blackholeAll() {
      for (const { client, upstream } of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
        silenced.add({ client, upstream });
      }
      pairs.clear();
    },
    resumeDownstream() {
      paused = false;
      for (const { client, upstream } of pairs) upstream.pipe(client);
    },
    close() {
      this.dropAll();
      for (const { client, upstream } of silenced) {
        client.destroy();
        upstream.destroy();
      }
      server.close();
    },
  };
}

/** An HS256 JWT (RFC 7519) signed with `secret`. */
export function jwt(claims, secret) {
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

/**
 * Launches Chromium headless with a fresh profile directory (removed on close). No browser is
 * ever downloaded: the executable is Debian's.
 */
export async function launchBrowser() {
  const profile = mkdtempSync(path.join(os.tmpdir(), 'wsrelay-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage', // containers often have a 64 MB /dev/shm
    ],
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** The origin of the test pages: a blank HTML page for any path, on 127.0.0.1. */
let pageOrigin = null;
async function pageServer() {
  if (pageOrigin) return pageOrigin;
  const server = http.createServer((request, response) => {
    response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    response.end('<!doctype html><meta charset="utf-8"><title>wsrelay e2e</title>');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  server.unref();
  pageOrigin = `http://127.0.0.1:${server.address().port}`;
  return pageOrigin;
}

/** Serves the files of `dir` on 127.0.0.1 (like `python3 -m http.server`); returns its origin. */
export async function staticServer(dir) {
  const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };
  const server = http.createServer((request, response) => {
    const name = path.basename(new URL(request.url, 'http://x').pathname) || 'index.html';
    try {
      const body = readFileSync(path.join(dir, name));
      response.writeHead(200, { 'Content-Type': types[path.extname(name)] ?? 'application/octet-stream' });
      response.end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  server.unref();
  return `http://127.0.0.1:${server.address().port}`;
}

/**
 * A blank page (its own origin) with the relay-served client module loaded as `window.wsrelay` (cross-origin
 * module import: needs the relay's CORS header) and `window.log(name, client)` recording
 * every event of a client into `window.events[name]`.
 */
export async function clientPage(browser, relay) {
  const page = await browser.context.newPage();
  page.on('pageerror', (error) => console.error('page error:', error));
  await page.goto(`${await pageServer()}/`);
  await page.evaluate(async (src) => {
    window.wsrelay = await import(src);
    window.events = {};
    window.clients = {};
    window.log = (name, client) => {
      window.clients[name] = client;
      const events = (window.events[name] = []);
      for (const type of ['open', 'close', 'state', 'message', 'batch', 'snapshot', 'gap', 'subscribed', 'presence', 'join', 'leave', 'authenticated', 'error']) {
        client.on(type, (detail) => {
          const copy = { ...detail };
          if (copy.content instanceof ArrayBuffer) copy.content = { bytes: [...new Uint8Array(copy.content)] };
          events.push([type, copy]);
        });
      }
      return client;
    };
  }, `${relay.http}/client.js`);
  return page;
}

/** Events of client `name` of `type`, as recorded in the page. */
export function events(page, name, type) {
  return page.evaluate(([n, t]) => window.events[n].filter(([k]) => k === t).map(([, d]) => d), [name, type]);
}

/** Waits until `fn(arg)` is truthy in the page (10 s, then the test fails). */
export function until(page, fn, arg) {
  return page.waitForFunction(fn, arg, { timeout: 10000, polling: 20 });
}
