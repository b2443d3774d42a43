// A JSON-Schema validator for @rjsf/core that compiles nothing: Ajv builds
// its checks with `new Function`, which the console's CSP (no 'unsafe-eval')
// refuses. Module config schemas are small (docs/modules.md): type, enum,
// const, required, properties, additionalProperties, items, min/max,
// lengths, pattern, and anyOf/oneOf for rjsf's option matching. The server
// checks the whole schema again on validate and deploy.
import type { ErrorSchema, RJSFValidationError, ValidationData, ValidatorType, RJSFSchema } from "@rjsf/utils";
import { toErrorSchema } from "@rjsf/utils";

type Err = { path: string[]; name: string; message: string };

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function typeOk(want: string, got: string): boolean {
  return want === got || (want === "number" && got === "integer");
}

function resolve(s: any, root: any): any {
  if (s && typeof s.$ref === "string" && s.$ref.startsWith("#/")) {
    let cur = root;
    for (const part of s.$ref.slice(2).split("/")) cur = cur?.[part.replace(/~1/g, "/").replace(/~0/g, "~")];
    return cur ?? {};
  }
  return s;
}

export function check(schema: any, v: unknown, root: any = schema, path: string[] = [], out: Err[] = []): Err[] {
  const s = resolve(schema, root);
  if (s === true || s === undefined || s === null) return out;
  if (s === false) {
    out.push({ path, name: "false", message: "is not allowed" });
    return out;
  }
  if (v === undefined) return out;
  const got = typeOf(v);
  if (s.type !== undefined) {
    const types: string[] = Array.isArray(s.type) ? s.type : [s.type];
    if (!types.some((t) => typeOk(t, got))) {
      out.push({ path, name: "type", message: `must be ${types.join(" or ")}` });
      return out;
    }
  }
  if (s.enum && !s.enum.some((e: unknown) => JSON.stringify(e) === JSON.stringify(v)))
    out.push({ path, name: "enum", message: "must be one of " + s.enum.map((e: unknown) => JSON.stringify(e)).join(", ") });
  if ("const" in s && JSON.stringify(s.const) !== JSON.stringify(v))
    out.push({ path, name: "const", message: `must be ${JSON.stringify(s.const)}` });
  if (typeof v === "number") {
    if (typeof s.minimum === "number" && v < s.minimum) out.push({ path, name: "minimum", message: `must be >= ${s.minimum}` });
    if (typeof s.maximum === "number" && v > s.maximum) out.push({ path, name: "maximum", message: `must be <= ${s.maximum}` });
    if (typeof s.exclusiveMinimum === "number" && v <= s.exclusiveMinimum)
      out.push({ path, name: "exclusiveMinimum", message: `must be > ${s.exclusiveMinimum}` });
    if (typeof s.exclusiveMaximum === "number" && v >= s.exclusiveMaximum)
      out.push({ path, name: "exclusiveMaximum", message: `must be < ${s.exclusiveMaximum}` });
    if (typeof s.multipleOf === "number" && s.multipleOf > 0 && Math.abs(v / s.multipleOf - Math.round(v / s.multipleOf)) > 1e-9)
      out.push({ path, name: "multipleOf", message: `must be a multiple of ${s.multipleOf}` });
  }
  if (typeof v === "string") {
    const n = [...v].length;
    if (typeof s.minLength === "number" && n < s.minLength)
      out.push({ path, name: "minLength", message: `must have at least ${s.minLength} characters` });
    if (typeof s.maxLength === "number" && n > s.maxLength)
      out.push({ path, name: "maxLength", message: `must have at most ${s.maxLength} characters` });
    if (typeof s.pattern === "string") {
      try {
        if (!new RegExp(s.pattern, "u").test(v)) out.push({ path, name: "pattern", message: `must match ${s.pattern}` });
      } catch {
        /* a pattern JavaScript cannot read: the server decides */
      }
    }
  }
  if (Array.isArray(v)) {
    if (typeof s.minItems === "number" && v.length < s.minItems) out.push({ path, name: "minItems", message: `must have at least ${s.minItems} items` });
    if (typeof s.maxItems === "number" && v.length > s.maxItems) out.push({ path, name: "maxItems", message: `must have at most ${s.maxItems} items` });
    if (s.items && !Array.isArray(s.items)) v.forEach((x, i) => check(s.items, x, root, [...path, String(i)], out));
  }
  if (got === "object") {
    const o = v as Record<string, unknown>;
    for (const r of s.required || [])
      if (o[r] === undefined) out.push({ path: [...path, r], name: "required", message: "is a required property" });
    const props = s.properties || {};
    for (const [k, x] of Object.entries(o)) {
      if (k in props) check(props[k], x, root, [...path, k], out);
      else if (s.additionalProperties === false) out.push({ path: [...path, k], name: "additionalProperties", message: "is not a known field" });
      else if (s.additionalProperties && typeof s.additionalProperties === "object") check(s.additionalProperties, x, root, [...path, k], out);
    }
  }
  for (const sub of s.allOf || []) check(sub, v, root, path, out);
  if (s.anyOf && !s.anyOf.some((sub: any) => check(sub, v, root, path, []).length === 0))
    out.push({ path, name: "anyOf", message: "must match one of the allowed shapes" });
  if (s.oneOf && s.oneOf.filter((sub: any) => check(sub, v, root, path, []).length === 0).length !== 1)
    out.push({ path, name: "oneOf", message: "must match exactly one of the allowed shapes" });
  return out;
}

function toRjsf(errs: Err[]): RJSFValidationError[] {
  return errs.map((e) => {
    const property = e.path.length ? "." + e.path.join(".") : "";
    return { name: e.name, message: e.message, property, stack: `${property || "value"} ${e.message}`.trim(), params: {} };
  });
}

export const validator: ValidatorType<any, RJSFSchema, any> = {
  validateFormData(formData, schema, customValidate, transformErrors, uiSchema): ValidationData<any> {
    let errors = toRjsf(check(schema, formData));
    if (transformErrors) errors = transformErrors(errors, uiSchema);
    let errorSchema = toErrorSchema<any>(errors) as ErrorSchema<any>;
    if (customValidate) {
      // rjsf's error handler shape: addError collects messages per field.
      const handler: any = {};
      const make = (o: any) =>
        new Proxy(o, {
          get(t, k: string) {
            if (k === "addError") return (m: string) => (t.__errors = [...(t.__errors || []), m]);
            if (k === "__errors") return t.__errors;
            t[k] = t[k] || {};
            return make(t[k]);
          },
        });
      customValidate(formData, make(handler), uiSchema);
      const walk = (o: any, path: string[]) => {
        for (const [k, x] of Object.entries(o)) {
          if (k === "__errors")
            for (const m of x as string[]) errors.push({ name: "custom", message: m, property: "." + path.join("."), stack: m, params: {} });
          else walk(x, [...path, k]);
        }
      };
      walk(handler, []);
      errorSchema = toErrorSchema<any>(errors) as ErrorSchema<any>;
    }
    return { errors, errorSchema };
  },
  isValid(schema, formData, rootSchema) {
    return check(schema, formData, rootSchema).length === 0;
  },
  rawValidation(schema, formData) {
    return { errors: check(schema, formData) as any };
  },
};
