// The browser half of tests/e2e/ui_browser.py: puppeteer-core drives
// Debian's chromium headless through `rhizos ui` (the console on one
// machine). Environment: RZ_URL (the address rhizos ui printed, with its
// #token=), RZ_ROOT (the source tree), RZ_ART (artefacts), RZ_CHROMIUM.
// Exits non-zero on the first failed check, naming it.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as b from "./browser.mjs";

const { RZ_URL: URL_WITH_TOKEN, RZ_ROOT: ROOT, RZ_ART: ART, RZ_CHROMIUM: CHROMIUM } = process.env;
const BASE = URL_WITH_TOKEN.split("#")[0].replace(/\/$/, "");
const TOKEN = URL_WITH_TOKEN.split("#token=")[1];

let step = "start";
const summary = { checks: [] };
const ok = b.checker(summary);
const { assert, sleep } = b;

const browser = await b.launch(ROOT, CHROMIUM);
const problems = [];
const watch = (page) => b.watch(page, problems, () => step);
const shot = (page, name) => b.shot(page, ART, name);

const navLabels = (page) => page.$$eval("nav[aria-label=Main] a", (as) => as.map((a) => a.textContent));

let page;
try {
  page = await (await browser.createBrowserContext()).newPage();
  watch(page);

  step = "token";
  await page.goto(URL_WITH_TOKEN, { waitUntil: "networkidle0" });
  await page.waitForFunction(() => document.querySelectorAll("nav[aria-label=Main] a").length > 0 && !!document.querySelector(".shell .hint"), { timeout: 10000 });
  const href = await page.evaluate(() => location.href);
  assert(!href.includes(TOKEN) && !href.includes("token"), "the token leaves the address bar", href);
  assert((await page.evaluate(() => sessionStorage.getItem("rhizos.key"))) === TOKEN, "the token is the tab's key (sessionStorage)");
  assert(!(await page.evaluate(() => JSON.stringify(localStorage))).includes(TOKEN), "the token is not in localStorage");
  assert((await page.evaluate(() => history.length)) === 1 || !href.includes("token"), "no history entry holds the token");
  ok("signed in from the #token= address, which is gone from the address bar");

  step = "local mode";
  const labels = await navLabels(page);
  assert(JSON.stringify(labels) === JSON.stringify(["Flows", "Builder"]), "only the views one machine has", labels);
  await page.goto(BASE + "/#/network");
  await page.waitForFunction(() => /Not available on one machine/.test(document.querySelector("#nl-h")?.textContent || ""), { timeout: 10000 });
  ok("the menu shows Flows and Builder only; #/network says it is not available on one machine");
  await shot(page, "ui-not-local");

  step = "import";
  await page.goto(BASE + "/#/builder");
  const imp = await page.waitForSelector("[data-testid=import]", { timeout: 15000 });
  await imp.uploadFile(join(ROOT, "examples", "flows", "wordcount.yaml"));
  await page.waitForFunction(() => document.querySelectorAll(".react-flow__node").length === 6 && document.querySelectorAll(".react-flow__edge").length === 7, { timeout: 15000 });
  await page.waitForFunction(() => /valid/.test(document.querySelector("[data-testid=validate-state]")?.textContent || "") && !/problem|invalid/.test(document.querySelector("[data-testid=validate-state]").textContent), { timeout: 15000 });
  ok("examples/flows/wordcount.yaml loaded into the builder: 6 steps, 7 connections, valid (validated by rhizos ui)");
  await shot(page, "ui-builder");

  step = "run";
  await page.click("button.primary");
  const link = await page.waitForSelector("a[href^='#/flows/run-']", { timeout: 15000 });
  summary.run = (await link.evaluate((e) => e.getAttribute("href"))).split("/").pop();
  await link.click();
  const t1 = Date.now();
  for (;;) {
    const states = await page.$$eval("[data-testid^=step-]", (es) => es.map((e) => e.getAttribute("data-status")));
    if (states.length === 6 && states.every((s) => s === "succeeded")) break;
    assert(!states.includes("failed"), "no step fails", states);
    assert(Date.now() - t1 < 60000, "all steps green within 60 s", states);
    await sleep(50);
  }
  await page.waitForFunction(() => /succeeded/.test(document.querySelector("[data-testid=dep-status]")?.textContent || ""), { timeout: 10000 });
  // Edges are drawn a frame after their nodes are measured: waited for (a
  // loaded machine's browser once counted 0 here).
  const edges = await page
    .waitForFunction(() => document.querySelectorAll(".react-flow__edge").length === 7, { timeout: 10000 })
    .then(() => 7, () => page.$$eval(".react-flow__edge", (es) => es.length));
  assert(edges === 7, "the run's graph has the builder's connections", edges);
  ok(`deployed as embedded run ${summary.run}: the 6 steps finished green`);
  await page.select("#step-pick", "split");
  await page.waitForFunction(() => /split \d+ words into 3 chunks/.test(document.querySelector("[data-testid=step-log]")?.textContent || ""), { timeout: 10000 });
  ok("the split step's log shows");
  // The network's rows (jobs, nodes, holds, charges, waiting) are left out
  // for a run on this machine, not shown empty.
  const rows = await page.$$eval(".kv dt", (ds) => ds.map((d) => d.textContent));
  for (const gone of ["job", "job status", "dispatches", "node", "cost", "waiting"])
    assert(!rows.includes(gone), `no "${gone}" row for a local run`, rows);
  assert(rows.includes("run time") && rows.includes("attempts"), "the local rows show", rows);
  const head = await page.$eval(".deployment .row", (e) => e.textContent);
  assert(!/held|charged/.test(head) && !(await page.$("[data-testid=dep-pause]")), "no holds, charges or Pause for a local run", head);
  ok("a local run's page leaves out the network-only rows (job, node, cost, holds, Pause)");
  await shot(page, "ui-run");

  step = "runs";
  await page.goto(BASE + "/#/flows");
  await page.waitForSelector(`a[href="#/flows/${summary.run}"]`, { timeout: 10000 });
  ok("the flows view lists the run");

  step = "no token";
  const bare = await (await browser.createBrowserContext()).newPage();
  await bare.goto(BASE + "/", { waitUntil: "networkidle0" });
  await bare.waitForSelector("#key", { visible: true, timeout: 10000 });
  ok("without the token the console asks for a key");

  assert(problems.length === 0, "no console errors", problems);
  ok("no console errors, page errors or failed requests");
} catch (e) {
  summary.failed = `${step}: ${e.message}`;
  console.error(`FAIL (${step}): ${e.message}`);
  if (problems.length) console.error(problems.join("\n"));
  if (page) await page.screenshot({ path: join(ART, "ui-failed.png") }).catch(() => {});
  process.exitCode = 1;
} finally {
  writeFileSync(join(ART, "ui-summary.json"), JSON.stringify(summary, null, 2));
  await browser.close();
}
