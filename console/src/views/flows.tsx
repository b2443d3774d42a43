import { useState } from "react";
import { get } from "../api";
import { ErrorLine, StateBadge, usePoll } from "../ui";

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
    </section>
  );
}
