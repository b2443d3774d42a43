import { lazy, Suspense, useEffect, useState } from "react";
import { getKey, isLocal, onUnauthorized, setKey } from "./api";
import { Login } from "./views/login";
import { NetworkView } from "./views/network";
import { NodesView, NodeDetail } from "./views/nodes";
import { JobsView, JobDetail } from "./views/jobs";
import { FlowsView } from "./views/flows";
import { AccountView } from "./views/account";

// The canvas views (React Flow, rjsf, the YAML reader) load when first
// opened: the login and the dashboard come up without them.
const BuilderView = lazy(() => import("./flow/builder").then((m) => ({ default: m.BuilderView })));
const DeploymentView = lazy(() => import("./views/deployment").then((m) => ({ default: m.DeploymentView })));

const NAV: [string, string][] = [
  ["network", "Network"],
  ["nodes", "Nodes"],
  ["jobs", "Jobs"],
  ["flows", "Flows"],
  ["builder", "Builder"],
  ["account", "Account"],
];

// Views that need a network: `rhizos ui` (one machine) has none of them.
const NETWORK_ONLY = new Set(["network", "nodes", "jobs", "account"]);

function route(): string[] {
  const h = location.hash.replace(/^#\/?/, "");
  return h ? h.split("/") : [];
}

function NotLocal({ view }: { view: string }) {
  return (
    <section aria-labelledby="nl-h">
      <h1 id="nl-h">Not available on one machine</h1>
      <p>
        The {view} view needs an orchestrator: <code>rhizos ui</code> runs flows on this machine only. Build a flow in the{" "}
        <a href="#/builder">builder</a> or follow your <a href="#/flows">runs</a>.
      </p>
    </section>
  );
}

export function App() {
  const [authed, setAuthed] = useState(!!getKey());
  const [path, setPath] = useState(route());
  const [local, setLocal] = useState(false);
  useEffect(() => {
    const f = () => setPath(route());
    window.addEventListener("hashchange", f);
    onUnauthorized(() => {
      setKey(null);
      setAuthed(false);
    });
    return () => window.removeEventListener("hashchange", f);
  }, []);
  useEffect(() => {
    if (authed) isLocal().then(setLocal);
  }, [authed]);
  if (!authed) return <Login onDone={() => setAuthed(true)} />;
  const top = path[0] || (local ? "flows" : "network");
  const id = path[1];
  let view;
  switch (local && NETWORK_ONLY.has(top) ? "not-local" : top) {
    case "not-local":
      view = <NotLocal view={top} />;
      break;
    case "nodes":
      view = id ? <NodeDetail id={id} /> : <NodesView />;
      break;
    case "jobs":
      view = id ? <JobDetail id={id} /> : <JobsView />;
      break;
    case "flows":
      view = id ? <DeploymentView id={id} /> : <FlowsView />;
      break;
    case "builder":
      view = <BuilderView />;
      break;
    case "account":
      view = <AccountView />;
      break;
    default:
      view = <NetworkView />;
  }
  return (
    <div className="shell">
      <header>
        <span className="brand">RhizOS</span>
        <nav aria-label="Main">
          {local && <span className="hint">this machine</span>}
          {NAV.filter(([k]) => !local || !NETWORK_ONLY.has(k)).map(([k, label]) => (
            <a key={k} href={"#/" + k} aria-current={top === k ? "page" : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <button
          type="button"
          className="link"
          onClick={() => {
            setKey(null);
            setAuthed(false);
          }}
        >
          Sign out
        </button>
      </header>
      <main id="main">
        <Suspense fallback={<p className="hint">Loading…</p>}>{view}</Suspense>
      </main>
    </div>
  );
}
