import { Handle, Position, type NodeProps } from "@xyflow/react";
import { subflowOf, type GroupNode, type StepNode as StepNodeT } from "./flowdoc";

/** A step on a canvas: inputs on the left, outputs on the right, each a
 * handle named after its port (so connections carry the port names). */
export function StepNode({ id, data, selected }: NodeProps<StepNodeT>) {
  const m = data.module;
  const ins = (!data.plain && m?.inputs) || [];
  const outs = (!data.plain && m?.outputs) || [];
  const sub = subflowOf(data.step);
  const gate = !data.step.moduleId && !!data.step.approval;
  const rows = Math.max(ins.length, outs.length, 1);
  const cls = ["step", data.status ? "st-" + data.status : "", selected ? "selected" : "", data.problems ? "has-problems" : ""];
  return (
    <div className={cls.join(" ")} data-testid={"step-" + id} data-status={data.status || ""}>
      <div className="step-head">
        <strong>{id}</strong>
        <span className="step-mod">{data.step.moduleId}</span>
        {data.status && <span className={"badge st-" + data.status}>{data.status}</span>}
        {sub && <span className="badge kind" title="runs the steps of another flow file, expanded as <step>-<id> at deploy">sub-flow {sub}</span>}
        {gate && <span className="badge kind">approval</span>}
        {!m && !sub && !gate && !data.status && <span className="badge st-failed">unknown module</span>}
      </div>
      {data.plain && (
        <>
          <Handle type="target" position={Position.Left} id="needs" isConnectable={false} className="h-needs" />
          <Handle type="source" position={Position.Right} id="needs" isConnectable={false} className="h-needs" />
        </>
      )}
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

/** The steps of one sub-flow step, drawn in a box named after it. */
export function GroupBox({ data }: NodeProps<GroupNode>) {
  return (
    <div className="group-box" data-testid={"group-" + data.label} title={`the steps sub-flow step ${data.label} became`}>
      <span className="group-label">sub-flow {data.label}</span>
    </div>
  );
}
