// What the browser tests (console_browser.mjs, ui_browser.mjs) share:
// Debian's chromium launched headless through the console's puppeteer-core,
// checks said as they pass, what a page reports that it should not, and
// screenshots.
import { createRequire } from "node:module";
import { join } from "node:path";

// require() as the console sees it: its packages (puppeteer-core, axe-core).
export const consoleRequire = (root) => createRequire(join(root, "console", "package.json"));

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function assert(cond, what, detail) {
  if (!cond) throw new Error(`${what}${detail !== undefined ? ": " + JSON.stringify(detail) : ""}`);
}

// A check that passed: printed, and kept in summary.checks.
export const checker = (summary) => (what) => {
  summary.checks.push(what);
  console.log("ok - " + what);
};

export function launch(root, chromium) {
  return consoleRequire(root)("puppeteer-core").launch({
    executablePath: chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    defaultViewport: { width: 1400, height: 900 },
  });
}

// Every console error (but those expected(text, url) allows), page error and
// failed request of `page` goes to `problems`, named by where() (the test's
// step); each console message's text to `said` when given.
export function watch(page, problems, where, expected = () => false, said = null) {
  page.on("console", (m) => {
    said?.push(m.text());
    if (m.type() !== "error") return;
    const text = m.text();
    const url = m.location()?.url || "";
    if (!expected(text, url)) problems.push(`${where()}: console: ${text} (${url})`);
  });
  page.on("pageerror", (e) => problems.push(`${where()}: page error: ${e.message}`));
  page.on("requestfailed", (r) => {
    if (!r.failure()?.errorText.includes("ERR_ABORTED")) problems.push(`${where()}: request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
}

// A screenshot in `dir` once the page has settled.
export async function shot(page, dir, name) {
  await sleep(300);
  await page.screenshot({ path: join(dir, name + ".png") });
}
