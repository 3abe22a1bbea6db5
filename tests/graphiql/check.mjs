#!/usr/bin/env node
// The built-in GraphiQL explorer, end to end in headless Chromium: the page's scripts come from a
// local copy of the npm packages (the offline set-up FLOWCLOUD_GRAPHIQL_ASSETS_URL exists for),
// every playground operation is a tab, the schema loads under the depth limit (the docs show the
// root types), and a subscription started from the page over graphql-ws receives an event.
//
//   cd tests/graphiql && npm ci && node check.mjs
//
// Needs Chromium at /usr/bin/chromium (Debian package `chromium`), or CHROMIUM=path.
// FLOWCLOUD_BIN=path/to/flowcloud skips the `cargo build` step.
import { spawn, spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '..', '..');

function buildBinary() {
  if (process.env.FLOWCLOUD_BIN) return process.env.FLOWCLOUD_BIN;
  const build = spawnSync('cargo', ['build', '--bin', 'flowcloud', '--message-format=json-render-diagnostics'], {
    cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 256 << 20,
  });
  if (build.status !== 0) throw new Error(`cargo build failed (exit ${build.status})`);
  for (const line of build.stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const msg = JSON.parse(line);
    if (msg.reason === 'compiler-artifact' && msg.target?.name === 'flowcloud' && msg.executable) return msg.executable;
  }
  throw new Error('cargo build did not report the flowcloud executable');
}

/** Serves `/<package>@<version>/<path>` from node_modules, the way unpkg lays packages out. */
function startAssets() {
  const modules = join(here, 'node_modules');
  const server = http.createServer((req, res) => {
    const match = req.url.split('?')[0].match(/^\/((?:@[^/]+\/)?[^@/]+)@[^/]+\/(.*)$/);
    const file = match && join(modules, match[1], match[2]);
    if (!file || !file.startsWith(modules) || !existsSync(file)) {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { 'content-type': file.endsWith('.css') ? 'text/css' : 'application/javascript' });
    createReadStream(file).pipe(res);
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

function startServer(bin, dbDir, assetsUrl) {
  const child = spawn(bin, ['serve'], {
    env: {
      ...process.env,
      DATABASE_URL: `sqlite://${join(dbDir, 'graphiql.db')}?mode=rwc`,
      FLOWCLOUD_LISTEN: '127.0.0.1:0',
      FLOWCLOUD_GRAPHIQL_ASSETS_URL: assetsUrl,
      NO_COLOR: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const address = new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`server did not start in 60 s; log:\n${log}`)), 60_000);
    const onData = (chunk) => {
      log += chunk.toString();
      const match = log.replace(/\x1b\[[0-9;]*m/g, '').match(/listening on http:\/\/(\S+)/);
      if (match) {
        clearTimeout(timer);
        ok(match[1]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => fail(new Error(`server exited (code ${code}); log:\n${log}`)));
  });
  return { child, address };
}

function check(condition, message) {
  if (!condition) throw new Error(message);
  console.log(`ok  ${message}`);
}

async function main() {
  const bin = buildBinary();
  const assets = await startAssets();
  const assetsUrl = `http://127.0.0.1:${assets.address().port}`;
  const dbDir = mkdtempSync(join(tmpdir(), 'flowcloud-graphiql-'));
  const { child, address } = startServer(bin, dbDir, assetsUrl);
  let browser;
  try {
    const base = `http://${await address}/graphql`;
    const gql = async (query, variables, token) => {
      const res = await fetch(base, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify({ query, variables }),
      });
      const body = await res.json();
      if (body.errors) throw new Error(JSON.stringify(body.errors));
      return body.data;
    };
    const { signUp } = await gql('mutation { signUp(input: {email: "gq@example.com", password: "password-1", handle: "gq", name: "GraphiQL"}) { token } }');
    const token = signUp.token;
    const ws = (await gql('mutation { createWorkspace(input: {handle: "gq-ws", name: "W"}) { id } }', {}, token)).createWorkspace.id;
    const flow = (await gql('mutation($w: UUID!) { createFlow(workspaceId: $w, input: {name: "etl"}) { id } }', { w: ws }, token)).createFlow.id;

    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('response', (r) => { if (r.status() >= 400) console.log(`HTTP ${r.status()} ${r.url()}`); });
    page.on('console', (m) => { if (m.type() === 'error') console.log(`console: ${m.text()}`); });
    await page.goto(base, { waitUntil: 'load' });
    await page.waitForSelector('.graphiql-container', { timeout: 30_000 });
    const playground = readdirSync(join(repoRoot, 'playground')).filter((f) => f.endsWith('.graphql'));
    check((await page.locator('.graphiql-tab').count()) === playground.length, `GraphiQL shows the ${playground.length} playground operations as tabs`);

    // The schema is introspected on load; with the depth limit too low it fails and the docs stay empty.
    await page.click('button[aria-label="Show Documentation Explorer"]');
    await page.waitForSelector('.graphiql-doc-explorer >> text=Subscription', { timeout: 15_000 });
    check(true, 'the schema loads: the documentation explorer lists the root types');

    await page.evaluate((t) => localStorage.setItem('graphiql:headers', JSON.stringify({ Authorization: `Bearer ${t}` })), token);
    const received = page.evaluate((w) => new Promise((ok, fail) => {
      // eslint-disable-next-line no-undef
      wsClient.subscribe(
        { query: 'subscription Watch($w: UUID!) { flowRunStateChanged(workspaceId: $w) { toState { type } } }', variables: { w } },
        { next: (r) => ok(r), error: (e) => fail(new Error(JSON.stringify(e))), complete: () => fail(new Error('completed without an event')) },
      );
      setTimeout(() => fail(new Error('no event within 15 s')), 15_000);
    }), ws);
    // Subscribing is asynchronous: keep creating runs until the page has seen one.
    let event;
    for (let i = 0; i < 30 && !event; i++) {
      await gql('mutation($w: UUID!, $f: UUID!) { createFlowRun(workspaceId: $w, input: {flowId: $f}) { id } }', { w: ws, f: flow }, token);
      event = await Promise.race([received, new Promise((ok) => setTimeout(() => ok(undefined), 500))]);
    }
    check(event?.data?.flowRunStateChanged?.toState?.type === 'SCHEDULED', `a subscription from the page receives run state changes: ${JSON.stringify(event)}`);
    check(pageErrors.length === 0, `no script errors on the page ${JSON.stringify(pageErrors)}`);
  } finally {
    await browser?.close();
    assets.close();
    child.kill('SIGTERM');
    rmSync(dbDir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (err) => {
  console.error(`FAIL ${err.stack ?? err}`);
  process.exit(1);
});
