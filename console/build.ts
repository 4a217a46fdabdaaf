// Builds the web console into console/dist: index.html and content-hashed assets the server serves
// (src/http/console-routes.ts). Everything the page needs is in the bundle: no CDN, no web font, no request
// to another host (docs/console.md). Run with `npm run build:console`; scripts/setup.sh runs it when needed.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { build } from "esbuild";

const HERE = import.meta.dirname;
const DIST = join(HERE, "dist");
// Built aside, then swapped in: a server reading dist/ never sees half a build.
const NEXT = join(HERE, `dist.next-${process.pid}`);

rmSync(NEXT, { recursive: true, force: true });
mkdirSync(NEXT, { recursive: true });
const result = await build({
  entryPoints: [join(HERE, "src/main.tsx")],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  outdir: join(NEXT, "assets"),
  entryNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "eof",
  metafile: true,
  logLevel: "warning",
});

const tags: string[] = [];
for (const out of Object.keys(result.metafile.outputs)) {
  const url = `/console/assets/${basename(out)}`;
  if (out.endsWith(".css")) tags.push(`<link rel="stylesheet" href="${url}" />`);
  else if (out.endsWith(".js")) tags.push(`<script type="module" src="${url}"></script>`);
}
const template = readFileSync(join(HERE, "index.html"), "utf8");
writeFileSync(join(NEXT, "index.html"), template.replace("<!-- assets -->", tags.sort().join("\n    ")));

rmSync(DIST, { recursive: true, force: true });
renameSync(NEXT, DIST);
process.stdout.write(`console built into ${DIST} (${tags.length} assets)\n`);
