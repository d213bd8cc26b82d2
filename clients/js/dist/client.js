// wsrelay browser and Node client (Node >= 22, or >= 18 given a WebSocket constructor such as
// the ws package's). One dependency-free ES module.
//
// This file is the source and the shipped module at once (JavaScript with JSDoc types; the
// hand-written dist/client.d.ts declares the same API), so the copy the relay serves at
// GET /client.js can never drift from a build. Protocol: docs/PROTOCOL.md. The model is the
// Rust client (src/client/session.rs): same close-code convention, same backoff formula.

/** Channel names: 1-255 bytes of [A-Za-z0-9._:-] (the relay's own limit may be lower). */
const CHANNEL_RE = /^[A-Za-z0-9._:-]{1,255}$/;
const OP_PUBLISH = 1;
const OP_GAP = 2;
const OP_BATCH = 3;
const OP_SNAPSHOT = 5;

/**
 * What a client does after a close with `code` (docs/PROTOCOL.md, "Close codes"):
 * 4000-4099 and 1002/1003/1007/1008/1009 never reconnect, 4200-4299 reconnect at once,
 * everything else (1001, 1006, 4100-4199, ...) reconnects with backoff.
 * @param {number} code
 * @returns {'never' | 'backoff' | 'at-once'}
 */
export function reconnectAdvice(code) {
  if ((code >= 4000 && code <= 4099) || [1002, 1003, 1007, 1008, 1009].includes(code)) {
    return 'never';
  }
  return code >= 4200 && code <= 4299 ? 'at-once' : 'backoff';
}

/**
 * Delay before retry `n` (0-based): `min(base * 2^n, cap) + random(0..jitter)` milliseconds.
 * @param {number} n
 * @param {{base: number, cap: number, jitter: number}} backoff
 * @param {() => number} [random] uniform in [0, 1)
 * @returns {number}
 */
export function backoffDelay(n, backoff, random = Math.random) {
  const floor = Math.min(backoff.base * 2 ** Math.min(n, 52), backoff.cap);
  return floor + Math.floor(random() * backoff.jitter);
}

/**
 * The fields a subscribe message carries besides `type` and `channel` (resent on reconnect).
 * @typedef {{throttle_ms?: number, binary?: boolean, presence?: boolean}} SubscribeFields
 */

/**
 * The subscribe fields of `options`, checked.
 * @param {import('./client.js').SubscribeOptions} options
 * @returns {SubscribeFields}
 */
function subscribeFields(options) {
  /** @type {SubscribeFields} */
  const fields = {};
  if (options.throttleMs !== undefined) {
    const t = options.throttleMs;
    if (!Number.isInteger(t) || t < 10 || t > 60000) throw new RangeError(`throttleMs must be an integer from 10 to 60000: ${t}`);
    fields.throttle_ms = t;
  }
  if (options.binary) fields.binary = true;
  if (options.presence) fields.presence = true;
  return fields;
}

/** @param {unknown} channel */
function checkChannel(channel) {
  if (typeof channel !== 'string' || !CHANNEL_RE.test(channel)) {
    throw new TypeError(`invalid channel name: ${channel}`);
  }
}

/** @param {DataView} view @param {number} at */
function readU64(view, at) {
  return view.getUint32(at) * 2 ** 32 + view.getUint32(at + 4);
}

/**
 * Reads the entries of a binary batch, `[seq u64][F u16][from][N u32][payload]` each, from
 * `at` to the end; null when one is truncated.
 * @param {ArrayBuffer} buffer @param {number} at
 * @returns {{seq: number, from: string, payload: ArrayBuffer}[] | null}
 */
function batchEntries(buffer, at) {
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  const entries = [];
  while (at < bytes.length) {
    if (at + 10 > bytes.length) return null;
    const fromEnd = at + 10 + view.getUint16(at + 8);
    if (fromEnd + 4 > bytes.length) return null;
    const end = fromEnd + 4 + view.getUint32(fromEnd);
    if (end > bytes.length) return null;
    const from = new TextDecoder().decode(bytes.subarray(at + 10, fromEnd));
    entries.push({ seq: readU64(view, at), from, payload: buffer.slice(fromEnd + 4, end) });
    at = end;
  }
  return entries;
}

/**
 * Parses a binary server message: a delivery `[1][L][channel][seq u64][payload]`, a gap
 * notice `[2][L][channel][from u64][to u64]` or a room tick's batch
 * `[3][L][channel]` + `[seq u64][F u16][from][N u32][payload]`*, or a binary snapshot (op 5,
 * below). Returns null when malformed.
 * @param {ArrayBuffer} buffer
 * @returns {{type: 'message', channel: string, seq: number, payload: ArrayBuffer}
 *   | {type: 'gap', channel: string, from: number, to: number}
 *   | {type: 'batch', channel: string, messages: {seq: number, from: string, payload: ArrayBuffer}[]}
 *   | {type: 'snapshot', channel: string, seq: number, epoch: string, entries: import('./client.js').SnapshotEntry[]}
 *   | null}
 */
export function parseBinary(buffer) {
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  if (bytes.length < 2) return null;
  const [op, len] = bytes;
  const body = 2 + len;
  if (bytes.length < body) return null;
  const channel = String.fromCharCode(...bytes.subarray(2, body));
  if (op === OP_BATCH) {
    const messages = batchEntries(buffer, body);
    return messages ? { type: 'batch', channel, messages } : null;
  }
  if (op === OP_PUBLISH && bytes.length >= body + 8) {
    return { type: 'message', channel, seq: readU64(view, body), payload: buffer.slice(body + 8) };
  }
  if (op === OP_GAP && bytes.length >= body + 16) {
    return { type: 'gap', channel, from: readU64(view, body), to: readU64(view, body + 8) };
  }
  if (op === OP_SNAPSHOT) return parseBinarySnapshot(buffer, bytes, view, channel, body);
  return null;
}

/**
 * A binary snapshot `[5][L][channel][seq u64][E][epoch][count u32]` then per entry
 * `[flags][K][key][seq u64][len u32][content]` (flags bit 0: binary payload, else JSON text;
 * K 0: no key). Returns null when truncated.
 * @param {ArrayBuffer} buffer @param {Uint8Array} bytes @param {DataView} view
 * @param {string} channel @param {number} at
 * @returns {{type: 'snapshot', channel: string, seq: number, epoch: string, entries: import('./client.js').SnapshotEntry[]} | null}
 */
function parseBinarySnapshot(buffer, bytes, view, channel, at) {
  const text = new TextDecoder();
  /** @param {number} n */
  const need = (n) => at + n <= bytes.length;
  if (!need(9)) return null;
  const seq = readU64(view, at);
  const epochLen = bytes[at + 8];
  at += 9;
  if (!need(epochLen + 4)) return null;
  const epoch = text.decode(bytes.subarray(at, at + epochLen));
  at += epochLen;
  const count = view.getUint32(at);
  at += 4;
  const entries = [];
  for (let i = 0; i < count; i++) {
    if (!need(2)) return null;
    const [flags, keyLen] = [bytes[at], bytes[at + 1]];
    at += 2;
    if (!need(keyLen + 12)) return null;
    const key = keyLen ? text.decode(bytes.subarray(at, at + keyLen)) : null;
    at += keyLen;
    const entrySeq = readU64(view, at);
    const len = view.getUint32(at + 8);
    at += 12;
    if (!need(len)) return null;
    const binary = (flags & 1) === 1;
    let content;
    try {
      content = binary ? buffer.slice(at, at + len) : JSON.parse(text.decode(bytes.subarray(at, at + len)));
    } catch {
      return null;
    }
    at += len;
    entries.push({ key, content, seq: entrySeq, binary });
  }
  return at === bytes.length ? { type: 'snapshot', channel, seq, epoch, entries } : null;
}

/**
 * A binary publish frame: `[1][L][channel][payload]`.
 * @param {string} channel
 * @param {ArrayBuffer | ArrayBufferView} payload
 */
export function encodeBinaryPublish(channel, payload) {
  const data = ArrayBuffer.isView(payload)
    ? new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength)
    : new Uint8Array(payload);
  const out = new Uint8Array(2 + channel.length + data.length);
  out[0] = OP_PUBLISH;
  out[1] = channel.length;
  for (let i = 0; i < channel.length; i++) out[2 + i] = channel.charCodeAt(i);
  out.set(data, 2 + channel.length);
  return out.buffer;
}

const DEFAULTS = {
  backoff: { base: 250, cap: 30000, jitter: 1000 },
  retries: 20,
  heartbeat: { interval: 15000, timeout: 10000 },
  connectTimeout: 5000,
  binaryType: /** @type {'arraybuffer' | 'blob'} */ ('arraybuffer'),
  acks: false,
  ackTimeout: 10000,
};

/**
 * A reconnecting wsrelay client. See README.md next to this file for the full API.
 */
export class RelayClient {
  /**
   * @param {string} url `ws://host:port/` of the relay
   * @param {import('./client.js').RelayClientOptions} [options] see client.d.ts, README.md
   */
  constructor(url, options = {}) {
    if (typeof (options.WebSocket ?? globalThis.WebSocket) !== 'function') {
      throw new TypeError('no WebSocket in this runtime: pass options.WebSocket (Node < 22: the ws package)');
    }
    this.url = url;
    /** @type {typeof DEFAULTS & import('./client.js').RelayClientOptions} */
    this.options = {
      ...DEFAULTS,
      ...options,
      backoff: { ...DEFAULTS.backoff, ...options.backoff },
      heartbeat: { ...DEFAULTS.heartbeat, ...options.heartbeat },
    };
    /** @type {'connecting' | 'open' | 'reconnecting' | 'closed'} */
    this.state = 'connecting';
    /** Connection id from the relay's `connected` message (the `from` of our publishes). */
    this.id = null;
    /** Consecutive attempts since the last successful open. */
    this.attempts = 0;
    /** @type {Map<string, {seq: number | null, epoch: string | null, presence?: boolean}>} */
    this._channels = new Map();
    /** @type {Map<string, SubscribeFields>} subscribe options, resent on reconnect */
    this._subOptions = new Map();
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** @type {Map<string, {resolve: Function, reject: Function, timer: any}>} */
    this._acks = new Map();
    this._nextId = 1;
    this._ws = null;
    this._gen = 0;
    /** @type {Record<string, ReturnType<typeof setTimeout>>} */
    this._timers = {};
    this._connect();
  }

  /**
   * Adds a listener for `type`: open, close, state, message, batch, gap, subscribed,
   * unsubscribed, presence, join, leave, authenticated, error.
   * @param {string} type @param {Function} fn
   */
  on(type, fn) {
    let listeners = this._listeners.get(type);
    if (!listeners) this._listeners.set(type, (listeners = new Set()));
    listeners.add(fn);
    return this;
  }

  /** @param {string} type @param {Function} fn */
  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
    return this;
  }

  /**
   * Subscribes now if open, and again on every reconnect with `since`/`epoch` (and the same
   * options). `throttleMs` (10-60000): the latest value per key at most that often;
   * `binary`: a snapshot comes as a binary message; `presence: true` (a channel with
   * presence on the relay): also `presence` (the members), then `join` and `leave` events, a
   * fresh list after every reconnect. Subscribing again with `presence: true` adds presence.
   * @param {string} channel
   * @param {import('./client.js').SubscribeOptions} [options]
   */
  subscribe(channel, options = {}) {
    checkChannel(channel);
    const fields = subscribeFields(options);
    if (!this._channels.has(channel)) {
      this._channels.set(channel, { seq: null, epoch: null });
      this._subOptions.set(channel, fields);
    } else if (fields.presence) {
      this._subOptions.set(channel, { ...this._subOptions.get(channel), presence: true });
    }
    if (this.state === 'open') this._sendJson({ type: 'subscribe', channel, ...this._subOptions.get(channel) });
  }

  /**
   * Asks for the members of `channel` now (a `presence` event follows). Throws when not open.
   * @param {string} channel
   */
  presence(channel) {
    checkChannel(channel);
    if (this.state !== 'open') throw new Error(`not open (state: ${this.state})`);
    this._sendJson({ type: 'presence', channel });
  }

  /**
   * Forgets `channel` (no resubscribe) and unsubscribes now if open.
   * @param {string} channel
   */
  unsubscribe(channel) {
    checkChannel(channel);
    this._channels.delete(channel);
    this._subOptions.delete(channel);
    if (this.state === 'open') this._sendJson({ type: 'unsubscribe', channel });
  }

  /**
   * The last position seen on a subscribed channel (what a reconnect resumes from).
   * @param {string} channel
   */
  position(channel) {
    const pos = this._channels.get(channel);
    return pos ? { seq: pos.seq, epoch: pos.epoch } : undefined;
  }

  /**
   * Publishes `content` (any JSON value; an ArrayBuffer or typed array goes over the binary
   * data plane). Resolves once handed to the socket, or, with `acks: true` (JSON only), on the
   * relay's ack. Rejects when not open, or with acks on an error, on close or after `ackTimeout`.
   * @param {string} channel
   * @param {unknown} content
   * @param {{key?: string, delete?: boolean}} [extra] `key`: snapshot, throttle and conflation key; `delete`: removes the key from the snapshot
   */
  publish(channel, content, extra = {}) {
    try {
      checkChannel(channel);
      if (this.state !== 'open') throw new Error(`not open (state: ${this.state})`);
      if (content instanceof ArrayBuffer || ArrayBuffer.isView(content)) {
        this._send(encodeBinaryPublish(channel, content));
        return Promise.resolve(undefined);
      }
      const message = { type: 'message', channel, content, ...extra };
      if (!this.options.acks) {
        this._sendJson(message);
        return Promise.resolve(undefined);
      }
      const id = `p${this._nextId++}`;
      const acked = new Promise((resolve, reject) => {
        const timer = setTimeout(() => this._settleAck(id, new Error('ack timeout')), this.options.ackTimeout);
        this._acks.set(id, { resolve, reject, timer });
      });
      this._sendJson({ ...message, id });
      return acked;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Closes for good (code 1000); no reconnect. */
  close() {
    if (this.state === 'closed') return;
    const ws = this._detach();
    if (ws && ws.readyState <= 1) ws.close(1000);
    this._ended({ code: 1000, reason: 'closed by client', wasClean: true }, 'never', true);
  }

  // ---- connection lifecycle ----

  /** Starts an attempt: fetch the token (a function is called on every attempt), then dial. */
  async _connect() {
    const gen = ++this._gen;
    let token;
    try {
      const source = this.options.token;
      token = typeof source === 'function' ? await source() : source;
    } catch (error) {
      if (gen !== this._gen) return;
      this._emit('error', { message: `token: ${error}`, error });
      this._ended({ code: 1006, reason: 'token source failed', wasClean: false }, 'backoff');
      return;
    }
    if (gen !== this._gen || this.state === 'closed') return;
    const Ws = this.options.WebSocket ?? globalThis.WebSocket;
    let ws;
    try {
      ws = new Ws(this.url);
    } catch (error) {
      this._emit('error', { message: `connect: ${error}`, error });
      this._ended({ code: 1006, reason: 'connect failed', wasClean: false }, 'never');
      return;
    }
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    this._timer('connect', this.options.connectTimeout, () => this._lost(1006, 'connect timeout'));
    ws.onopen = () => this._opened(token);
    ws.onmessage = (event) => this._received(event.data);
    ws.onclose = (event) => {
      this._detach();
      const { code, reason, wasClean } = event;
      this._ended({ code, reason, wasClean }, reconnectAdvice(code));
    };
    ws.onerror = () => {};
  }

  /**
   * Handshake done: re-auth, resubscribe with since/epoch, start the heartbeat.
   * @param {string | null | undefined} token
   */
  _opened(token) {
    this._clear('connect');
    this.attempts = 0;
    if (token !== undefined && token !== null) this._sendJson({ type: 'auth', token });
    for (const [channel, pos] of this._channels) {
      const resume = pos.seq !== null && pos.epoch !== null;
      const fields = this._subOptions.get(channel) ?? {};
      this._sendJson(
        resume
          ? { type: 'subscribe', channel, since: pos.seq, epoch: pos.epoch, ...fields }
          : { type: 'subscribe', channel, ...fields },
      );
    }
    this._setState('open');
    this._schedulePing();
    this._emit('open', { url: this.url, resubscribed: this._channels.size });
  }

  /**
   * The connection died on our side: drop it and back off (like the Rust client, a missed
   * heartbeat backs off rather than the "at once" of the relay's own 4201: the path is suspect).
   * @param {number} code 1006 (connect timeout) or 4201 (heartbeat timeout)
   * @param {string} reason
   */
  _lost(code, reason) {
    const ws = this._detach();
    if (ws) ws.close();
    this._ended({ code, reason, wasClean: false }, 'backoff');
  }

  /** Unhooks and returns the current socket, stopping every timer. */
  _detach() {
    const ws = this._ws;
    this._ws = null;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    for (const name of Object.keys(this._timers)) this._clear(name);
    return ws;
  }

  /**
   * A connection (or attempt) ended: tell the app, then reconnect or stop.
   * @param {{code: number, reason: string, wasClean: boolean}} info
   * @param {'never' | 'backoff' | 'at-once'} advice
   * @param {boolean} [byClient]
   */
  _ended(info, advice, byClient = false) {
    this.id = null;
    for (const id of [...this._acks.keys()]) this._settleAck(id, new Error(`connection closed (${info.code})`));
    let delay = null;
    if (!byClient && advice !== 'never' && this.attempts < this.options.retries) {
      delay = advice === 'at-once' ? 0 : backoffDelay(this.attempts, this.options.backoff, this.options.random);
      this.attempts += 1;
    }
    this._emit('close', { ...info, willReconnect: delay !== null, delay });
    if (delay === null) {
      this._gen++;
      this._setState('closed', { code: info.code });
      return;
    }
    this._setState('reconnecting', { attempt: this.attempts, delay });
    this._timer('retry', delay, () => this._connect());
  }

  /**
   * @param {'connecting' | 'open' | 'reconnecting' | 'closed'} state
   * @param {object} [detail]
   */
  _setState(state, detail = {}) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', { state, ...detail });
  }

  // ---- heartbeat ----

  _schedulePing() {
    const { interval, timeout } = this.options.heartbeat;
    if (!(interval > 0)) return;
    this._timer('ping', interval, () => {
      this._sendJson({ type: 'ping' });
      if (!this._timers.dead) this._timer('dead', timeout, () => this._lost(4201, 'heartbeat timeout'));
      this._schedulePing();
    });
  }

  // ---- input ----

  /** @param {string | ArrayBuffer} data */
  _received(data) {
    this._clear('dead');
    if (typeof data === 'string') {
      let msg;
      try {
        msg = JSON.parse(data);
      } catch {
        return this._emit('error', { message: 'unparsable server message', data });
      }
      return this._onServerMessage(msg);
    }
    const event = data instanceof ArrayBuffer ? parseBinary(data) : null;
    if (!event) return this._emit('error', { message: 'unparsable binary message', data });
    if (event.type === 'gap') return this._gap(event.channel, event.from, event.to);
    if (event.type === 'batch') {
      const blob = this.options.binaryType === 'blob';
      const messages = event.messages.map(({ seq, from, payload }) => ({ content: blob ? new Blob([payload]) : payload, seq, from }));
      return this._batch({ channel: event.channel, messages, binary: true });
    }
    if (event.type === 'snapshot') return this._snapshot(event);
    const content = this.options.binaryType === 'blob' ? new Blob([event.payload]) : event.payload;
    this._deliver({ channel: event.channel, content, seq: event.seq, from: null, binary: true });
  }

  /** @param {any} msg a parsed server message */
  _onServerMessage(msg) {
    switch (msg.type) {
      case 'connected':
        this.id = msg.id;
        return;
      case 'message':
        return this._deliver({
          channel: msg.channel,
          content: msg.content,
          seq: msg.seq,
          from: msg.from,
          binary: false,
          ...(msg.key !== undefined ? { key: msg.key } : {}),
          ...(msg.delete === true ? { delete: true } : {}),
        });
      case 'snapshot':
        return this._snapshot(msg);
      case 'batch':
        return this._batch({ channel: msg.channel, messages: msg.messages, binary: false });
      case 'presence':
        return this._emit('presence', { channel: msg.channel, count: msg.count, members: msg.members });
      case 'join':
      case 'leave':
        return this._emit(msg.type, { channel: msg.channel, member: msg.member });
      case 'gap':
        return this._gap(msg.channel, msg.from, msg.to);
      case 'subscribed':
        return this._subscribed(msg);
      case 'unsubscribed':
        return this._emit('unsubscribed', { channel: msg.channel });
      case 'authenticated':
        return this._emit('authenticated', { sub: msg.sub });
      case 'ack':
        return this._settleAck(msg.id, null, { channel: msg.channel, seq: msg.seq });
      case 'error':
        if (msg.id !== undefined && this._acks.has(msg.id)) {
          return this._settleAck(msg.id, new Error(msg.message));
        }
        return this._emit('error', { message: msg.message });
      default:
    }
  }

  /**
   * Drops duplicates (seq <= last seen on the channel), advances the position, delivers.
   * @param {{channel: string, content: unknown, seq: number, from: string | null, binary: boolean}} message
   */
  _deliver(message) {
    const pos = this._channels.get(message.channel);
    if (pos && pos.seq !== null && message.seq <= pos.seq) return;
    if (pos) pos.seq = message.seq;
    this._emit('message', message);
  }

  /**
   * A room tick's batch: drops entries already seen (seq <= last), advances the position to
   * the last entry, emits the rest as one `batch` event (nothing when none is left).
   * @param {{channel: string, messages: {content: unknown, seq: number, from: string}[], binary: boolean}} batch
   */
  _batch(batch) {
    const pos = this._channels.get(batch.channel);
    const last = pos?.seq ?? null;
    const messages = last === null ? batch.messages : batch.messages.filter((m) => m.seq > last);
    if (messages.length === 0) return;
    if (pos) pos.seq = messages[messages.length - 1].seq;
    this._emit('batch', { ...batch, messages });
  }

  /**
   * A keyed snapshot: the latest message per key up to `seq`; live messages follow from
   * `seq + 1`, so the position moves to `seq`.
   * @param {{channel: string, seq: number, epoch: string, entries: {key?: string | null, content: unknown, seq: number, binary?: boolean}[]}} msg
   */
  _snapshot(msg) {
    const pos = this._channels.get(msg.channel);
    if (pos) pos.seq = Math.max(pos.seq ?? 0, msg.seq);
    const entries = msg.entries.map((e) => ({ key: e.key ?? null, content: e.content, seq: e.seq, binary: e.binary === true }));
    this._emit('snapshot', { channel: msg.channel, seq: msg.seq, epoch: msg.epoch, entries });
  }

  /** @param {string} channel @param {number} from @param {number} to */
  _gap(channel, from, to) {
    const pos = this._channels.get(channel);
    if (pos) pos.seq = Math.max(pos.seq ?? 0, to);
    this._emit('gap', { channel, from, to });
  }

  /**
   * A (re)subscribe reply. Same epoch and recovered: the missed messages follow, keep the
   * position. Otherwise the numbering restarts at the announced seq; in the same epoch the
   * skipped range is also reported as a gap, so the app never has a silent hole.
   * @param {any} msg
   */
  _subscribed(msg) {
    const { channel, seq, epoch } = msg;
    const recovered = msg.recovered ?? null;
    const pos = this._channels.get(channel);
    let gap = null;
    if (pos) {
      const last = pos.seq;
      const sameEpoch = pos.epoch === epoch && last !== null;
      if (!(sameEpoch && recovered !== false)) {
        if (sameEpoch && seq > last) gap = { channel, from: last + 1, to: seq };
        pos.seq = seq;
        pos.epoch = epoch;
      }
    }
    const throttled = msg.throttle_ms !== undefined ? { throttleMs: msg.throttle_ms } : {};
    this._emit('subscribed', { channel, seq, epoch, recovered, ...throttled });
    if (gap) this._emit('gap', gap);
  }

  // ---- helpers ----

  /** @param {object} value */
  _sendJson(value) {
    this._send(JSON.stringify(value));
  }

  /** @param {string | ArrayBuffer} data */
  _send(data) {
    if (!this._ws) throw new Error('not open');
    this._ws.send(data);
  }

  /**
   * @param {string} id
   * @param {Error | null} error
   * @param {{channel: string, seq: number}} [ack]
   */
  _settleAck(id, error, ack) {
    const pending = this._acks.get(id);
    if (!pending) return;
    this._acks.delete(id);
    clearTimeout(pending.timer);
    if (error) pending.reject(error);
    else pending.resolve(ack);
  }

  /** @param {string} name @param {number} ms @param {() => void} fn */
  _timer(name, ms, fn) {
    this._clear(name);
    this._timers[name] = setTimeout(() => {
      delete this._timers[name];
      fn();
    }, ms);
  }

  /** @param {string} name */
  _clear(name) {
    if (this._timers[name] !== undefined) clearTimeout(this._timers[name]);
    delete this._timers[name];
  }

  /** @param {string} type @param {unknown} detail */
  _emit(type, detail) {
    for (const fn of [...(this._listeners.get(type) ?? [])]) {
      try {
        fn(detail);
      } catch (error) {
        // A throwing listener must not break the client: report it the way EventTarget does.
        (globalThis.reportError ?? console.error)(error);
      }
    }
  }
}
