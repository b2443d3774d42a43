'use strict';
// Sub-flows (`flow: FILE`) through the Node bindings: validate, plan and
// run expand them as `rhizos flow` does; hostile paths refused the same way.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const rz = require('..');

const ROOT = process.env.RZ_SOURCE_ROOT || path.resolve(__dirname, '..', '..', '..');
const MODULES = path.join(ROOT, 'examples', 'modules');

const LEAF = 'flux: 1\nname: leaf\ninputs:\n  text: {type: string}\n' +
  'steps:\n  say:\n    module: echo@1\n    inputs: {message: "${{ inputs.text }}!"}\n' +
  'outputs:\n  loud: "${{ steps.say.outputs.message }}"\n';
const TOP = 'flux: 1\nname: top\ninputs:\n  who: {type: string, default: bob}\n' +
  'steps:\n  first:\n    module: echo@1\n    inputs: {message: hi}\n' +
  '  mid:\n    flow: sub/leaf.yaml\n    needs: [first]\n    inputs: {text: "${{ inputs.who }}"}\n' +
  '  last:\n    module: echo@1\n    needs: [mid]\n    inputs: {message: "${{ steps.mid.outputs.loud }}"}\n' +
  'outputs:\n  said: "${{ steps.last.outputs.message }}"\n';

function tree() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-node-sub-'));
  fs.mkdirSync(path.join(dir, 'sub'));
  fs.writeFileSync(path.join(dir, 'sub', 'leaf.yaml'), LEAF);
  fs.writeFileSync(path.join(dir, 'top.yaml'), TOP);
  return dir;
}

test('validate expands sub-flows in place', () => {
  const dir = tree();
  const f = rz.loadFlow(path.join(dir, 'top.yaml'));
  assert.ok(f.hasSubflows);
  assert.strictEqual(f.steps[1].flow, 'sub/leaf.yaml');
  assert.deepStrictEqual(f.validate([MODULES]), []);
  assert.ok(f.validated);
  assert.ok(!f.hasSubflows);
  assert.deepStrictEqual(f.steps.map((s) => s.id), ['first', 'mid-say', 'last']);
  assert.ok(f.file.endsWith('top.yaml'));
  f.close();
});

test('plan expands without validate', () => {
  const dir = tree();
  const f = rz.loadFlow(path.join(dir, 'top.yaml'));
  assert.deepStrictEqual(f.plan(), [['first'], ['mid-say'], ['last']]);
  assert.deepStrictEqual(f.expand(), []);
  f.close();
});

test('run returns the child flow\'s output', async () => {
  const dir = tree();
  const f = rz.loadFlow(path.join(dir, 'top.yaml'));
  const r = await rz.run(f, { who: 'ann' }, { sandbox: false, registries: [MODULES] });
  f.close();
  assert.strictEqual(r.status, 'succeeded', JSON.stringify(r));
  assert.deepStrictEqual(Object.keys(r.steps).sort(), ['first', 'last', 'mid-say']);
  assert.strictEqual(r.outputs.said, 'ann!');
});

test('text is read relative to its filename', () => {
  const dir = tree();
  const f = rz.loadFlow(TOP, { filename: path.join(dir, 'top.yaml') });
  assert.deepStrictEqual(f.validate([MODULES]), []);
  assert.strictEqual(f.steps.length, 3);
  f.close();
  const g = rz.loadFlow(TOP, { filename: path.join(os.tmpdir(), 'nowhere', 'top.yaml') });
  const d = g.validate([MODULES]);
  assert.ok(d.some((x) => x.message.includes('sub/leaf.yaml')), JSON.stringify(d));
  assert.ok(!g.validated);
  assert.ok(g.hasSubflows, 'unchanged on failure');
  assert.throws(() => g.plan(), (e) => e.code === 'RZ_EINVALID' && e.diagnostics.length > 0);
  g.close();
});

test('named sub-flows are read from RHIZOS_FLOWS, as the CLI does', () => {
  const dir = tree();
  fs.mkdirSync(path.join(dir, 'lib'));
  fs.writeFileSync(path.join(dir, 'lib', 'leaf@2.yaml'), LEAF);
  const named = path.join(dir, 'named.yaml');
  fs.writeFileSync(named, TOP.replace('sub/leaf.yaml', 'flow://leaf@2'));
  const old = process.env.RHIZOS_FLOWS;
  try {
    delete process.env.RHIZOS_FLOWS;
    let f = rz.loadFlow(named);
    assert.strictEqual(f.steps[1].flow, 'flow://leaf@2');
    assert.ok(f.validate([MODULES]).some((d) => d.message.includes('set RHIZOS_FLOWS')));
    f.close();
    process.env.RHIZOS_FLOWS = path.join(dir, 'lib');
    f = rz.loadFlow(named);
    assert.deepStrictEqual(f.plan(), [['first'], ['mid-say'], ['last']]);
    f.close();
  } finally {
    if (old === undefined) delete process.env.RHIZOS_FLOWS; else process.env.RHIZOS_FLOWS = old;
  }
});

test('hostile and broken children are refused', () => {
  const dir = tree();
  const cases = [
    ['abs.yaml', 'flux: 1\nsteps:\n  s: {flow: /etc/passwd}\n', 'absolute path'],
    ['named.yaml', "flux: 1\nsteps:\n  s: {flow: 'flow://lib@1.2'}\n", 'flow://lib@1.2'],
    ['dev.yaml', 'flux: 1\nsteps:\n  s: {flow: ../../../../../../../dev/zero}\n', 'not a regular file'],
    ['self.yaml', 'flux: 1\nsteps:\n  s: {flow: self.yaml}\n', 'cycle'],
  ];
  for (const [name, text, want] of cases) {
    fs.writeFileSync(path.join(dir, name), text);
    let f;
    try {
      f = rz.loadFlow(path.join(dir, name));
    } catch (e) {
      assert.ok(e.diagnostics.some((x) => x.message.includes(want)), `${name}: ${e.message}`);
      continue;
    }
    const d = f.validate([MODULES]);
    assert.ok(d.some((x) => x.message.includes(want)), `${name}: ${JSON.stringify(d)}`);
    assert.ok(!f.validated);
    f.close();
  }
});
