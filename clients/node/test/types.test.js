'use strict';
// index.d.ts: a small typed program using every export compiles under `tsc --strict` against the
// official client's own types; the ESM entry exports the same objects as the CommonJS one.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { DEPS } = require('./harness');

test('index.d.ts types a real program', () => {
  const tsc = path.join(DEPS, '.bin', 'tsc');
  try {
    execFileSync(tsc, ['-p', path.join(__dirname, 'fixtures', 'tsconfig.json')], { encoding: 'utf8', stdio: 'pipe' });
  } catch (e) {
    assert.fail(`tsc found errors:\n${e.stdout}${e.stderr}`);
  }
});

test('the ES module entry exports what the CommonJS one does', async () => {
  const esm = await import('../index.mjs');
  const cjs = require('..');
  for (const name of Object.keys(cjs)) assert.equal(esm[name], cjs[name], name);
  assert.equal(esm.default, cjs);
});
