import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import {
  addEdge,
  Background,
  Controls,
  ReactFlow,
  ReactFlowProvider,
  useEdgesState,
  useNodesState,
  useReactFlow,
  type Connection,
  type Edge,
} from "@xyflow/react";
import { ApiError, get, post, whoami, type Diagnostic } from "../api";
import { locate, type Problem } from "./locate";
import { describe, ErrorLine } from "../ui";
import {
  cannotDeployHere,
  freshId,
  parseFlowText,
  portsFit,
  toCanvas,
  toDoc,
  type BuilderDoc,
  type Manifest,
  type ModuleEntry,
  type StepNode as StepNodeT,
  type StoredCredential,
} from "./flowdoc";
import { layout } from "./layout";
import { StepNode } from "./stepnode";
import { Palette } from "./palette";
import { Inspector } from "./inspector";
import { CostPanel } from "./cost";

const nodeTypes = { step: StepNode };
const SAVED = "rhizos.flows";   // builder documents only, never keys
const DRAFT = "rhizos.draft";

function Builder() {
  const rf = useReactFlow();
  const [nodes, setNodes, onNodesChange] = useNodesState<StepNodeT>([]);
  const [edges, setEdges, onEdgesChange] = useEdgesState<Edge>([]);
  const [meta, setMeta] = useState<Record<string, unknown>>({ id: "flow-1", name: "untitled", version: "1.0.0" });
  const [modules, setModules] = useState(new Map<string, Manifest>());
  const [selected, setSelected] = useState<string | null>(null);
  const [problems, setProblems] = useState<Problem[]>([]);
  const [validateState, setValidateState] = useState<"idle" | "checking" | "ok" | "invalid" | "unavailable">("idle");
  const [connectMsg, setConnectMsg] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [deployed, setDeployed] = useState<number | null>(null);
  const [showJson, setShowJson] = useState(false);
  const [stored, setStored] = useState<StoredCredential[] | null>(null);
  const wrapper = useRef<HTMLDivElement>(null);

  const doc = useMemo(() => toDoc(meta, nodes, edges), [meta, nodes, edges]);
  // The server validates on every change, a little after the last one.
  const semantic = useMemo(() => {
    const { createdAt, updatedAt, ...rest } = doc;
    return JSON.stringify({ ...rest, nodes: doc.nodes.map(({ position, ...n }) => n) });
  }, [doc]);

  const learn = useCallback((list: ModuleEntry[]) => {
    setModules((old) => {
      const m = new Map(old);
      for (const e of list) m.set(e.id, e.manifest);
      return m;
    });
  }, []);

  // Canvas nodes learn their module once the registry has answered.
  useEffect(() => {
    setNodes((ns) => ns.map((n) => (n.data.module || !modules.get(n.data.step.moduleId) ? n : { ...n, data: { ...n.data, module: modules.get(n.data.step.moduleId) } })));
  }, [modules, setNodes]);

  useEffect(() => {
    if (nodes.length === 0) {
      setProblems([]);
      setValidateState("idle");
      return;
    }
    let live = true;
    const t = window.setTimeout(async () => {
      setValidateState("checking");
      try {
        const r = await post<{ valid: boolean; diagnostics: Diagnostic[] }>("/api/v1/flows/validate", { flow: doc });
        if (!live) return;
        setProblems(r.diagnostics.map((d) => locate(d, doc)));
        setValidateState(r.valid ? "ok" : "invalid");
      } catch (e) {
        if (!live) return;
        if (e instanceof ApiError && (e.status === 404 || e.status === 405)) setValidateState("unavailable");
        else setError(describe(e));
      }
    }, 500);
    return () => {
      live = false;
      window.clearTimeout(t);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [semantic]);

  // Steps show how many problems point at them.
  useEffect(() => {
    const count = new Map<string, number>();
    for (const p of problems) if (p.nodeId && p.severity !== "warning") count.set(p.nodeId, (count.get(p.nodeId) || 0) + 1);
    setNodes((ns) =>
      ns.map((n) => ((n.data.problems || 0) === (count.get(n.id) || 0) ? n : { ...n, data: { ...n.data, problems: count.get(n.id) || 0 } })),
    );
  }, [problems, setNodes]);

  const addStep = useCallback(
    (m: ModuleEntry, at?: { x: number; y: number }) => {
      learn([m]);
      setNodes((ns) => {
        const id = freshId(m.id, new Set(ns.map((n) => n.id)));
        const pos = at ?? { x: 40 + (ns.length % 4) * 220, y: 40 + Math.floor(ns.length / 4) * 150 };
        const major = m.version.split(".")[0];
        const node: StepNodeT = {
          id,
          type: "step",
          position: pos,
          data: { step: { moduleId: m.id, moduleVersion: major, config: {} }, module: m.manifest },
        };
        setSelected(id);
        return [...ns.map((n) => ({ ...n, selected: false })), { ...node, selected: true }];
      });
    },
    [learn, setNodes],
  );

  const dropAt = useCallback(
    (m: ModuleEntry, clientX: number, clientY: number) => {
      const box = wrapper.current?.getBoundingClientRect();
      if (!box || clientX < box.left || clientX > box.right || clientY < box.top || clientY > box.bottom) return false;
      addStep(m, rf.screenToFlowPosition({ x: clientX, y: clientY }));
      return true;
    },
    [addStep, rf],
  );

  const portType = (nodeId: string, handle: string | null, kind: "inputs" | "outputs") =>
    nodes.find((n) => n.id === nodeId)?.data.module?.[kind]?.find((p) => p.name === handle);

  const whyNot = (c: Connection | Edge, current: Edge[] = edges): string | null => {
    if (c.source === c.target) return "a step cannot feed itself";
    const from = portType(c.source, c.sourceHandle ?? null, "outputs");
    const to = portType(c.target, c.targetHandle ?? null, "inputs");
    if (!from || !to) return "unknown port";
    if (!portsFit(from.type, to.type))
      return `${c.source}.${from.name} is ${from.type}, ${c.target}.${to.name} takes ${to.type}`;
    if (current.some((e) => e.target === c.target && e.targetHandle === c.targetHandle))
      return `${c.target}.${to.name} is already connected`;
    return null;
  };

  // A connection made with the pointer, or chosen in the inspector (the
  // keyboard's way, replacing what fed that input).
  const onConnect = (c: Connection, current: Edge[] = edges) => {
    const why = whyNot(c, current);
    if (why) {
      setConnectMsg("Not connected: " + why);
      return;
    }
    setConnectMsg(null);
    let i = current.length + 1;
    while (current.some((e) => e.id === `c${i}`)) i++;
    setEdges(addEdge({ ...c, id: `c${i}` }, current));
  };

  const load = async (d: BuilderDoc) => {
    const { nodes: _n, connections: _c, ...top } = d;
    setMeta(top);
    // The canvas is made with the modules asked for here: the state's map
    // changes only after this render, too late for these nodes' ports.
    const known = new Map(modules);
    const missing = [...new Set(d.nodes.map((n) => n.moduleId).filter((id) => id && !modules.has(id)))];
    for (const id of missing) {
      try {
        const r = await get<{ modules: ModuleEntry[] }>(`/api/v1/modules?q=${encodeURIComponent(id)}&limit=20`);
        const found = r.modules.filter((m) => m.id === id);
        learn(found);
        for (const m of found) known.set(m.id, m.manifest);
      } catch {
        /* shown as an unknown module on the step */
      }
    }
    const { nodes: ns, edges: es } = toCanvas(d, known);
    const placed = d.nodes.every((n) => n.position) ? ns : await layout(ns, es);
    setNodes(placed);
    setEdges(es);
    setSelected(null);
    setDeployed(null);
    window.setTimeout(() => rf.fitView({ padding: 0.2 }), 50);
  };

  const importFile = async (f: File) => {
    setError(null);
    try {
      await load(await parseFlowText(await f.text()));
    } catch (e) {
      setError("Import failed: " + describe(e));
    }
  };

  // The draft outlives a visit to another view (this tab only).
  useEffect(() => {
    const d = sessionStorage.getItem(DRAFT);
    if (d) load(JSON.parse(d)).catch(() => sessionStorage.removeItem(DRAFT));
    // once, on mount
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  useEffect(() => {
    if (nodes.length) sessionStorage.setItem(DRAFT, JSON.stringify(doc));
  }, [doc, nodes.length]);

  const exportText = JSON.stringify(doc, null, 2);
  const download = () => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([exportText + "\n"], { type: "application/json" }));
    a.download = `${String(meta.name || "flow").replace(/[^A-Za-z0-9_.-]+/g, "_")}.json`;
    a.click();
    URL.revokeObjectURL(a.href);
  };

  const saved = (): Record<string, BuilderDoc> => {
    try {
      return JSON.parse(localStorage.getItem(SAVED) || "{}");
    } catch {
      return {};
    }
  };
  const save = () => {
    const all = saved();
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    const d = { ...doc, createdAt: doc.createdAt || now, updatedAt: now };
    setMeta((m) => ({ ...m, createdAt: d.createdAt, updatedAt: now }));
    all[String(d.name || d.id)] = d;
    localStorage.setItem(SAVED, JSON.stringify(all));
  };

  // The caller's stored credentials (ids and types only), asked again at
  // each deploy: one stored with the CLI meanwhile counts. Only a client
  // has them (not the admin, not rhizos ui's local role).
  const loadStored = useCallback(async () => {
    let list: StoredCredential[] | null = null;
    try {
      if ((await whoami()).role === "client")
        list = (await get<{ credentials: StoredCredential[] }>("/api/v1/credentials")).credentials;
    } catch {
      list = null;
    }
    setStored(list);
    return list;
  }, []);
  useEffect(() => {
    void loadStored();
  }, [loadStored]);

  const deploy = async () => {
    setError(null);
    const refs = nodes.some((n) => Object.keys(n.data.step.credentials || {}).length);
    const why = cannotDeployHere(nodes.map((n) => n.data.step), refs ? await loadStored() : stored);
    if (why) {
      setError(why);
      return;
    }
    try {
      const r = await post<{ id: number }>("/api/v1/flows/deploy", { flow: doc });
      sessionStorage.setItem("rhizos.dep." + r.id, JSON.stringify(doc));
      setDeployed(r.id);
    } catch (e) {
      if (e instanceof ApiError && e.diagnostics.length) {
        setProblems(e.diagnostics.map((d) => locate(d, doc)));
        setValidateState("invalid");
      }
      setError("Deploy failed: " + describe(e));
    }
  };

  const sel = nodes.find((n) => n.id === selected) || null;

  return (
    <section className="builder" aria-labelledby="builder-h">
      <h1 id="builder-h" className="sr-only">
        Flow builder
      </h1>
      <div className="toolbar" role="toolbar" aria-label="Flow">
        <label htmlFor="flow-name">Flow name</label>
        <input id="flow-name" value={String(meta.name ?? "")} onChange={(e) => setMeta((m) => ({ ...m, name: e.target.value }))} />
        <button type="button" onClick={save}>
          Save
        </button>
        <label htmlFor="load-saved" className="sr-only">
          Load a saved flow
        </label>
        <select
          id="load-saved"
          value=""
          onChange={(e) => {
            const d = saved()[e.target.value];
            if (d) load(d);
          }}
        >
          <option value="">Load saved…</option>
          {Object.keys(saved()).map((k) => (
            <option key={k} value={k}>
              {k}
            </option>
          ))}
        </select>
        <label className="file">
          Import JSON or YAML
          <input
            type="file"
            accept=".json,.yaml,.yml,application/json,text/yaml"
            data-testid="import"
            onChange={(e) => e.target.files?.[0] && importFile(e.target.files[0])}
          />
        </label>
        <button type="button" onClick={download}>
          Export
        </button>
        <button type="button" aria-pressed={showJson} onClick={() => setShowJson((s) => !s)}>
          JSON
        </button>
        <button type="button" onClick={async () => setNodes(await layout(nodes, edges))}>
          Auto layout
        </button>
        <span className={"vstate v-" + validateState} role="status" data-testid="validate-state">
          {validateState === "ok" && "✓ valid"}
          {validateState === "invalid" && `✗ ${problems.filter((p) => p.severity !== "warning").length} problem(s)`}
          {validateState === "checking" && "checking…"}
          {validateState === "unavailable" && "server validation unavailable"}
        </span>
        <button type="button" className="primary" onClick={deploy} disabled={nodes.length === 0}>
          Deploy
        </button>
      </div>
      <ErrorLine error={error} />
      {deployed !== null && (
        <p role="status" className="ok">
          Deployed: <a href={`#/flows/${deployed}`}>deployment {deployed}</a>
        </p>
      )}
      <div className="builder-main">
        <Palette onAdd={addStep} onDrop={dropAt} onModules={learn} />
        <div className="canvas" ref={wrapper} data-testid="canvas" aria-label="Flow canvas">
          <ReactFlow
            nodes={nodes}
            edges={edges}
            nodeTypes={nodeTypes}
            onNodesChange={onNodesChange}
            onEdgesChange={onEdgesChange}
            onConnect={(c) => onConnect(c)}
            isValidConnection={(c) => whyNot(c) === null}
            onSelectionChange={({ nodes: s }) => setSelected(s.length === 1 ? s[0].id : null)}
            deleteKeyCode={["Delete", "Backspace"]}
            defaultViewport={{ x: 20, y: 20, zoom: 0.75 }}
            proOptions={{ hideAttribution: true }}
          >
            <Background />
            <Controls />
          </ReactFlow>
          {connectMsg && (
            <p className="connect-msg" role="alert">
              {connectMsg}
            </p>
          )}
        </div>
        <aside className="side" aria-label="Step and flow details">
          {sel ? (
            <Inspector
              key={sel.id}
              node={sel}
              problems={problems.filter((p) => p.nodeId === sel.id)}
              allIds={nodes.map((n) => n.id)}
              credentialIds={[...new Set(nodes.flatMap((n) => Object.values(n.data.step.credentials || {}).map((c) => c.credentialId)))]}
              stored={stored}
              onChange={(id, step) => {
                setNodes((ns) => ns.map((n) => (n.id === sel.id ? { ...n, id, data: { ...n.data, step } } : n)));
                if (id !== sel.id) {
                  setEdges((es) =>
                    es.map((e) => ({ ...e, source: e.source === sel.id ? id : e.source, target: e.target === sel.id ? id : e.target })),
                  );
                  setSelected(id);
                }
              }}
              feeds={(sel.data.module?.inputs || []).map((p) => {
                const e = edges.find((x) => x.target === sel.id && x.targetHandle === p.name);
                return {
                  port: p.name,
                  type: p.type,
                  now: e ? `${e.source}.${e.sourceHandle}` : "",
                  options: nodes
                    .filter((n) => n.id !== sel.id)
                    .flatMap((n) => (n.data.module?.outputs || []).filter((o) => portsFit(o.type, p.type)).map((o) => `${n.id}.${o.name}`)),
                };
              })}
              onFeed={(port, from) => {
                const rest = edges.filter((x) => !(x.target === sel.id && x.targetHandle === port));
                if (!from) return setEdges(rest);
                const dot = from.lastIndexOf(".");
                onConnect({ source: from.slice(0, dot), sourceHandle: from.slice(dot + 1), target: sel.id, targetHandle: port }, rest);
              }}
              onDelete={() => {
                setNodes((ns) => ns.filter((n) => n.id !== sel.id));
                setEdges((es) => es.filter((e) => e.source !== sel.id && e.target !== sel.id));
                setSelected(null);
              }}
            />
          ) : (
            <p className="hint">Select a step to edit its configuration.</p>
          )}
          <h2>Problems</h2>
          <ul className="problems" data-testid="problems">
            {problems.length === 0 && <li className="hint">none</li>}
            {problems.map((p, i) => (
              <li key={i} className={p.severity === "warning" ? "warn" : "err"}>
                {p.nodeId ? (
                  <button type="button" className="link" onClick={() => setSelectedNode(p.nodeId!)}>
                    {p.nodeId}
                  </button>
                ) : null}{" "}
                {p.message}
              </li>
            ))}
          </ul>
          <CostPanel doc={doc} semantic={semantic} enabled={nodes.length > 0} />
        </aside>
      </div>
      {showJson && (
        <div className="json-box">
          <label htmlFor="export-json">Builder JSON (what Export writes)</label>
          <textarea id="export-json" readOnly value={exportText} rows={16} />
        </div>
      )}
    </section>
  );

  function setSelectedNode(id: string) {
    setNodes((ns) => ns.map((n) => ({ ...n, selected: n.id === id })));
    setSelected(id);
  }
}

export function BuilderView() {
  return (
    <ReactFlowProvider>
      <Builder />
    </ReactFlowProvider>
  );
}

