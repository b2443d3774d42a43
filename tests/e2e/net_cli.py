#!/usr/bin/env python3
"""End-to-end: the network commands of `rhizos`.

Without an orchestrator: every network command exits 3 with a clear message
against a closed port, and mistakes in the command line exit 2 before any
connection. With ORCHESTRATOR (the rhizos-orchestrator binary): a real one on
a random loopback port, with a fresh --data and RHIZOS_ADMIN_KEY: accounts,
credits, a job that stays queued (no nodes) and its exact refund, a flow
deployed, inspected and cancelled, and the --json shapes.

Usage: net_cli.py RHIZOS SOURCE_ROOT [ORCHESTRATOR]"""
import json
import os
import re
import shutil
import sys
import tempfile
import unittest

from harness import cli_env, free_port, http, run, start_orchestrator  # noqa: E402

RHIZOS, ROOT = sys.argv[1], sys.argv[2]
ORCH = sys.argv[3] if len(sys.argv) > 3 else None
WORDCOUNT = os.path.join(ROOT, "examples", "flows", "wordcount.yaml")
DIAG = re.compile(r"^(.+):(\d+):(\d+): error: (.+)$", re.M)
E2E_MODULES = os.path.join(ROOT, "tests", "e2e", "modules")
SECRET_FLOW = os.path.join(ROOT, "tests", "e2e", "secret_flow.yaml")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
M = 10000   # micro-dollars in a cent: the test's amounts are in cents


def rhizos(*args, url=None, key=None, env=None, stdin=None):
    e = cli_env(**(env or {}))
    cmd = [RHIZOS]
    if url:
        cmd += ["--orchestrator", url]
    if key:
        cmd += ["--api-key", key]
    return run(cmd + list(args), cwd=ROOT, env=e, stdin=stdin)


HEX = "0123456789abcdef0123456789abcdef"
NETWORK_COMMANDS = [
    ["status"], ["nodes"], ["run", "-t", "echo"], ["run", "-t", "echo", "--wait"],
    ["job"], ["job", "1"], ["cancel", "1"],
    ["account", "create", "--name", "x"], ["account", "balance"],
    ["account", "balance", HEX], ["account", "deposit", "100"],
    ["account", "withdraw", "100", "--address", "a"], ["account", "history"],
    ["account", "credit", HEX, "100"], ["account", "confirm", HEX],
    ["flow", "deploy", WORDCOUNT], ["flow", "status", "1"],
    ["flow", "watch", "1"], ["flow", "cancel", "1"],
]

USAGE_ERRORS = [
    ["run"], ["run", "-t", "echo", "extra"], ["run", "-t", "echo", "--max-cost", "1.2345678"],
    ["run", "-t", "echo", "--priority", "-1"], ["run", "-t", "echo", "--input", "=x"],
    ["job", "abc"], ["job", "1", "2"], ["cancel"], ["cancel", "-1x"],
    ["status", "now"], ["nodes", "x"],
    ["account"], ["account", "bogus"], ["account", "deposit"],
    ["account", "deposit", "0"], ["account", "deposit", "abc"],
    ["account", "withdraw", "-5"], ["account", "balance", "XYZ"],
    ["account", "credit", "me", "5"], ["account", "credit", HEX],
    ["account", "confirm", "nothex"], ["account", "create", "extra"],
    ["flow", "deploy"], ["flow", "status", "x/y"], ["flow", "watch"],
    ["flow", "cancel", "1", "2"],
]


class Offline(unittest.TestCase):
    def setUp(self):
        self.url = "http://127.0.0.1:%d" % free_port()    # nothing listens

    def test_unreachable_is_exit_3(self):
        for args in NETWORK_COMMANDS:
            for json_flag in ([], ["--json"]):
                with self.subTest(cmd=" ".join(args + json_flag)):
                    p = rhizos(*args, *json_flag, url=self.url, key="rzk_x")
                    self.assertEqual(p.returncode, 3, p.stderr)
                    self.assertIn("cannot reach", p.stderr)
                    self.assertIn(self.url, p.stderr)
                    self.assertNotIn("rzk_x", p.stderr + p.stdout)

    def test_environment_names_the_orchestrator(self):
        p = rhizos("status", env={"RHIZOS_URL": self.url})
        self.assertEqual(p.returncode, 3)
        self.assertIn(self.url, p.stderr)

    def test_usage_errors_are_exit_2(self):
        for args in USAGE_ERRORS:
            with self.subTest(cmd=" ".join(args)):
                p = rhizos(*args, url=self.url, key="k")
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertNotIn("cannot reach", p.stderr)
        p = rhizos("status", url="ftp://x")
        self.assertEqual(p.returncode, 2)

    def test_invalid_flow_is_caught_locally(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=None) as f:
            f.write("flux: 1\nname: bad\nsteps:\n  a:\n    module: echo@1\n"
                    "    needs: [nope]\n")
            f.flush()
            p = rhizos("flow", "deploy", f.name, url=self.url, key="k")
            self.assertEqual(p.returncode, 1, p.stderr)
            m = DIAG.search(p.stderr)
            self.assertTrue(m, p.stderr)
            self.assertEqual(m.group(1), f.name)
            self.assertNotIn("cannot reach", p.stderr)

    def test_help(self):
        p = rhizos("help")
        self.assertEqual(p.returncode, 0)
        for word in ("status", "nodes", "run -t TYPE", "account", "flow deploy"):
            self.assertIn(word, p.stdout)
        p = rhizos("account", "--help")
        self.assertEqual(p.returncode, 0)
        for verb in ("create", "balance", "deposit", "withdraw", "withdrawals",
                     "history", "credit", "confirm"):
            self.assertIn("account " + verb, p.stdout)
        for cmd in (["run", "--help"], ["status", "--help"], ["flow", "--help"]):
            p = rhizos(*cmd)
            self.assertEqual(p.returncode, 0)
            self.assertIn("usage:", p.stdout)
        self.assertIn("flow deploy FILE", rhizos("flow", "--help").stdout)


class ClientConfig(unittest.TestCase):
    """Where a network command connects, from flag, environment and the
    client config; keys from files only the user can read. Against closed
    ports: the "cannot reach" message names the URL that was chosen."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.cfg = os.path.join(self.tmp.name, "rhizos", "config.toml")
        os.makedirs(os.path.dirname(self.cfg))
        self.urls = ["http://127.0.0.1:%d" % free_port() for _ in range(3)]
        self.env = {"XDG_CONFIG_HOME": self.tmp.name}

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, text, name="config.toml", mode=0o600):
        path = os.path.join(self.tmp.name, "rhizos", name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def reached(self, *args, env=None, code=3):
        p = rhizos("status", *args, env=dict(self.env, **(env or {})))
        self.assertEqual(p.returncode, code, p.stderr)
        return p.stderr

    def test_precedence_flag_env_context_top(self):
        self.write('# the lab\norchestrator = "%s"\ncontext = "lab"\n\n'
                   '[context.lab]\norchestrator = "%s"  # the lab\n'
                   '[context.prod]\norchestrator = "%s"\n' % tuple(self.urls))
        self.assertIn(self.urls[1], self.reached())            # file's context
        self.assertIn(self.urls[2], self.reached("--context", "prod"))
        self.assertIn(self.urls[2], self.reached(env={"RHIZOS_CONTEXT": "prod"}))
        self.assertIn(self.urls[0], self.reached(env={"RHIZOS_URL": self.urls[0]}))
        p = rhizos("status", "--orchestrator", self.urls[0], "--context", "prod",
                   env=self.env)
        self.assertIn(self.urls[0], p.stderr)                   # the flag wins
        err = self.reached("--context", "nope", code=2)
        self.assertIn("no [context.nope] table", err)
        self.assertIn(self.cfg, err)

    def test_config_mistakes_are_located_and_offline_commands_ignore_them(self):
        cases = [('orchestrator = "%s"\nurl = "x"\n' % self.urls[0], 2, "unknown key 'url'"),
                 ('api_key = "rzk_secret123"\n', 1, "api_key_file"),
                 ('orchestrator = %s\n' % self.urls[0], 1, "double quotes"),
                 ('orchestrator = "x\n', 1, "unterminated"),
                 ('[servers]\n', 1, "[context.NAME]"),
                 ('[context.a]\nfoo = "1"\n', 2, "unknown key 'foo'"),
                 ('orchestrator = "a"\norchestrator = "b"\n', 2, "set twice")]
        for text, line, what in cases:
            with self.subTest(text=text):
                self.write(text)
                err = self.reached(code=2)
                self.assertIn("%s:%d:" % (self.cfg, line), err)
                self.assertIn(what, err)
                self.assertNotIn("rzk_secret123", err)
        # A broken client config does not stop an embedded run.
        p = rhizos("flow", "validate", WORDCOUNT, env=self.env)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_key_file_rules(self):
        key = self.write("rzk_from_file\n", name="key")
        self.write('orchestrator = "%s"\napi_key_file = "key"\n' % self.urls[0])
        self.assertIn(self.urls[0], self.reached())   # relative to the config
        os.chmod(key, 0o640)
        err = self.reached(code=2)
        self.assertIn("can be read by others (mode 0640)", err)
        self.assertIn("chmod 600", err)
        os.chmod(key, 0o600)
        for text, why in [("", "is empty"), ("rzk a\n", "one word"),
                          ("rzk\nsecond\n", "one word"), ("k" * 5000, "too long")]:
            with self.subTest(text=text[:20]):
                self.write(text, name="key")
                err = self.reached(code=2)
                self.assertIn(why, err)
                self.assertNotIn("rzk", err.replace("rhizos", ""))
        err = self.reached("--api-key-file", os.path.join(self.tmp.name, "none"), code=2)
        self.assertIn("No such file", err)


class Completion(unittest.TestCase):
    """The completion scripts, run by the shells themselves."""

    def complete_bash(self, line):
        words = line.split(" ")
        script = ('source <("$RZ" completion bash); COMP_WORDS=(%s); COMP_CWORD=%d; '
                  '_rhizos; printf "%%s\\n" "${COMPREPLY[@]}"'
                  % (" ".join("'%s'" % w for w in words), len(words) - 1))
        p = run(["bash", "-c", script], env=dict(cli_env(), RZ=RHIZOS))
        self.assertEqual(p.returncode, 0, p.stderr)
        return set(p.stdout.split())

    def test_bash(self):
        self.assertEqual(self.complete_bash("rhizos fl"), {"flow"})
        self.assertEqual(self.complete_bash("rhizos --data /tmp flow ru"), {"run", "runs"})
        self.assertEqual(self.complete_bash("rhizos account w"), {"withdraw", "withdrawals"})
        self.assertEqual(self.complete_bash("rhizos --api-key-f"), {"--api-key-file"})
        self.assertEqual(self.complete_bash("rhizos help acc"), {"account"})
        # Every command of the help completes.
        self.assertTrue({"flow", "vault", "run", "job", "account", "admin", "completion"}
                        <= self.complete_bash("rhizos "))

    @unittest.skipUnless(shutil.which("fish"), "no fish shell")
    def test_fish(self):
        p = run(["fish", "-c", 'source ("$RZ" completion fish | psub); '
                 'complete -C "rhizos flow r"; complete -C "rhizos va"; '
                 'complete -C "rhizos --conte"'], env=dict(cli_env(), RZ=RHIZOS))
        self.assertEqual(p.returncode, 0, p.stderr)
        got = {l.split("\t")[0] for l in p.stdout.splitlines()}
        self.assertEqual(got, {"run", "runs", "rollback", "resume", "reject", "vault",
                               "--context"})

    @unittest.skipUnless(shutil.which("zsh"), "no zsh")
    def test_zsh_runs_the_same_function(self):
        # zsh's compadd filters by prefix in a real widget; here the words
        # offered at each position are checked.
        p = run(["zsh", "-c", 'autoload -U +X compinit && compinit -u; '
                 'source <("$RZ" completion zsh); setopt ksharrays; '
                 'COMP_WORDS=(rhizos vault ""); COMP_CWORD=2; _rhizos; print -l "${COMPREPLY[@]}"'],
                env=dict(cli_env(), RZ=RHIZOS))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(set(p.stdout.split()), {"init", "add", "list", "show", "rm", "passwd"})

    def test_unknown_shell(self):
        p = rhizos("completion", "tcsh")
        self.assertEqual(p.returncode, 2)
        self.assertIn("bash, zsh or fish", p.stderr)
        self.assertEqual(rhizos("completion").returncode, 2)


@unittest.skipUnless(ORCH and os.access(ORCH, os.X_OK), "no rhizos-orchestrator")
class Live(unittest.TestCase):
    ADMIN = "admin-net-cli-" + "k" * 40

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.proc = start_orchestrator(
            ORCH, os.path.join(cls.tmp.name, "data"), ["--modules", E2E_MODULES],
            admin_key=cls.ADMIN, cwd=ROOT)
        cls.port, cls.url = cls.proc.port, cls.proc.base

    @classmethod
    def read_log(cls):
        return "\n".join(cls.proc.out + cls.proc.err)

    @classmethod
    def tearDownClass(cls):
        cls.proc.stop()
        cls.tmp.cleanup()

    def cli(self, *args, key=None, code=0):
        p = rhizos(*args, url=self.url, key=key)
        self.assertEqual(p.returncode, code, "%s\n%s%s" % (args, p.stdout, p.stderr))
        return p

    def cli_json(self, *args, key=None):
        return json.loads(self.cli(*args, "--json", key=key).stdout)

    def new_client(self, cents):
        """A client credited with `cents` (typed as dollars: the CLI's unit)."""
        acct = self.cli_json("account", "create", "--name", "e2e", key=self.ADMIN)
        self.assertRegex(acct["id"], HEX32)
        self.assertTrue(acct["api_key"].startswith("rzk_"))
        if cents:
            a = self.cli_json("account", "credit", acct["id"],
                              "%d.%02d" % divmod(cents, 100), key=self.ADMIN)
            self.assertEqual(a["balance_micros"], cents * M)
        return acct["id"], acct["api_key"]

    def balance(self, key):
        return self.cli_json("account", "balance", key=key)

    def test_key_from_a_file_reaches_the_account(self):
        acct, key = self.new_client(123)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "key")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, (key + "\n").encode())
            os.close(fd)
            p = rhizos("account", "balance", "--json", "--api-key-file", path, url=self.url)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(json.loads(p.stdout)["balance_micros"], 123 * M)
            p = rhizos("account", "balance", url=self.url,
                       env={"RHIZOS_API_KEY_FILE": path})
            self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn(key, p.stderr)

    def test_status_and_nodes(self):
        s = self.cli_json("status", key=self.ADMIN)
        self.assertEqual(s["health"]["status"], "ok")
        self.assertIn("queue_depth", s["stats"])
        self.assertIsNone(self.cli_json("status")["stats"])
        self.assertIn("queue depth", self.cli("status", key=self.ADMIN).stdout)
        _, key = self.new_client(0)
        self.assertEqual(self.cli_json("nodes", key=key), {"nodes": []})
        self.assertIn("no nodes", self.cli("nodes", key=key).stdout)

    def test_accounts(self):
        aid, key = self.new_client(1234)
        a = self.balance(key)
        self.assertEqual((a["id"], a["balance_micros"], a["pending_micros"]), (aid, 1234 * M, 0))
        self.assertIn("$12.34", self.cli("account", "balance", key=key).stdout)
        self.assertEqual(self.cli_json("account", "balance", aid, key=self.ADMIN)["id"], aid)
        hist = self.cli_json("account", "history", key=key)
        credit = [p for p in hist["payments"] if p["amount_micros"] == 1234 * M]
        self.assertEqual(len(credit), 1, hist)
        self.assertEqual((credit[0]["debit_name"], credit[0]["credit_name"],
                          credit[0]["direction"]), ("external", "you", "in"))
        self.assertEqual(self.cli_json("account", "history", aid, key=self.ADMIN), hist)
        text = self.cli("account", "history", key=key).stdout
        self.assertRegex(text, r"test_credit +\+\$12\.34 .* external -> you\n")
        # A deposit waits for the admin's confirmation, then counts.
        d = self.cli_json("account", "deposit", "5.00", key=key)
        self.assertEqual((d["amount_micros"], d["status"]), (500 * M, "pending"))
        self.assertEqual(self.balance(key)["balance_micros"], 1234 * M)
        c = self.cli_json("account", "confirm", d["deposit_id"], key=self.ADMIN)
        self.assertEqual(c["status"], "confirmed")
        self.assertEqual(self.balance(key)["balance_micros"], 1734 * M)
        w = self.cli_json("account", "withdraw", "0.34", "--address", "addr-1", key=key)
        self.assertEqual((w["amount_micros"], w["status"]), (34 * M, "pending"))
        text = self.cli("account", "history", key=key).stdout
        self.assertRegex(text, r"withdraw +-\$0\.34 +pending .* you -> external\n")
        # Withdrawals: pending -> completed (with the transaction) or failed
        # (the money comes back); never both, never twice.
        wid = w["withdrawal_id"]
        ws = self.cli_json("account", "withdrawals", key=key)["withdrawals"]
        self.assertEqual([(x["id"], x["status"], x["address"]) for x in ws],
                         [(wid, "pending", "addr-1")])
        self.assertIn("$0.34", self.cli("account", "withdrawals", key=key).stdout)
        self.cli("admin", "withdrawal", "complete", wid, "--tx", "0xabc", key=key, code=1)
        self.cli("admin", "withdrawal", "complete", wid, key=self.ADMIN, code=2)
        done = self.cli_json("admin", "withdrawal", "complete", wid, "--tx", "0xabc",
                             key=self.ADMIN)
        self.assertEqual((done["status"], done["tx"]), ("completed", "0xabc"))
        again = self.cli_json("admin", "withdrawal", "complete", wid, "--tx", "0xabc",
                              key=self.ADMIN)
        self.assertEqual(again, done)
        self.cli("admin", "withdrawal", "complete", wid, "--tx", "0xdef",
                 key=self.ADMIN, code=1)
        self.cli("admin", "withdrawal", "fail", wid, key=self.ADMIN, code=1)
        a = self.balance(key)
        self.assertEqual((a["balance_micros"], a["pending_micros"]), (1700 * M, 0))
        w2 = self.cli_json("account", "withdraw", "1", key=key)["withdrawal_id"]
        self.assertEqual(self.balance(key)["pending_micros"], 100 * M)
        f = self.cli_json("admin", "withdrawal", "fail", w2, "--reason", "bounced",
                          key=self.ADMIN)
        self.assertEqual((f["status"], f["reason"]), ("failed", "bounced"))
        self.cli("admin", "withdrawal", "complete", w2, "--tx", "t", key=self.ADMIN, code=1)
        a = self.balance(key)
        self.assertEqual((a["balance_micros"], a["pending_micros"]), (1700 * M, 0))
        listed = self.cli("admin", "withdrawals", key=self.ADMIN).stdout
        self.assertRegex(listed, wid + r" +\$0\.34 +completed +addr-1 / 0xabc")
        self.assertRegex(listed, w2 + r" +\$1\.00 +failed")
        # Not for clients: creating accounts, test credits, confirming.
        self.cli("account", "create", key=key, code=1)
        self.cli("account", "credit", aid, "5", key=key, code=1)
        # A bad key is refused (exit 1, not 3).
        p = self.cli("account", "balance", key="rzk_wrong", code=1)
        self.assertNotIn("rzk_wrong", p.stderr)

    def test_job_queued_then_cancelled_refunds_exactly(self):
        _, key = self.new_client(1000)
        job = self.cli_json("run", "-t", "echo", "--input", "message=hi", "--max-cost", "0.70",
                            "--priority", "3", key=key)
        self.assertIn(job["status"], ("pending", "queued"))   # no nodes
        self.assertEqual((job["max_cost_micros"], job["priority"]), (70 * M, 3))
        self.assertEqual(job["module"], "echo")
        a = self.balance(key)
        self.assertEqual((a["balance_micros"], a["pending_micros"]), (930 * M, 70 * M))
        got = self.cli_json("job", str(job["id"]), key=key)
        self.assertEqual(got["id"], job["id"])
        self.assertEqual(got["waiting_reason"], "no active node")
        self.assertIn("queued: no active node",
                      self.cli("job", str(job["id"]), key=key).stdout)
        self.assertIn(str(job["id"]), self.cli("job", key=key).stdout)
        self.assertEqual(self.cli_json("job", key=key)["jobs"][0]["id"], job["id"])
        r = self.cli_json("cancel", str(job["id"]), key=key)
        self.assertEqual((r["refunded_micros"], r["charged_micros"]), (70 * M, 0))
        a = self.balance(key)
        self.assertEqual((a["balance_micros"], a["pending_micros"]), (1000 * M, 0))
        self.assertEqual(self.cli_json("job", str(job["id"]), key=key)["status"], "cancelled")
        self.cli("cancel", str(job["id"]), key=key, code=1)    # finished: 409
        # Another client sees nothing of it.
        _, other = self.new_client(0)
        self.cli("job", str(job["id"]), key=other, code=1)
        self.cli("cancel", str(job["id"]), key=other, code=1)
        # More than the balance: refused, nothing held.
        self.cli("run", "-t", "echo", "--max-cost", "50", key=key, code=1)
        self.assertEqual(self.balance(key)["pending_micros"], 0)
        # Human output: dollars.
        job2 = self.cli("run", "-t", "echo", "--max-cost", "0.25", key=key).stdout
        self.assertIn("$0.25", job2)

    def test_flow_deploy_status_cancel(self):
        _, key = self.new_client(100000)
        dep = self.cli_json("flow", "deploy", WORDCOUNT, "--input", "text=a b a", key=key)
        self.assertEqual(list(dep), ["id"])
        fid = dep["id"]
        st = self.cli_json("flow", "status", str(fid), key=key)
        self.assertEqual(st["id"], fid)
        self.assertEqual(st["status"], "running")
        self.assertEqual(set(st["steps"]), {"source", "split", "count1", "count2",
                                            "count3", "merge"})
        for step in st["steps"].values():
            self.assertIn("status", step)
            self.assertIn("attempts", step)
        self.assertIn("outputs", st)
        held = self.balance(key)["pending_micros"]
        self.assertGreater(held, 0)
        # No node took the first step: the run says running, its job waits.
        src = st["steps"]["source"]
        self.assertEqual((src["status"], src["job_status"], src["dispatches"]),
                         ("running", "queued", 1))
        self.assertEqual(src["waiting_reason"], "no active node")
        out = self.cli("flow", "status", str(fid), key=key).stdout
        self.assertRegex(out, r"source .* running \(queued for a node: no active node\)")
        c = self.cli_json("flow", "cancel", str(fid), key=key)
        self.assertEqual(c["status"], "cancelled")
        a = self.balance(key)
        self.assertEqual((a["balance_micros"], a["pending_micros"]), (100000 * M, 0))
        # watch on a finished deployment: its last status, then exit 1 (not succeeded).
        p = self.cli("flow", "watch", str(fid), "--json", key=key, code=1)
        lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
        self.assertTrue(lines)
        self.assertEqual(lines[-1]["status"], "cancelled")
        self.cli("flow", "cancel", str(fid), key=key, code=1)
        self.cli("flow", "status", "999999", key=key, code=1)

    def test_deploy_seals_credentials_from_the_vault(self):
        _, key = self.new_client(1000)
        secret = "sk-live-e2e-0123456789"
        vault = os.path.join(self.tmp.name, "e2e.vault")
        env = {"RHIZOS_VAULT": vault, "RHIZOS_VAULT_PASSWORD": "e2e password"}
        args = ["--orchestrator", self.url, "--api-key", key, "--modules", E2E_MODULES]
        # No vault yet: refused before anything is sent.
        p = rhizos(*args, "flow", "deploy", SECRET_FLOW, env=env)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(rhizos(*args, "vault", "init", env=env).returncode, 0)
        # A vault without the credential the flow names: refused, says which.
        p = rhizos(*args, "flow", "deploy", SECRET_FLOW, env=env)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("openai", p.stderr)
        self.assertEqual(self.balance(key)["pending_micros"], 0)
        p = rhizos(*args, "vault", "add", "openai", "--type", "llm_api", env=env,
                   stdin=secret)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = rhizos(*args, "flow", "deploy", SECRET_FLOW, "--json", env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        fid = json.loads(p.stdout)["id"]
        self.assertNotIn(secret, p.stdout + p.stderr)
        st = self.cli_json("flow", "status", str(fid), key=key)
        self.assertNotIn(secret, json.dumps(st))
        self.assertNotIn(secret, self.read_log())
        self.cli("flow", "cancel", str(fid), key=key)

    def test_stored_credentials_deploy_by_reference(self):
        """A credential stored once with `rhizos credentials put` lets a
        deploy name it by id only (as the console does); only the caller's
        own, of the type the step asks for, and never shown again."""
        _, key = self.new_client(1000)
        _, other = self.new_client(1000)
        secret = "sk-stored-e2e-9876543210"
        vault = os.path.join(self.tmp.name, "stored.vault")
        env = {"RHIZOS_VAULT": vault, "RHIZOS_VAULT_PASSWORD": "e2e password"}
        args = ["--orchestrator", self.url, "--api-key", key]
        self.assertEqual(rhizos(*args, "vault", "init", env=env).returncode, 0)
        for name, typ, value in (("openai", "llm_api", secret), ("bot", "discord_bot", "b0t")):
            p = rhizos(*args, "vault", "add", name, "--type", typ, env=env, stdin=value)
            self.assertEqual(p.returncode, 0, p.stderr)
        with open(SECRET_FLOW) as f:
            text = f.read()
        deploy = {"flow": text}
        # Nothing stored yet: refused as before.
        code, r = http(self.url, "POST", "/api/v1/flows/deploy", key=key, body=deploy)
        self.assertEqual(code, 422, r)
        self.assertIn("referenced but not supplied", r["error"]["message"])
        p = rhizos(*args, "credentials", "put", "openai", env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("stored openai (llm_api)", p.stdout)
        p = rhizos(*args, "credentials", "list", "--json", env=env)
        listed = json.loads(p.stdout)["credentials"]
        self.assertEqual([(c["id"], c["type"]) for c in listed], [("openai", "llm_api")])
        self.assertEqual(sorted(listed[0]), ["created_ms", "id", "type"])
        self.assertIn("openai", rhizos(*args, "credentials", "list").stdout)
        # Deployed by reference: the stored value is used, never shown.
        code, dep = http(self.url, "POST", "/api/v1/flows/deploy", key=key, body=deploy)
        self.assertEqual(code, 201, dep)
        st = self.cli_json("flow", "status", str(dep["id"]), key=key)
        self.assertNotIn(secret, json.dumps(st))
        self.cli("flow", "cancel", str(dep["id"]), key=key)
        # Another account cannot use, list or remove it.
        code, r = http(self.url, "POST", "/api/v1/flows/deploy", key=other, body=deploy)
        self.assertEqual(code, 422, r)
        self.assertIn('credential "openai" is referenced but not supplied', r["error"]["message"])
        code, r = http(self.url, "GET", "/api/v1/credentials", key=other)
        self.assertEqual((code, r), (200, {"credentials": []}))
        code, _ = http(self.url, "DELETE", "/api/v1/credentials/openai", key=other)
        self.assertEqual(code, 404)
        # A stored credential of another type than the step asks for: refused.
        p = rhizos(*args, "credentials", "put", "bot", env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        code, r = http(self.url, "POST", "/api/v1/flows/deploy", key=key,
                       body={"flow": text.replace("credentialId: openai", "credentialId: bot")})
        self.assertEqual(code, 422, r)
        self.assertIn("type 'discord_bot'", r["error"]["message"])
        # Bad input: a clear error and nothing stored.
        for path, body in (("/api/v1/credentials/openai", {"type": "llm_api", "sealed": "AAAA"}),
                           ("/api/v1/credentials/openai", {"type": "llm api", "sealed": "AAAA"}),
                           ("/api/v1/credentials/bad%20id", {"type": "llm_api", "sealed": "AAAA"})):
            code, r = http(self.url, "PUT", path, key=key, body=body)
            self.assertEqual(code, 400, (path, r))
        code, r = http(self.url, "PUT", "/api/v1/credentials/x", key=self.ADMIN,
                       body={"type": "llm_api", "sealed": "AAAA"})
        self.assertEqual(code, 403, r)
        # Removed: a deploy is refused again.
        self.assertEqual(rhizos(*args, "credentials", "rm", "openai", env=env).returncode, 0)
        self.assertEqual(rhizos(*args, "credentials", "rm", "openai", env=env).returncode, 1)
        code, r = http(self.url, "POST", "/api/v1/flows/deploy", key=key, body=deploy)
        self.assertEqual(code, 422, r)
        self.assertNotIn(secret, self.read_log())
        self.assertNotIn("b0t", self.read_log())

    def test_invalid_flow_reports_server_diagnostics(self):
        _, key = self.new_client(1000)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            # Valid here only if the local registry lacks the module: name
            # one no registry has, so the server's diagnostics decide.
            f.write("flux: 1\nname: bad\nsteps:\n  a:\n    module: no-such-module@1\n")
            f.flush()
            p = self.cli("flow", "deploy", f.name, "--json", key=key, code=1)
            m = DIAG.search(p.stderr)
            self.assertTrue(m, p.stderr)
            self.assertEqual(m.group(1), f.name)
        self.assertEqual(self.balance(key)["pending_micros"], 0)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
