// The wasm adapter's runner (lib/exec/wasm.c): node runs this (`-e`, with
// --no-warnings) inside the step's sandbox. Its settings come as one JSON
// line on stdin: {module, sha256, scratch, max_pages, tag, env, secrets}; the
// module's own stdin is the request file. Only the folders of the
// protocol are preopened: /rz/in, /rz/out, /tmp (the scratch's) and
// /run/secrets (files written here, removed at the end). A failure of the
// runtime itself is one stderr line starting with `tag`, which the
// adapter takes out of the log as the reason.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { WASI } = require('node:wasi');

const PAGE = 65536;
// Held for the whole run: node 20 may collect a WASI object that only
// the running instance still uses, and abort in its destructor.
globalThis.rzKeep = null;

function fail(tag, why, code) {
  fs.writeSync(2, '\n' + tag + ' ' + why.replace(/\n/g, ' ') + '\n');
  process.exit(code);
}

function readStdinLine() {
  const chunks = [];
  const buf = Buffer.alloc(65536);
  for (;;) {
    let n;
    try { n = fs.readSync(0, buf, 0, buf.length, null); }
    catch (e) { if (e.code === 'EAGAIN') continue; throw e; }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function leb(buf, pos) {
  let v = 0, mul = 1, b;
  do {
    b = buf[pos++];
    v += (b & 0x7f) * mul;
    mul *= 128;
  } while (b & 0x80);
  return [v, pos];
}

function uleb(v) {
  const out = [];
  do {
    let b = v % 128;
    v = Math.floor(v / 128);
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return Buffer.from(out);
}

// Whether the import section at pos names a memory (kind 2); read here
// rather than by compiling the module twice.
function importsMemory(bytes, pos) {
  let count;
  [count, pos] = leb(bytes, pos);
  const skipLimits = (p) => {
    const flags = bytes[p++];
    [, p] = leb(bytes, p);
    if (flags & 1) [, p] = leb(bytes, p);
    return p;
  };
  for (let i = 0; i < count; i++) {
    let n;
    [n, pos] = leb(bytes, pos);   // module name
    pos += n;
    [n, pos] = leb(bytes, pos);   // field name
    pos += n;
    const kind = bytes[pos++];
    if (kind === 2) return true;
    if (kind === 0) [, pos] = leb(bytes, pos);             // function
    else if (kind === 1) pos = skipLimits(pos + 1);        // table
    else if (kind === 3) pos += 2;                         // global
    else if (kind === 4) [, pos] = leb(bytes, pos + 1);    // tag
    else throw new Error('unknown import kind ' + kind);
  }
  return false;
}

// The module with its memory's maximum set to at most cap pages. A module
// that imports its memory, has several, or starts above the cap is refused.
function capMemory(bytes, cap) {
  if (bytes.length < 8 || bytes.readUInt32LE(0) !== 0x6d736100)
    throw new Error('not a WebAssembly module');
  const parts = [bytes.subarray(0, 8)];
  let pos = 8, found = false;
  while (pos < bytes.length) {
    const id = bytes[pos];
    const [size, body] = leb(bytes, pos + 1);
    const end = body + size;
    if (end > bytes.length) throw new Error('truncated section');
    if (id === 2 && importsMemory(bytes, body))
      throw new Error('the module imports its memory; it must define it');
    if (id !== 5) { parts.push(bytes.subarray(pos, end)); pos = end; continue; }
    let [count, p] = leb(bytes, body);
    if (count !== 1) throw new Error('the module must define one memory');
    const flags = bytes[p++];
    if (flags & ~1) throw new Error('shared or 64-bit memories are not supported');
    let min, max = Infinity;
    [min, p] = leb(bytes, p);
    if (flags & 1) [max, p] = leb(bytes, p);
    if (p !== end) throw new Error('malformed memory section');
    if (min > cap)
      throw Object.assign(new Error('the module needs ' + (min * PAGE >> 20) +
        ' MiB of memory to start, over its cap of ' + (cap * PAGE >> 20) +
        ' MiB'), { memory: true });
    const sec = Buffer.concat([uleb(1), Buffer.from([1]), uleb(min),
                               uleb(Math.min(max, cap))]);
    parts.push(Buffer.from([5]), uleb(sec.length), sec);
    found = true;
    pos = end;
  }
  return { bytes: Buffer.concat(parts), found };
}

function secretsDir(scratch, secrets) {
  const dir = fs.mkdtempSync(path.join(scratch, '.secrets-'));
  fs.chmodSync(dir, 0o700);
  for (const [name, value] of Object.entries(secrets || {}))
    fs.writeFileSync(path.join(dir, name), value, { mode: 0o400 });
  return dir;
}

function main() {
  const cfg = readStdinLine();
  const tag = cfg.tag;
  let bytes;
  try { bytes = fs.readFileSync(cfg.module); }
  catch (e) { fail(tag, 'cannot read the module: ' + e.message, 125); }
  // The adapter checked the file; this checks the very bytes compiled.
  const digest = crypto.createHash('sha256').update(bytes).digest('hex');
  if (digest !== cfg.sha256)
    fail(tag, 'the module\'s sha256 is ' + digest + ', not the manifest\'s ' +
         cfg.sha256 + ': refused', 125);
  let mod;
  try { mod = capMemory(bytes, cfg.max_pages); }
  catch (e) { fail(tag, (e.memory ? 'out of memory: ' : 'bad module: ') +
                   e.message, 125); }
  const tmp = path.join(cfg.scratch, 'tmp');
  fs.mkdirSync(tmp, { recursive: true });
  const secrets = secretsDir(cfg.scratch, cfg.secrets);
  delete cfg.secrets;
  const env = Object.assign({}, cfg.env, { HOME: '/tmp', TMPDIR: '/tmp' });
  const stdin = fs.openSync(path.join(cfg.scratch, 'in', 'request.json'), 'r');
  const wasi = new WASI({
    version: 'preview1',
    args: ['step.wasm'],
    env,
    preopens: {
      '/rz/in': path.join(cfg.scratch, 'in'),
      '/rz/out': path.join(cfg.scratch, 'out'),
      '/tmp': tmp,
      '/run/secrets': secrets,
    },
    stdin, stdout: 1, stderr: 2,
    returnOnExit: true,
  });
  globalThis.rzKeep = wasi;
  let code = 0, trap = null, instance;
  try {
    const m = new WebAssembly.Module(mod.bytes);
    instance = new WebAssembly.Instance(m, wasi.getImportObject());
    code = wasi.start(instance);
  } catch (e) {
    trap = e;
  }
  fs.rmSync(secrets, { recursive: true, force: true });
  const mem = instance && instance.exports.memory;
  const pages = mem instanceof WebAssembly.Memory ? mem.buffer.byteLength / PAGE : 0;
  // An allocation past the cap fails inside the module (memory.grow gives
  // -1); a failure with the memory nearly full is told as that.
  const full = pages > 0 && pages * 8 >= cfg.max_pages * 7;
  if ((trap || code !== 0) && full)
    fail(tag, 'out of memory: the module\'s linear memory reached its cap (' +
         (cfg.max_pages * PAGE >> 20) + ' MiB, from memory_mb)' +
         (trap ? ' and it trapped: ' + trap.message : ' and it exited with ' +
          code), trap ? 134 : code);
  if (trap instanceof WebAssembly.RuntimeError)
    fail(tag, 'the module trapped: ' + trap.message, 134);
  if (trap)
    fail(tag, 'cannot run the module: ' + trap.message, 125);
  process.exitCode = code;
}

main();
