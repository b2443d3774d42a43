import { useState } from "react";
import { get, post } from "../api";
import { describe, ErrorLine, StateBadge, usePoll } from "../ui";

/** Named flows: each deploy of a flow with a name is a version of it
 * (docs/triggers.md); one is active, and its triggers fire. */
function NamedFlows() {
  const { value, error, reload } = usePoll(() => get<{ flows: any[] }>("/api/v1/named-flows"), 5000);
  const [open, setOpen] = useState<number | null>(null);
  const detail = usePoll(() => (open === null ? Promise.resolve(null) : get<any>(`/api/v1/named-flows/${open}`)), 5000, [open]);
  const [msg, setMsg] = useState<string | null>(null);
  const activate = async (version: number) => {
    try {
      await post(`/api/v1/named-flows/${open}/rollback`, { version });
      setMsg(`version ${version} is active`);
      reload();
      detail.reload();
    } catch (e) {
      setMsg(describe(e));
    }
  };
  if (!value?.flows.length) return <ErrorLine error={error} />;
  return (
    <>
      <h2>Named flows</h2>
      <table>
        <thead>
          <tr>
            <th scope="col">name</th>
            <th scope="col">active version</th>
            <th scope="col">latest</th>
            <th scope="col">triggers</th>
          </tr>
        </thead>
        <tbody>
          {value.flows.map((f) => (
            <tr key={f.id}>
              <td>
                <button type="button" className="link" aria-expanded={open === f.id} onClick={() => setOpen(open === f.id ? null : f.id)}>
                  {f.name}
                </button>
              </td>
              <td>{f.active ?? "–"}</td>
              <td>{f.latest}</td>
              <td>{(f.triggers || []).join(", ") || "–"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {open !== null && detail.value && (
        <section aria-label="Versions">
          <h3>Versions of {detail.value.name}</h3>
          {msg && <p role="status">{msg}</p>}
          <ul>
            {(detail.value.versions || []).map((v: any) => (
              <li key={v.version}>
                version {v.version} {v.note ? `— ${v.note}` : ""} ({new Date(v.created_ms).toLocaleString()}){" "}
                {v.deployment ? <a href={`#/flows/${v.deployment}`}>deployment {v.deployment}</a> : null}{" "}
                {detail.value.active !== v.version && (
                  <button type="button" className="small" onClick={() => activate(v.version)}>
                    Make active
                  </button>
                )}
              </li>
            ))}
          </ul>
        </section>
      )}
    </>
  );
}

export function FlowsView() {
  const [filter, setFilter] = useState("");
  const { value, error } = usePoll(() => get<{ flows: any[] }>("/api/v1/flows"), 3000);
  const flows = (value?.flows || []).filter((f) => !filter || f.status === filter).sort((a, b) => b.id - a.id);
  return (
    <section aria-labelledby="flows-h">
      <h1 id="flows-h">Flow deployments</h1>
      <label htmlFor="flow-filter">Status </label>
      <select id="flow-filter" value={filter} onChange={(e) => setFilter(e.target.value)}>
        {["", "running", "succeeded", "failed", "cancelled"].map((s) => (
          <option key={s} value={s}>
            {s || "all"}
          </option>
        ))}
      </select>
      <ErrorLine error={error} />
      <table>
        <thead>
          <tr>
            <th scope="col">id</th>
            <th scope="col">flow</th>
            <th scope="col">status</th>
          </tr>
        </thead>
        <tbody>
          {flows.map((f) => (
            <tr key={f.id}>
              <td>
                <a href={`#/flows/${f.id}`}>deployment {f.id}</a>
              </td>
              <td>{f.flow}</td>
              <td>
                <StateBadge state={f.status} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <p>
        <a href="#/builder">Build a new flow</a>
      </p>
      <NamedFlows />
    </section>
  );
}
