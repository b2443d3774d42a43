import { useEffect, useRef, useState } from "react";
import { Background, Controls, ReactFlow, ReactFlowProvider, type Edge } from "@xyflow/react";
import { del, get, money, post, sse, whoami } from "../api";
import { describe, ErrorLine, Kv, ms, StateBadge } from "../ui";
import { GroupBox, StepNode } from "../flow/stepnode";
import { fromStatus, toCanvas, type BuilderDoc, type DepNode, type Manifest } from "../flow/flowdoc";
import { layout } from "../flow/layout";
import { going, shownState } from "../runstate";

const nodeTypes = { step: StepNode, "group-box": GroupBox };

interface StepStatus {
  status: string;
  attempts: number;
  job: number | null;
  job_status?: string;
  dispatches?: number;
  error?: string;
  outputs?: unknown;
  waiting_reason?: string;
  run_ms?: number;
  module?: string;
  needs?: string[];
  group?: string;
}

interface Awaiting {
  step: string;
  approvers: string[];
  default: string;
  deadline_ms?: number;
}

interface Status {
  id: number;
  flow: string;
  status: string;
  process_gone?: boolean;
  steps: Record<string, StepStatus>;
  outputs: unknown;
  error?: string;
  held_micros?: number;
  charged_micros?: number;
  paused?: boolean;
  awaiting_approval?: Awaiting[];
}

async function manifests(): Promise<Map<string, Manifest>> {
  const mods = new Map<string, Manifest>();
  try {
    const r = await get<{ modules: { id: string; manifest: Manifest }[] }>("/api/v1/modules?limit=1000");
    for (const m of r.modules) mods.set(m.id, m.manifest);
  } catch {
    /* ports unnamed: the steps still show */
  }
  return mods;
}

/** The graph: port to port from the builder document when this tab
 * deployed it, else from the status's `needs` (a deployment made
 * elsewhere, each sub-flow's steps in a box); laid out by elk when it
 * has no positions. */
async function graph(id: string, st: Status): Promise<{ nodes: DepNode[]; edges: Edge[] }> {
  const kept = sessionStorage.getItem("rhizos.dep." + id);
  const mods = await manifests();
  if (kept) {
    const g = toCanvas(JSON.parse(kept) as BuilderDoc, mods);
    return { nodes: g.nodes.filter((n) => n.id in st.steps), edges: g.edges };
  }
  const g = fromStatus(st.steps, mods);
  return { nodes: await layout(g.nodes, g.edges), edges: g.edges };
}

function DeploymentInner({ id }: { id: string }) {
  const [st, setSt] = useState<Status | null>(null);
  const [nodes, setNodes] = useState<DepNode[]>([]);
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
  const shown = nodes.map((n): DepNode => {
    if (n.type !== "step") return n;
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

  const [role, setRole] = useState<string | null>(null);
  useEffect(() => {
    whoami().then((w) => setRole(w.role), () => setRole(null));
  }, []);
  const [comment, setComment] = useState("");
  const [busy, setBusy] = useState(false);
  const act = async (f: () => Promise<Status | void>) => {
    setError(null);
    setBusy(true);
    try {
      const r = await f();
      if (r) setSt(r);
    } catch (e) {
      setError(describe(e));
    } finally {
      setBusy(false);
    }
  };
  const cancel = () => act(() => del<Status>(`/api/v1/flows/${id}`));
  const pause = () => act(() => post<Status>(`/api/v1/flows/${id}/pause`));
  const resume = () => act(() => post<Status>(`/api/v1/flows/${id}/resume`));
  // A failed or cancelled deployment runs again as a new one, reusing the
  // steps that succeeded (its owner only: the owner pays).
  const rerun = () =>
    act(async () => {
      const r = await post<{ id: number }>(`/api/v1/flows/${id}/resume`);
      location.hash = `#/flows/${r.id}`;
    });
  const decide = (step: string, verdict: "approve" | "reject") =>
    act(async () => {
      const r = await post<Status>(`/api/v1/flows/${id}/steps/${encodeURIComponent(step)}/${verdict}`, comment ? { comment } : {});
      setComment("");
      return r;
    });
  const running = going(st);
  // `rhizos ui`: a run on this machine has no jobs, nodes, holds or charges,
  // and no pause: those rows and buttons are left out, not shown empty.
  const local = role === "local";
  const awaiting = running ? st?.awaiting_approval || [] : [];

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
            <StateBadge state={shownState(st)} />
          </span>
          {!local && <span>held {money(st.held_micros)}</span>}
          {!local && <span>charged {money(st.charged_micros)}</span>}
          <span className="hint">{live ? "live" : "not live"}</span>
          {st.paused && running && <span className="badge st-waiting" data-testid="dep-paused">paused</span>}
          {running && !st.paused && !local && (
            <button type="button" onClick={pause} disabled={busy} data-testid="dep-pause">
              Pause
            </button>
          )}
          {running && st.paused && !local && (
            <button type="button" onClick={resume} disabled={busy} data-testid="dep-resume">
              Resume
            </button>
          )}
          {(st.status === "failed" || st.status === "cancelled") && role === "client" && (
            <button type="button" onClick={rerun} disabled={busy} data-testid="dep-rerun" title="a new deployment that reuses the steps that succeeded">
              Run again, reusing what succeeded
            </button>
          )}
          {running && (
            <button type="button" className="danger" onClick={cancel} disabled={busy}>
              {local ? "Cancel run" : "Cancel deployment"}
            </button>
          )}
        </div>
      )}
      {awaiting.length > 0 && (
        <section aria-label="Awaiting approval" className="approvals" data-testid="approvals">
          <label htmlFor="decision-comment">Comment (optional)</label>
          <input id="decision-comment" value={comment} maxLength={1000} onChange={(e) => setComment(e.target.value)} />
          {awaiting.map((a) => (
            <div className="row" key={a.step}>
              <span>
                <strong>{a.step}</strong> awaits approval
                {a.deadline_ms ? ` (${a.default} at ${new Date(a.deadline_ms).toLocaleString()})` : ""}
              </span>
              <button type="button" onClick={() => decide(a.step, "approve")} disabled={busy} data-testid={"approve-" + a.step}>
                Approve {a.step}
              </button>
              <button type="button" className="danger" onClick={() => decide(a.step, "reject")} disabled={busy} data-testid={"reject-" + a.step}>
                Reject {a.step}
              </button>
            </div>
          ))}
        </section>
      )}
      <div className="dep-main">
        <div className="canvas small" aria-label="Steps of the deployment">
          <ReactFlow
            nodes={shown}
            edges={edges}
            nodeTypes={nodeTypes}
            nodesConnectable={false}
            nodesDraggable={false}
            onNodeClick={(_, n) => n.type === "step" && setSelected(n.id)}
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
                rows={
                  local
                    ? [
                        ["status", <StateBadge state={step.status} />],
                        ["module", step.module ?? "–"],
                        ["needs", step.needs?.length ? step.needs.join(", ") : "–"],
                        ["sub-flow", step.group ?? "–"],
                        ["attempts", step.attempts],
                        ["run time", ms(step.run_ms)],
                        ["error", step.error ?? "–"],
                      ]
                    : [
                        ["status", <StateBadge state={step.status} />],
                        ["module", step.module ?? "–"],
                        ["needs", step.needs?.length ? step.needs.join(", ") : "–"],
                        ["sub-flow", step.group ?? "–"],
                        ["attempts", step.attempts],
                        ["job", step.job ? <a href={`#/jobs/${step.job}`}>job {step.job}</a> : "–"],
                        ["job status", step.job_status ?? "–"],
                        ["dispatches", step.dispatches ?? "–"],
                        ["node", job?.node ?? "–"],
                        ["run time", ms(job?.run_ms)],
                        ["cost", money(job?.cost_micros)],
                        ["waiting", step.waiting_reason ?? "–"],
                        ["error", step.error ?? "–"],
                      ]
                }
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
