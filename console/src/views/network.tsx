import { useEffect, useRef, useState } from "react";
import { get, getKey, money, whoami } from "../api";
import { buckets, quantile, seconds } from "../metrics";
import { Chart } from "../chart";
import { describe, ErrorLine, Kv } from "../ui";

interface Stats {
  nodes: { active: number; lost: number };
  jobs: Record<string, number>;
  queue_depth: number;
  deployments: { running: number; done: number };
}

const HOUR = 3600;
const EVERY_MS = 2000;

/** Totals refreshed every 2 s; the charts keep what this tab saw over the
 * last hour (the API has no history of its own). Money totals are the
 * admin's only (GET /api/v1/payments/stats answers others 403). */
export function NetworkView() {
  const [stats, setStats] = useState<Stats | null>(null);
  const [pay, setPay] = useState<Record<string, number> | null>(null);
  const [latency, setLatency] = useState<[number | null, number | null] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const hist = useRef<{ t: number[]; active: number[]; lost: number[]; running: number[]; queued: number[]; depth: number[] }>(
    { t: [], active: [], lost: [], running: [], queued: [], depth: [] },
  );
  const [, redraw] = useState(0);
  useEffect(() => {
    let live = true;
    let timer: number | undefined;
    let payOk: boolean | null = null;
    const tick = async () => {
      try {
        const s = await get<Stats>("/api/v1/stats");
        if (!live) return;
        setStats(s);
        setError(null);
        const h = hist.current;
        const now = Date.now() / 1000;
        h.t.push(now);
        h.active.push(s.nodes.active);
        h.lost.push(s.nodes.lost);
        h.running.push((s.jobs.running || 0) + (s.jobs.assigned || 0));
        h.queued.push((s.jobs.queued || 0) + (s.jobs.pending || 0));
        h.depth.push(s.queue_depth);
        while (h.t.length && h.t[0] < now - HOUR) for (const a of Object.values(h)) a.shift();
        redraw((n) => n + 1);
        if (payOk === null) payOk = (await whoami().catch(() => null))?.role === "admin";
        if (payOk) {
          try {
            setPay(await get("/api/v1/payments/stats"));
            const r = await fetch("/metrics", { headers: { Authorization: "Bearer " + getKey() } });
            if (r.ok) {
              const bs = buckets(await r.text(), "rhizos_dispatch_latency_seconds");
              setLatency([quantile(bs, 0.5), quantile(bs, 0.99)]);
            }
          } catch {
            payOk = false;
          }
        }
      } catch (e) {
        if (live) setError(describe(e));
      }
      if (live) timer = window.setTimeout(tick, EVERY_MS);
    };
    tick();
    return () => {
      live = false;
      window.clearTimeout(timer);
    };
  }, []);
  const h = hist.current;
  return (
    <section aria-labelledby="net-h">
      <h1 id="net-h">Network</h1>
      <ErrorLine error={error} />
      {stats && (
        <div className="cards">
          <div className="card" data-testid="nodes-active">
            <h2>Nodes</h2>
            <Kv rows={[["active", stats.nodes.active], ["lost", stats.nodes.lost]]} />
          </div>
          <div className="card">
            <h2>Jobs</h2>
            <Kv rows={Object.entries(stats.jobs).map(([k, v]) => [k, v] as [string, React.ReactNode])} />
          </div>
          <div className="card">
            <h2>Queue and flows</h2>
            <Kv
              rows={[
                ["queue depth", stats.queue_depth],
                ["flows running", stats.deployments.running],
                ["flows done", stats.deployments.done],
                ...(latency
                  ? ([
                      ["dispatch p50", seconds(latency[0])],
                      ["dispatch p99", seconds(latency[1])],
                    ] as [string, React.ReactNode][])
                  : []),
              ]}
            />
          </div>
          {pay && (
            <div className="card">
              <h2>Money</h2>
              <Kv
                rows={[
                  ["volume", money(pay.volume_micros)],
                  ["fees", money(pay.fees_micros)],
                  ["held", money(pay.held_micros)],
                ]}
              />
            </div>
          )}
        </div>
      )}
      <div className="charts">
        <Chart
          title="Nodes"
          xs={h.t.slice()}
          ys={[h.active.slice(), h.lost.slice()]}
          series={[
            { label: "active", stroke: "#1a7f37" },
            { label: "lost", stroke: "#b42318" },
          ]}
        />
        <Chart
          title="Jobs"
          xs={h.t.slice()}
          ys={[h.running.slice(), h.queued.slice(), h.depth.slice()]}
          series={[
            { label: "running", stroke: "#1f5fbf" },
            { label: "waiting", stroke: "#9a6700" },
            { label: "queue depth", stroke: "#6e40c9" },
          ]}
        />
      </div>
    </section>
  );
}
