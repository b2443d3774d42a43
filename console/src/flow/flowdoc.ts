// The builder JSON format (docs/flow-format.md "JSON: builder format") and
// the canvas's nodes and edges, both ways; FluxGraph YAML read into it.
import type { Edge, Node } from "@xyflow/react";

export interface Port {
  name: string;
  type?: string;
  required?: boolean;
}

export interface Manifest {
  id: string;
  version: string;
  name?: string;
  description?: string;
  inputs?: Port[];
  outputs?: Port[];
  config?: any;
  credentials?: { name: string; type: string; required?: boolean }[];
  requirements?: any;
}

/** One entry of GET /api/v1/modules. */
export interface ModuleEntry {
  id: string;
  version: string;
  name: string;
  description: string;
  manifest: Manifest;
}

/** A step's own fields: what a canvas node keeps beside its id and place. */
export interface StepFields {
  moduleId: string;
  moduleVersion?: string | null;
  config?: Record<string, unknown>;
  credentials?: Record<string, { credentialId: string; type: string }>;
  [k: string]: unknown;
}

export interface BuilderNode extends StepFields {
  id: string;
  position?: { x: number; y: number };
}

export interface BuilderConnection {
  id?: string;
  source: { nodeId: string; port: string };
  target: { nodeId: string; port: string };
}

export interface BuilderDoc {
  id?: string;
  name?: string;
  version?: string;
  createdAt?: string;
  updatedAt?: string;
  nodes: BuilderNode[];
  connections: BuilderConnection[];
  [k: string]: unknown;
}

/** What a canvas node carries: the step without id and position. */
export interface StepData extends Record<string, unknown> {
  step: StepFields;
  module?: Manifest;
  status?: string;
  problems?: number;
  /** Drawn from a deployment's status alone: one handle a side, the edges
   * are its `needs` (no port names). */
  plain?: boolean;
}

export type StepNode = Node<StepData, "step">;

/** A box around the steps one sub-flow step became (the status's `group`). */
export type GroupNode = Node<{ label: string }, "group-box">;
export type DepNode = StepNode | GroupNode;

/** The flow file a sub-flow step (`flow: child.yaml`) runs, or null. */
export function subflowOf(step: StepFields): string | null {
  return typeof step.flow === "string" && !step.moduleId ? step.flow : null;
}

export const STEP_ID = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/;

export function toCanvas(doc: BuilderDoc, modules: Map<string, Manifest>): { nodes: StepNode[]; edges: Edge[] } {
  const nodes = doc.nodes.map((n): StepNode => {
    const { id, position, ...step } = n;
    return {
      id,
      type: "step",
      position: position ? { x: position.x, y: position.y } : { x: 0, y: 0 },
      data: { step, module: modules.get(n.moduleId) },
    };
  });
  const edges = doc.connections.map((c, i) => ({
    id: c.id || `c${i + 1}`,
    source: c.source.nodeId,
    sourceHandle: c.source.port,
    target: c.target.nodeId,
    targetHandle: c.target.port,
  }));
  return { nodes, edges };
}

/** The canvas as a builder document; `meta` holds the top-level keys. */
export function toDoc(meta: Record<string, unknown>, nodes: StepNode[], edges: Edge[]): BuilderDoc {
  const out: BuilderDoc = { ...meta, nodes: [], connections: [] };
  for (const n of nodes) {
    const step = { ...n.data.step };
    if (step.config && Object.keys(step.config).length === 0) step.config = {};
    out.nodes.push({
      id: n.id,
      ...step,
      position: { x: Math.round(n.position.x), y: Math.round(n.position.y) },
    } as BuilderNode);
  }
  edges.forEach((e, i) => {
    out.connections.push({
      id: e.id || `c${i + 1}`,
      source: { nodeId: e.source, port: e.sourceHandle || "" },
      target: { nodeId: e.target, port: e.targetHandle || "" },
    });
  });
  return out;
}

const REF = /^\$\{\{\s*steps\.([A-Za-z_][A-Za-z0-9_-]*)\.outputs\.([A-Za-z0-9_.-]+)\s*\}\}$/;

function splitModule(ref: string): { moduleId: string; moduleVersion?: string } {
  const at = ref.lastIndexOf("@");
  return at > 0 ? { moduleId: ref.slice(0, at), moduleVersion: ref.slice(at + 1) } : { moduleId: ref };
}

function stepToNode(id: string, s: any): { node: BuilderNode; links: BuilderConnection[] } {
  const { module, needs, inputs, ...rest } = s || {};
  // a sub-flow step (`flow: child.yaml`) or an approval step has no module
  const node: BuilderNode = { id, ...(module === undefined ? { moduleId: "" } : splitModule(String(module))), ...rest };
  const links: BuilderConnection[] = [];
  const keep: Record<string, unknown> = {};
  for (const [port, v] of Object.entries(inputs || {})) {
    const m = typeof v === "string" ? REF.exec(v) : null;
    if (m) links.push({ source: { nodeId: m[1], port: m[2] }, target: { nodeId: id, port } });
    else keep[port] = v;
  }
  if (Object.keys(keep).length) node.inputs = keep;
  const linked = new Set(links.map((l) => l.source.nodeId));
  const rest_needs = (Array.isArray(needs) ? needs : needs ? [needs] : []).filter((n: string) => !linked.has(n));
  if (rest_needs.length) node.needs = rest_needs;
  return { node, links };
}

/** A flow in any text form the server takes (builder JSON, FluxGraph YAML
 * or JSON) as a builder document. Steps fed by `${{ steps.X.outputs.P }}`
 * become connections; other inputs and needs stay on the node. */
export async function parseFlowText(text: string): Promise<BuilderDoc> {
  const YAML = (await import("yaml")).default;   // only when importing
  const doc = YAML.parse(text);
  if (!doc || typeof doc !== "object") throw new Error("not a flow: expected a JSON or YAML object");
  if (Array.isArray(doc.nodes)) {
    return { ...doc, connections: Array.isArray(doc.connections) ? doc.connections : [] } as BuilderDoc;
  }
  if (!doc.steps || typeof doc.steps !== "object") throw new Error("not a flow: no `steps` or `nodes`");
  const { steps, flux, on_exit, ...top } = doc;
  const out: BuilderDoc = { id: doc.id || doc.name, ...top, nodes: [], connections: [] };
  for (const [id, s] of Object.entries<any>(steps)) {
    const { node, links } = stepToNode(id, s);
    out.nodes.push(node);
    out.connections.push(...links);
  }
  if (on_exit) {
    const { node } = stepToNode("on_exit", on_exit);
    const { id: _drop, ...rest } = node;
    out.on_exit = rest;
  }
  out.connections.forEach((c, i) => (c.id = `c${i + 1}`));
  return out;
}

/** Whether an output of type `from` may feed an input of type `to`. */
export function portsFit(from?: string, to?: string): boolean {
  if (!from || !to || from === "any" || to === "any") return true;
  return from === to || (from === "integer" && to === "number");
}

/** A fresh step id from a module id: its last word, numbered when taken. */
export function freshId(moduleId: string, taken: Set<string>): string {
  let base = moduleId.split(/[^A-Za-z0-9_]/).filter(Boolean).pop() || "step";
  if (!/^[A-Za-z_]/.test(base)) base = "s_" + base;
  base = base.slice(0, 56);
  if (!taken.has(base)) return base;
  for (let i = 2; ; i++) if (!taken.has(base + i)) return base + i;
}

/** What a module asks of a node (docs/formats.md "Job requirements"), as
 * chips: adapter, GPUs and VRAM, memory, credential types. */
export function needs(m: ModuleEntry): string[] {
  const r = m.manifest?.requirements || {};
  const out: string[] = [];
  if (r.adapter) out.push(r.adapter);
  const g = typeof r.gpu === "number" ? { count: r.gpu } : r.gpu;
  if (g && (g.count ?? 1) > 0) {
    const vram = g.vram_mb ? ` ${Math.round(g.vram_mb / 1024)} GiB` : "";
    out.push(`${g.count ?? 1}× ${g.vendor ? g.vendor + " " : ""}GPU${vram}`);
  }
  if (r.memory_mb) out.push(`${r.memory_mb} MB`);
  const creds = m.manifest?.credentials || [];
  if (creds.length) out.push("credentials: " + creds.map((c) => c.type).join(", "));
  return out;
}

/** A credential the caller stored on the orchestrator (GET
 * /api/v1/credentials): its id and type, never a value. */
export type StoredCredential = { id: string; type: string };

/** Whether a step's reference is one the orchestrator holds for the
 * caller: the same id, of the type the step asks for. */
export function isStored(stored: StoredCredential[], ref: { credentialId: string; type: string }): boolean {
  return stored.some((s) => s.id === ref.credentialId && s.type === ref.type);
}

/** Why the console cannot deploy these steps itself, or null. A sub-flow's
 * file is read where it lies (the CLI expands it; a server never reads a
 * file a flow names). A credential's value never reaches the console: a
 * deploy names it by id and the orchestrator uses the one the caller stored
 * with `rhizos credentials put` (`stored`; null where there is no such
 * store, as in `rhizos ui`), so only a reference to none is refused here
 * (docs/console.md). */
export function cannotDeployHere(steps: StepFields[], stored: StoredCredential[] | null = null): string | null {
  const subs = steps.map(subflowOf).filter((f): f is string => !!f);
  if (subs.length)
    return (
      `This flow runs sub-flow files (${[...new Set(subs)].join(", ")}): deploy it with ` +
      "`rhizos flow deploy FILE`, which expands them where the files are."
    );
  const refs = steps.flatMap((s) => Object.values(s.credentials || {}));
  const missing = [...new Set(refs.filter((r) => !stored || !isStored(stored, r)).map((r) => r.credentialId))];
  if (missing.length && !stored)
    return (
      `This flow's steps use credentials (${missing.join(", ")}). Their values stay in your vault: ` +
      "export the flow and deploy it with `rhizos flow deploy FILE` (or a binding's deploy), " +
      "which seals each to the orchestrator. The console keeps references only."
    );
  if (missing.length)
    return (
      `This flow's steps use credentials not stored on the orchestrator for your account, ` +
      `or of another type than the step asks for (${missing.join(", ")}). Store each once from ` +
      "your vault with `rhizos credentials put ID` (the console never handles a value), " +
      "or export the flow and deploy it with `rhizos flow deploy FILE`."
    );
  return null;
}

/** A deployment's graph from its status alone (GET /api/v1/flows/{id}/status:
 * each step's `module` and `needs`): one plain edge per need. */
export function fromStatus(steps: Record<string, { module?: string; needs?: string[]; group?: string }>, modules: Map<string, Manifest>): { nodes: DepNode[]; edges: Edge[] } {
  // Sub-flow boxes first: a parent node must come before its children.
  const groups = [...new Set(Object.values(steps).flatMap((s) => (s.group ? [s.group] : [])))];
  const nodes: DepNode[] = groups.map((g): GroupNode => ({ id: "group:" + g, type: "group-box", position: { x: 0, y: 0 }, data: { label: g }, selectable: false }));
  for (const [id, s] of Object.entries(steps))
    nodes.push({
      id,
      type: "step",
      position: { x: 0, y: 0 },
      data: { step: { moduleId: s.module || "" }, module: s.module ? modules.get(s.module) : undefined, plain: true },
      ...(s.group ? { parentId: "group:" + s.group, extent: "parent" as const } : {}),
    });
  const edges: Edge[] = [];
  for (const [id, s] of Object.entries(steps))
    for (const n of s.needs || [])
      if (n in steps) edges.push({ id: `${n}->${id}`, source: n, sourceHandle: "needs", target: id, targetHandle: "needs" });
  return { nodes, edges };
}
