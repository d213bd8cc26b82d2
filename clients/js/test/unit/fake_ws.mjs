// A fake WebSocket for the unit tests: records what the client sends and lets a test play
// the relay's part (open, messages, close) synchronously.

export class FakeWebSocket {
  /** Every socket created, in order. */
  static all = [];

  constructor(url) {
    this.url = url;
    this.sent = [];
    this.readyState = 0;
    this.binaryType = 'blob';
    this.closedWith = undefined;
    FakeWebSocket.all.push(this);
  }

  send(data) {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(data);
  }

  close(code) {
    this.closedWith = code ?? null;
    this.readyState = 3;
  }

  /** JSON messages sent, parsed. */
  json() {
    return this.sent.filter((d) => typeof d === 'string').map((d) => JSON.parse(d));
  }

  // ---- the relay's side ----

  open() {
    this.readyState = 1;
    this.onopen?.({});
  }

  recv(value) {
    const data = typeof value === 'string' || value instanceof ArrayBuffer ? value : JSON.stringify(value);
    this.onmessage?.({ data });
  }

  serverClose(code, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean: code !== 1006 });
  }

  static reset() {
    FakeWebSocket.all = [];
  }

  static last() {
    return FakeWebSocket.all[FakeWebSocket.all.length - 1];
  }
}

/** Lets pending promise callbacks (an async token source) run. */
export async function settle() {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

/** Records every event of `client` as [type, detail] in order. */
export function record(client) {
  const events = [];
  for (const type of ['open', 'close', 'state', 'message', 'batch', 'gap', 'subscribed', 'unsubscribed', 'presence', 'join', 'leave', 'authenticated', 'error']) {
    client.on(type, (detail) => events.push([type, detail]));
  }
  return events;
}

/**
 * A fake clock replacing globalThis.setTimeout/clearTimeout (Node 18 has no mock timers):
 * `tick(ms)` runs, in time order, every timer due within the next `ms` milliseconds.
 */
export class FakeClock {
  install() {
    this.now = 0;
    this.nextId = 1;
    this.timers = new Map();
    this.saved = [globalThis.setTimeout, globalThis.clearTimeout];
    globalThis.setTimeout = (fn, ms = 0) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.now + Math.max(0, ms), fn });
      return id;
    };
    globalThis.clearTimeout = (id) => this.timers.delete(id);
  }

  uninstall() {
    [globalThis.setTimeout, globalThis.clearTimeout] = this.saved;
  }

  tick(ms) {
    const end = this.now + ms;
    for (;;) {
      let due = null;
      for (const [id, t] of this.timers) {
        if (t.at <= end && (due === null || t.at < due[1].at)) due = [id, t];
      }
      if (due === null) break;
      this.timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
    }
    this.now = end;
  }
}
