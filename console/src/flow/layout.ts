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
  const g = await (await elk).layout({
    id: "root",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "RIGHT",
      "elk.spacing.nodeNode": "30",
      "elk.layered.spacing.nodeNodeBetweenLayers": "70",
    },
    children: nodes.map((n) => ({ id: n.id, width: n.measured?.width ?? W, height: n.measured?.height ?? H })),
    edges: edges.map((e) => ({ id: e.id, sources: [e.source], targets: [e.target] })),
  });
  const at = new Map<string, { x: number; y: number }>((g.children || []).map((c: any) => [c.id, { x: c.x ?? 0, y: c.y ?? 0 }]));
  return nodes.map((n) => ({ ...n, position: at.get(n.id) ?? n.position }));
}
