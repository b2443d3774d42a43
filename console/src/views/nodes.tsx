import { get, money } from "../api";
import { ErrorLine, Kv, StateBadge, Table, usePoll } from "../ui";

interface Node {
  id: number;
  state: string;
  load: number;
  jobs: number;
  capabilities: any;
  identity: string;
  verification?: { state: string; reputation: number };
}

function hardware(c: any): string {
  const cpu = c?.cpu ? `${c.cpu.cores ?? c.cpu.threads ?? "?"} cores` : "";
  const mem = c?.memory_mb ? `${Math.round(c.memory_mb / 1024)} GiB` : "";
  const gpus = (c?.gpus || []).map((g: any) => `${g.model} (${Math.round((g.vram_mb || 0) / 1024)} GiB)`).join(", ");
  return [cpu, mem, gpus].filter(Boolean).join(" · ");
}

function prices(c: any): string {
  const p = c?.prices || {};
  return `cpu ${money(p.cpu_hour_micros)}/h · gpu ${money(p.gpu_hour_micros)}/h`;
}

export function NodesView() {
  const { value, error } = usePoll(() => get<{ nodes: Node[] }>("/api/v1/nodes?limit=1000"), 3000);
  return (
    <section aria-labelledby="nodes-h">
      <h1 id="nodes-h">Nodes</h1>
      <Table
        rows={value?.nodes}
        rowKey={(n) => n.id}
        rowTestId={(n) => "node-" + n.id}
        error={error}
        empty="No node has registered yet."
        columns={[
          { head: "id", cell: (n) => <a href={`#/nodes/${n.id}`}>node {n.id}</a> },
          { head: "state", cell: (n) => <StateBadge state={n.state} /> },
          { head: "hardware", cell: (n) => hardware(n.capabilities) },
          { head: "adapters", cell: (n) => (n.capabilities?.adapters || []).join(", ") },
          { head: "prices", cell: (n) => prices(n.capabilities) },
          { head: "load", cell: (n) => `${Math.round((n.load || 0) * 100)}%` },
          { head: "verification", cell: (n) => n.verification?.state ?? "–" },
          { head: "reputation", cell: (n) => n.verification?.reputation?.toFixed(2) ?? "–" },
        ]}
      />
    </section>
  );
}

export function NodeDetail({ id }: { id: string }) {
  const nodes = usePoll(() => get<{ nodes: Node[] }>(`/api/v1/nodes?after=${Number(id) - 1}&limit=1`), 3000, [id]);
  const jobs = usePoll(() => get<{ jobs: any[] }>("/api/v1/jobs?limit=100"), 3000, [id]);
  const n = nodes.value?.nodes.find((x) => String(x.id) === id);
  const mine = (jobs.value?.jobs || []).filter((j) => String(j.node) === id);
  return (
    <section aria-labelledby="node-h">
      <p>
        <a href="#/nodes">← Nodes</a>
      </p>
      <h1 id="node-h">Node {id}</h1>
      <ErrorLine error={nodes.error} />
      {n && (
        <>
          <Kv
            rows={[
              ["state", <StateBadge state={n.state} />],
              ["identity", n.identity],
              ["hardware", hardware(n.capabilities)],
              ["adapters", (n.capabilities?.adapters || []).join(", ")],
              ["prices", prices(n.capabilities)],
              ["load", `${Math.round((n.load || 0) * 100)}%`],
              ["verification", n.verification?.state ?? "–"],
              ["reputation", n.verification?.reputation?.toFixed(2) ?? "–"],
            ]}
          />
          <h2>Capabilities</h2>
          <pre tabIndex={0} className="json">{JSON.stringify(n.capabilities, null, 2)}</pre>
        </>
      )}
      <h2>Recent jobs here (yours)</h2>
      <ul>
        {mine.map((j) => (
          <li key={j.id}>
            <a href={`#/jobs/${j.id}`}>job {j.id}</a> {j.module || j.image} <StateBadge state={j.status} />
          </li>
        ))}
      </ul>
    </section>
  );
}
