'use strict';
// Client against a fake orchestrator speaking the docs/api.md shapes.
const test = require('node:test');
const assert = require('node:assert');
const http = require('http');
const net = require('net');
const fs = require('fs');
const os = require('os');
const path = require('path');
const rz = require('..');

const ROOT = process.env.RZ_SOURCE_ROOT || path.resolve(__dirname, '..', '..', '..');
const WORDCOUNT = path.join(ROOT, 'examples', 'flows', 'wordcount.yaml');
const KEY = 'rzk_test';
const ACCOUNT = { id: '0'.repeat(31) + 'a', kind: 'client', balance_micros: 1000, pending_micros: 0, credits_micros: 1000, debits_micros: 0 };
const statusDoc = (id, status, outputs) => ({
  id, flow: 'wordcount', status,
  steps: { merge: { status, attempts: 1, outputs: outputs || {}, job: 3 } },
  outputs: outputs ? { merge: outputs } : {}, held_micros: 0, charged_micros: 4,
});

const posted = [];
const WITHDRAWAL = { id: `${'0'.repeat(31)}b`, account: `${'0'.repeat(31)}a`, amount_micros: 834,
  status: 'completed', seq: 3, address: '0xabc', tx: '0xfeed' };
let foreverOpen = 0;
let keyAsks = 0;
// Any 32 bytes are an X25519 public key; the test checks the boxes' shape
// (the Python suite opens them).
const ORCH_PK = require('crypto').randomBytes(32);

function send(res, code, doc) {
  const body = JSON.stringify(doc);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
const fail = (res, code, name, message, extra = {}) => send(res, code, { error: { code: name, message }, ...extra });

function sse(res) { res.writeHead(200, { 'Content-Type': 'text/event-stream', Connection: 'close' }); }
const ev = (name, doc) => `event: ${name}\ndata: ${JSON.stringify(doc)}\n\n`;

function handler(req, res) {
  if (req.headers.authorization !== `Bearer ${KEY}`) return fail(res, 401, 'RZ_EAUTH', 'missing or unknown API key');
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    const u = req.url;
    if (req.method === 'GET' && u === '/api/v1/accounts/me') return send(res, 200, ACCOUNT);
    if (req.method === 'GET' && u === '/api/v1/accounts/me/withdrawals') return send(res, 200, { withdrawals: [WITHDRAWAL] });
    if (req.method === 'POST' && u === '/api/v1/accounts/me/withdraw') {
      const doc = JSON.parse(body);
      posted.push(doc);
      return send(res, 201, { withdrawal_id: WITHDRAWAL.id, amount_micros: doc.amount_micros, status: 'pending' });
    }
    if (req.method === 'GET' && u === '/api/v1/flows/7/status') return send(res, 200, statusDoc(7, 'running'));
    if (req.method === 'GET' && u === '/api/v1/flows/7/events') {
      sse(res);
      res.write(ev('status', statusDoc(7, 'running')));
      res.write(ev('status', statusDoc(7, 'running')));
      return res.end(ev('end', statusDoc(7, 'succeeded', { top: [['to', 2]] })));
    }
    if (req.method === 'GET' && u === '/api/v1/flows/8/events') {
      sse(res);
      foreverOpen++;
      const t = setInterval(() => res.write(ev('status', statusDoc(8, 'running'))), 20);
      res.write(ev('status', statusDoc(8, 'running')));
      res.on('close', () => { clearInterval(t); foreverOpen--; });
      return undefined;
    }
    if (req.method === 'GET' && u === '/api/v1/flows/9/events') { sse(res); return res.end('event: status\ndata: {not json\n\n'); }
    if (req.method === 'GET' && u === '/api/v1/keys') { keyAsks++; return send(res, 200, { x25519_public_key: ORCH_PK.toString('hex') }); }
    const gate = /^\/api\/v1\/flows\/7\/(pause|resume|steps\/([^/]+)\/(approve|reject))$/.exec(u);
    if (req.method === 'POST' && gate) {
      posted.push({ url: u, body: body ? JSON.parse(body) : null });
      if (gate[2] === 'late') return fail(res, 409, 'RZ_ESTATE', "step 'late' is not awaiting approval");
      return send(res, 200, { ...statusDoc(7, 'running'), paused: gate[1] === 'pause' });
    }
    if (req.method === 'GET' && u === '/api/v1/slow') return setTimeout(() => send(res, 200, { slow: true }), 300);
    if (req.method === 'POST' && u === '/api/v1/flows/deploy') {
      const doc = JSON.parse(body);
      posted.push(doc);
      if (JSON.stringify(doc.flow).includes('broken')) {
        return fail(res, 422, 'RZ_EINVALID', 'the flow is not valid', {
          diagnostics: [{ file: 'flow.yaml', line: 3, column: 5, code: 'RZ_EMODULE', message: 'unknown module nope' }],
        });
      }
      if (doc.inputs && doc.inputs.text === 'poor') return fail(res, 402, 'RZ_EFUNDS', 'balance too low');
      return send(res, 201, { id: 7, status: 'running', held_micros: 12 });
    }
    if (req.method === 'DELETE') return fail(res, 409, 'RZ_ESTATE', 'deployment 7 has finished');
    return fail(res, 404, 'RZ_ENOENT', 'no such route');
  });
  return undefined;
}

let server;
let url;
test.before(async () => {
  server = http.createServer(handler);
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${server.address().port}`;
});
test.after(() => { server.closeAllConnections(); server.close(); });

async function closedPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

const rejectsWith = (p, code) => assert.rejects(p, (e) => { assert.strictEqual(e.code, code); return e instanceof Error; });

test('deploy, status, balance, request', async () => {
  const c = new rz.Client(url, KEY);
  assert.strictEqual(await c.deploy(WORDCOUNT, { text: 'a b' }), 7);
  assert.ok(posted.at(-1).flow.includes('wordcount-split@1'));
  assert.deepStrictEqual(posted.at(-1).inputs, { text: 'a b' });
  const f = rz.loadFlow(WORDCOUNT);
  assert.strictEqual(await c.deploy(f), 7);
  assert.strictEqual(JSON.parse(posted.at(-1).flow).name, 'wordcount');
  f.close();
  assert.strictEqual(await c.deploy({ nodes: [], connections: [] }), 7);
  assert.deepStrictEqual(posted.at(-1).flow, { nodes: [], connections: [] });
  // a sub-flow is read here, beside the file: the server gets the expanded flow
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-node-subdeploy-'));
  fs.writeFileSync(path.join(dir, 'child.yaml'), 'flux: 1\nsteps:\n  say: {module: echo@1}\n');
  fs.writeFileSync(path.join(dir, 'top.yaml'), 'flux: 1\nsteps:\n  kid: {flow: child.yaml}\n');
  assert.strictEqual(await c.deploy(path.join(dir, 'top.yaml')), 7);
  assert.ok(posted.at(-1).flow.includes('"kid-say"') && !posted.at(-1).flow.includes('child.yaml'));
  assert.strictEqual((await c.status(7)).status, 'running');
  assert.deepStrictEqual(await c.balance(), ACCOUNT);
  assert.strictEqual((await c.withdraw(834, '0xabc')).amount_micros, 834);
  assert.deepStrictEqual(posted.at(-1), { amount_micros: 834, address: '0xabc' });
  await c.withdraw(5);
  assert.deepStrictEqual(posted.at(-1), { amount_micros: 5 });
  assert.deepStrictEqual(await c.withdrawals(), [WITHDRAWAL]);
  // several at once take turns on the one connection
  const all = await Promise.all([c.balance(), c.status(7), c.balance(), c.status(7)]);
  assert.deepStrictEqual(all.map((x) => x.kind || x.status), ['client', 'running', 'client', 'running']);
  c.close();
});

test('deploy with a vault seals the credentials the flow references', async () => {
  const fs = require('fs');
  const os = require('os');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-node-client-'));
  const secretFlow = path.join(ROOT, 'tests', 'e2e', 'secret_flow.yaml');
  const c = new rz.Client(url, KEY);
  const v = new rz.Vault(path.join(dir, 'v'), 'pw', { kdf: [1, 8192] });
  try {
    const id = v.add('openai', 'llm_api', 'sk-live-123');
    assert.strictEqual(await c.deploy(secretFlow, null, { vault: v }), 7);
    const sent = posted.at(-1);
    assert.deepStrictEqual(Object.keys(sent.credentials), ['openai']);
    const box = Buffer.from(sent.credentials.openai, 'base64');
    // value + framing (20) + job id "orchestrator" + entry id + seal overhead (48)
    assert.strictEqual(box.length, 11 + 20 + 12 + id.length + 48);
    assert.ok(!JSON.stringify(sent).includes('sk-live'));
    // No references: neither the key nor the vault is used.
    const asks = keyAsks;
    assert.strictEqual(await c.deploy(WORDCOUNT, null, { vault: v }), 7);
    assert.strictEqual(posted.at(-1).credentials, undefined);
    assert.strictEqual(keyAsks, asks);
    await rejectsWith(c.deploy(secretFlow, null, { vault: v, credentials: {} }), 'RZ_EINVAL');
    v.remove('openai');
    const n = posted.length;
    await rejectsWith(c.deploy(secretFlow, null, { vault: v }), 'RZ_ENOENT');
    assert.strictEqual(posted.length, n);
    assert.throws(() => v.sealFlow(rz.loadFlow(secretFlow), Buffer.alloc(31)), (e) => e.code === 'RZ_EINVAL');
  } finally {
    v.close();
    c.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('pause, resume and approval decisions go to their routes', async () => {
  const c = new rz.Client(url, KEY);
  assert.strictEqual((await c.pause(7)).paused, true);
  assert.strictEqual(posted.at(-1).url, '/api/v1/flows/7/pause');
  assert.strictEqual((await c.resume(7)).paused, false);
  await c.approve(7, 'gate', 'ship it');
  assert.deepStrictEqual(posted.at(-1), { url: '/api/v1/flows/7/steps/gate/approve', body: { comment: 'ship it' } });
  await c.reject(7, 'gate');
  assert.deepStrictEqual(posted.at(-1), { url: '/api/v1/flows/7/steps/gate/reject', body: {} });
  await rejectsWith(c.approve(7, 'late'), 'RZ_ESTATE');
  await assert.rejects(c.approve(7, ''), TypeError);
  await rejectsWith(c.pause(-1), 'RZ_EINVAL');
  c.close();
});

test('the event loop keeps turning during a request', async () => {
  const c = new rz.Client(url, KEY);
  let ticks = 0;
  const t = setInterval(() => { ticks++; }, 5);
  const r = await c.request('GET', '/api/v1/slow');
  clearInterval(t);
  assert.deepStrictEqual(r, { slow: true });
  assert.ok(ticks > 0, 'timers ran while the request was in flight');
  c.close();
});

test('error replies become Errors with the API code', async () => {
  const c = new rz.Client(url, KEY);
  await assert.rejects(c.deploy('flux: 1\nname: broken\nsteps: {a: {module: nope}}\n'), (e) => {
    assert.strictEqual(e.code, 'RZ_EINVALID');
    assert.strictEqual(e.httpStatus, 422);
    assert.match(e.message, /not valid/);
    assert.deepStrictEqual(e.diagnostics.map((d) => [d.file, d.line, d.column, d.code]), [['flow.yaml', 3, 5, 'RZ_EMODULE']]);
    return true;
  });
  await rejectsWith(c.deploy(WORDCOUNT, { text: 'poor' }), 'RZ_EFUNDS');
  await rejectsWith(c.cancel(7), 'RZ_ESTATE');
  await rejectsWith(c.status(12), 'RZ_ENOENT');
  await rejectsWith(new rz.Client(url, 'rzk_wrong').balance(), 'RZ_EAUTH');
  await rejectsWith(new rz.Client(url).balance(), 'RZ_EAUTH');
  await rejectsWith(c.deploy('/nonexistent/flow.yaml'), 'RZ_ENOENT');
  await rejectsWith(c.status(-1), 'RZ_EINVAL');
  c.close();
});

test('an unreachable server is RZ_ECONNECT', async () => {
  const c = new rz.Client(`http://127.0.0.1:${await closedPort()}`, KEY);
  await rejectsWith(c.balance(), 'RZ_ECONNECT');
  const it = c.watch(7);
  await rejectsWith(it.next(), 'RZ_ECONNECT');
  c.close();
});

test('watch yields every status and ends with the deployment', async () => {
  const c = new rz.Client(url, KEY);
  const seen = [];
  for await (const s of c.watch(7)) seen.push(s);
  assert.deepStrictEqual(seen.map((s) => s.status), ['running', 'running', 'succeeded']);
  assert.deepStrictEqual(seen.at(-1).outputs.merge.top, [['to', 2]]);
  c.close();
});

test('breaking out of watch stops the stream', async () => {
  const c = new rz.Client(url, KEY);
  for (let i = 0; i < 3; i++) {
    for await (const s of c.watch(8)) { assert.strictEqual(s.id, 8); break; }
  }
  const it = c.watch(8);
  assert.strictEqual((await it.next()).value.id, 8);
  await it.return();
  assert.deepStrictEqual(await it.next(), { value: undefined, done: true });
  // each reader thread ends at the server's next event and closes its connection
  while (foreverOpen > 0) await new Promise((r) => setTimeout(r, 20));
  c.close();
});

test('a malformed event is RZ_EPROTOCOL', async () => {
  const c = new rz.Client(url, KEY);
  await rejectsWith((async () => { for await (const s of c.watch(9)) void s; })(), 'RZ_EPROTOCOL');
  c.close();
});

test('close ends running watches and refuses later use', async () => {
  const c = new rz.Client(url, KEY);
  const it = c.watch(8);
  await it.next();
  const pending = c.balance();           // in flight while closed: still settles
  c.close();
  c.close();
  await rejectsWith(it.next(), 'RZ_ESTATE');
  assert.deepStrictEqual(await pending, ACCOUNT);
  assert.ok(c.closed);
  for (const call of [() => c.balance(), () => c.status(7), () => c.deploy(WORDCOUNT), () => c.cancel(7), () => c.request('GET', '/health')]) {
    await rejectsWith(call(), 'RZ_ESTATE');
  }
  assert.throws(() => c.watch(7), (e) => e.code === 'RZ_ESTATE');
  assert.ok(!JSON.stringify(c).includes('rzk'));
  while (foreverOpen > 0) await new Promise((r) => setTimeout(r, 20));
});

test('bad arguments', async () => {
  assert.throws(() => new rz.Client(url, 'a\0b'), (e) => e.code === 'RZ_EINVAL');
  assert.throws(() => new rz.Client(42, KEY), (e) => e.code === 'RZ_EINVAL');
  assert.throws(() => new rz.Client('not a url', KEY), (e) => e.code === 'RZ_EINVAL');
  assert.throws(() => new rz.Client(url, KEY, { timeout: -1 }), (e) => e.code === 'RZ_EINVAL');
});

test('estimate a validated flow', () => {
  const f = rz.loadFlow(WORDCOUNT);
  assert.throws(() => rz.estimate(f), (e) => e.code === 'RZ_ESTATE');
  assert.deepStrictEqual(f.validate(), []);
  const est = rz.estimate(f);
  assert.deepStrictEqual(est.steps.map((s) => s.step), ['source', 'split', 'count1', 'count2', 'count3', 'merge']);
  assert.strictEqual(est.total_micros, est.steps.reduce((a, s) => a + s.cost_micros, 0));
  assert.strictEqual(est.complete, true);
  assert.deepStrictEqual(rz.estimate(f, { prices: [path.join(ROOT, 'data', 'prices')] }), est);
  assert.throws(() => rz.estimate(f, { prices: ['/nonexistent/prices.json'] }), (e) => e.code === 'RZ_ENOENT');
  f.close();
});
