import type { Diagnostic } from "../api";
import type { BuilderDoc } from "./flowdoc";

export interface Problem extends Diagnostic {
  nodeId?: string;
  field?: string[];   // path inside the step's config
}

/** Where a server diagnostic points: a step (by index or id) and, inside its
 * config, a field. Pointers are into the document sent (builder JSON). */
export function locate(d: Diagnostic, doc: BuilderDoc): Problem {
  const p = d.pointer || "";
  const parts = p.split("/").slice(1).map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
  let nodeId: string | undefined;
  let rest: string[] = [];
  if (parts[0] === "nodes" && parts.length > 1) {
    nodeId = doc.nodes[Number(parts[1])]?.id;
    rest = parts.slice(2);
  } else if (parts[0] === "steps" && parts.length > 1) {
    nodeId = parts[1];
    rest = parts.slice(2);
  }
  const field = rest[0] === "config" ? rest.slice(1) : undefined;
  return { ...d, nodeId, field };
}
