import { useState } from "react";
import { get, post } from "../api";
import { describe, ErrorLine, StateBadge, Table, usePoll } from "../ui";
import { shownState } from "../runstate";

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
      <Table
        rows={value.flows}
        rowKey={(f) => f.id}
        columns={[
          {
            head: "name",
            cell: (f) => (
              <button type="button" className="link" aria-expanded={open === f.id} onClick={() => setOpen(open === f.id ? null : f.id)}>
                {f.name}
              </button>
            ),
          },
          { head: "active version", cell: (f) => f.active ?? "–" },
          { head: "latest", cell: (f) => f.latest },
          { head: "triggers", cell: (f) => (f.triggers || []).join(", ") || "–" },
        ]}
      />
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
  const flows = (value?.flows || []).filter((f) => !filter || shownState(f) === filter).sort((a, b) => b.id - a.id);
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
      <Table
        rows={value ? flows : null}
        rowKey={(f) => f.id}
        error={error}
        empty={filter ? `No ${filter} deployment.` : "No deployment yet."}
        columns={[
          { head: "id", cell: (f) => <a href={`#/flows/${f.id}`}>deployment {f.id}</a> },
          { head: "flow", cell: (f) => f.flow },
          { head: "status", cell: (f) => <StateBadge state={shownState(f)} /> },
        ]}
      />
      <p>
        <a href="#/builder">Build a new flow</a>
      </p>
      <NamedFlows />
    </section>
  );
}
