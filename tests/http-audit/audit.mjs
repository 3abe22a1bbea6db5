#!/usr/bin/env node
// GraphQL-over-HTTP conformance: runs the `graphql-http` package's serverAudits against the real
// flowcloud binary (fresh SQLite database, port 0) and fails when any MUST audit fails.
//
//   cd tests/http-audit && npm ci && node audit.mjs
//
// FLOWCLOUD_BIN=path/to/flowcloud skips the `cargo build` step.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serverAudits } from 'graphql-http';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Builds the binary with cargo and returns its path (taken from cargo's own build report). */
function buildBinary() {
  if (process.env.FLOWCLOUD_BIN) return process.env.FLOWCLOUD_BIN;
  const build = spawnSync(
    'cargo',
    ['build', '--bin', 'flowcloud', '--message-format=json-render-diagnostics'],
    { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 256 << 20 },
  );
  if (build.status !== 0) throw new Error(`cargo build failed (exit ${build.status})`);
  for (const line of build.stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const msg = JSON.parse(line);
    if (msg.reason === 'compiler-artifact' && msg.target?.name === 'flowcloud' && msg.executable) {
      return msg.executable;
    }
  }
  throw new Error('cargo build did not report the flowcloud executable');
}

/** Starts the server and resolves with its address once it logs `listening on http://ADDR`. */
function startServer(bin, dbDir) {
  const child = spawn(bin, ['serve'], {
    env: {
      ...process.env,
      DATABASE_URL: `sqlite://${join(dbDir, 'audit.db')}?mode=rwc`,
      FLOWCLOUD_LISTEN: '127.0.0.1:0',
      FLOWCLOUD_LOG: process.env.FLOWCLOUD_LOG ?? 'info',
      NO_COLOR: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const address = new Promise((resolveAddr, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 60 s; log:\n${log}`)), 60_000);
    const onData = (chunk) => {
      log += chunk.toString();
      // Strip ANSI colours in case the log is coloured anyway.
      const match = log.replace(/\x1b\[[0-9;]*m/g, '').match(/listening on http:\/\/(\S+)/);
      if (match) {
        clearTimeout(timer);
        resolveAddr(match[1]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (code ${code}) before listening; log:\n${log}`));
    });
  });
  return { child, address };
}

async function main() {
  const bin = buildBinary();
  const dbDir = mkdtempSync(join(tmpdir(), 'flowcloud-audit-'));
  const { child, address } = startServer(bin, dbDir);
  const stop = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    child.stdout.destroy();
    child.stderr.destroy();
    rmSync(dbDir, { recursive: true, force: true });
  };
  process.on('exit', stop);
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => process.exit(130));
  }

  try {
    await runAudits(`http://${await address}/graphql`);
  } finally {
    stop();
  }
}

async function runAudits(url) {
  console.log(`auditing ${url}\n`);

  const counts = {};
  const failures = [];
  for (const audit of serverAudits({ url })) {
    const level = audit.name.split(' ')[0];
    let result;
    try {
      result = await audit.fn();
    } catch (err) {
      result = { status: 'error', reason: `audit threw: ${err?.message ?? err}` };
    }
    const passed = result.status === 'ok';
    counts[level] ??= { pass: 0, fail: 0 };
    counts[level][passed ? 'pass' : 'fail'] += 1;
    console.log(`${passed ? 'PASS' : 'FAIL'}  [${audit.id}] ${audit.name}`);
    if (!passed) {
      console.log(`        ${result.reason}`);
      failures.push({ level, audit, result });
    }
  }

  console.log('\nsummary:');
  for (const [level, { pass, fail }] of Object.entries(counts)) {
    console.log(`  ${level.padEnd(6)} ${pass} passed, ${fail} failed`);
  }
  const mustFailures = failures.filter((f) => f.level === 'MUST');
  if (mustFailures.length > 0) {
    console.error(`\n${mustFailures.length} MUST audit(s) failed`);
    process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(err?.stack ?? err);
  process.exitCode = 1;
});
