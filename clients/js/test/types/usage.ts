// Compiled (never run) by `npm run check` with `tsc --noEmit --strict`: uses the whole API the
// way an application would, so that dist/client.d.ts is checked under strict TypeScript and a
// declaration that stops matching the usage documented in README.md fails the check.

import {
  RelayClient,
  backoffDelay,
  encodeBinaryPublish,
  parseBinary,
  reconnectAdvice,
  type Ack,
  type Advice,
  type RelayClientOptions,
  type State,
} from '../../dist/client.js';

const options: RelayClientOptions = {
  token: async () => 'jwt',
  backoff: { base: 100 },
  retries: 5,
  heartbeat: { interval: 0 },
  connectTimeout: 1000,
  binaryType: 'blob',
  acks: true,
  ackTimeout: 500,
  WebSocket: globalThis.WebSocket,
  random: Math.random,
};
const client = new RelayClient('ws://127.0.0.1:8080/', options);
new RelayClient('ws://127.0.0.1:8080/', { token: 'static' });
new RelayClient('ws://127.0.0.1:8080/', { token: () => null });

const state: State = client.state;
const id: string | null = client.id;
const attempts: number = client.attempts;

client
  .on('open', ({ url, resubscribed }) => [url.length, resubscribed + 1])
  .on('close', ({ code, reason, wasClean, willReconnect, delay }) => [code, reason, wasClean, willReconnect, delay ?? 0])
  .on('state', ({ state: s, attempt, delay, code }) => [s, attempt, delay, code])
  .on('message', ({ channel, content, seq, from, binary, key }) => [channel, content, seq + 1, from, binary, key])
  .on('batch', ({ channel, messages, binary }) => messages.map((m) => [channel, m.content, m.seq, m.from, binary]))
  .on('snapshot', ({ channel, seq, epoch, entries }) => entries.map((e) => [channel, seq, epoch, e.key, e.content, e.seq, e.binary]))
  .on('presence', ({ channel, count, members }) => members.map((m) => [channel, count, m.id, m.sub]))
  .on('join', ({ member }) => member.id)
  .on('leave', ({ member }) => member.sub)
  .on('gap', ({ channel, from, to }) => [channel, to - from])
  .on('subscribed', ({ channel, seq, epoch, recovered, throttleMs }) => [channel, seq, epoch, recovered === false, throttleMs])
  .on('unsubscribed', ({ channel }) => channel)
  .on('authenticated', ({ sub }) => sub)
  .on('error', ({ message, error, data }) => [message, error, data]);
const onGap = (event: { channel: string; from: number; to: number }) => event.channel;
client.on('gap', onGap).off('gap', onGap);

client.subscribe('md.BTC-USD');
client.subscribe('md.ETH-USD', { throttleMs: 100, binary: true, presence: true });
client.presence('room.42');
client.unsubscribe('md.ETH-USD');
const pos = client.position('md.BTC-USD');
const resumeFrom: number | null | undefined = pos?.seq;

async function publishes(): Promise<void> {
  const ack: Ack | undefined = await client.publish('room.42', { text: 'hi' });
  const seq: number | undefined = ack?.seq;
  await client.publish('room.42', new Float32Array([1, 2]));
  await client.publish('room.42', new ArrayBuffer(4));
  await client.publish('md.BTC-USD', { bid: 1 }, { key: 'BTC' });
  await client.publish('md.BTC-USD', null, { key: 'BTC', delete: true });
  void seq;
}
client.close();

const advice: Advice = reconnectAdvice(4001);
const delay: number = backoffDelay(3, { base: 250, cap: 30000, jitter: 1000 }, () => 0.5);
const frame: ArrayBuffer = encodeBinaryPublish('room.42', new Uint8Array([1]));
const parsed = parseBinary(frame);
if (parsed?.type === 'snapshot') parsed.entries.map((e) => e.key);
if (parsed?.type === 'batch') parsed.messages.map((m) => m.from);

// Misuse the declarations must refuse.
// @ts-expect-error unknown event type
client.on('nope', () => {});
// @ts-expect-error the channel is a string
client.subscribe(42);
// @ts-expect-error binaryType is 'arraybuffer' or 'blob'
new RelayClient('ws://x/', { binaryType: 'text' });
// @ts-expect-error state is read-only
client.state = 'open';

export const used = [state, id, attempts, resumeFrom, publishes, advice, delay];
