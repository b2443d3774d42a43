// Quantiles of a Prometheus histogram from /metrics (text format 0.0.4):
// the orchestrator's dispatch latency, which only /metrics carries.

/** The cumulative buckets of histogram `name` (all label sets summed) as
 * [upper bound, count], ascending, +Inf last. */
export function buckets(text: string, name: string): [number, number][] {
  const sums = new Map<number, number>();
  const re = new RegExp(`^${name}_bucket\\{([^}]*)\\}\\s+(\\S+)`);
  for (const line of text.split("\n")) {
    const m = re.exec(line);
    if (!m) continue;
    const le = /(?:^|,)le="([^"]+)"/.exec(m[1]);
    if (!le) continue;
    const bound = le[1] === "+Inf" ? Infinity : Number(le[1]);
    const n = Number(m[2]);
    if (Number.isNaN(bound) || Number.isNaN(n)) continue;
    sums.set(bound, (sums.get(bound) || 0) + n);
  }
  return [...sums.entries()].sort((a, b) => a[0] - b[0]);
}

/** The upper bound of the bucket holding quantile q (0..1): "at most this";
 * null without observations. Infinity when it is past the last bound. */
export function quantile(bs: [number, number][], q: number): number | null {
  const total = bs.length ? bs[bs.length - 1][1] : 0;
  if (!total) return null;
  const want = q * total;
  for (const [bound, n] of bs) if (n >= want) return bound;
  return Infinity;
}

export function seconds(v: number | null): string {
  if (v === null) return "–";
  if (v === Infinity) return "> last bucket";
  return v < 1 ? `≤ ${Math.round(v * 1000)} ms` : `≤ ${v} s`;
}
