// Bundles test/unit.ts with esbuild and runs it with node's test runner.
// Usage: node test/run.mjs [SOURCE_ROOT]
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "rz-console-unit-"));
try {
  await build({
    entryPoints: [join(here, "unit.ts")],
    outfile: join(dir, "unit.mjs"),
    bundle: true,
    // the browser's builds of the packages, as the console gets them
    platform: "browser",
    external: ["node:*"],
    format: "esm",
    logLevel: "warning",
  });
  const root = resolve(process.argv[2] || join(here, "..", ".."));
  const r = spawnSync(process.execPath, ["--test", join(dir, "unit.mjs")], {
    stdio: "inherit",
    env: { ...process.env, RZ_ROOT: root },
  });
  process.exitCode = r.status ?? 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
