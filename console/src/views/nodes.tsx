import { get, money } from "../api";
import { ErrorLine, Kv, StateBadge, usePoll } from "../ui";

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
      <ErrorLine error={error} />
      <table>
        <thead>
          <tr>
            <th scope="col">id</th>
            <th scope="col">state</th>
            <th scope="col">hardware</th>
            <th scope="col">adapters</th>
            <th scope="col">prices</th>
            <th scope="col">load</th>
            <th scope="col">verification</th>
            <th scope="col">reputation</th>
          </tr>
        </thead>
        <tbody>
          {(value?.nodes || []).map((n) => (
            <tr key={n.id} data-testid={"node-" + n.id}>
              <td>
                <a href={`#/nodes/${n.id}`}>node {n.id}</a>
              </td>
              <td>
                <StateBadge state={n.state} />
              </td>
              <td>{hardware(n.capabilities)}</td>
              <td>{(n.capabilities?.adapters || []).join(", ")}</td>
              <td>{prices(n.capabilities)}</td>
              <td>{Math.round((n.load || 0) * 100)}%</td>
              <td>{n.verification?.state ?? "–"}</td>
              <td>{n.verification?.reputation?.toFixed(2) ?? "–"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {value && value.nodes.length === 0 && <p>No node has registered yet.</p>}
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
