import { useEffect, useState } from "react";
import { ApiError, money, post } from "../api";
import { describe, Table } from "../ui";
import type { BuilderDoc } from "./flowdoc";

interface StepEstimate {
  step: string;
  module: string;
  estimate_seconds: number;
  rent: { node_class: string; cost_micros: number } | null;
  api: { provider: string; model: string; cost_micros: number } | null;
  rent_unavailable?: string;
  api_unavailable?: string;
  recommendation: string;
  cost_micros: number;
}

/** POST /api/v1/flows/estimate (as `rhizos flow estimate`): per step the
 * cost of renting a node against calling an API, and the total. */
export function CostPanel({ doc, semantic, enabled }: { doc: BuilderDoc; semantic: string; enabled: boolean }) {
  const [est, setEst] = useState<{ steps: StepEstimate[]; total_micros: number; complete: boolean } | null>(null);
  const [note, setNote] = useState<string | null>(null);
  useEffect(() => {
    if (!enabled) {
      setEst(null);
      return;
    }
    let live = true;
    const t = window.setTimeout(async () => {
      try {
        const r = await post<any>("/api/v1/flows/estimate", { flow: doc });
        if (live) {
          setEst(r);
          setNote(null);
        }
      } catch (e) {
        if (!live) return;
        setEst(null);
        if (e instanceof ApiError && e.status === 422) setNote("No estimate while the flow has problems.");
        else if (e instanceof ApiError && (e.status === 404 || e.status === 405)) setNote("This server has no estimate route.");
        else setNote(describe(e));
      }
    }, 700);
    return () => {
      live = false;
      window.clearTimeout(t);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [semantic, enabled]);
  return (
    <section aria-labelledby="cost-h" data-testid="cost">
      <h2 id="cost-h">Cost estimate</h2>
      {note && <p className="hint">{note}</p>}
      {est && (
        <>
          <p>
            Total <strong data-testid="cost-total">{money(est.total_micros)}</strong>
            {!est.complete && " (some steps have no price)"}
          </p>
          <Table
            className="compact"
            rows={est.steps}
            rowKey={(s) => s.step}
            columns={[
              { head: "step", cell: (s) => s.step },
              { head: "rent", cell: (s) => <span title={s.rent_unavailable}>{s.rent ? money(s.rent.cost_micros) : "–"}</span> },
              { head: "API", cell: (s) => <span title={s.api_unavailable}>{s.api ? `${money(s.api.cost_micros)} ${s.api.provider}` : "–"}</span> },
              { head: "pick", cell: (s) => s.recommendation },
            ]}
          />
        </>
      )}
    </section>
  );
}
