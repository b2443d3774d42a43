#!/usr/bin/env node
// Deploy a flow to an orchestrator and follow it to the end.
//
//   RHIZOS_URL=http://127.0.0.1:8080 RHIZOS_API_KEY=rzk_... \
//       node examples/node/deploy.mjs [FLOW] [--input NAME=VALUE ...]
//
// Loads FLOW (default examples/flows/wordcount.yaml), validates it against
// the module registries (diagnostics, exit 1), prints the plan and the cost
// estimate, deploys it, prints progress until it finishes, then its outputs.
// Exits 0 only when the deployment succeeded.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const require = createRequire(import.meta.url);
let rz;
try { rz = require('rhizos'); } catch { rz = require(path.join(root, 'bindings', 'node')); }

// Dollars from micro-dollars, with as many decimals as needed (at least 2).
const money = (m) => `$${Math.floor(m / 1e6)}.${String(m % 1e6).padStart(6, '0').replace(/0+$/, '').padEnd(2, '0')}`;
const diag = (d) => `${d.file}:${d.line}:${d.column}: ${d.severity || 'error'}: ${d.message}`;

function parseArgs(argv) {
  let file = path.join(root, 'examples', 'flows', 'wordcount.yaml');
  const inputs = {};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--input') {
      const kv = argv[++i] || '';
      const eq = kv.indexOf('=');
      if (eq < 1) throw new Error('--input wants NAME=VALUE');
      inputs[kv.slice(0, eq)] = kv.slice(eq + 1);
    } else file = argv[i];
  }
  return { file, inputs };
}

function showEstimate(flow) {
  let est;
  try { est = rz.estimate(flow); } catch (e) { console.log(`estimate: unavailable (${e.message})`); return; }
  for (const s of est.steps) {
    console.log(`  ${s.step.padEnd(12)} ${s.module.padEnd(24)} ${s.recommendation.padEnd(5)} ${money(s.cost_micros)}`);
  }
  console.log(`estimate: ${money(est.total_micros)}${est.complete ? '' : ' (some steps unpriced)'}`);
}

// One line per step whose status changed, in plan order (a step after the
// steps it waits for).
function progress(status, last, order) {
  const rank = (step) => (order.has(step) ? order.get(step) : order.size);
  for (const [step, s] of Object.entries(status.steps || {}).sort(([a], [b]) => rank(a) - rank(b))) {
    if (last.get(step) === s.status) continue;
    last.set(step, s.status);
    const extra = s.attempts > 1 ? ` (attempt ${s.attempts})` : '';
    console.log(`  ${step.padEnd(12)} ${s.status}${extra}${s.error ? ': ' + s.error : ''}`);
  }
}

async function main() {
  let args;
  try { args = parseArgs(process.argv.slice(2)); } catch (e) { console.error(`deploy.mjs: ${e.message}`); return 2; }
  const url = process.env.RHIZOS_URL || 'http://127.0.0.1:8080';
  const key = process.env.RHIZOS_API_KEY;
  if (!key) { console.error('deploy.mjs: set RHIZOS_API_KEY (and RHIZOS_URL)'); return 2; }

  let flow;
  try { flow = rz.loadFlow(args.file); } catch (e) {
    for (const d of e.diagnostics?.length ? e.diagnostics : []) console.error(diag(d));
    if (!e.diagnostics?.length) console.error(`${e.message} (${e.code})`);
    return 1;
  }
  const client = new rz.Client(url, key);
  try {
    const diags = flow.validate();
    for (const d of diags) console.error(diag(d));
    if (!flow.validated) return 1;
    console.log(`flow ${flow.name}: ${flow.steps.length} steps`);
    const order = new Map();
    flow.plan().forEach((stage, i) => {
      console.log(`  stage ${i + 1}: ${stage.join(' ')}`);
      for (const step of stage) order.set(step, order.size);
    });
    showEstimate(flow);

    let dep;
    try {
      dep = await client.deploy(args.file, Object.keys(args.inputs).length ? args.inputs : undefined);
    } catch (e) {
      console.error(`deploy: ${e.message} (${e.code})`);
      for (const d of e.diagnostics || []) console.error(diag(d));
      return 1;
    }
    console.log(`deployment ${dep} on ${url}`);
    let final = null;
    const last = new Map();
    try {
      for await (const status of client.watch(dep)) { progress(status, last, order); final = status; }
    } catch (e) { console.error(`watch: ${e.message} (${e.code})`); return 1; }
    if (!final) return 1;
    console.log(`status: ${final.status} (charged ${money(final.charged_micros || 0)})`);
    console.log(JSON.stringify(final.outputs || {}, null, 2));
    return final.status === 'succeeded' ? 0 : 1;
  } finally {
    client.close();
    flow.close();
  }
}

process.exitCode = await main();
