#!/usr/bin/env node
'use strict';
// Measures how soon a running kite() client uses a new token: the time from kited's answer to a
// login's callback (the browser's page arriving) to the client's access_token changing, over N
// logins (default 50) against the real kite-sim and kited. Prints one JSON object:
//   {"samples_ms":[...],"n":50,"p50_ms":...,"p99_ms":...,"max_ms":...}
// A negative sample means the client had the token before the callback's page was complete.
// Usage: node bench-rotation.js [N]   (binaries from $KITED_BIN_DIR or target/debug; needs kiteconnect)

const { Sim, Kited, cleanup } = require('./test/harness');
const kited = require('.');

/** How long one rotation may take before the run is declared broken. */
const ROTATION_DEADLINE_MS = 10000;

function percentile(sorted, p) {
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)];
}

async function main() {
  const n = Number(process.argv[2] || process.env.BENCH_LOGINS || 50);
  const sim = await Sim.start();
  const daemon = await Kited.start(sim);
  await daemon.login();
  const kc = await kited.kite({ socket: daemon.socket, root: sim.url });
  let changed = null;
  const set = kc.setAccessToken.bind(kc);
  kc.setAccessToken = (token) => {
    set(token);
    if (changed) changed(performance.now());
  };
  const samples = [];
  try {
    for (let i = 0; i < n; i++) {
      const seen = new Promise((resolve, reject) => {
        changed = resolve;
        setTimeout(() => reject(new Error(`login ${i + 1}: the token did not change within ${ROTATION_DEADLINE_MS} ms`)), ROTATION_DEADLINE_MS).unref();
      });
      seen.catch(() => {});
      const answered = await daemon.login();
      const at = await seen;
      changed = null;
      samples.push(Math.round((at - answered) * 1000) / 1000);
    }
  } finally {
    kc.close();
    await cleanup();
  }
  const sorted = [...samples].sort((a, b) => a - b);
  const out = { samples_ms: samples, n: samples.length, p50_ms: percentile(sorted, 50), p99_ms: percentile(sorted, 99), max_ms: sorted[sorted.length - 1] };
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch(async (e) => {
  process.stderr.write(`bench-rotation: ${e.message}\n`);
  await cleanup();
  process.exit(1);
});
