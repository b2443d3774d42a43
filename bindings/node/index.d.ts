// Types of the rhizos package (bindings/node/index.js).

/** Every error the bindings throw or reject with. */
export interface RhizosError extends Error {
  /** The status name, e.g. 'RZ_ECYCLE', 'RZ_ESTATE' (use after close). */
  code: string;
  /** The negative rz_status, when the library reported it. */
  status?: number;
  file?: string;
  line?: number;
  column?: number;
  /** JSON pointer of the offending value, '' if none. */
  pointer?: string;
  /** For parse, validate and plan failures: every problem found. */
  diagnostics?: Diagnostic[];
  /** Client errors: the HTTP status of the reply (0 when none came). */
  httpStatus?: number;
}

export interface Diagnostic {
  file: string;
  line: number;
  column: number;
  code: string;
  message: string;
  severity: 'error' | 'warning' | 'note';
  pointer: string;
}

/** `flow`: the file a sub-flow step runs, until the flow is expanded. */
export interface Step { id: string; module: string; flow?: string; }

export interface PlanInfo {
  stages: string[][];
  critical_path: string[];
  critical_seconds: number;
  steps: number;
}

export interface LoadOptions { format?: 'json' | 'yaml' | 'cbor'; filename?: string; }

export class Flow {
  readonly name: string;
  readonly file: string;
  readonly format: 'json' | 'yaml' | 'cbor';
  readonly steps: Step[];
  /** Steps in the JSON builder shape (credential values stripped). */
  readonly nodes: Array<Record<string, unknown>>;
  readonly connections: Array<{ id: string; source: { nodeId: string; port: string }; target: { nodeId: string; port: string } }>;
  readonly validated: boolean;
  readonly closed: boolean;
  /** undefined: default registries; []: structure only. Returns every diagnostic ([] = valid). */
  validate(registries?: string[]): Diagnostic[];
  /** True while a step runs another flow file not yet put in its place. */
  readonly hasSubflows: boolean;
  /** Sub-flow steps replaced by the child flows' steps ("<step>-<id>"); validate() and plan() do it too. */
  expand(): Diagnostic[];
  plan(): string[][];
  planInfo(): PlanInfo;
  toJSON(opts?: { pretty?: boolean; builder?: boolean }): string | null;
  toObject(opts?: { builder?: boolean }): Record<string, any>;
  toYAML(): string;
  export(): string;
  close(): void;
}

export function loadFlow(source: string | Buffer, opts?: LoadOptions): Flow;

export interface StepResult {
  status: 'pending' | 'ready' | 'backoff' | 'running' | 'succeeded' | 'failed' | 'skipped' | 'cancelled';
  attempts: number;
  outputs: Record<string, any>;
  error?: string;
}

export interface RunResult {
  id: string;
  flow: string;
  status: 'succeeded' | 'failed' | 'cancelled';
  steps: Record<string, StepResult>;
  /** Outputs of each final step that succeeded, by step id. */
  outputs: Record<string, Record<string, any>>;
  ok: boolean;
}

export interface RunOptions {
  /** Record the run in this data folder's run store. */
  dataDir?: string;
  runId?: string;
  /** Parallel steps; 0: number of cores. */
  jobs?: number;
  /** false: never use bubblewrap. */
  sandbox?: boolean;
  /** Supplies the steps' credentials. */
  vault?: Vault;
  /** Registries used when the flow was not validated yet. */
  registries?: string[];
  /** Model servers of llm steps, "ollama=URL openai=URL" (docs/llm.md);
   * unset: $RHIZOS_LLM_SERVERS. */
  llmServers?: string;
}

/** Runs on a worker thread; the event loop keeps turning. */
export function run(flow: Flow, inputs?: Record<string, unknown>, opts?: RunOptions): Promise<RunResult>;
/** Flow inputs from 'NAME=VALUE' texts, by the CLI's --input rule. */
export function inputsFromPairs(pairs: string[]): Record<string, unknown>;

export interface Placement { job: string; node: string; costMicros: number; ticket: bigint; }
export interface Unplaced { job: string; node: null; costMicros: 0; reason: string; }

export class Matcher {
  constructor(policy?: 'cheapest' | 'fastest' | 'reputation' | 'binpack' | 'spread', nodes?: Array<object | string>);
  readonly nodes: string[];
  readonly closed: boolean;
  addNode(node: object | string): number;
  removeNode(id: string): void;
  /** null when no node fits now (explain() says why). */
  place(job: object | string): Placement | null;
  placeAll(jobs: Array<object | string>): Array<Placement | Unplaced>;
  release(placement: Placement | bigint | number): void;
  explain(job: object | string): string;
  usage(node: string | number): Record<string, number>;
  stats(): Record<string, number>;
  close(): void;
}

export function detectHardware(): Record<string, any>;

export type LedgerId = bigint | number | string;
export type Micros = bigint | number;

export interface Account {
  id: string;
  kind: 'client' | 'node' | 'platform' | 'escrow' | 'external';
  debitsPosted: bigint;
  debitsPending: bigint;
  creditsPosted: bigint;
  creditsPending: bigint;
  available: bigint;
}

export interface OpOptions { id?: LedgerId; }

export class Ledger {
  static readonly PLATFORM: string;
  static readonly ESCROW: string;
  static readonly EXTERNAL: string;
  constructor(dataDir: string, opts?: { feeBps?: number; durable?: boolean });
  readonly feeBps: number;
  readonly closed: boolean;
  createAccount(id: LedgerId, kind?: 'client' | 'node'): void;
  /** Each money operation returns its transfer id (pass it back to retry idempotently). */
  testCredit(account: LedgerId, micros: Micros, opts?: OpOptions): LedgerId;
  depositRequest(account: LedgerId, micros: Micros, opts?: OpOptions): LedgerId;
  depositConfirm(request: LedgerId, opts?: OpOptions): LedgerId;
  withdrawRequest(account: LedgerId, micros: Micros, opts?: OpOptions): LedgerId;
  withdrawComplete(request: LedgerId, opts?: OpOptions): LedgerId;
  withdrawCancel(request: LedgerId, opts?: OpOptions): LedgerId;
  hold(job: LedgerId, client: LedgerId, micros: Micros, opts?: OpOptions & { timeout?: Micros }): LedgerId;
  settle(job: LedgerId, node: LedgerId, micros: Micros, opts?: OpOptions): { payout: bigint; fee: bigint };
  refund(job: LedgerId, opts?: OpOptions): bigint;
  tick(now: Micros): bigint;
  verify(): true;
  checkpoint(): void;
  balance(account: LedgerId): Account;
  stats(): Record<string, bigint>;
  export(): { accounts: any[]; transfers: any[] };
  close(): void;
}

export interface VaultEntry {
  id: string;
  name: string;
  type: string;
  createdMs: number;
  updatedMs: number;
  metadata: Record<string, unknown>;
  valueLength: number;
}

export class Vault {
  constructor(file: string, password: string | Buffer, opts?: {
    create?: boolean;
    kdf?: 'interactive' | 'moderate' | 'sensitive' | [number, number];
    autosave?: boolean;
  });
  readonly path: string;
  readonly closed: boolean;
  add(name: string, type: string, value: string | Buffer | Uint8Array, metadata?: Record<string, unknown>): string;
  list(): VaultEntry[];
  has(idOrName: string): boolean;
  reveal(idOrName: string): Buffer;
  get(idOrName: string): string;
  remove(idOrName: string): void;
  save(): void;
  /** The flow's credentials sealed to an orchestrator's X25519 key: {credentialId: base64}. */
  sealFlow(flow: Flow, publicKey: Buffer | string, expiresMs?: number): Record<string, string>;
  close(): void;
  /** What JSON.stringify shows: the path, never a secret. */
  toJSON(): { path: string };
}

export interface StepEstimate {
  step: string;
  module: string;
  estimate_seconds: number;
  rent: { node_class: string; cost_micros: number } | null;
  rent_unavailable?: string;
  api: { provider: string; model: string; cost_micros: number } | null;
  api_unavailable?: string;
  recommendation: 'rent' | 'api' | 'none';
  cost_micros: number;
}

export interface Estimate {
  steps: StepEstimate[];
  total_micros: number;
  complete: boolean;
  prices: { nodes_date: string; providers_date: string };
}

/** Cost of a validated flow; prices: table files or folders (default data/prices). */
export function estimate(flow: Flow, opts?: { prices?: string[] }): Estimate;

export interface DeploymentStep {
  status: string;
  attempts: number;
  outputs: Record<string, unknown>;
  error?: string;
  job: number | null;
}

/** GET /api/v1/flows/{id}/status (docs/api.md). */
export interface DeploymentStatus {
  id: number;
  flow: string;
  status: 'running' | 'succeeded' | 'failed' | 'cancelled' | string;
  steps: Record<string, DeploymentStep>;
  outputs: Record<string, Record<string, unknown>>;
  held_micros: number;
  charged_micros: number;
  /** Present while paused. */
  paused?: boolean;
  /** Approval steps waiting for a decision. */
  awaiting_approval?: Array<{ step: string; approvers: string[]; default: 'approve' | 'reject'; deadline_ms?: number }>;
}

export interface Withdrawal {
  id: string;
  account: string;
  amount_micros: number;
  status: 'pending' | 'completed' | 'failed' | 'cancelled';
  seq: number;
  address?: string;
  tx?: string;
  reason?: string;
}
export interface AccountInfo {
  id: string;
  kind: 'client' | 'node';
  balance_micros: number;
  pending_micros: number;
  credits_micros: number;
  debits_micros: number;
}

export interface ClientOptions {
  /** Per-request limit in ms (default 30000; 0: none). */
  timeout?: number;
  /** A PEM file of CA certificates to verify an https server with (default: the system's). */
  caFile?: string | null;
}

/** An orchestrator: requests run on the libuv thread pool; errors are RhizosError with httpStatus. */
export class Client {
  constructor(url: string, apiKey?: string | null, opts?: ClientOptions);
  readonly url: string;
  readonly closed: boolean;
  request(method: string, path: string, body?: unknown): Promise<any>;
  /** Resolves with the deployment id; RZ_EINVALID with .diagnostics for an invalid flow. */
  deploy(flow: Flow | string | Buffer | Record<string, unknown>, inputs?: Record<string, unknown>,
    opts?: { credentials?: Record<string, string>; vault?: Vault }): Promise<number>;
  status(id: number): Promise<DeploymentStatus>;
  cancel(id: number): Promise<DeploymentStatus>;
  /** Pause/resume a running deployment (docs/triggers.md). */
  pause(id: number): Promise<DeploymentStatus>;
  resume(id: number): Promise<DeploymentStatus>;
  /** Decide an approval step listed in the status's awaiting_approval. */
  approve(id: number, step: string, comment?: string, opts?: { reject?: boolean }): Promise<DeploymentStatus>;
  reject(id: number, step: string, comment?: string): Promise<DeploymentStatus>;
  flows(): Promise<Array<{ id: number; flow: string; status: string }>>;
  balance(): Promise<AccountInfo>;
  withdraw(micros: number, address?: string): Promise<{ withdrawal_id: string; amount_micros: number; status: 'pending' }>;
  withdrawals(): Promise<Withdrawal[]>;
  /** Status objects as they change, ending when the deployment finished. */
  watch(id: number, opts?: { idleTimeout?: number }): AsyncIterableIterator<DeploymentStatus>;
  close(): void;
  /** What JSON.stringify shows: the URL, never the key. */
  toJSON(): { url: string };
}

export function newId(): string;
export function statusName(status: number): string;
export const version: string;
export const libraryVersion: string;
/** The rhizos.node file this package loaded. */
export const addonPath: string;
