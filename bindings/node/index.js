'use strict';
/**
 * RhizOS for Node.js: flows, plans, embedded runs, matching, the escrow
 * ledger and the credential vault, over librhizos through the N-API addon
 * rhizos.node (ABI-stable across Node versions).
 *
 * The addon is found at $RHIZOS_NODE_ADDON, next to this file, where
 * node-gyp builds it when the packed package is installed (build/Release/),
 * or in a build folder of the checkout this file sits in
 * (build* /bindings/node/).
 * Client talks to an orchestrator (docs/api.md); see docs/bindings.md.
 */
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

function findAddon() {
  const tried = [];
  const env = process.env.RHIZOS_NODE_ADDON;
  if (env) return [env];
  tried.push(path.join(__dirname, 'rhizos.node'));
  tried.push(path.join(__dirname, 'build', 'Release', 'rhizos.node'));
  const root = path.resolve(__dirname, '..', '..');
  if (fs.existsSync(path.join(root, 'include', 'rhizos', 'common.h'))) {
    const builds = fs.readdirSync(root).filter((d) => d.startsWith('build')).sort((a, b) =>
      (a === 'build' ? -1 : b === 'build' ? 1 : a.localeCompare(b)));
    for (const d of builds) tried.push(path.join(root, d, 'bindings', 'node', 'rhizos.node'));
  }
  return tried;
}

function loadAddon() {
  const candidates = findAddon();
  for (const p of candidates) {
    if (!fs.existsSync(p)) continue;
    return { native: require(p), addonPath: path.resolve(p) };
  }
  const err = new Error('rhizos.node not found (tried ' + candidates.join(', ') +
    '); build it with meson or set RHIZOS_NODE_ADDON');
  err.code = 'RZ_ENOENT';
  throw err;
}

const { native, addonPath } = loadAddon();

function closedError(what) {
  const e = new Error(what + ' is closed');
  e.code = 'RZ_ESTATE';
  return e;
}

// Handles are napi_externals: their finalizers free the C side on GC;
// close() frees it at once, and any later use throws Error{code:'RZ_ESTATE'}.

// ---- flows ---------------------------------------------------------------

function defaultRegistries() {
  const out = [];
  const env = process.env.RHIZOS_MODULES;
  if (env) for (const p of env.split(':')) if (p) out.push(p);
  for (const c of ['examples/modules', path.resolve(__dirname, '..', '..', 'examples', 'modules')]) {
    if (fs.existsSync(c) && fs.statSync(c).isDirectory()) { out.push(c); break; }
  }
  return out;
}

class Flow {
  /** @param {any} handle */
  constructor(handle) { this._h = handle; this._validated = false; }
  _use() { if (!this._h) throw closedError('Flow'); return this._h; }
  get closed() { return !this._h; }
  get _info() { return native.flowInfo(this._use()); }
  get name() { return this._info.name; }
  get file() { return this._info.file; }
  get format() { return this._info.format; }
  get steps() { return this._info.steps; }
  get nodes() { return this.toObject({ builder: true }).nodes || []; }
  get connections() { return this.toObject({ builder: true }).connections || []; }
  get validated() { return !!this._h && this._validated; }

  /**
   * Check against module registries; returns every diagnostic ([] = valid).
   * registries: folders or index URLs; undefined = the defaults
   * ($RHIZOS_MODULES and examples/modules); [] checks structure only.
   */
  validate(registries) {
    const regs = registries === undefined ? defaultRegistries() : registries;
    if (!Array.isArray(regs)) throw Object.assign(new TypeError('registries must be an array'), { code: 'RZ_EINVAL' });
    const structureOnly = registries !== undefined && registries.length === 0;
    const r = native.flowValidate(this._use(), structureOnly ? null : regs);
    this._validated = r.valid;
    return r.diagnostics;
  }

  /** True while a step runs another flow file (`flow: FILE`) not yet put in its place. */
  get hasSubflows() { return this.steps.some((s) => s.flow !== undefined); }

  /**
   * Put each sub-flow step's child flow in its place, as the CLI does:
   * the child (relative to this flow's file, or to the filename given to
   * parseFlow; the current folder without one) becomes steps
   * "<step>-<child step>". Structure checked, modules not (validate()
   * does both, and expands too). Throws with every problem, the flow
   * unchanged; returns the warnings.
   */
  expand() { return this.hasSubflows ? native.flowExpand(this._use()) : []; }

  /** Stages in execution order: [['a'], ['b', 'c'], ['d']]. */
  plan() { return this.planInfo().stages; }
  /** {stages, critical_path, critical_seconds, steps}; sub-flows expanded first. */
  planInfo() { this.expand(); return JSON.parse(native.flowPlan(this._use())); }

  /** Canonical JSON, credentials stripped. */
  toJSON(opts = {}) {
    if (!this._h) return null;   // JSON.stringify(closedFlow) stays harmless
    const flags = (opts.pretty ? 1 : 0) | (opts.builder ? 2 : 0);
    return native.flowExport(this._use(), 'json', flags);
  }
  toObject(opts = {}) { return JSON.parse(this.toJSON({ builder: !!opts.builder })); }
  toYAML() { return native.flowExport(this._use(), 'yaml', 0); }
  /** What `rhizos flow export` prints. */
  export() { return native.flowExport(this._use(), 'json', 1); }

  close() {
    if (this._h) { native.flowClose(this._h); this._h = null; this._validated = false; }
  }
  [Symbol.dispose]() { this.close(); }
}

function looksLikePath(s) {
  if (s.includes('\n') || s.length >= 4096) return false;
  return fs.existsSync(s) || (!s.includes('{') && !s.includes(': ') && !s.endsWith(':'));
}

/**
 * Load a flow from a path, document text or a Buffer.
 * @param {string|Buffer} source
 * @param {{format?: 'json'|'yaml'|'cbor', filename?: string}} [opts]
 */
function loadFlow(source, opts = {}) {
  const format = opts.format || null;
  if (Buffer.isBuffer(source)) return new Flow(native.flowParse(source, format, opts.filename || null));
  if (typeof source !== 'string') throw Object.assign(new TypeError('loadFlow wants a path, text or Buffer'), { code: 'RZ_EINVAL' });
  if (looksLikePath(source)) return new Flow(native.flowLoad(source, format));
  return new Flow(native.flowParse(source, format, opts.filename || null));
}

// ---- runs ----------------------------------------------------------------

/**
 * Run a flow on this machine, on a worker thread. Resolves with
 * {id, flow, status, steps: {id: {status, attempts, outputs, error?}}, outputs}.
 * A run whose steps fail resolves with status 'failed'; the promise rejects
 * only when the run could not be carried out.
 */
async function run(flow, inputs = {}, opts = {}) {
  if (!(flow instanceof Flow)) throw Object.assign(new TypeError('run() wants a Flow'), { code: 'RZ_EINVAL' });
  if (!flow.validated) {
    const diags = flow.validate(opts.registries);
    if (!flow.validated) {
      const first = diags.find((d) => d.severity === 'error');
      const e = new Error(first ? `${first.file}:${first.line}:${first.column}: ${first.message}`
        : 'flow not validated against a module registry');
      e.code = 'RZ_EINVALID';
      e.diagnostics = diags;
      throw e;
    }
  }
  const runId = opts.runId || `run-${Date.now()}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
  const vault = opts.vault ? opts.vault._use() : null;
  const json = await native.run(flow._use(), JSON.stringify(inputs || {}), runId,
    opts.dataDir || null, opts.jobs || 0, opts.sandbox === false ? 0 : 1, vault,
    opts.llmServers || null);
  const r = JSON.parse(json);
  r.outputs = r.outputs || {};
  r.ok = r.status === 'succeeded';
  return r;
}

/**
 * Flow inputs from 'NAME=VALUE' texts by the CLI's --input rule (the
 * library's rz_flow_inputs_parse): VALUE as JSON if it parses, else a
 * string; a later NAME wins; a NUL (\\u0000) in a value is an error.
 */
function inputsFromPairs(pairs) {
  return JSON.parse(native.flowInputsParse(pairs));
}

// ---- matcher -------------------------------------------------------------

const asJSON = (v) => (typeof v === 'string' ? v : JSON.stringify(v));
const jobId = (j) => { try { const o = typeof j === 'string' ? JSON.parse(j) : j; return o && o.id != null ? String(o.id) : ''; } catch { return ''; } };

class Matcher {
  constructor(policy = 'cheapest', nodes = []) {
    this._h = native.matcherNew(policy);
    for (const n of nodes) this.addNode(n);
  }
  _use() { if (!this._h) throw closedError('Matcher'); return this._h; }
  get closed() { return !this._h; }
  addNode(node) { return native.matcherAdd(this._use(), asJSON(node)); }
  removeNode(id) { native.matcherRemove(this._use(), id); }
  get nodes() { return native.matcherNodes(this._use()); }
  /** {job, node, costMicros, ticket} or null when no node fits now. */
  place(job) {
    const p = native.matcherPlace(this._use(), asJSON(job));
    return p && { job: jobId(job), ...p };
  }
  placeAll(jobs) {
    return jobs.map((j) => this.place(j) || { job: jobId(j), node: null, costMicros: 0, reason: this.explain(j) });
  }
  release(placement) {
    const t = placement && typeof placement === 'object' ? placement.ticket : placement;
    native.matcherRelease(this._use(), typeof t === 'bigint' ? t : BigInt(t));
  }
  explain(job) { return native.matcherExplain(this._use(), asJSON(job)); }
  usage(node) {
    const idx = typeof node === 'number' ? node : this.nodes.indexOf(node);
    if (idx < 0) { const e = new Error(`no node '${node}'`); e.code = 'RZ_ENOENT'; throw e; }
    return native.matcherUsage(this._use(), idx);
  }
  stats() { return native.matcherStats(this._use()); }
  close() { if (this._h) { native.matcherClose(this._h); this._h = null; } }
  [Symbol.dispose]() { this.close(); }
}

function detectHardware() { return JSON.parse(native.detectHardware()); }

// ---- ledger --------------------------------------------------------------

const U128 = (1n << 128n) - 1n;
function ledgerId(v) {
  if (typeof v === 'bigint' || (typeof v === 'number' && Number.isSafeInteger(v))) {
    const b = BigInt(v);
    if (b < 0n || b > U128) throw Object.assign(new RangeError('not a 128-bit ledger id'), { code: 'RZ_EINVAL' });
    return '0x' + b.toString(16);
  }
  if (typeof v === 'string') return v;
  throw Object.assign(new TypeError('a ledger id is a bigint, a safe integer or a string'), { code: 'RZ_EINVAL' });
}
function newId() {
  for (;;) { const h = crypto.randomBytes(16).toString('hex'); if (BigInt('0x' + h) >= 16n) return h; }
}

class Ledger {
  /** @param {string} dir @param {{feeBps?: number, durable?: boolean}} [opts] */
  constructor(dir, opts = {}) {
    this.feeBps = opts.feeBps === undefined ? 500 : opts.feeBps;
    this._h = native.ledgerOpen(dir, this.feeBps, opts.durable === false ? 0 : 1);
  }
  _use() { if (!this._h) throw closedError('Ledger'); return this._h; }
  get closed() { return !this._h; }
  _op(op, ids, amounts = []) { return native.ledgerOp(this._use(), op, ids.map(ledgerId), amounts); }
  createAccount(id, kind = 'client') {
    if (kind !== 'client' && kind !== 'node') throw Object.assign(new RangeError("kind is 'client' or 'node'"), { code: 'RZ_EINVAL' });
    this._op(kind === 'client' ? 'createClient' : 'createNode', [id]);
  }
  testCredit(account, micros, opts = {}) { const id = opts.id || newId(); this._op('testCredit', [id, account], [micros]); return id; }
  depositRequest(account, micros, opts = {}) { const id = opts.id || newId(); this._op('depositRequest', [id, account], [micros]); return id; }
  depositConfirm(request, opts = {}) { const id = opts.id || newId(); this._op('depositConfirm', [id, request]); return id; }
  withdrawRequest(account, micros, opts = {}) { const id = opts.id || newId(); this._op('withdrawRequest', [id, account], [micros]); return id; }
  withdrawComplete(request, opts = {}) { const id = opts.id || newId(); this._op('withdrawComplete', [id, request]); return id; }
  /** Void a pending withdrawal: its money is available again. */
  withdrawCancel(request, opts = {}) { const id = opts.id || newId(); this._op('withdrawCancel', [id, request]); return id; }
  hold(job, client, micros, opts = {}) { const id = opts.id || newId(); this._op('hold', [id, job, client], [micros, opts.timeout || 0]); return id; }
  /** @returns {{payout: bigint, fee: bigint}} */
  settle(job, node, micros, opts = {}) { const [payout, fee] = this._op('settle', [opts.id || newId(), job, node], [micros]); return { payout, fee }; }
  /** @returns {bigint} micros released to the client */
  refund(job, opts = {}) { return this._op('refund', [opts.id || newId(), job])[0]; }
  tick(now) { return this._op('tick', [], [now])[0]; }
  verify() { this._op('verify', []); return true; }
  checkpoint() { this._op('checkpoint', []); }
  balance(account) { return native.ledgerBalance(this._use(), ledgerId(account)); }
  stats() { return native.ledgerStats(this._use()); }
  export() { return JSON.parse(native.ledgerExport(this._use())); }
  close() { if (this._h) { native.ledgerClose(this._h); this._h = null; } }
  [Symbol.dispose]() { this.close(); }
}
Ledger.PLATFORM = '0x1';
Ledger.ESCROW = '0x2';
Ledger.EXTERNAL = '0x3';

// ---- vault ---------------------------------------------------------------

const KDF = { interactive: [2, 64 * 1024 * 1024], moderate: [0, 0], sensitive: [4, 1024 * 1024 * 1024] };
const toBuf = (v, what) => {
  if (Buffer.isBuffer(v)) return v;
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (v instanceof Uint8Array) return Buffer.from(v);
  throw Object.assign(new TypeError(what + ' is a string or a Buffer'), { code: 'RZ_EINVAL' });
};

class Vault {
  /**
   * Open (or, when missing and create !== false, create) a vault.
   * @param {string} file @param {string|Buffer} password
   * @param {{create?: boolean, kdf?: 'interactive'|'moderate'|'sensitive'|[number, number], autosave?: boolean}} [opts]
   */
  constructor(file, password, opts = {}) {
    const create = opts.create === true || (opts.create === undefined && !fs.existsSync(file));
    const kdf = Array.isArray(opts.kdf) ? opts.kdf : KDF[opts.kdf || 'moderate'];
    if (!kdf) throw Object.assign(new RangeError('kdf is interactive, moderate, sensitive or [ops, mem]'), { code: 'RZ_EINVAL' });
    this.path = file;
    this.autosave = opts.autosave !== false;
    this._h = native.vaultOpen(file, toBuf(password, 'password'), create, kdf[0], kdf[1]);
  }
  _use() { if (!this._h) throw closedError('Vault'); return this._h; }
  get closed() { return !this._h; }
  /** @returns {string} the new entry's id */
  add(name, type, value, metadata) {
    return native.vaultAdd(this._use(), name, type, metadata ? JSON.stringify(metadata) : null,
      toBuf(value, 'value'), this.autosave);
  }
  list() {
    return native.vaultList(this._use()).map((e) => ({ ...e, metadata: JSON.parse(e.metadata || '{}') }));
  }
  has(idOrName) { return this.list().some((e) => e.id === idOrName || e.name === idOrName); }
  /** @returns {Buffer} */
  reveal(idOrName) { return native.vaultReveal(this._use(), idOrName); }
  get(idOrName) { return this.reveal(idOrName).toString('utf8'); }
  remove(idOrName) { native.vaultRemove(this._use(), idOrName, this.autosave); }
  save() { native.vaultSave(this._use()); }
  /**
   * The credentials `flow` references, sealed to an orchestrator's X25519
   * key (a 32-byte Buffer, or the 64 hex digits of its GET /api/v1/keys):
   * {credentialId: base64 box}, the `credentials` of a deployment
   * (rz_vault_seal_flow). Boxes expire at expiresMs (0: in an hour).
   */
  sealFlow(flow, publicKey, expiresMs = 0) {
    if (!(flow instanceof Flow)) throw Object.assign(new TypeError('sealFlow() wants a Flow'), { code: 'RZ_EINVAL' });
    const pk = typeof publicKey === 'string' && /^[0-9a-fA-F]{64}$/.test(publicKey) ? Buffer.from(publicKey, 'hex') : publicKey;
    return JSON.parse(native.vaultSealFlow(this._use(), flow._use(), pk, expiresMs));
  }
  close() { if (this._h) { native.vaultClose(this._h); this._h = null; } }
  [Symbol.dispose]() { this.close(); }
  toJSON() { return { path: this.path }; }
}

// ---- cost estimate -------------------------------------------------------

function defaultPrices() {
  for (const c of ['data/prices', path.resolve(__dirname, '..', '..', 'data', 'prices')]) {
    if (fs.existsSync(c) && fs.statSync(c).isDirectory()) return [c];
  }
  const e = new Error('no price tables: data/prices not found; pass {prices: [FILE, ...]}');
  e.code = 'RZ_ENOENT';
  throw e;
}

/**
 * What a validated flow costs, renting nodes versus API providers:
 * {steps: [{step, module, estimate_seconds, rent, api, recommendation,
 * cost_micros}], total_micros, complete, prices}. opts.prices: table files
 * or folders (nodes.json + providers.json); default data/prices.
 */
function estimate(flow, opts = {}) {
  if (!(flow instanceof Flow)) throw Object.assign(new TypeError('estimate() wants a Flow'), { code: 'RZ_EINVAL' });
  const files = [];
  for (const p of opts.prices || defaultPrices()) {
    if (fs.existsSync(p) && fs.statSync(p).isDirectory()) {
      files.push(path.join(p, 'nodes.json'), path.join(p, 'providers.json'));
    } else files.push(p);
  }
  return JSON.parse(native.flowEstimate(flow._use(), files));
}

// ---- orchestrator client -------------------------------------------------

function flowBody(flow) {
  if (flow instanceof Flow) { flow.expand(); return flow.toJSON(); }   // credentials stripped
  if (Buffer.isBuffer(flow)) return flow.toString('utf8');
  if (flow && typeof flow === 'object') return flow;       // builder JSON object
  if (typeof flow !== 'string') throw Object.assign(new TypeError('deploy() wants a Flow, a path, text or an object'), { code: 'RZ_EINVAL' });
  if (!looksLikePath(flow)) return flow;
  let text;
  try { text = fs.readFileSync(flow, 'utf8'); } catch (err) {
    const e = new Error(`${flow}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
    e.code = err.code === 'ENOENT' ? 'RZ_ENOENT' : 'RZ_EIO';
    throw e;
  }
  if (!text.includes('flow:') && !text.includes('"flow"')) return text;
  // sub-flow files are read here, beside this one: the server never reads them
  const f = loadFlow(flow);
  try {
    if (!f.hasSubflows) return text;
    f.expand();
    return f.toJSON();
  } finally { f.close(); }
}

function deploymentId(id) {
  if (!Number.isSafeInteger(id) || id < 0) throw Object.assign(new RangeError('a deployment id is a non-negative integer'), { code: 'RZ_EINVAL' });
  return id;
}

function protocolError(msg) { const e = new Error(msg); e.code = 'RZ_EPROTOCOL'; return e; }

class Client {
  /**
   * A connection to an orchestrator. Every method returns a Promise; the
   * HTTP exchange runs on the libuv thread pool.
   * @param {string} url e.g. 'http://127.0.0.1:8080'
   * @param {string|null} [apiKey]
   * @param {{timeout?: number, caFile?: string}} [opts] timeout: per-request
   *   limit in ms (default 30000; 0 none); caFile: a PEM file of CA
   *   certificates to verify an https server with, instead of the system's
   */
  constructor(url, apiKey = null, opts = {}) {
    const t = opts.timeout === undefined ? 30000 : opts.timeout;
    if (!Number.isInteger(t) || t < 0 || t > 2147483647) throw Object.assign(new RangeError('timeout is whole ms >= 0'), { code: 'RZ_EINVAL' });
    this.url = url;
    if (opts.caFile !== undefined && opts.caFile !== null && typeof opts.caFile !== 'string') throw Object.assign(new TypeError('caFile is a path'), { code: 'RZ_EINVAL' });
    this._h = native.clientNew(url, apiKey, t, opts.caFile === undefined ? null : opts.caFile);
    this._tail = Promise.resolve();    // requests take turns on one connection
    this._pending = 0;
    this._watches = new Set();
  }
  _use() { if (!this._h) throw closedError('Client'); return this._h; }
  get closed() { return !this._h; }

  /**
   * One API call; resolves with the parsed reply (null when empty). Errors
   * have .code 'RZ_E...', .httpStatus and, for an invalid flow, .diagnostics.
   */
  request(method, urlPath, body) {
    let h;
    try { h = this._use(); } catch (e) { return Promise.reject(e); }
    const text = body === undefined || body === null ? null : typeof body === 'string' ? body : JSON.stringify(body);
    this._pending++;
    const p = this._tail.then(() => native.clientCall(h, method, urlPath, text));
    this._tail = p.then(() => {}, () => {}).then(() => { this._pending--; });
    return p.then((r) => (r ? JSON.parse(r) : null), (e) => {
      if (typeof e.body === 'string') {
        try { const d = JSON.parse(e.body); if (Array.isArray(d.diagnostics)) e.diagnostics = d.diagnostics; } catch { /* not JSON */ }
        delete e.body;
      }
      throw e;
    });
  }

  /**
   * Deploy a flow (a Flow, a path, YAML/JSON text or a builder object);
   * resolves with the deployment id. opts.vault seals the credentials the
   * flow references to this orchestrator's key, as `rhizos flow deploy`
   * does; opts.credentials gives boxes sealed already instead.
   */
  async deploy(flow, inputs, opts = {}) {
    this._use();
    if (opts.vault && opts.credentials) throw Object.assign(new TypeError('give credentials or vault, not both'), { code: 'RZ_EINVAL' });
    const body = { flow: flowBody(flow) };
    if (inputs) body.inputs = inputs;
    const credentials = opts.vault ? await this._sealed(flow, body.flow, opts.vault) : opts.credentials;
    if (credentials) body.credentials = credentials;
    const r = await this.request('POST', '/api/v1/flows/deploy', body);
    if (!r || !Number.isSafeInteger(r.id)) throw protocolError('deploy reply has no id');
    return r.id;
  }
  /** The flow's credentials sealed to this orchestrator; null when it references none. */
  async _sealed(flow, body, vault) {
    const loaded = flow instanceof Flow ? flow : loadFlow(typeof body === 'string' ? body : JSON.stringify(body));
    try {
      if (native.flowReferences(loaded._use()) === 0) return null;
      const keys = await this.request('GET', '/api/v1/keys');
      const key = keys && keys.x25519_public_key;
      if (typeof key !== 'string' || !/^[0-9a-fA-F]{64}$/.test(key)) throw protocolError("the orchestrator's /api/v1/keys reply has no usable key");
      return vault.sealFlow(loaded, key);
    } finally {
      if (loaded !== flow) loaded.close();
    }
  }
  /** {id, flow, status, steps, outputs, held_micros, charged_micros} */
  async status(id) { return this.request('GET', `/api/v1/flows/${deploymentId(id)}/status`); }
  /** Cancel a running deployment; resolves with its status (RZ_ESTATE once finished). */
  async cancel(id) { return this.request('DELETE', `/api/v1/flows/${deploymentId(id)}`); }
  /** Pause a running deployment: no step starts until resume() (started ones finish); resolves with its status. */
  async pause(id) { return this.request('POST', `/api/v1/flows/${deploymentId(id)}/pause`); }
  /** Resume a paused deployment; resolves with its status. */
  async resume(id) { return this.request('POST', `/api/v1/flows/${deploymentId(id)}/resume`); }
  /** Approve (or with reject: true, reject) an approval step that awaits a decision; resolves with the status. */
  async approve(id, step, comment, { reject = false } = {}) {
    if (typeof step !== 'string' || step === '') throw new TypeError('step must be a step id');
    const body = comment === undefined ? {} : { comment };
    return this.request('POST', `/api/v1/flows/${deploymentId(id)}/steps/${encodeURIComponent(step)}/${reject ? 'reject' : 'approve'}`, body);
  }
  /** Reject an approval step: it fails and the steps after it are skipped. */
  async reject(id, step, comment) { return this.approve(id, step, comment, { reject: true }); }
  /** This key's deployments. */
  async flows() { return ((await this.request('GET', '/api/v1/flows')) || {}).flows || []; }
  /** This key's account: {id, kind, balance_micros, pending_micros, credits_micros, debits_micros}. */
  async balance() { return this.request('GET', '/api/v1/accounts/me'); }
  /** Ask to withdraw `micros` (held until the treasury completes or fails it). */
  async withdraw(micros, address) {
    return this.request('POST', '/api/v1/accounts/me/withdraw',
      address === undefined ? { amount_micros: micros } : { amount_micros: micros, address });
  }
  /** This key's withdrawals, newest first: [{id, account, amount_micros, status, address?, tx?, reason?}]. */
  async withdrawals() { return ((await this.request('GET', '/api/v1/accounts/me/withdrawals')) || {}).withdrawals || []; }

  /**
   * Follow a deployment: an async iterator of its status objects (at once,
   * on every change, the last when it finished). Read on a thread of its
   * own; `break` (or return()) stops at once, and that connection ends at
   * the server's next event. opts.idleTimeout (ms) drops a silent stream
   * with RZ_ECONNECT.
   */
  watch(id, opts = {}) {
    const h = this._use();
    const urlPath = `/api/v1/flows/${deploymentId(id)}/events`;
    const idle = opts.idleTimeout || 0;
    const queue = [];
    const waiters = [];
    let finished = false;
    let failure = null;
    let handle = null;
    const client = this;
    const settle = () => {
      while (waiters.length && (queue.length || finished)) {
        const w = waiters.shift();
        if (queue.length) w.resolve({ value: queue.shift(), done: false });
        else if (failure) { const e = failure; failure = null; w.reject(e); }
        else w.resolve({ value: undefined, done: true });
      }
    };
    const finish = (err, early) => {
      if (finished) return;
      finished = true;
      failure = err || null;
      if (handle) native.clientWatchStop(handle, !!early);
      client._watches.delete(it);
      settle();
    };
    const it = {
      next() {
        return new Promise((resolve, reject) => { waiters.push({ resolve, reject }); settle(); });
      },
      return(value) {
        queue.length = 0;
        failure = null;
        finish(null, true);
        return Promise.resolve({ value, done: true });
      },
      [Symbol.asyncIterator]() { return this; },
      _close() { queue.length = 0; finish(closedError('Client'), true); },
    };
    handle = native.clientWatch(h, urlPath, idle, (event, data, err) => {
      if (finished) return;
      if (event === null) { finish(err); return; }
      let doc;
      try { doc = JSON.parse(data); } catch { finish(protocolError(`event data is not JSON: ${event}`), true); return; }
      queue.push(doc);
      if (event === 'end') finish(null); else settle();
    });
    this._watches.add(it);
    return it;
  }

  /**
   * Release the connection: at once when idle, else once the requests
   * already made have settled. Later calls reject with RZ_ESTATE; running
   * watches end with RZ_ESTATE.
   */
  close() {
    if (!this._h) return;
    const h = this._h;
    this._h = null;
    for (const w of [...this._watches]) w._close();
    if (this._pending === 0) native.clientClose(h);
    else this._tail.then(() => native.clientClose(h));
  }
  [Symbol.dispose]() { this.close(); }
  toJSON() { return { url: this.url }; }
}

module.exports = {
  version: require('./package.json').version,
  libraryVersion: native.version(),
  addonPath,
  statusName: native.statusName,
  loadFlow, Flow, run, inputsFromPairs, Matcher, detectHardware, Ledger, Vault, newId,
  estimate, Client,
};
