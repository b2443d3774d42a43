import { useState } from "react";
import { get, money, post } from "../api";
import { describe, ErrorLine, Kv, Table, usePoll } from "../ui";

/** Dollars typed by a person as exact micro-dollars (no float rounding). */
function micros(text: string): number | null {
  const m = /^\s*(\d+)(?:\.(\d{1,6}))?\s*$/.exec(text);
  if (!m) return null;
  return Number(m[1]) * 1e6 + Number((m[2] || "").padEnd(6, "0"));
}

export function AccountView() {
  const acct = usePoll(() => get<any>("/api/v1/accounts/me"), 5000);
  const id = acct.value?.id;
  const pays = usePoll(() => (id ? get<any>(`/api/v1/accounts/${id}/payments`) : Promise.resolve(null)), 5000, [id]);
  const wds = usePoll(() => (id ? get<any>(`/api/v1/accounts/${id}/withdrawals`) : Promise.resolve(null)), 5000, [id]);
  const [amount, setAmount] = useState("");
  const [address, setAddress] = useState("");
  const [msg, setMsg] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const act = async (what: "deposit" | "withdraw") => {
    setMsg(null);
    setError(null);
    const m = micros(amount);
    if (m === null || m <= 0) {
      setError("Give an amount in dollars, e.g. 12.50");
      return;
    }
    try {
      const body: any = { amount_micros: m };
      if (what === "withdraw" && address) body.address = address;
      const r = await post<any>(`/api/v1/accounts/${id}/${what}`, body);
      setMsg(
        what === "deposit"
          ? `Deposit ${r.deposit_id} pending: send ${money(r.amount_micros)} to ${r.address}`
          : `Withdrawal ${r.withdrawal_id} pending (${money(r.amount_micros)})`,
      );
      acct.reload();
      wds.reload();
    } catch (e) {
      setError(describe(e));
    }
  };
  const a = acct.value;
  return (
    <section aria-labelledby="acct-h">
      <h1 id="acct-h">Account</h1>
      <ErrorLine error={acct.error} />
      {a && (
        <>
          <Kv
            rows={[
              ["account", <code>{a.id}</code>],
              ["kind", a.kind],
              ["available", <span data-testid="balance">{money(a.balance_micros)}</span>],
              ["held", money(a.pending_micros)],
              ["credited", money(a.credits_micros)],
              ["debited", money(a.debits_micros)],
            ]}
          />
          <form className="row" onSubmit={(e) => e.preventDefault()} aria-label="Deposit or withdraw">
            <label htmlFor="amount">Amount (USD)</label>
            <input id="amount" value={amount} onChange={(e) => setAmount(e.target.value)} inputMode="decimal" />
            <label htmlFor="address">Withdrawal address</label>
            <input id="address" value={address} onChange={(e) => setAddress(e.target.value)} />
            <button type="button" onClick={() => act("deposit")}>
              Deposit
            </button>
            <button type="button" onClick={() => act("withdraw")}>
              Withdraw
            </button>
          </form>
          {msg && <p role="status">{msg}</p>}
          <ErrorLine error={error} />
          <h2>History</h2>
          <Table
            rows={pays.value?.payments}
            rowKey={(p: any) => p.id}
            error={pays.error}
            empty="No payment yet."
            columns={[
              { head: "kind", cell: (p: any) => p.kind },
              {
                head: "amount",
                cell: (p: any) => (
                  <span className={p.direction === "in" ? "in" : "out"}>
                    {p.direction === "in" ? "+" : "−"}
                    {money(p.amount_micros)}
                  </span>
                ),
              },
              { head: "from", cell: (p: any) => p.debit_name },
              { head: "to", cell: (p: any) => p.credit_name },
              { head: "job", cell: (p: any) => p.job ?? "" },
              { head: "status", cell: (p: any) => p.status },
            ]}
          />
          <h2>Withdrawals</h2>
          <ul>
            {(wds.value?.withdrawals || []).map((w: any) => (
              <li key={w.id}>
                {money(w.amount_micros)} {w.status} {w.address || ""}
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}
