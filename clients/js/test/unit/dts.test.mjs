// The hand-written dist/client.d.ts declares exactly what dist/client.js exports: every
// exported name, and every public method and property of RelayClient.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import * as api from '../../dist/client.js';

const dts = readFileSync(new URL('../../dist/client.d.ts', import.meta.url), 'utf8');

test('every export of client.js is declared in client.d.ts, and nothing else', () => {
  const declared = [...dts.matchAll(/^export declare (?:class|function) (\w+)/gm)].map((m) => m[1]).sort();
  assert.deepEqual(declared, Object.keys(api).sort());
});

test('every public member of RelayClient is declared', () => {
  const body = dts.slice(dts.indexOf('export declare class RelayClient'));
  const cls = body.slice(0, body.indexOf('\n}'));
  const declared = [...cls.matchAll(/^ {2}(?:readonly )?(\w+)[<(:?]/gm)].map((m) => m[1]).filter((n) => n !== 'constructor').sort();
  const client = new api.RelayClient('ws://127.0.0.1:1/', { WebSocket: class { close() {} }, heartbeat: { interval: 0 } });
  const methods = Object.getOwnPropertyNames(api.RelayClient.prototype).filter((n) => n !== 'constructor');
  const fields = ['url', 'state', 'id', 'attempts'];
  const publicMembers = [...methods, ...fields].filter((n) => !n.startsWith('_')).sort();
  client.close();
  assert.deepEqual(declared, publicMembers);
  for (const field of fields) assert.ok(field in client, field);
});
