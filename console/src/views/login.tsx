import { useState } from "react";
import { get, setKey } from "../api";
import { describe, ErrorLine } from "../ui";

/** The key is checked against GET /api/v1/stats (any principal may read it). */
export function Login({ onDone }: { onDone: () => void }) {
  const [value, setValue] = useState("");
  const [remember, setRemember] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setKey(value.trim(), false);
    try {
      await get("/api/v1/stats");
      setKey(value.trim(), remember);
      onDone();
    } catch (err) {
      setKey(null);
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="login" id="main">
      <h1>RhizOS console</h1>
      <form onSubmit={submit} aria-label="Sign in">
        <label htmlFor="key">API key</label>
        <input
          id="key"
          type="password"
          autoComplete="off"
          value={value}
          onChange={(e) => setValue(e.target.value)}
          placeholder="rzk_..."
          required
        />
        <label className="check">
          <input type="checkbox" checked={remember} onChange={(e) => setRemember(e.target.checked)} />
          Keep the key for this tab (sessionStorage)
        </label>
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        <ErrorLine error={error} />
      </form>
      <p className="hint">
        A client key comes from <code>rhizos account create</code>; the admin key from the orchestrator's{" "}
        <code>DATA/admin.key</code>.
      </p>
    </main>
  );
}
