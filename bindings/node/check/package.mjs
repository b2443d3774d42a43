// The Node package as npm ships it: `npm pack` of bindings/node, installed
// offline from the tarball into an empty project, where `npm install` has
// node-gyp build the addon against librhizos found through pkg-config (this
// build's library, staged by `meson install --destdir`), then loaded with
// require() and with import, outside the checkout.
//
// Usage: node package.mjs PACKAGE_DIR BUILD_DIR PROJECT_VERSION
// Exit 77 (meson: skipped) with the reason when npm, pkg-config, meson or
// Node's headers are missing.
import test from 'node:test';
import assert from 'node:assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

const [PKG, BUILD, VERSION] = process.argv.slice(2);
const ROOT = process.env.RZ_SOURCE_ROOT || path.resolve(PKG, '..', '..');
const FLOW = path.join(ROOT, 'examples', 'flows', 'wordcount.yaml');
// Node's own headers (common.gypi, node_api.h) beside its binary: node-gyp
// would download them otherwise.
const NODEDIR = path.resolve(path.dirname(process.execPath), '..');

function skip(why) {
  console.log('SKIP: ' + why);
  process.exit(77);
}
const has = (cmd, args = ['--version']) => {
  const p = spawnSync(cmd, args, { encoding: 'utf8' });
  return !p.error && p.status === 0;
};
if (!has('npm')) skip('npm is not installed');
if (!has('pkg-config')) skip('pkg-config is not installed');
if (!has('meson')) skip('meson is not on PATH');
if (!fs.existsSync(path.join(NODEDIR, 'include', 'node', 'common.gypi')))
  skip(`Node's headers are not at ${NODEDIR}/include/node (Debian: libnode-dev)`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-npm-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

function run(cmd, args, opts = {}) {
  const p = spawnSync(cmd, args, { encoding: 'utf8', timeout: 240000, ...opts });
  assert.ok(!p.error && p.status === 0,
    `${cmd} ${args.join(' ')} -> ${p.status} ${p.error || ''}\n${p.stdout}\n${p.stderr}`);
  return p;
}

// An environment that knows nothing of the checkout: no addon override, no
// registry (offline), a private npm cache.
const env = { ...process.env, npm_config_cache: path.join(tmp, 'npm-cache'),
  npm_config_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false',
  npm_config_update_notifier: 'false' };
delete env.RHIZOS_NODE_ADDON;
delete env.NODE_PATH;
// meson test points LD_LIBRARY_PATH at the build tree: the addon must find
// its library through the run path pkg-config gave it instead.
delete env.LD_LIBRARY_PATH;

const dest = path.join(tmp, 'destdir');
run('meson', ['install', '-C', BUILD, '--no-rebuild', '--quiet', '--destdir', dest]);
const pcs = spawnSync('find', [dest, '-name', 'rhizos.pc'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
assert.strictEqual(pcs.length, 1, 'installed rhizos.pc: ' + pcs);
// pkg-config reads the installed .pc; its sysroot maps the prefix into DESTDIR
env.PKG_CONFIG_PATH = path.dirname(pcs[0]);
env.PKG_CONFIG_SYSROOT_DIR = dest;

const packed = path.join(tmp, 'packed');
fs.mkdirSync(packed);
const pack = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', packed, PKG],
  { env, cwd: tmp }).stdout);
const tarball = path.join(packed, pack[0].filename);

const app = path.join(tmp, 'app');
fs.mkdirSync(app);
fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }));
const install = spawnSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--foreground-scripts',
  '--nodedir=' + NODEDIR, tarball], { encoding: 'utf8', cwd: app, env, timeout: 240000 });

test('npm pack carries what installing needs, and nothing of the checkout', () => {
  assert.strictEqual(pack[0].name, 'rhizos');
  assert.strictEqual(pack[0].version, VERSION, 'package.json version is not the project version');
  const files = pack[0].files.map((f) => f.path).sort();
  for (const f of ['binding.gyp', 'index.d.ts', 'index.js', 'index.mjs', 'package.json',
    'src/addon.c', 'src/addon.h', 'src/client.c'])
    assert.ok(files.includes(f), `${f} missing from the package: ${files}`);
  assert.deepStrictEqual(files.filter((f) => f.startsWith('test/') || f === 'meson.build' ||
    f.endsWith('.node')), []);
});

test('npm install --offline builds the addon against librhizos through pkg-config', () => {
  assert.strictEqual(install.status, 0, install.stdout + install.stderr);
  const addon = path.join(app, 'node_modules', 'rhizos', 'build', 'Release', 'rhizos.node');
  assert.ok(fs.existsSync(addon), 'no addon at ' + addon);
  const ldd = spawnSync('ldd', [addon], { encoding: 'utf8', env }).stdout;
  assert.match(ldd, new RegExp('librhizos\\.so\\.0 => ' + dest.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')),
    'the addon does not load the library pkg-config named:\n' + ldd);
});

const probe = (file, text) => {
  fs.writeFileSync(path.join(app, file), text);
  return spawnSync(process.execPath, [file, FLOW], { encoding: 'utf8', cwd: app, env, timeout: 60000 });
};
const checkProbe = (p) => {
  assert.strictEqual(p.status, 0, p.stdout + p.stderr);
  const [version, libVersion, name, stages, addon] = p.stdout.trim().split(' ');
  assert.deepStrictEqual([version, libVersion, name], [VERSION, VERSION, 'wordcount']);
  assert.ok(Number(stages) > 1, p.stdout);
  assert.ok(addon.startsWith(path.join(app, 'node_modules', 'rhizos') + path.sep), addon);
};

test('require("rhizos") loads the installed package', () => {
  checkProbe(probe('probe.cjs', `const { loadFlow, version, libraryVersion, addonPath } = require('rhizos');
const f = loadFlow(process.argv[2]);
console.log(version, libraryVersion, f.name, f.plan().length, addonPath);
`));
});

test('import { loadFlow } from "rhizos" loads the same package as an ES module', () => {
  checkProbe(probe('probe.mjs', `import { loadFlow, version, libraryVersion, addonPath } from 'rhizos';
import rhizos from 'rhizos';
if (rhizos.loadFlow !== loadFlow) throw new Error('default and named exports differ');
const f = loadFlow(process.argv[2]);
console.log(version, libraryVersion, f.name, f.plan().length, addonPath);
`));
});
