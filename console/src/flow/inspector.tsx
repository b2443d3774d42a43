import { useMemo, useState } from "react";
import Form from "@rjsf/core";
import type { ErrorSchema, RJSFSchema } from "@rjsf/utils";
import { isStored, STEP_ID, subflowOf, type StepNode, type StoredCredential } from "./flowdoc";
import { validator } from "./validator";
import type { Problem } from "./locate";

/** Server diagnostics with a config path, as rjsf's extra errors. */
function toErrorSchema(problems: Problem[]): ErrorSchema {
  const root: any = {};
  for (const p of problems) {
    if (!p.field) continue;
    let cur = root;
    for (const k of p.field) cur = cur[k] = cur[k] || {};
    cur.__errors = [...(cur.__errors || []), p.message];
  }
  return root;
}

const NO_SUBMIT = { "ui:submitButtonOptions": { norender: true } };

/** One step: its id, module version, config form (from the module's JSON
 * Schema, with the server's diagnostics on the fields they point to) and
 * credential references. Credential values never pass through here: a
 * step names a credential id, one the caller stored on the orchestrator
 * (`stored`, offered first) or one the deployer's vault holds. */
export function Inspector({
  node,
  problems,
  allIds,
  credentialIds,
  stored,
  onChange,
  onDelete,
  feeds,
  onFeed,
}: {
  node: StepNode;
  problems: Problem[];
  allIds: string[];
  credentialIds: string[];
  /** the caller's stored credentials; null where there is no such store */
  stored: StoredCredential[] | null;
  onChange: (id: string, step: StepNode["data"]["step"]) => void;
  onDelete: () => void;
  /** per input port: what feeds it now ("step.port" or "") and what may */
  feeds: { port: string; type?: string; now: string; options: string[] }[];
  onFeed: (port: string, from: string) => void;
}) {
  const step = node.data.step;
  const m = node.data.module;
  const [idText, setIdText] = useState(node.id);
  const idError = !STEP_ID.test(idText)
    ? "letters, digits, _ and -, starting with a letter or _ (at most 64)"
    : idText !== node.id && allIds.includes(idText)
      ? "another step has this id"
      : null;
  const extra = useMemo(() => toErrorSchema(problems), [problems]);
  const schema = (m?.config || { type: "object" }) as RJSFSchema;
  const creds = m?.credentials || [];
  const sub = subflowOf(step);
  return (
    <section aria-labelledby="insp-h" className="inspector">
      <h2 id="insp-h">Step {node.id}</h2>
      <p className="hint">
        {m ? `${m.name || m.id} ${m.version}` : step.moduleId}
        {m?.description ? ` — ${m.description}` : ""}
      </p>
      {sub && (
        <p className="hint" data-testid="subflow-note">
          Runs the sub-flow <code>{sub}</code>: its steps join this flow as <code>{node.id}-&lt;step&gt;</code>. The file is
          read where it lies, so <code>rhizos flow deploy</code> expands it; the server never reads a file a flow names, and
          this console cannot either. Its inputs and outputs are wired with <code>{"${{ }}"}</code> in the YAML.
        </p>
      )}
      <div className="field">
        <label htmlFor="step-id">Step id</label>
        <input
          id="step-id"
          value={idText}
          aria-invalid={!!idError}
          aria-describedby={idError ? "step-id-err" : undefined}
          onChange={(e) => setIdText(e.target.value)}
          onBlur={() => !idError && idText !== node.id && onChange(idText, step)}
          onKeyDown={(e) => e.key === "Enter" && !idError && idText !== node.id && onChange(idText, step)}
        />
        {idError && (
          <span id="step-id-err" className="error">
            {idError}
          </span>
        )}
      </div>
      {!sub && <div className="field">
        <label htmlFor="step-version">Module version</label>
        <input
          id="step-version"
          value={String(step.moduleVersion ?? "")}
          placeholder="highest"
          onChange={(e) => onChange(node.id, { ...step, moduleVersion: e.target.value || undefined })}
        />
      </div>}
      {feeds.length > 0 && (
        <>
          <h3>Inputs</h3>
          {feeds.map((f) => (
            <div className="field" key={f.port}>
              <label htmlFor={"feed-" + f.port}>
                {f.port} ({f.type || "any"}) from
              </label>
              <select id={"feed-" + f.port} value={f.now} onChange={(e) => onFeed(f.port, e.target.value)}>
                <option value="">not connected</option>
                {f.options.map((o) => (
                  <option key={o} value={o}>
                    {o}
                  </option>
                ))}
              </select>
            </div>
          ))}
        </>
      )}
      {!sub && <h3>Configuration</h3>}
      {!sub && <Form
        schema={schema}
        formData={step.config || {}}
        validator={validator}
        liveValidate="onChange"
        showErrorList={false}
        noHtml5Validate
        extraErrors={extra}
        uiSchema={NO_SUBMIT}
        idPrefix={"cfg-" + node.id}
        onChange={(e) => onChange(node.id, { ...step, config: e.formData })}
      />}
      {creds.length > 0 && (
        <>
          <h3>Credentials</h3>
          <p className="hint">
            References only: a deploy from here uses the credential you stored on the orchestrator under that id
            (<code>rhizos credentials put ID</code>); the CLI seals one from your vault.
          </p>
          {creds.map((c) => {
            const ref = step.credentials?.[c.name];
            const ids = [...new Set([...(stored || []).filter((s) => s.type === c.type).map((s) => s.id), ...credentialIds])];
            return (
              <div className="field" key={c.name}>
                <label htmlFor={"cred-" + c.name}>
                  {c.name} ({c.type}){c.required ? " *" : ""}
                </label>
                <datalist id={"cred-ids-" + c.name}>
                  {ids.map((id) => (
                    <option key={id} value={id} />
                  ))}
                </datalist>
                <input
                  id={"cred-" + c.name}
                  list={"cred-ids-" + c.name}
                  autoComplete="off"
                  aria-describedby={stored && ref ? "cred-state-" + c.name : undefined}
                  value={ref?.credentialId ?? ""}
                  placeholder="credential id"
                  onChange={(e) => {
                    const next = { ...(step.credentials || {}) };
                    if (e.target.value) next[c.name] = { credentialId: e.target.value, type: c.type };
                    else delete next[c.name];
                    onChange(node.id, { ...step, credentials: Object.keys(next).length ? next : undefined });
                  }}
                />
                {stored && ref && (
                  <p className="hint" id={"cred-state-" + c.name}>
                    {isStored(stored, ref) ? "stored on the orchestrator" : "not stored on the orchestrator (of this type)"}
                  </p>
                )}
              </div>
            );
          })}
        </>
      )}
      <button type="button" className="danger" onClick={onDelete}>
        Remove step
      </button>
    </section>
  );
}
