// Uses of the API as the .d.ts types them; compiled (never run) by
// types.test.js with tsc --strict. A change to index.d.ts that breaks a
// caller breaks this file.
import {
  loadFlow, Flow, Diagnostic, PlanInfo, run, RunResult, inputsFromPairs, Matcher,
  Placement, Unplaced, Ledger, Vault, estimate, Client, DeploymentStatus, RhizosError,
  newId, statusName, version, libraryVersion, addonPath,
} from '../..';

async function main(): Promise<void> {
  const flow: Flow = loadFlow('examples/flows/wordcount.yaml', { format: 'yaml' });
  const diags: Diagnostic[] = flow.validate([]);
  const stages: string[][] = flow.plan();
  const info: PlanInfo = flow.planInfo();
  const critical: number = info.critical_seconds;
  const result: RunResult = await run(flow, inputsFromPairs(['text=a b']));
  const ok: boolean = result.ok;

  const m = new Matcher('cheapest');
  const placed: Placement | null = m.place({ id: 'j' });
  const all: Array<Placement | Unplaced> = m.placeAll([{ id: 'j' }]);
  if (placed) m.release(placed.ticket);

  const ledger = new Ledger('/tmp/x');
  const account: string = newId();
  const fee: { payout: bigint; fee: bigint } = ledger.settle(1n, 2n, 10);

  const client = new Client('http://127.0.0.1:8080', null, { timeout: 1000 });
  const id: number = await client.deploy(flow);
  const status: DeploymentStatus = await client.status(id);
  for await (const s of client.watch(id)) { const st: string = s.status; }
  try { await client.cancel(id); } catch (e) { const code: string = (e as RhizosError).code; }
  const held: boolean | undefined = (await client.pause(id)).paused;
  await client.resume(id);
  const gates = (await client.approve(id, 'gate', 'ok')).awaiting_approval;
  await client.reject(id, 'gate');
  void [held, gates];

  const name: string = statusName(-7) + version + libraryVersion + addonPath;
  const est = estimate(flow);
  void [diags, stages, critical, ok, all, account, fee, status, name, est, Vault];
}
void main;
