'use strict';
// index.d.ts kept in step with the package: every value it exports exists
// in the CommonJS and the ES module entries and nothing else does; every
// member it declares on an exported class exists at run time and every
// public method at run time is declared; and, where tsc is installed, a
// program using the API type-checks under --strict against it.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const HERE = path.resolve(__dirname, '..');
const DTS = fs.readFileSync(path.join(HERE, 'index.d.ts'), 'utf8');
const JS = fs.readFileSync(path.join(HERE, 'index.js'), 'utf8');
const rz = require('..');

/** Top-level declarations: value exports, and class bodies by name. */
function declarations(text) {
  const values = new Set();
  const types = new Set();
  const classes = new Map();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^export (?:declare )?(function|class|const|let|var|interface|type|enum) (\w+)/.exec(lines[i]);
    if (!m) continue;
    (m[1] === 'interface' || m[1] === 'type' ? types : values).add(m[2]);
    if (m[1] !== 'class') continue;
    const members = new Set();
    for (i++; i < lines.length && !/^}/.test(lines[i]); i++) {
      const mm = /^ {2}(?:static )?(?:readonly )?(\w+)\??[(:<]/.exec(lines[i]);
      if (mm && mm[1] !== 'constructor') members.add(mm[1]);
    }
    classes.set(m[2], members);
  }
  return { values, types, classes };
}

const decl = declarations(DTS);
const sorted = (s) => [...s].sort();

test('the .d.ts declares exactly the values index.js exports', () => {
  assert.ok(decl.values.size > 10, 'parsed too few declarations: ' + sorted(decl.values));
  assert.deepStrictEqual(sorted(decl.values), sorted(Object.keys(rz)));
});

test('the ES module entry exports the same names, and the module as default', async () => {
  const esm = await import(path.join(HERE, 'index.mjs'));
  const named = Object.keys(esm).filter((k) => k !== 'default');
  assert.deepStrictEqual(sorted(named), sorted(Object.keys(rz)));
  for (const k of named) assert.strictEqual(esm[k], rz[k], k);
  assert.strictEqual(esm.default, rz);
});

test('every exported class has at run time what the .d.ts declares, and no more', () => {
  assert.ok(decl.classes.size >= 5, 'parsed classes: ' + sorted(decl.classes.keys()));
  for (const [name, members] of decl.classes) {
    const cls = rz[name];
    assert.strictEqual(typeof cls, 'function', name);
    const proto = Object.getOwnPropertyNames(cls.prototype)
      .filter((k) => k !== 'constructor' && !k.startsWith('_'));
    const statics = Object.getOwnPropertyNames(cls)
      .filter((k) => !['length', 'name', 'prototype'].includes(k));
    for (const m of members) {
      // instance fields (url, ...) are assigned in the constructor
      const field = new RegExp('this\\.' + m + ' = ').test(JS);
      assert.ok(proto.includes(m) || statics.includes(m) || field,
        `${name}.${m} is declared in index.d.ts but missing at run time`);
    }
    for (const m of [...proto, ...statics]) {
      assert.ok(members.has(m), `${name}.${m} exists at run time but index.d.ts does not declare it`);
    }
  }
});

test('a program using the API type-checks against index.d.ts (tsc --strict)', (t) => {
  const tsc = spawnSync('tsc', ['--version'], { encoding: 'utf8' });
  if (tsc.error || tsc.status !== 0) {
    t.skip('tsc is not installed (Debian: node-typescript)');
    return;
  }
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-tsc-'));
  const check = (files) => {
    fs.writeFileSync(path.join(out, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, target: 'es2020', module: 'commonjs',
        moduleResolution: 'node', types: [], lib: ['es2020'] },
      files: [...files, path.join(__dirname, 'types', 'shim.d.ts')],
    }));
    return spawnSync('tsc', ['-p', path.join(out, 'tsconfig.json')],
      { encoding: 'utf8', cwd: out, timeout: 90000 });
  };
  try {
    const p = check([path.join(__dirname, 'types', 'usage.ts')]);
    assert.strictEqual(p.status, 0, p.stdout + p.stderr);
    // and a wrong use is refused, so the check above can fail
    fs.writeFileSync(path.join(out, 'wrong.ts'),
      'import { loadFlow } from ' + JSON.stringify(HERE) + ";\nconst n: number = loadFlow('f.yaml').plan();\n");
    const w = check([path.join(out, 'wrong.ts')]);
    assert.notStrictEqual(w.status, 0, 'tsc accepted a wrong use');
    assert.match(w.stdout, /TS2322/);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
