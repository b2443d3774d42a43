// Unit tests of the console's logic that needs no browser: the form
// validator, flow import, the builder document round trip, port types,
// step ids and where a server diagnostic points. Run by test/run.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { check, validator } from "../src/flow/validator";
import { cannotDeployHere, freshId, isStored, fromStatus, parseFlowText, portsFit, subflowOf, toCanvas, toDoc, type Manifest, type StepNode } from "../src/flow/flowdoc";
import { locate } from "../src/flow/locate";
import { going, shownState } from "../src/runstate";

const root = process.env.RZ_ROOT || "..";
const split = JSON.parse(readFileSync(`${root}/examples/modules/wordcount-split/module.json`, "utf8"));

test("validator: the split module's schema", () => {
  const s = split.config;
  assert.deepEqual(check(s, { parts: 3 }), []);
  assert.deepEqual(check(s, { parts: 0 }).map((e) => [e.path.join("."), e.name]), [["parts", "minimum"]]);
  assert.deepEqual(check(s, { parts: 65 }).map((e) => e.name), ["maximum"]);
  assert.deepEqual(check(s, { parts: 1.5 }).map((e) => e.name), ["type"]);
  assert.deepEqual(check(s, { parts: "3" }).map((e) => e.name), ["type"]);
  assert.deepEqual(check(s, { part: 3 }).map((e) => [e.path.join("."), e.name]), [["part", "additionalProperties"]]);
});

test("validator: strings, enums, arrays, required, refs, oneOf", () => {
  const s = {
    type: "object",
    required: ["name"],
    definitions: { small: { type: "integer", maximum: 2 } },
    properties: {
      name: { type: "string", minLength: 2, maxLength: 4, pattern: "^[a-z]+$" },
      mode: { enum: ["a", "b"] },
      list: { type: "array", items: { $ref: "#/definitions/small" }, maxItems: 2 },
      either: { oneOf: [{ type: "string" }, { type: "integer" }] },
      ratio: { type: "number", exclusiveMinimum: 0, multipleOf: 0.5 },
    },
  };
  assert.deepEqual(check(s, { name: "ab" }), []);
  const names = (v: unknown) => check(s, v).map((e) => `${e.path.join(".")}:${e.name}`);
  assert.deepEqual(names({}), ["name:required"]);
  assert.deepEqual(names({ name: "a" }), ["name:minLength"]);
  assert.deepEqual(names({ name: "abcde" }), ["name:maxLength"]);
  assert.deepEqual(names({ name: "AB" }), ["name:pattern"]);
  assert.deepEqual(names({ name: "ab", mode: "c" }), ["mode:enum"]);
  assert.deepEqual(names({ name: "ab", list: [1, 3] }), ["list.1:maximum"]);
  assert.deepEqual(names({ name: "ab", list: [1, 1, 1] }), ["list:maxItems"]);
  assert.deepEqual(names({ name: "ab", either: true }), ["either:oneOf"]);
  assert.deepEqual(names({ name: "ab", ratio: 0 }), ["ratio:exclusiveMinimum"]);
  assert.deepEqual(names({ name: "ab", ratio: 0.7 }), ["ratio:multipleOf"]);
  assert.deepEqual(names({ name: "ab", ratio: 1.5 }), []);
});

test("validator: rjsf's error schema names the field", () => {
  const r = validator.validateFormData({ parts: 0 }, split.config);
  assert.equal(r.errors.length, 1);
  assert.equal(r.errors[0].property, ".parts");
  assert.deepEqual((r.errorSchema as any).parts.__errors, ["must be >= 1"]);
  assert.equal(validator.isValid(split.config, { parts: 2 }, split.config), true);
});

test("YAML import: references become connections, the rest stays", async () => {
  const d = await parseFlowText(readFileSync(`${root}/examples/flows/wordcount.yaml`, "utf8"));
  assert.equal(d.name, "wordcount");
  assert.deepEqual(d.nodes.map((n) => n.id), ["source", "split", "count1", "count2", "count3", "merge"]);
  assert.deepEqual(d.nodes.map((n) => n.moduleVersion), ["1", "1", "1", "1", "1", "1"]);
  assert.equal(d.connections.length, 7);
  assert.deepEqual(d.connections[0], { id: "c1", source: { nodeId: "source", port: "text" }, target: { nodeId: "split", port: "text" } });
  // needs implied by connections are dropped; an expression that is not a
  // plain reference stays an input
  assert.equal(d.nodes[1].needs, undefined);
  assert.equal((d.nodes[0].config as any).text, "${{ inputs.text }}");
  assert.ok(d.inputs);
  const g = await parseFlowText("flux: 1\nname: x\nsteps:\n  a: {module: echo}\n  b:\n    module: echo@1\n    needs: a\n    inputs: {message: 'hi ${{ steps.a.outputs.x }}'}\n");
  assert.deepEqual(g.nodes[1].needs, ["a"]);
  assert.deepEqual(g.nodes[1].inputs, { message: "hi ${{ steps.a.outputs.x }}" });
  assert.equal(g.connections.length, 0);
  await assert.rejects(parseFlowText("just text"), /not a flow/);
  await assert.rejects(parseFlowText("name: x\n"), /no `steps` or `nodes`/);
});

test("builder JSON: canvas round trip keeps every field and rounds positions", async () => {
  const text = readFileSync(`${root}/examples/flows/wordcount.json`, "utf8");
  const d = await parseFlowText(text);
  const { nodes: _n, connections: _c, ...meta } = d;
  const { nodes, edges } = toCanvas(d, new Map<string, Manifest>());
  nodes[0].position = { x: 10.4, y: 99.6 };
  const back = toDoc(meta, nodes, edges);
  const want = JSON.parse(text);
  want.nodes[0].position = { x: 10, y: 100 };
  assert.deepEqual(back, want);
});

test("ports and ids", () => {
  assert.ok(portsFit("string", "string"));
  assert.ok(portsFit("integer", "number"));
  assert.ok(!portsFit("number", "integer"));
  assert.ok(portsFit("object", "any") && portsFit(undefined, "string"));
  assert.ok(!portsFit("integer", "string"));
  assert.equal(freshId("wordcount-count", new Set()), "count");
  assert.equal(freshId("wordcount-count", new Set(["count", "count2"])), "count3");
  assert.equal(freshId("mod-3d", new Set()), "s_3d");
});

test("diagnostics point at steps and config fields", () => {
  const doc = { nodes: [{ id: "a", moduleId: "m" }, { id: "split", moduleId: "m" }], connections: [] };
  assert.deepEqual(
    [locate({ message: "x", pointer: "/steps/split/config/parts" }, doc)].map((p) => [p.nodeId, p.field]),
    [["split", ["parts"]]],
  );
  assert.deepEqual(
    [locate({ message: "x", pointer: "/nodes/1/config/a~1b" }, doc)].map((p) => [p.nodeId, p.field]),
    [["split", ["a/b"]]],
  );
  assert.deepEqual([locate({ message: "x", pointer: "/nodes/0/moduleId" }, doc)].map((p) => [p.nodeId, p.field]), [["a", undefined]]);
  assert.deepEqual([locate({ message: "x" }, doc)].map((p) => [p.nodeId, p.field]), [[undefined, undefined]]);
});

test("dispatch latency quantiles from /metrics", async () => {
  const { buckets, quantile } = await import("../src/metrics");
  const text = [
    "# TYPE rhizos_dispatch_latency_seconds histogram",
    'rhizos_dispatch_latency_seconds_bucket{le="0.01"} 50',
    'rhizos_dispatch_latency_seconds_bucket{le="0.1"} 98',
    'rhizos_dispatch_latency_seconds_bucket{le="1"} 100',
    'rhizos_dispatch_latency_seconds_bucket{le="+Inf"} 100',
    "rhizos_dispatch_latency_seconds_sum 3.2",
    'rhizos_step_duration_seconds_bucket{module="x",le="0.01"} 7',
  ].join("\n");
  const bs = buckets(text, "rhizos_dispatch_latency_seconds");
  assert.deepEqual(bs, [[0.01, 50], [0.1, 98], [1, 100], [Infinity, 100]]);
  assert.equal(quantile(bs, 0.5), 0.01);
  assert.equal(quantile(bs, 0.99), 1);
  assert.equal(quantile([[0.1, 1], [Infinity, 10]], 0.99), Infinity);
  assert.equal(quantile([], 0.5), null);
});

test("palette chips: what a module needs", async () => {
  const { needs } = await import("../src/flow/flowdoc");
  const load = (id: string) => JSON.parse(readFileSync(`${root}/examples/modules/${id}/module.json`, "utf8"));
  const entry = (man: any) => ({ id: man.id, version: man.version, name: man.name, description: "", manifest: man });
  assert.deepEqual(needs(entry(load("mod-stable-diffusion"))), ["docker", "1× nvidia GPU 12 GiB", "16384 MB"]);
  assert.deepEqual(needs(entry(load("wordcount-split"))), ["process", "128 MB"]);
  assert.deepEqual(needs(entry({ id: "x", version: "1", requirements: { gpu: 2 }, credentials: [{ name: "k", type: "llm_api" }] })), [
    "2× GPU",
    "credentials: llm_api",
  ]);
});

test("sub-flow steps: imported as such, not deployable from here", async () => {
  const doc = await parseFlowText(readFileSync(`${root}/examples/flows/subflow.yaml`, "utf8"));
  const c = doc.nodes.find((n) => n.id === "classify")!;
  assert.equal(c.moduleId, "");
  assert.equal(subflowOf(c), "subflows/classify.yaml");
  assert.equal(subflowOf(doc.nodes.find((n) => n.id === "start")!), null);
  assert.match(cannotDeployHere(doc.nodes) || "", /sub-flow files \(subflows\/classify\.yaml\).*rhizos flow deploy/);
  const withCred = [{ moduleId: "http", credentials: { token: { credentialId: "gh", type: "api_key" } } }];
  assert.match(cannotDeployHere(withCred) || "", /credentials \(gh\)/);
  assert.equal(cannotDeployHere([{ moduleId: "echo" }]), null);
});

test("credentials: deployable from here once stored on the orchestrator with their type", () => {
  const withCred = [{ moduleId: "http", credentials: { token: { credentialId: "gh", type: "api_key" } } }];
  assert.equal(cannotDeployHere(withCred, [{ id: "gh", type: "api_key" }]), null);
  assert.match(cannotDeployHere(withCred, []) || "", /not stored .*\(gh\).*rhizos credentials put ID/);
  assert.match(cannotDeployHere(withCred, [{ id: "gh", type: "llm_api" }]) || "", /another type/);
  assert.match(cannotDeployHere(withCred, [{ id: "other", type: "api_key" }]) || "", /\(gh\)/);
  assert.equal(isStored([{ id: "gh", type: "api_key" }], { credentialId: "gh", type: "api_key" }), true);
  assert.equal(isStored([{ id: "GH", type: "api_key" }], { credentialId: "gh", type: "api_key" }), false);
});

test("a deployment drawn from its status: one edge per need", () => {
  const g = fromStatus(
    { a: { module: "echo", needs: [] }, b: { module: "echo", needs: ["a"] }, c: { needs: ["a", "b", "gone"] } },
    new Map([["echo", { id: "echo", version: "1.0.0" }]]),
  );
  assert.deepEqual(g.edges.map((e) => `${e.source}->${e.target}`), ["a->b", "a->c", "b->c"]);
  const steps = g.nodes.filter((n) => n.type === "step") as StepNode[];
  assert.equal(steps.find((n) => n.id === "a")!.data.module!.id, "echo");
  assert.equal(steps.find((n) => n.id === "c")!.data.module, undefined);
  assert.ok(steps.every((n) => n.data.plain));
  assert.equal(g.nodes.length, 3);   // no sub-flow: no boxes
});

test("a sub-flow's steps drawn in a box named after its step, the box first", () => {
  const g = fromStatus(
    { first: { needs: [] }, "mid-a": { needs: ["first"], group: "mid" }, "mid-c-say": { needs: ["mid-a"], group: "mid-c" }, "mid-b": { group: "mid" } },
    new Map(),
  );
  assert.deepEqual(g.nodes.map((n) => [n.id, n.type, n.parentId ?? null]), [
    ["group:mid", "group-box", null],
    ["group:mid-c", "group-box", null],
    ["first", "step", null],
    ["mid-a", "step", "group:mid"],
    ["mid-c-say", "step", "group:mid-c"],
    ["mid-b", "step", "group:mid"],
  ]);
  assert.deepEqual(g.edges.map((e) => `${e.source}->${e.target}`), ["first->mid-a", "mid-a->mid-c-say"]);
});

test("a run whose process is gone is shown killed, and not as going", () => {
  assert.equal(shownState({ status: "running", process_gone: true }), "killed");
  assert.equal(shownState({ status: "running" }), "running");
  assert.equal(shownState({ status: "failed", process_gone: false }), "failed");
  assert.equal(going({ status: "running", process_gone: true }), false);
  assert.equal(going({ status: "running" }), true);
  assert.equal(going({ status: "succeeded" }), false);
  assert.equal(going(null), false);
});
