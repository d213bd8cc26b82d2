// `npm run size`: the size of the browser client as the relay serves it (GET /client.js, sent
// uncompressed), and minified with esbuild the way an application's bundler would ship it,
// each raw and gzipped (zlib level 9, like `gzip -9`). Prints a Markdown table
// (docs/BENCHMARKS.md, "Browser client bundle size").

import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

import { build, version } from 'esbuild';

const source = new URL('../dist/client.js', import.meta.url);
const served = readFileSync(source);
const minified = (
  await build({
    entryPoints: [source.pathname],
    minify: true,
    format: 'esm',
    target: 'es2020',
    write: false,
    logLevel: 'error',
  })
).outputFiles[0].contents;

const gz = (bytes) => gzipSync(bytes, { level: 9 }).length;
const n = (x) => x.toLocaleString('en-US');
console.log(`esbuild ${version}, node ${process.version}, zlib ${process.versions.zlib}`);
console.log('');
console.log('| form | bytes | gzip (level 9) |');
console.log('|---|---|---|');
console.log(`| \`dist/client.js\` as served at /client.js (JSDoc included) | ${n(served.length)} | ${n(gz(served))} |`);
console.log(`| minified (\`esbuild --minify --format=esm --target=es2020\`) | ${n(minified.length)} | ${n(gz(minified))} |`);
