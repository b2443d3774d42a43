import { Handle, Position, type NodeProps } from "@xyflow/react";
import type { StepNode as StepNodeT } from "./flowdoc";

/** A step on a canvas: inputs on the left, outputs on the right, each a
 * handle named after its port (so connections carry the port names). */
export function StepNode({ id, data, selected }: NodeProps<StepNodeT>) {
  const m = data.module;
  const ins = m?.inputs || [];
  const outs = m?.outputs || [];
  const rows = Math.max(ins.length, outs.length, 1);
  const cls = ["step", data.status ? "st-" + data.status : "", selected ? "selected" : "", data.problems ? "has-problems" : ""];
  return (
    <div className={cls.join(" ")} data-testid={"step-" + id} data-status={data.status || ""}>
      <div className="step-head">
        <strong>{id}</strong>
        <span className="step-mod">{data.step.moduleId}</span>
        {data.status && <span className={"badge st-" + data.status}>{data.status}</span>}
        {!m && !data.status && <span className="badge st-failed">unknown module</span>}
      </div>
      <div className={"ports rows-" + Math.min(rows, 8)}>
        <div className="ins">
          {ins.map((p) => (
            <div className="port in" key={p.name}>
              <Handle
                type="target"
                position={Position.Left}
                id={p.name}
                className={"h-" + (p.type || "any")}
                data-testid={`in-${id}-${p.name}`}
                title={`input ${p.name} (${p.type || "any"})`}
              />
              <span>
                {p.name}
                {p.required ? "*" : ""} <em>{p.type}</em>
              </span>
            </div>
          ))}
        </div>
        <div className="outs">
          {outs.map((p) => (
            <div className="port out" key={p.name}>
              <span>
                {p.name} <em>{p.type}</em>
              </span>
              <Handle
                type="source"
                position={Position.Right}
                id={p.name}
                className={"h-" + (p.type || "any")}
                data-testid={`out-${id}-${p.name}`}
                title={`output ${p.name} (${p.type || "any"})`}
              />
            </div>
          ))}
        </div>
      </div>
    </div>
  );
}
