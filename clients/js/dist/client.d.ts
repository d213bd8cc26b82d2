// Types of dist/client.js (hand-written, checked against it by test/unit/dts.test.mjs).

export type State = 'connecting' | 'open' | 'reconnecting' | 'closed';
export type Advice = 'never' | 'backoff' | 'at-once';

export interface Backoff {
  /** Delay before the first retry in ms, before jitter. Default 250. */
  base: number;
  /** Largest delay before jitter in ms. Default 30000. */
  cap: number;
  /** Upper bound (exclusive) of the random ms added to each delay. Default 1000. */
  jitter: number;
}

export interface Heartbeat {
  /** ms between `{"type":"ping"}` messages; 0 turns the heartbeat off. Default 15000. */
  interval: number;
  /** ms after a ping within which any message must arrive, else reconnect. Default 10000. */
  timeout: number;
}

export interface RelayClientOptions {
  /** Token for `{"type":"auth"}`, or a function called before every (re)connect. */
  token?: string | null | (() => string | null | undefined | Promise<string | null | undefined>);
  backoff?: Partial<Backoff>;
  /** Consecutive failed attempts before giving up (state `closed`). Default 20. */
  retries?: number;
  heartbeat?: Partial<Heartbeat>;
  /** ms for the opening handshake. Default 5000. */
  connectTimeout?: number;
  /** How binary deliveries are handed over. Default 'arraybuffer'. */
  binaryType?: 'arraybuffer' | 'blob';
  /** Send an `id` with JSON publishes and resolve `publish` on the relay's ack. Default false. */
  acks?: boolean;
  /** ms to wait for an ack before rejecting. Default 10000. */
  ackTimeout?: number;
  /**
   * WebSocket constructor; default `globalThis.WebSocket` (browsers, Node >= 22, Node 20.10+
   * with `--experimental-websocket`). Node 18-21: e.g. the `ws` package's `WebSocket`. The
   * RelayClient constructor throws a TypeError when there is none.
   */
  WebSocket?: new (url: string) => WebSocket;
  /** Uniform random in [0, 1) for the jitter; default Math.random. */
  random?: () => number;
}

export interface OpenEvent { url: string; resubscribed: number }
export interface CloseEvent {
  code: number;
  reason: string;
  wasClean: boolean;
  willReconnect: boolean;
  /** ms until the next attempt, or null when not reconnecting. */
  delay: number | null;
}
export interface StateEvent { state: State; attempt?: number; delay?: number; code?: number }
export interface MessageEvent {
  channel: string;
  /** The JSON value, or an ArrayBuffer (Blob with binaryType 'blob') for binary messages. */
  content: unknown;
  seq: number;
  /** Publisher's connection id or token `sub`; null for binary messages. */
  from: string | null;
  binary: boolean;
  /** The publish's key (snapshot, throttle and conflation key), when it had one. */
  key?: string;
  /** Present (true) when the key was deleted from the channel's snapshot. */
  delete?: boolean;
}
export interface SnapshotEntry {
  key: string | null;
  /** The JSON value, or an ArrayBuffer for a binary entry (binary snapshots only). */
  content: unknown;
  seq: number;
  binary: boolean;
}
/** The latest message per key up to `seq`; live messages follow from `seq + 1`. */
export interface SnapshotEvent { channel: string; seq: number; epoch: string; entries: SnapshotEntry[] }
export interface SubscribeOptions {
  /** 10-60000: the latest value per key at most that often. */
  throttleMs?: number;
  /** Snapshots as a binary message. */
  binary?: boolean;
  /** The member list, then joins and leaves (a channel with presence on the relay). */
  presence?: boolean;
}
export interface BatchEntry {
  /** The JSON value, or an ArrayBuffer (Blob with binaryType 'blob') in a binary batch. */
  content: unknown;
  seq: number;
  /** Publisher's connection id or token `sub` (also in binary batches). */
  from: string;
}
/** A room tick (`--tick-for`): every new message of the tick, in seq order. */
export interface BatchEvent { channel: string; messages: BatchEntry[]; binary: boolean }
export interface PresenceMember { id: string; sub: string | null }
export interface PresenceEvent { channel: string; count: number; members: PresenceMember[] }
export interface PresenceChangeEvent { channel: string; member: PresenceMember }
export interface GapEvent { channel: string; from: number; to: number }
export interface SubscribedEvent {
  channel: string;
  seq: number;
  epoch: string;
  recovered: boolean | null;
  /** The interval of a throttled subscription (absent otherwise). */
  throttleMs?: number;
}
export interface UnsubscribedEvent { channel: string }
export interface AuthenticatedEvent { sub: string }
export interface ErrorEvent { message: string; error?: unknown; data?: unknown }
export interface Ack { channel: string; seq: number }

export interface EventMap {
  open: OpenEvent;
  close: CloseEvent;
  state: StateEvent;
  message: MessageEvent;
  batch: BatchEvent;
  presence: PresenceEvent;
  join: PresenceChangeEvent;
  leave: PresenceChangeEvent;
  gap: GapEvent;
  snapshot: SnapshotEvent;
  subscribed: SubscribedEvent;
  unsubscribed: UnsubscribedEvent;
  authenticated: AuthenticatedEvent;
  error: ErrorEvent;
}

export declare class RelayClient {
  constructor(url: string, options?: RelayClientOptions);
  readonly url: string;
  readonly state: State;
  /** Connection id from the relay's `connected` message; null while not connected. */
  readonly id: string | null;
  /** Consecutive attempts since the last successful open. */
  readonly attempts: number;
  on<K extends keyof EventMap>(type: K, fn: (event: EventMap[K]) => void): this;
  off<K extends keyof EventMap>(type: K, fn: (event: EventMap[K]) => void): this;
  subscribe(channel: string, options?: SubscribeOptions): void;
  /** Asks for the members of `channel` now (a `presence` event follows); throws when not open. */
  presence(channel: string): void;
  unsubscribe(channel: string): void;
  position(channel: string): { seq: number | null; epoch: string | null } | undefined;
  publish(
    channel: string,
    content: unknown | ArrayBuffer | ArrayBufferView,
    extra?: { key?: string; delete?: boolean },
  ): Promise<Ack | undefined>;
  close(): void;
}

export declare function reconnectAdvice(code: number): Advice;
export declare function backoffDelay(n: number, backoff: Backoff, random?: () => number): number;
export declare function parseBinary(
  buffer: ArrayBuffer,
):
  | { type: 'message'; channel: string; seq: number; payload: ArrayBuffer }
  | { type: 'gap'; channel: string; from: number; to: number }
  | { type: 'batch'; channel: string; messages: { seq: number; from: string; payload: ArrayBuffer }[] }
  | { type: 'snapshot'; channel: string; seq: number; epoch: string; entries: SnapshotEntry[] }
  | null;
export declare function encodeBinaryPublish(channel: string, payload: ArrayBuffer | ArrayBufferView): ArrayBuffer;
