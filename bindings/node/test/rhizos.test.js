'use strict';
// Behaviour checks of the Node bindings, mirroring the C API's tests.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const rz = require('..');

const ROOT = process.env.RZ_SOURCE_ROOT || path.resolve(__dirname, '..', '..', '..');
const MODULES = path.join(ROOT, 'examples', 'modules');
const FLOWS = path.join(ROOT, 'examples', 'flows');
const DATA = path.join(ROOT, 'tests', 'data');
const tmp = (p) => fs.mkdtempSync(path.join(os.tmpdir(), p));

test('parse a YAML file and a JSON text', () => {
  const f = rz.loadFlow(path.join(FLOWS, 'wordcount.yaml'));
  assert.strictEqual(f.name, 'wordcount');
  assert.strictEqual(f.format, 'yaml');
  assert.deepStrictEqual(f.steps.map((s) => s.id),
    ['source', 'split', 'count1', 'count2', 'count3', 'merge']);
  f.close();
  const text = fs.readFileSync(path.join(DATA, 'flows', 'builder.json'), 'utf8');
  const g = rz.loadFlow(text, { filename: 'b.json' });
  assert.strictEqual(g.file, 'b.json');
  assert.deepStrictEqual(g.connections.map((c) => [c.source.nodeId, c.target.nodeId]),
    [['fetch', 'analyze'], ['analyze', 'trade']]);
  assert.ok(!g.export().includes('sk-SECRET'));
  assert.deepStrictEqual(g.nodes[0].credentials.api, { credentialId: 'cred-123', type: 'api_key' });
  g.close();
});

test('syntax errors carry code, location and diagnostics', () => {
  assert.throws(() => rz.loadFlow('{"nodes": [ }', { format: 'json', filename: 'x.json' }), (e) => {
    assert.strictEqual(e.code, 'RZ_ESYNTAX');
    assert.strictEqual(e.file, 'x.json');
    assert.strictEqual(e.line, 1);
    assert.strictEqual(e.column, 13);
    assert.strictEqual(e.diagnostics[0].code, 'RZ_ESYNTAX');
    return e instanceof Error;
  });
  assert.throws(() => rz.loadFlow('/nonexistent/flow.yaml'), { code: 'RZ_ENOENT' });
  assert.throws(() => rz.loadFlow('flux: 1', { format: 'toml' }), { code: 'RZ_EINVAL' });
  assert.throws(() => rz.loadFlow('['.repeat(100000), { format: 'json' }), (e) => e.code.startsWith('RZ_E'));
  assert.throws(() => rz.loadFlow(42), { code: 'RZ_EINVAL' });
});

test('validate reports every problem in one pass', () => {
  const expected = fs.readFileSync(path.join(DATA, 'diag', 'problems.expected'), 'utf8')
    .split('\n').filter(Boolean);
  const f = rz.loadFlow(path.join(DATA, 'diag', 'problems.yaml'));
  const diags = f.validate([path.join(DATA, 'modules', 'good')]);
  assert.deepStrictEqual(diags.map((d) => `${path.basename(d.file)}:${d.line}:${d.column}: ${d.severity}: ${d.message}`), expected);
  assert.strictEqual(f.validated, false);
  assert.throws(() => f.validate(['/nonexistent/registry']), { code: 'RZ_ENOENT' });
  f.close();
  const w = rz.loadFlow(path.join(FLOWS, 'wordcount.yaml'));
  assert.deepStrictEqual(w.validate([]), []);
  assert.strictEqual(w.validated, false);
  assert.deepStrictEqual(w.validate([MODULES]), []);
  assert.strictEqual(w.validated, true);
  w.close();
});

test('plan: stages, critical path, and a named cycle', () => {
  const f = rz.loadFlow(path.join(FLOWS, 'wordcount.yaml'));
  assert.deepStrictEqual(f.plan(), [['source'], ['split'], ['count1', 'count2', 'count3'], ['merge']]);
  assert.deepStrictEqual(f.planInfo().critical_path, ['source', 'split', 'count1', 'merge']);
  f.close();
  const cyc = rz.loadFlow('flux: 1\nname: loop\nsteps:\n  a:\n    module: echo@1\n    needs: [c]\n' +
    '  b:\n    module: echo@1\n    needs: [a]\n  c:\n    module: echo@1\n    needs: [b]\n', { filename: 'loop.yaml' });
  assert.throws(() => cyc.plan(), (e) => {
    assert.strictEqual(e.code, 'RZ_ECYCLE');
    assert.deepStrictEqual(e.diagnostics.map((d) => d.message), ['cycle: a -> b -> c -> a']);
    return true;
  });
  cyc.close();
});

test('run resolves without blocking the event loop and records to the store', async () => {
  const data = tmp('rz-node-run-');
  const f = rz.loadFlow(path.join(FLOWS, 'wordcount.yaml'));
  f.validate([MODULES]);
  let ticks = 0;
  const timer = setInterval(() => { ticks++; }, 5);
  const p = rz.run(f, { text: 'to be or not to be' }, { dataDir: data, runId: 'node-run-1' });
  assert.throws(() => f.close(), { code: 'RZ_ESTATE' });      // in use by the run
  const r = await p;
  clearInterval(timer);
  assert.ok(ticks > 0, 'the event loop kept turning during the run');
  assert.strictEqual(r.status, 'succeeded');
  assert.strictEqual(r.ok, true);
  assert.strictEqual(r.id, 'node-run-1');
  assert.strictEqual(r.outputs.merge.total, 6);
  assert.deepStrictEqual(r.outputs.merge.counts, { to: 2, be: 2, or: 1, not: 1 });
  for (const s of Object.values(r.steps)) assert.strictEqual(s.status, 'succeeded');
  assert.ok(fs.existsSync(data) && fs.readdirSync(data).length > 0);
  f.close();
  fs.rmSync(data, { recursive: true, force: true });
});

test('run: retries, failures as results, refused inputs', async () => {
  const f = rz.loadFlow(path.join(FLOWS, 'flaky.yaml'));
  const r = await rz.run(f);                 // validated against the default registry
  assert.strictEqual(r.steps.unreliable.attempts, 3);
  assert.strictEqual(r.steps.report.outputs.message, 'succeeded on attempt 3');
  const doc = f.toObject();
  f.close();
  doc.steps.unreliable.config.fail_times = 5;
  doc.steps.unreliable.retry.initial_ms = 1;
  const g = rz.loadFlow(JSON.stringify(doc), { format: 'json' });
  g.validate([MODULES]);
  const r2 = await rz.run(g);
  assert.strictEqual(r2.status, 'failed');
  assert.strictEqual(r2.steps.unreliable.status, 'failed');
  assert.strictEqual(r2.steps.report.status, 'skipped');
  await assert.rejects(rz.run(g, { nope: 1 }), (e) => e.code.startsWith('RZ_E') && /nope/.test(e.message));
  g.close();
  const bad = rz.loadFlow('flux: 1\nname: u\nsteps:\n  a:\n    module: nope@1\n');
  await assert.rejects(rz.run(bad), { code: 'RZ_EINVALID' });
  bad.close();
});

test('run: llm steps get the llmServers option (docs/llm.md)', async () => {
  const f = rz.loadFlow(path.join(FLOWS, '..', 'llm', 'summary.yaml'));
  const saved = process.env.RHIZOS_LLM_SERVERS;
  delete process.env.RHIZOS_LLM_SERVERS;
  try {
    // A malformed list reaches the adapter (without it: "no model server").
    const r = await rz.run(f, {}, { llmServers: 'ollama', sandbox: false });
    assert.strictEqual(r.steps.summarise.status, 'failed');
    assert.match(r.steps.summarise.error, /is not KIND=URL/);
    const none = await rz.run(f, {}, { sandbox: false });
    assert.match(none.steps.summarise.error, /no model server is configured/);
  } finally {
    if (saved !== undefined) process.env.RHIZOS_LLM_SERVERS = saved;
    f.close();
  }
});

test('matcher places, reserves, releases and explains', () => {
  const nodes = JSON.parse(fs.readFileSync(path.join(DATA, 'hw', 'nodes.json'), 'utf8'));
  const jobs = JSON.parse(fs.readFileSync(path.join(DATA, 'hw', 'jobs.json'), 'utf8'));
  const m = new rz.Matcher('cheapest', nodes);
  const got = m.placeAll(jobs);
  const by = Object.fromEntries(got.map((p) => [p.job, p]));
  assert.strictEqual(by['train-70b'].node, 'a100-box');
  assert.strictEqual(by['train-70b'].costMicros, 2600000);   // $2.60
  assert.strictEqual(by['huge-vram'].node, null);
  assert.strictEqual(by['huge-vram'].reason, 'needs 81920 MB VRAM; the largest free GPU has 40960 MB');
  m.close();
  const one = new rz.Matcher();
  one.addNode({ id: 'g', cpu: { cores: 8 }, memory_mb: 32768,
    gpus: [{ vendor: 'nvidia', vram_mb: 24576, compute_capability: '8.9' }], prices: { gpu_hour_micros: 100 } });
  const job = { id: 'j', requirements: { gpu: { count: 1 }, estimate_seconds: 1800 } };
  const p = one.place(job);
  assert.deepStrictEqual([p.job, p.node, p.costMicros, typeof p.ticket], ['j', 'g', 50, 'bigint']);
  assert.strictEqual(one.place(job), null);
  assert.match(one.explain(job), /GPU/);
  assert.strictEqual(one.usage('g').gpusUsed, 1);
  one.release(p);
  assert.strictEqual(one.usage(0).gpusUsed, 0);
  assert.throws(() => one.release(p), { code: 'RZ_ENOENT' });
  assert.throws(() => one.addNode({ id: 'g' }), { code: 'RZ_EDUPLICATE' });
  assert.throws(() => one.place('[not json'), (e) => e.code.startsWith('RZ_E'));
  assert.throws(() => new rz.Matcher('random'), { code: 'RZ_EINVAL' });
  assert.strictEqual(one.stats().placements, 1);
  one.close();
  assert.ok(rz.detectHardware().memory_mb > 0);
});

test('ledger: hold, settle, refund, errors, persistence', () => {
  const dir = tmp('rz-node-ledger-');
  const l = new rz.Ledger(dir, { durable: false });
  l.createAccount(0x1001);
  l.createAccount('0x2002', 'node');
  const credit = l.testCredit(0x1001, 10000);
  l.testCredit(0x1001, 10000, { id: credit });               // replay
  assert.strictEqual(l.balance(0x1001).available, 10000n);
  l.hold(1, 0x1001, 5000);
  assert.strictEqual(l.balance(0x1001).debitsPending, 5000n);
  assert.deepStrictEqual(l.settle(1, '0x2002', 4000), { payout: 3800n, fee: 200n });
  assert.strictEqual(l.balance('0x2002').available, 3800n);
  l.hold(2, 0x1001, 1000n);
  assert.strictEqual(l.refund(2), 1000n);
  assert.strictEqual(l.balance(0x1001).available, 6000n);
  assert.throws(() => l.hold(3, 0x1001, 999999), (e) => e.code === 'RZ_EFUNDS' && /available/.test(e.message));
  assert.throws(() => l.balance(12345), { code: 'RZ_ENOENT' });
  assert.throws(() => l.testCredit(0x1001, -1), { code: 'RZ_EINVAL' });
  assert.throws(() => l.testCredit(0x1001, 1.5), { code: 'RZ_EINVAL' });
  assert.throws(() => l.balance('zz'), { code: 'RZ_EINVAL' });
  assert.throws(() => l.testCredit(0x1001, 5, { id: credit }), { code: 'RZ_EEXISTS_DIFFERENT' });
  assert.throws(() => new rz.Ledger(dir), { code: 'RZ_ESTATE' });  // one writer
  assert.strictEqual(l.verify(), true);
  assert.strictEqual(l.stats().feesMicros, 200n);
  // Withdrawals: cancelled ones come back and never complete; completed ones never cancel.
  const w = l.withdrawRequest(0x1001, 1000);
  assert.strictEqual(l.balance(0x1001).available, 5000n);
  l.withdrawCancel(w);
  assert.strictEqual(l.balance(0x1001).available, 6000n);
  assert.throws(() => l.withdrawComplete(w), { code: 'RZ_EVOIDED' });
  const w2 = l.withdrawRequest(0x1001, 500);
  l.withdrawComplete(w2);
  assert.throws(() => l.withdrawCancel(w2), { code: 'RZ_EPOSTED' });
  assert.strictEqual(l.stats().withdrawnMicros, 500n);
  l.testCredit(0x1001, 500);
  assert.ok(l.export().transfers.length >= 5);
  l.close();
  const again = new rz.Ledger(dir);
  assert.strictEqual(again.balance(0x1001).available, 6000n);
  again.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('vault: add, list, reveal, remove, wrong password', () => {
  const dir = tmp('rz-node-vault-');
  const file = path.join(dir, 'v.vault');
  const v = new rz.Vault(file, 'pw', { kdf: [1, 8192] });
  const id = v.add('openai', 'llm_api', 'sk-abc', { note: 'dev' });
  v.add('wallet', 'wallet_private_key', Buffer.from([0, 1, 254, 255]));
  assert.strictEqual(id.length, 32);
  assert.deepStrictEqual(v.list().map((e) => [e.name, e.type]), [['openai', 'llm_api'], ['wallet', 'wallet_private_key']]);
  assert.deepStrictEqual(v.list()[0].metadata, { note: 'dev' });
  assert.ok(!JSON.stringify(v.list()).includes('sk-abc'));
  assert.strictEqual(v.get(id), 'sk-abc');
  assert.deepStrictEqual([...v.reveal('wallet')], [0, 1, 254, 255]);
  assert.throws(() => v.add('openai', 'llm_api', 'x'), { code: 'RZ_EEXISTS' });
  assert.throws(() => v.reveal('ghost'), { code: 'RZ_ENOENT' });
  v.remove('wallet');
  v.close();
  const w = new rz.Vault(file, Buffer.from('pw'));
  assert.deepStrictEqual(w.list().map((e) => e.name), ['openai']);
  w.close();
  assert.throws(() => new rz.Vault(file, 'Tr0ub4dor&3'), (e) => e.code === 'RZ_EAUTH' && !e.message.includes('Tr0ub4dor'));
  fs.rmSync(dir, { recursive: true, force: true });
});

test('use after close throws RZ_ESTATE, never crashes', () => {
  const dir = tmp('rz-node-close-');
  const f = rz.loadFlow(path.join(FLOWS, 'wordcount.yaml'));
  const m = new rz.Matcher();
  const l = new rz.Ledger(dir, { durable: false });
  const v = new rz.Vault(path.join(dir, 'v'), 'pw', { kdf: [1, 8192] });
  for (const o of [f, m, l, v]) { o.close(); o.close(); assert.strictEqual(o.closed, true); }
  const calls = [() => f.plan(), () => f.validate([MODULES]), () => f.steps, () => f.export(),
    () => m.place({}), () => m.nodes, () => l.balance(1), () => l.hold(1, 2, 3), () => l.verify(),
    () => v.list(), () => v.get('x'), () => v.add('a', 'llm_api', 'b')];
  for (const c of calls) assert.throws(c, { code: 'RZ_ESTATE' });
  assert.strictEqual(JSON.stringify({ f }), '{"f":null}');
  return assert.rejects(rz.run(f), { code: 'RZ_ESTATE' }).then(() =>
    fs.rmSync(dir, { recursive: true, force: true }));
});

test('raw handles are type-checked', () => {
  const m = new rz.Matcher();
  const f = rz.loadFlow(path.join(FLOWS, 'wordcount.yaml'));
  f._h = m._h;                           // a Matcher handle where a Flow is expected
  assert.throws(() => f.plan(), { code: 'RZ_EINVAL' });
  m.close();
});

test('joins, on_exit and flow outputs; inputs from NAME=VALUE pairs', async () => {
  assert.deepStrictEqual(rz.inputsFromPairs(['n=3', 't=hi', 'n=4']), { t: 'hi', n: 4 });
  assert.throws(() => rz.inputsFromPairs(['t="a\\u0000b"']),
    (e) => e.code === 'RZ_EINVALID' && /NUL/.test(e.message));
  assert.throws(() => rz.inputsFromPairs(['novalue']), (e) => e.code === 'RZ_EINVALID');
  const j = rz.loadFlow(path.join(FLOWS, 'join.yaml'));
  j.validate([MODULES]);
  const r = await rz.run(j, rz.inputsFromPairs(['value=3']));
  assert.strictEqual(r.status, 'succeeded');
  assert.strictEqual(r.steps.high.status, 'skipped');
  assert.deepStrictEqual(r.outputs, { message: '3 is at or below the threshold', branch: 'low' });
  j.close();
  const x = rz.loadFlow(path.join(FLOWS, 'on_exit.yaml'));
  x.validate([MODULES]);
  const e = await rz.run(x);
  assert.deepStrictEqual(e.failed_steps, ['primary']);
  assert.strictEqual(e.outputs.alert, 'run succeeded; failed steps: [primary]');
  x.close();
});
