import { useEffect, useRef, useState } from "react";
import { ApiError } from "./api";

/** Runs `load` now and every `ms` while mounted (again when `deps` change
 * or `reload` is called): the last value and error. */
export function usePoll<T>(load: () => Promise<T>, ms: number, deps: unknown[] = []) {
  const [value, setValue] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [nonce, setNonce] = useState(0);
  const latest = useRef(load);
  latest.current = load;
  useEffect(() => {
    let live = true;
    let timer: number | undefined;
    const run = async () => {
      try {
        const v = await latest.current();
        if (live) {
          setValue(v);
          setError(null);
        }
      } catch (e) {
        if (live) setError(describe(e));
      }
      if (live && ms > 0) timer = window.setTimeout(run, ms);
    };
    run();
    return () => {
      live = false;
      window.clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, nonce, ms]);
  return { value, error, reload: () => setNonce((n) => n + 1) };
}

export function describe(e: unknown): string {
  if (e instanceof ApiError) return `${e.message} (${e.code})`;
  if (e instanceof Error) return e.message;
  return String(e);
}

export function ErrorLine({ error }: { error: string | null }) {
  if (!error) return null;
  return (
    <p className="error" role="alert">
      {error}
    </p>
  );
}

export function StateBadge({ state }: { state: string }) {
  return <span className={"badge st-" + state}>{state}</span>;
}

export function Kv({ rows }: { rows: [string, React.ReactNode][] }) {
  return (
    <dl className="kv">
      {rows.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}

export function ms(v: number | null | undefined): string {
  if (v === null || v === undefined) return "–";
  return v < 1000 ? `${v} ms` : `${(v / 1000).toFixed(1)} s`;
}

/** One column of a <Table>: its header and how a row fills its cell. */
export interface Column<T> {
  head: string;
  cell: (row: T) => React.ReactNode;
  /** the header read by screen readers only (an actions column) */
  hidden?: boolean;
}

/** The console's list table: the load error above it, a line instead of
 * it when loaded and empty (nothing while still loading). */
export function Table<T>({
  rows,
  columns,
  rowKey,
  error = null,
  empty,
  className,
  rowTestId,
}: {
  rows: T[] | null | undefined;
  columns: Column<T>[];
  rowKey: (row: T) => string | number;
  error?: string | null;
  empty?: React.ReactNode;
  className?: string;
  rowTestId?: (row: T) => string;
}) {
  return (
    <>
      <ErrorLine error={error} />
      {rows && rows.length === 0 && empty !== undefined ? (
        <p className="hint" data-testid="empty">
          {empty}
        </p>
      ) : (
        <table className={className}>
          <thead>
            <tr>
              {columns.map((c) => (
                <th scope="col" key={c.head}>
                  {c.hidden ? <span className="sr-only">{c.head}</span> : c.head}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {(rows || []).map((r) => (
              <tr key={rowKey(r)} data-testid={rowTestId?.(r)}>
                {columns.map((c) => (
                  <td key={c.head}>{c.cell(r)}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
