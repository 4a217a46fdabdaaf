// The benchmark's chart: hand-written SVG, one horizontal bar per latency row (p50, log scale), a tick at p99, and
// DESIGN.md's target where a row has one. Rows measured under gVisor have their own colour.
import type { BenchReport } from "./report.ts";
import { formatMs } from "./stats.ts";

const COLORS: Record<string, string> = {
  sessionpool: "#2b6cb0",
  naive: "#c05621",
  peer: "#6b46c1",
  floor: "#718096",
  gvisor: "#2c7a7b",
};

/** The colour key of a row: its group, except the sessionpool rows measured under gVisor. */
function colorKey(row: { id: string; group: string }): string {
  return row.id.endsWith("-gvisor") ? "gvisor" : row.group;
}

const TARGET_P50_MS: Record<string, number> = {
  "warm-claim": 10,
  "existing-exec": 3,
  "cold-allocation": 400,
};

/** 10^d milliseconds as a round label: 10 µs, 100 µs, 1 ms, 10 ms, 100 ms, 1 s, 10 s. */
function tick(d: number): string {
  if (d < -3) return `${10 ** (d + 6)} ns`;
  if (d < 0) return `${10 ** (d + 3)} µs`;
  if (d < 3) return `${10 ** d} ms`;
  return `${10 ** (d - 3)} s`;
}

function xml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

export function renderChart(report: BenchReport): string {
  const bars = report.rows
    .filter(
      (r) =>
        r.latency &&
        Number.isFinite(r.latency.p50Ms) &&
        r.latency.p50Ms > 0 &&
        !r.id.startsWith("throughput-"),
    )
    .sort((a, b) => a.latency!.p50Ms - b.latency!.p50Ms);
  const labelW = 440;
  const plotW = 470;
  const valueW = 110;
  const rowH = 30;
  const top = 78;
  const width = labelW + plotW + valueW + 20;
  const height = top + Math.max(1, bars.length) * rowH + 70;
  const values = bars.flatMap((b) => [b.latency!.p50Ms, b.latency!.p99Ms]);
  const lo = Math.floor(Math.log10(Math.min(...values, 0.1)));
  const hi = Math.ceil(Math.log10(Math.max(...values, 10)));
  const x = (ms: number) => labelW + ((Math.log10(Math.max(ms, 10 ** lo)) - lo) / (hi - lo)) * plotW;
  const m = report.machine;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="13">`,
  );
  parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  parts.push(
    `<text x="16" y="26" font-size="17" font-weight="bold">sessionpool: time to the result of 1+1 (p50, log scale; tick = p99)</text>`,
  );
  parts.push(
    `<text x="16" y="48" fill="#4a5568">${xml(`${report.date.slice(0, 10)}, ${report.mode} run: ${m.cpuModel}, ${m.cores} cores, ${(m.memoryBytes / 1024 ** 3).toFixed(0)} GiB, Linux ${m.kernel}, Docker ${m.dockerVersion}, Node ${m.nodeVersion}`)}</text>`,
  );
  // Decade grid.
  for (let d = lo; d <= hi; d++) {
    const gx = x(10 ** d);
    parts.push(
      `<line x1="${gx}" y1="${top - 8}" x2="${gx}" y2="${top + bars.length * rowH}" stroke="#e2e8f0"/>`,
    );
    parts.push(
      `<text x="${gx}" y="${top + bars.length * rowH + 18}" text-anchor="middle" fill="#4a5568">${xml(tick(d))}</text>`,
    );
  }
  bars.forEach((b, i) => {
    const y = top + i * rowH;
    const l = b.latency!;
    const color = COLORS[colorKey(b)] ?? "#2d3748";
    parts.push(`<text x="${labelW - 10}" y="${y + 19}" text-anchor="end">${xml(b.label)}</text>`);
    parts.push(
      `<rect x="${labelW}" y="${y + 6}" width="${Math.max(1, x(l.p50Ms) - labelW)}" height="${rowH - 12}" fill="${color}" rx="2"/>`,
    );
    const p99x = x(l.p99Ms);
    parts.push(
      `<line x1="${p99x}" y1="${y + 4}" x2="${p99x}" y2="${y + rowH - 4}" stroke="${color}" stroke-width="2"/>`,
    );
    const target = TARGET_P50_MS[b.id];
    if (target !== undefined) {
      const tx = x(target);
      parts.push(
        `<line x1="${tx}" y1="${y + 2}" x2="${tx}" y2="${y + rowH - 2}" stroke="#e53e3e" stroke-width="2" stroke-dasharray="3,2"/>`,
      );
    }
    parts.push(`<text x="${labelW + plotW + 8}" y="${y + 19}">${xml(formatMs(l.p50Ms))}</text>`);
  });
  const ly = top + bars.length * rowH + 44;
  let lx = 16;
  for (const [group, name] of [
    ["sessionpool", "sessionpool"],
    ["gvisor", "sessionpool, gVisor"],
    ["naive", "naive docker run"],
    ["peer", "Jupyter kernel"],
    ["floor", "physical floor"],
  ] as const) {
    parts.push(`<rect x="${lx}" y="${ly - 11}" width="14" height="14" fill="${COLORS[group]}"/>`);
    parts.push(`<text x="${lx + 20}" y="${ly}">${name}</text>`);
    lx += 40 + name.length * 7;
  }
  parts.push(
    `<line x1="${lx}" y1="${ly - 12}" x2="${lx}" y2="${ly + 3}" stroke="#e53e3e" stroke-width="2" stroke-dasharray="3,2"/>`,
  );
  parts.push(`<text x="${lx + 8}" y="${ly}">DESIGN.md p50 target</text>`);
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
