import { useEffect, useRef } from "react";
import uPlot from "uplot";

export interface Series {
  label: string;
  stroke: string;
}

/** A uPlot time series: xs in seconds, one array of ys per series. */
export function Chart({ title, xs, ys, series }: { title: string; xs: number[]; ys: number[][]; series: Series[] }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    if (!box.current) return;
    const opts: uPlot.Options = {
      title,
      width: Math.max(280, box.current.clientWidth || 420),
      height: 180,
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.stroke, width: 2 }))],
      axes: [{}, { size: 50 }],
      scales: { x: { time: true } },
    };
    plot.current = new uPlot(opts, [xs, ...ys] as uPlot.AlignedData, box.current);
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [title, series.length]);
  useEffect(() => {
    const p = plot.current;
    if (!p || !xs.length) return;
    p.setData([xs, ...ys] as uPlot.AlignedData);
    // at least the last minute, so a few points do not span years
    const last = xs[xs.length - 1];
    p.setScale("x", { min: Math.min(xs[0], last - 60), max: last });
  }, [xs, ys]);
  return <div className="chart" ref={box} role="img" aria-label={title + " over time"} />;
}
