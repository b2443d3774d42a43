// Bundles src/ into OUT (default dist/): index.html + assets/app.{js,css}.
// No inline script or style anywhere, so the orchestrator's CSP can forbid both.
import { build } from "esbuild";
import { mkdirSync, rmSync, readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] || join(here, "dist"));
const budget = 500 * 1024;   // compressed bytes for the first load (issue 19)

// @rjsf/core's test helper imports Ajv; the console uses its own validator
// (src/builder/validator.ts: Ajv compiles with `new Function`, which the CSP
// refuses), so that import resolves to nothing and Ajv stays out.
const noAjv = {
  name: "no-ajv",
  setup(b) {
    b.onResolve({ filter: /^@rjsf\/validator-ajv8$/ }, () => ({ path: "ajv", namespace: "no-ajv" }));
    b.onLoad({ filter: /.*/, namespace: "no-ajv" }, () => ({ contents: "export default undefined;" }));
  },
};

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });
const result = await build({
  entryPoints: { app: join(here, "src", "main.tsx") },
  outdir: join(out, "assets"),
  bundle: true,
  minify: true,
  format: "esm",
  splitting: true,
  entryNames: "[name]-[hash]",   // the server caches assets/ forever
  chunkNames: "chunk-[hash]",
  metafile: true,
  target: ["es2020"],
  legalComments: "linked",
  define: { "process.env.NODE_ENV": '"production"' },
  loader: { ".woff2": "file", ".svg": "file" },
  logLevel: "warning",
  plugins: [noAjv],
});
const outs = Object.entries(result.metafile.outputs);
const appJs = outs.find(([k, v]) => v.entryPoint && k.endsWith(".js"))[0].split("/").pop();
const appCss = outs.find(([k]) => /\/app-[^/]*\.css$/.test(k))[0].split("/").pop();
writeFileSync(
  join(out, "index.html"),
  readFileSync(join(here, "index.html"), "utf8").replace("assets/app.js", "assets/" + appJs).replace("assets/app.css", "assets/" + appCss),
);

// The first load: the page, app.js, its CSS and the chunks app.js imports
// statically (the lazy ones, elkjs and yaml, come later if at all).
const first = new Set(["index.html", "assets/" + appJs, "assets/" + appCss]);
const app = outs.find(([k]) => k.endsWith("/" + appJs))[1];
for (const i of app.imports) if (i.kind === "import-statement") first.add("assets/" + i.path.split("/").pop());
let total = 0;
for (const f of first) {
  const n = gzipSync(readFileSync(join(out, f)), { level: 9 }).length;
  total += n;
}
if (total > budget) {
  console.error(`console: first load is ${total} bytes gzipped, over the ${budget} budget`);
  process.exit(1);
}
console.log(`console: built ${out} (${total} bytes gzipped on first load)`);
