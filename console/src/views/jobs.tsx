import { useState } from "react";
import { del, get, money } from "../api";
import { describe, ErrorLine, Kv, ms, StateBadge, Table, usePoll } from "../ui";

const STATES = ["", "pending", "queued", "assigned", "running", "succeeded", "failed", "cancelled"];
const DONE = new Set(["succeeded", "failed", "cancelled"]);

export function JobsView() {
  const [filter, setFilter] = useState("");
  const [error, setError] = useState<string | null>(null);
  const { value, error: loadErr, reload } = usePoll(() => get<{ jobs: any[] }>("/api/v1/jobs?limit=100"), 3000);
  const jobs = (value?.jobs || []).filter((j) => !filter || j.status === filter);
  const cancel = async (id: number) => {
    try {
      await del(`/api/v1/jobs/${id}`);
      reload();
    } catch (e) {
      setError(describe(e));
    }
  };
  return (
    <section aria-labelledby="jobs-h">
      <h1 id="jobs-h">Jobs</h1>
      <label htmlFor="job-filter">Status </label>
      <select id="job-filter" value={filter} onChange={(e) => setFilter(e.target.value)}>
        {STATES.map((s) => (
          <option key={s} value={s}>
            {s || "all"}
          </option>
        ))}
      </select>
      <Table
        rows={value ? jobs : null}
        rowKey={(j) => j.id}
        error={loadErr || error}
        empty={filter ? `No ${filter} job.` : "No job yet."}
        columns={[
          { head: "id", cell: (j) => <a href={`#/jobs/${j.id}`}>job {j.id}</a> },
          { head: "module", cell: (j) => j.module || j.image || j.type },
          {
            head: "status",
            cell: (j) => (
              <>
                <StateBadge state={j.status} />
                {j.waiting_reason && <span className="hint"> {j.waiting_reason}</span>}
              </>
            ),
          },
          { head: "node", cell: (j) => j.node ?? "–" },
          { head: "flow step", cell: (j) => (j.deployment ? <a href={`#/flows/${j.deployment}`}>{`flow ${j.deployment} · ${j.step}`}</a> : "–") },
          { head: "run time", cell: (j) => ms(j.run_ms) },
          { head: "cost", cell: (j) => money(j.cost_micros) },
          {
            head: "actions",
            hidden: true,
            cell: (j) =>
              !DONE.has(j.status) &&
              !j.deployment && (
                <button type="button" onClick={() => cancel(j.id)}>
                  Cancel
                </button>
              ),
          },
        ]}
      />
    </section>
  );
}

export function JobDetail({ id }: { id: string }) {
  const { value: j, error } = usePoll(() => get<any>(`/api/v1/jobs/${id}`), 2000, [id]);
  return (
    <section aria-labelledby="job-h">
      <p>
        <a href="#/jobs">← Jobs</a>
      </p>
      <h1 id="job-h">Job {id}</h1>
      <ErrorLine error={error} />
      {j && (
        <>
          <Kv
            rows={[
              ["status", <StateBadge state={j.status} />],
              ["module", `${j.module || j.image} ${j.version || ""}`],
              ["attempt", j.attempt],
              ["node", j.node ?? "–"],
              ["run time", ms(j.run_ms)],
              ["cost", money(j.cost_micros)],
              ["waiting", j.waiting_reason ?? "–"],
              ["error", j.error ?? "–"],
            ]}
          />
          <h2>Outputs</h2>
          <pre tabIndex={0} className="json">{JSON.stringify(j.outputs, null, 2)}</pre>
          <h2>Log</h2>
          <pre tabIndex={0} className="log">{j.log || "(no log yet)"}</pre>
        </>
      )}
    </section>
  );
}
