import { useEffect, useRef, useState } from "react";
import { get } from "../api";
import { describe, ErrorLine } from "../ui";
import { needs, type ModuleEntry } from "./flowdoc";

/** The registry's modules (GET /api/v1/modules?q=), searchable. A module is
 * dragged onto the canvas with the pointer, or added with its button (the
 * keyboard's way). */
export function Palette({
  onAdd,
  onDrop,
  onModules,
}: {
  onAdd: (m: ModuleEntry) => void;
  onDrop: (m: ModuleEntry, x: number, y: number) => boolean;
  onModules: (m: ModuleEntry[]) => void;
}) {
  const [q, setQ] = useState("");
  const [list, setList] = useState<ModuleEntry[]>([]);
  const [total, setTotal] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const [drag, setDrag] = useState<{ m: ModuleEntry; x: number; y: number } | null>(null);
  const ghost = useRef<HTMLDivElement>(null);
  useEffect(() => {
    let live = true;
    const t = window.setTimeout(async () => {
      try {
        const r = await get<{ modules: ModuleEntry[]; total: number }>(`/api/v1/modules?q=${encodeURIComponent(q)}&limit=200`);
        if (!live) return;
        setList(r.modules);
        setTotal(r.total ?? r.modules.length);
        onModules(r.modules);
        setError(null);
      } catch (e) {
        if (live) setError(describe(e));
      }
    }, 200);
    return () => {
      live = false;
      window.clearTimeout(t);
    };
  }, [q, onModules]);

  useEffect(() => {
    if (!drag) return;
    const move = (e: PointerEvent) => setDrag((d) => (d ? { ...d, x: e.clientX, y: e.clientY } : d));
    const up = (e: PointerEvent) => {
      onDrop(drag.m, e.clientX, e.clientY);
      setDrag(null);
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up, { once: true });
    return () => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
    };
    // the module being dragged is fixed for one drag
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [drag?.m]);

  useEffect(() => {
    if (drag && ghost.current) {
      ghost.current.style.left = drag.x + 8 + "px";
      ghost.current.style.top = drag.y + 8 + "px";
    }
  }, [drag]);

  return (
    <aside className="palette" aria-label="Modules">
      <h2>Modules</h2>
      <label htmlFor="module-search" className="sr-only">
        Search modules
      </label>
      <input id="module-search" type="search" placeholder="Search modules" value={q} onChange={(e) => setQ(e.target.value)} />
      <ErrorLine error={error} />
      <p className="hint">
        {list.length} of {total} · drag onto the canvas
      </p>
      <ul>
        {list.map((m) => (
          <li
            key={m.id + "@" + m.version}
            className="module"
            data-testid={"module-" + m.id}
            onPointerDown={(e) => {
              if ((e.target as HTMLElement).closest("button")) return;
              e.preventDefault();
              setDrag({ m, x: e.clientX, y: e.clientY });
            }}
          >
            <div className="module-head">
              <strong>{m.name || m.id}</strong>
              <button type="button" className="small" onClick={() => onAdd(m)} aria-label={`Add ${m.id} to the canvas`}>
                Add
              </button>
            </div>
            <code>
              {m.id}@{m.version}
            </code>
            <div className="chips">
              {needs(m).map((n) => (
                <span className="chip" key={n}>
                  {n}
                </span>
              ))}
            </div>
          </li>
        ))}
      </ul>
      {drag && (
        <div className="ghost" ref={ghost} aria-hidden="true">
          {drag.m.id}
        </div>
      )}
    </aside>
  );
}
