// Automatic left-to-right layout (elkjs "layered") for flows that come
// without positions: YAML imports and the deployment view.
// elkjs is most of the bundle's weight: loaded on first use, so the first
// page stays small.
import type { Edge, Node } from "@xyflow/react";

let elk: Promise<{ layout: (g: any) => Promise<any> }> | null = null;
const W = 190;
const H = 110;

export async function layout<N extends Node>(nodes: N[], edges: Edge[]): Promise<N[]> {
  elk ??= import("elkjs/lib/elk.bundled.js").then((m) => new m.default());
  // A node with children (a sub-flow's box) is laid out around them; elk
  // gives children's positions relative to their parent, as React Flow has them.
  const kids = new Map<string, any[]>();
  const box = (n: N): any => ({
    id: n.id,
    ...(kids.has(n.id)
      ? { children: kids.get(n.id), layoutOptions: { "elk.padding": "[top=34,left=14,bottom=14,right=14]" } }
      : { width: n.measured?.width ?? W, height: n.measured?.height ?? H }),
  });
  for (const n of nodes) if (n.parentId) kids.set(n.parentId, []);
  for (const n of nodes) if (n.parentId && !kids.has(n.id)) kids.get(n.parentId)!.push(box(n));
  const g = await (await elk).layout({
    id: "root",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "RIGHT",
      "elk.hierarchyHandling": "INCLUDE_CHILDREN",
      "elk.spacing.nodeNode": "30",
      "elk.layered.spacing.nodeNodeBetweenLayers": "70",
    },
    children: nodes.filter((n) => !n.parentId).map(box),
    edges: edges.map((e) => ({ id: e.id, sources: [e.source], targets: [e.target] })),
  });
  const at = new Map<string, { x: number; y: number; width?: number; height?: number }>();
  const walk = (c: any) => {
    at.set(c.id, { x: c.x ?? 0, y: c.y ?? 0, width: c.width, height: c.height });
    (c.children || []).forEach(walk);
  };
  (g.children || []).forEach(walk);
  return nodes.map((n) => {
    const p = at.get(n.id);
    if (!p) return n;
    return kids.has(n.id)
      ? { ...n, position: { x: p.x, y: p.y }, style: { ...n.style, width: p.width, height: p.height } }
      : { ...n, position: { x: p.x, y: p.y } };
  });
}
