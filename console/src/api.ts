// The orchestrator's API (docs/api.md), same origin. The key lives in memory
// and, when the user allows it, in sessionStorage (never localStorage): it
// dies with the tab.

const STORE = "rhizos.key";

let key: string | null = sessionStorage.getItem(STORE);

// `rhizos ui` prints http://127.0.0.1:PORT/#token=...: the token is this
// tab's key, and leaves the address bar (and the history) at once.
const fromUrl = /^#token=([0-9a-f]{16,128})$/.exec(location.hash);
if (fromUrl) {
  key = fromUrl[1];
  sessionStorage.setItem(STORE, key);
  history.replaceState(null, "", location.pathname + location.search + "#/flows");
}
let onAuthLost: () => void = () => {};

export function getKey(): string | null {
  return key;
}

export function setKey(k: string | null, remember = true): void {
  key = k;
  who = null;
  if (k && remember) sessionStorage.setItem(STORE, k);
  else sessionStorage.removeItem(STORE);
}

export interface Whoami {
  role: "admin" | "client" | "node";
  account: string | null;
  node: number | null;
}

let who: Promise<Whoami> | null = null;

/** Who the key is (GET /api/v1/whoami): the admin has no account, so the
 * admin-only money totals are asked only for it, and only a client (who
 * pays) is offered what only the owner may do. */
export function whoami(): Promise<Whoami> {
  const p = (who ??= get<Whoami>("/api/v1/whoami"));
  p.catch(() => {
    if (who === p) who = null;   // asked again next time
  });
  return p;
}

let localMode: Promise<boolean> | null = null;

/** Whether this is `rhizos ui` (one machine: its stats say "mode": "local"),
 * where there are no nodes, jobs or accounts. */
export function isLocal(): Promise<boolean> {
  return (localMode ??= get<{ mode?: string }>("/api/v1/stats").then(
    (s) => s.mode === "local",
    () => {
      localMode = null;
      return false;
    },
  ));
}

/** Called when the server answers 401: the view goes back to the login. */
export function onUnauthorized(f: () => void): void {
  onAuthLost = f;
}

export interface Diagnostic {
  file?: string;
  line?: number;
  column?: number;
  code?: string;
  message: string;
  pointer?: string;
  path?: string;
  step?: string;
  severity?: string;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public diagnostics: Diagnostic[] = [],
  ) {
    super(message);
  }
}

function headers(json: boolean): Record<string, string> {
  const h: Record<string, string> = { Accept: "application/json" };
  if (key) h.Authorization = "Bearer " + key;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function fail(r: Response): Promise<never> {
  let code = "HTTP_" + r.status;
  let message = r.statusText || "request failed";
  let diagnostics: Diagnostic[] = [];
  try {
    const doc = await r.json();
    if (doc && doc.error) {
      code = doc.error.code || code;
      message = doc.error.message || message;
    }
    if (doc && Array.isArray(doc.diagnostics)) diagnostics = doc.diagnostics;
  } catch {
    /* not JSON: keep the status line */
  }
  if (r.status === 401) onAuthLost();
  throw new ApiError(r.status, code, message, diagnostics);
}

export async function api<T = any>(method: string, path: string, body?: unknown): Promise<T> {
  const r = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
  });
  if (!r.ok) return fail(r);
  if (r.status === 204) return undefined as T;
  return (await r.json()) as T;
}

export const get = <T = any>(path: string) => api<T>("GET", path);
export const post = <T = any>(path: string, body?: unknown) => api<T>("POST", path, body ?? {});
export const del = <T = any>(path: string) => api<T>("DELETE", path);

export interface SseEvent {
  event: string;
  id?: string;
  data: string;
}

/** A server-sent event stream read with fetch (EventSource cannot send the
 * bearer header). Calls `on` per event until the stream ends or `signal`
 * aborts; resolves when it ends. */
export async function sse(path: string, on: (e: SseEvent) => void, signal: AbortSignal): Promise<void> {
  const r = await fetch(path, {
    headers: { ...headers(false), Accept: "text/event-stream" },
    signal,
    credentials: "omit",
  });
  if (!r.ok || !r.body) return fail(r);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let ev: SseEvent = { event: "message", data: "" };
  let lines: string[] = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, "");
      buf = buf.slice(nl + 1);
      if (line === "") {
        if (lines.length) {
          ev.data = lines.join("\n");
          on(ev);
        }
        ev = { event: "message", data: "" };
        lines = [];
      } else if (line.startsWith("event:")) ev.event = line.slice(6).trim();
      else if (line.startsWith("id:")) ev.id = line.slice(3).trim();
      else if (line.startsWith("data:")) lines.push(line.slice(5).replace(/^ /, ""));
    }
  }
}

/** Micro-dollars as people read them. */
export function money(micros: number | null | undefined): string {
  if (micros === null || micros === undefined) return "–";
  const d = micros / 1e6;
  return (d < 0 ? "-$" : "$") + Math.abs(d).toFixed(Math.abs(d) < 0.01 && d !== 0 ? 6 : 2);
}
