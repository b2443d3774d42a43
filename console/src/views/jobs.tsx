import { useState } from "react";
import { del, get, money } from "../api";
import { describe, ErrorLine, Kv, ms, StateBadge, usePoll } from "../ui";

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
      <ErrorLine error={loadErr || error} />
      <table>
        <thead>
          <tr>
            <th scope="col">id</th>
            <th scope="col">module</th>
            <th scope="col">status</th>
            <th scope="col">node</th>
            <th scope="col">flow step</th>
            <th scope="col">run time</th>
            <th scope="col">cost</th>
            <th scope="col">
              <span className="sr-only">actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {jobs.map((j) => (
            <tr key={j.id}>
              <td>
                <a href={`#/jobs/${j.id}`}>job {j.id}</a>
              </td>
              <td>{j.module || j.image || j.type}</td>
              <td>
                <StateBadge state={j.status} />
                {j.waiting_reason && <span className="hint"> {j.waiting_reason}</span>}
              </td>
              <td>{j.node ?? "–"}</td>
              <td>{j.deployment ? <a href={`#/flows/${j.deployment}`}>{`flow ${j.deployment} · ${j.step}`}</a> : "–"}</td>
              <td>{ms(j.run_ms)}</td>
              <td>{money(j.cost_micros)}</td>
              <td>
                {!DONE.has(j.status) && !j.deployment && (
                  <button type="button" onClick={() => cancel(j.id)}>
                    Cancel
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
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
