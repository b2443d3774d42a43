import { useEffect, useRef, useState } from "react";
import { Background, Controls, ReactFlow, ReactFlowProvider, type Edge } from "@xyflow/react";
import { del, get, money, sse } from "../api";
import { describe, ErrorLine, Kv, ms, StateBadge } from "../ui";
import { StepNode } from "../flow/stepnode";
import { toCanvas, type BuilderDoc, type Manifest, type StepNode as StepNodeT } from "../flow/flowdoc";
import { layout } from "../flow/layout";

const nodeTypes = { step: StepNode };

interface StepStatus {
  status: string;
  attempts: number;
  job: number | null;
  job_status?: string;
  dispatches?: number;
  error?: string;
  outputs?: unknown;
  waiting_reason?: string;
}

interface Status {
  id: number;
  flow: string;
  status: string;
  steps: Record<string, StepStatus>;
  outputs: unknown;
  error?: string;
  held_micros?: number;
  charged_micros?: number;
}

/** The graph: edges from the builder document when this tab deployed it
 * (the status does not carry them), else the steps alone; laid out by elk. */
async function graph(id: string, st: Status): Promise<{ nodes: StepNodeT[]; edges: Edge[] }> {
  const kept = sessionStorage.getItem("rhizos.dep." + id);
  if (kept) {
    const doc = JSON.parse(kept) as BuilderDoc;
    const mods = new Map<string, Manifest>();
    try {
      const r = await get<{ modules: { id: string; manifest: Manifest }[] }>("/api/v1/modules?limit=1000");
      for (const m of r.modules) mods.set(m.id, m.manifest);
    } catch {
      /* ports unnamed: the steps still show */
    }
    const g = toCanvas(doc, mods);
    return { nodes: g.nodes.filter((n) => n.id in st.steps), edges: g.edges };
  }
  const nodes: StepNodeT[] = Object.keys(st.steps).map((s) => ({
    id: s,
    type: "step",
    position: { x: 0, y: 0 },
    data: { step: { moduleId: "" } },
  }));
  return { nodes: await layout(nodes, []), edges: [] };
}

function DeploymentInner({ id }: { id: string }) {
  const [st, setSt] = useState<Status | null>(null);
  const [nodes, setNodes] = useState<StepNodeT[]>([]);
  const [edges, setEdges] = useState<Edge[]>([]);
  const [selected, setSelected] = useState<string | null>(null);
  const [logs, setLogs] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [live, setLive] = useState(false);
  const drawn = useRef(false);

  useEffect(() => {
    const ab = new AbortController();
    setLive(true);
    sse(
      `/api/v1/flows/${id}/events?logs=1`,
      (e) => {
        if (e.event === "status" || e.event === "end") {
          const s = JSON.parse(e.data) as Status;
          setSt(s);
          if (!drawn.current) {
            drawn.current = true;
            graph(id, s).then((g) => {
              setNodes(g.nodes);
              setEdges(g.edges);
            });
          }
        } else if (e.event === "step_log") {
          const l = JSON.parse(e.data) as { step: string; lines: string };
          setLogs((old) => ({ ...old, [l.step]: (old[l.step] || "") + l.lines }));
        }
      },
      ab.signal,
    )
      .catch((e) => {
        if (!ab.signal.aborted) setError(describe(e));
      })
      .finally(() => setLive(false));
    return () => ab.abort();
  }, [id]);

  // Step states onto the canvas as they come.
  const shown = nodes.map((n) => {
    const s = st?.steps[n.id]?.status;
    return s === n.data.status && n.selected === (n.id === selected) ? n : { ...n, selected: n.id === selected, data: { ...n.data, status: s } };
  });

  const step = selected && st ? st.steps[selected] : null;
  const [job, setJob] = useState<any>(null);
  const jobLog: string | null = job ? job.log ?? "" : null;
  useEffect(() => {
    setJob(null);
    if (!step?.job) return;
    let on = true;
    const load = () =>
      get<any>(`/api/v1/jobs/${step.job}`)
        .then((j) => on && setJob(j))
        .catch(() => {});
    load();
    const t = window.setInterval(load, 2000);
    return () => {
      on = false;
      window.clearInterval(t);
    };
  }, [step?.job, step?.status]);

  const cancel = async () => {
    try {
      setSt(await del<Status>(`/api/v1/flows/${id}`));
    } catch (e) {
      setError(describe(e));
    }
  };

  return (
    <section aria-labelledby="dep-h" className="deployment">
      <p>
        <a href="#/flows">← Flows</a>
      </p>
      <h1 id="dep-h">
        Deployment {id} {st && <span className="hint">{st.flow}</span>}
      </h1>
      <ErrorLine error={error} />
      {st && (
        <div className="row">
          <span data-testid="dep-status">
            <StateBadge state={st.status} />
          </span>
          <span>held {money(st.held_micros)}</span>
          <span>charged {money(st.charged_micros)}</span>
          <span className="hint">{live ? "live" : "not live"}</span>
          {drawn.current && edges.length === 0 && nodes.length > 1 && (
            <span className="hint">(connections are drawn for deployments made from this tab's builder)</span>
          )}
          {st.status === "running" && (
            <button type="button" className="danger" onClick={cancel}>
              Cancel deployment
            </button>
          )}
        </div>
      )}
      <div className="dep-main">
        <div className="canvas small" aria-label="Steps of the deployment">
          <ReactFlow
            nodes={shown}
            edges={edges}
            nodeTypes={nodeTypes}
            nodesConnectable={false}
            nodesDraggable={false}
            onNodeClick={(_, n) => setSelected(n.id)}
            fitView
            proOptions={{ hideAttribution: true }}
          >
            <Background />
            <Controls showInteractive={false} />
          </ReactFlow>
        </div>
        <aside className="side" aria-label="Step">
          <label htmlFor="step-pick">Step</label>
          <select id="step-pick" value={selected ?? ""} onChange={(e) => setSelected(e.target.value || null)}>
            <option value="">choose a step…</option>
            {Object.keys(st?.steps || {}).map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
          {step && (
            <>
              <Kv
                rows={[
                  ["status", <StateBadge state={step.status} />],
                  ["attempts", step.attempts],
                  ["job", step.job ? <a href={`#/jobs/${step.job}`}>job {step.job}</a> : "–"],
                  ["job status", step.job_status ?? "–"],
                  ["dispatches", step.dispatches ?? "–"],
                  ["node", job?.node ?? "–"],
                  ["run time", ms(job?.run_ms)],
                  ["cost", money(job?.cost_micros)],
                  ["waiting", step.waiting_reason ?? "–"],
                  ["error", step.error ?? "–"],
                ]}
              />
              <h2>Outputs</h2>
              <pre tabIndex={0} className="json">{JSON.stringify(step.outputs ?? null, null, 2)}</pre>
              <h2>Log</h2>
              <pre tabIndex={0} className="log" data-testid="step-log">
                {(jobLog ?? "") || logs[selected!] || "(no log lines yet)"}
              </pre>
            </>
          )}
          {st?.error && <p className="error">{st.error}</p>}
          {st?.outputs != null && (
            <>
              <h2>Flow outputs</h2>
              <pre tabIndex={0} className="json">{JSON.stringify(st.outputs, null, 2)}</pre>
            </>
          )}
        </aside>
      </div>
    </section>
  );
}

export function DeploymentView({ id }: { id: string }) {
  return (
    <ReactFlowProvider>
      <DeploymentInner key={id} id={id} />
    </ReactFlowProvider>
  );
}
