// The web console (docs/console.md) in a real headless browser: Debian's chromium driven by puppeteer-core (no
// browser download), against a real server on the real engine. Signs in, sees a pool made through the API, runs
// code and sees its output, a figure and a traceback, uploads and downloads a file, stops a session, and checks
// that no request left the server's origin and nothing went wrong in the page. Writes docs/console-*.png.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import puppeteer, { type Browser, type CDPSession, type Page } from "puppeteer-core";
import { armPoolUrl, type RuntimeFixture, startRuntimeServer } from "../helpers/runtime.ts";
import { ADMIN_TOKEN, call, ROOT, runToExit } from "../helpers/server.ts";

// The few DOM names the functions run in the page use (the project is type-checked without the DOM library).
interface PageElement {
  textContent: string | null;
  children: ArrayLike<PageElement>;
  value: string;
  src: string;
  naturalWidth: number;
  decode(): Promise<void>;
}
declare const document: { querySelectorAll(selector: string): Iterable<PageElement> };

const CHROMIUM = "/usr/bin/chromium";
const SKIP = existsSync(CHROMIUM)
  ? undefined
  : "lacks: chromium at /usr/bin/chromium (scripts/test.sh installs Debian's package when run as root)";
const POOL = "consolepy";
const SHOTS = join(ROOT, "docs");

let fx: RuntimeFixture;
let browser: Browser;
let page: Page;
let cdp: CDPSession;
let origin: string;
let work: string;
/** Every URL the page asked for, and what went wrong in it (console errors, uncaught exceptions). */
const requested: string[] = [];
let problems: string[] = [];

const aria = (name: string, role?: string) =>
  `::-p-aria(${JSON.stringify(name).slice(1, -1)}${role ? `[role="${role}"]` : ""})`;

async function textOf(selector: string): Promise<string> {
  return page.$eval(selector, (el) => el.textContent ?? "");
}

/** Waits until an element of `role` named `name` exists and its text contains `text`. */
async function waitForText(selector: string, text: string, timeout = 120_000): Promise<void> {
  await page.waitForFunction(
    (sel: string, want: string) => {
      const els = document.querySelectorAll(sel);
      return [...els].some((el) => (el.textContent ?? "").includes(want));
    },
    { timeout, polling: 100 },
    selector,
    text,
  );
}

/** Replaces the code in the playground's editor by typing, as a person would. */
async function typeCode(code: string): Promise<void> {
  await page.locator(aria("Code", "textbox")).click();
  await page.keyboard.down("Control");
  await page.keyboard.press("a");
  await page.keyboard.up("Control");
  await page.keyboard.press("Backspace");
  await page.keyboard.type(code);
}

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `console-${name}.png`) });
}

describe("web console in a headless browser", { skip: SKIP }, () => {
  before(async () => {
    if (!existsSync(join(ROOT, "console/dist/index.html"))) {
      const built = await runToExit(process.execPath, ["console/build.ts"], {
        timeoutMs: 120_000,
        killSignal: "SIGKILL",
      });
      assert.equal(built.code, 0, built.output);
    }
    work = mkdtempSync(join(tmpdir(), "sessionpool-console-"));
    fx = await startRuntimeServer();
    origin = new URL(fx.url).origin;
    const op = await fx.createPool(POOL, {
      scaleConfiguration: { maxConcurrentSessions: 4, readySessionInstances: 1 },
    });
    assert.equal(op["status"], "Succeeded", JSON.stringify(op));
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Chromium's sandbox cannot start as root, and CI runs the tests as root: the page is our own console.
      args: ["--no-sandbox", "--disable-dev-shm-usage", "--no-first-run", "--disable-component-update"],
      defaultViewport: { width: 1200, height: 800 },
    });
    page = await browser.newPage();
    page.on("request", (r) => requested.push(r.url()));
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${(e as Error).message}`));
    cdp = await browser.target().createCDPSession();
    await cdp.send("Browser.setDownloadBehavior", {
      behavior: "allow",
      downloadPath: work,
      eventsEnabled: true,
    });
  });

  after(async () => {
    await browser?.close();
    await fx?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("serves the console at / with a strict content security policy", async () => {
    const res = await page.goto(`${fx.url}/`);
    assert.equal(res?.status(), 200);
    const headers = res!.headers();
    assert.match(headers["content-security-policy"] ?? "", /default-src 'none'/);
    assert.match(headers["content-security-policy"] ?? "", /connect-src 'self'/);
    assert.equal(headers["x-content-type-options"], "nosniff");
    await page.locator(aria("Admin token", "textbox")).wait();
  });

  it("refuses a wrong token with the API's message, then signs in with the admin token", async () => {
    await page.locator(aria("Admin token", "textbox")).fill("not-the-token");
    await page.locator(aria("Sign in", "button")).click();
    await waitForText('[role="alert"]', "InvalidAuthenticationToken");
    // The refused sign-in is the one failed request the browser reports; nothing else may have gone wrong.
    assert.ok(
      problems.every((p) => /status of 401/.test(p)),
      problems.join("\n"),
    );
    problems = [];

    await page.locator(aria("Admin token", "textbox")).fill(ADMIN_TOKEN);
    await page.locator(aria("Sign in", "button")).click();
    await page.locator(aria(POOL, "rowheader")).wait();
    const stored = await page.evaluate(() => ({
      session: JSON.stringify({ ...sessionStorage }),
      local: JSON.stringify({ ...localStorage }),
    }));
    assert.ok(stored.session.includes(ADMIN_TOKEN), "kept for this browser session");
    assert.ok(!stored.local.includes(ADMIN_TOKEN), "not remembered unless asked");
    assert.ok(!page.url().includes(ADMIN_TOKEN));
  });

  it("lists the pool made through the API, with its state", async () => {
    await waitForText("tbody tr", "Succeeded");
    const row = await page.$$eval("tbody tr", (rows) => rows.map((r) => r.textContent ?? ""));
    assert.ok(
      row.some((r) => r.includes(POOL) && r.includes("PythonLTS")),
      row.join("\n"),
    );
  });

  it("shows the API's own validation message when a pool cannot be created", async () => {
    const body = {
      location: "local",
      properties: { scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 5 } },
    };
    const direct = await call("PUT", armPoolUrl(fx.url, "consolebad", "demo", "2025-10-02-preview"), {
      body,
    });
    assert.equal(direct.status, 400, direct.text);
    const message = (direct.body as { error: { message: string } }).error.message;

    await page.locator(aria("New pool", "button")).click();
    await page.locator(aria("Name", "textbox")).fill("consolebad");
    await page.locator(aria("Max sessions", "spinbutton")).fill("2");
    await page.locator(aria("Ready sessions", "spinbutton")).fill("5");
    await page.locator(aria("Create", "button")).click();
    await waitForText('form[aria-label="Create a pool"] [role="alert"]', message);
    assert.ok(
      problems.every((p) => /status of 400/.test(p)),
      problems.join("\n"),
    );
    problems = [];
    await page.locator(aria("Cancel", "button")).click();
  });

  it("runs print(6*7) in the playground and shows 42", async () => {
    await page.locator(aria(`Playground of ${POOL}`, "link")).click();
    await page.locator(aria("Code", "textbox")).wait();
    await typeCode("print(6*7)");
    await page.locator(aria("Run", "button")).click();
    await waitForText('[role="log"]', "42");
    await waitForText('[role="status"]', "Succeeded");
    assert.equal((await textOf('[role="log"]')).trim(), "42");
  });

  it("shows an error with its traceback", async () => {
    await typeCode("1 / 0");
    await page.locator(aria("Run", "button")).click();
    await waitForText(".output [role='alert']", "ZeroDivisionError");
    const log = await textOf('[role="log"]');
    assert.match(log, /Traceback/);
    assert.match(log, /ZeroDivisionError: division by zero/);
  });

  it("runs with Ctrl+Enter and shows a matplotlib figure as an image", async () => {
    await typeCode("import matplotlib.pyplot as plt; plt.plot([1,2]); plt.show()");
    await page.keyboard.down("Control");
    await page.keyboard.press("Enter");
    await page.keyboard.up("Control");
    const img = await page.waitForSelector('img[alt="Figure 1"]', { timeout: 120_000 });
    const info = await img!.evaluate(async (el) => {
      const image = el as unknown as PageElement;
      await image.decode();
      return { src: image.src.slice(0, 22), width: image.naturalWidth };
    });
    assert.equal(info.src, "data:image/png;base64,");
    assert.ok(info.width > 100, `a figure ${info.width} px wide`);
    await shot("playground");
  });

  it("uploads a file to /mnt/data and downloads the same bytes", async () => {
    const bytes = Buffer.concat([randomBytes(3000), Buffer.from([0, 255, 13, 10])]);
    const local = join(work, "upload-source.bin");
    writeFileSync(local, bytes);
    const input = await page.waitForSelector('input[type="file"]');
    await (input as unknown as { uploadFile(path: string): Promise<void> }).uploadFile(local);
    await page.locator(aria("Upload", "button")).click();
    await page.locator(aria("upload-source.bin", "rowheader")).wait();

    const done = new Promise<string>((resolve, reject) => {
      cdp.on("Browser.downloadProgress", (e) => {
        if (e.state === "completed") resolve(e.guid);
        else if (e.state === "canceled") reject(new Error("the download was canceled"));
      });
    });
    await page.locator(aria("Download upload-source.bin", "button")).click();
    await done;
    assert.deepEqual(readFileSync(join(work, "upload-source.bin")), bytes);
  });

  it("lists the session in the sessions view and stops it", async () => {
    const identifier = await page.$eval(
      'input[name="identifier"]',
      (el) => (el as unknown as PageElement).value,
    );
    await page.locator(aria("Sessions", "link")).click();
    await page.locator(aria(identifier, "rowheader")).wait();
    await shot("sessions");
    await page.locator(aria(`Stop ${identifier}`, "button")).click();
    await waitForText('[role="status"]', `Session ${identifier} stopped.`);
    await page.waitForFunction(
      (id: string) => ![...document.querySelectorAll("tbody th")].some((th) => th.textContent === id),
      { timeout: 60_000 },
      identifier,
    );
  });

  it("shows pools with ready and allocated sessions", async () => {
    await page.locator(aria("Pools", "link")).click();
    await page.locator(aria(POOL, "rowheader")).wait();
    // Ready and allocated come from /metrics: a number once the first poll answered.
    await page.waitForFunction(
      (pool: string) =>
        [...document.querySelectorAll("tbody tr")].some(
          (tr) => tr.textContent?.includes(pool) && /^\d+$/.test(tr.children[4]?.textContent ?? ""),
        ),
      { timeout: 30_000 },
      POOL,
    );
    await shot("pools");
  });

  it("shows the engine up, claim figures and a ready/allocated graph", async () => {
    await page.locator(aria("Health", "link")).click();
    await waitForText('section[aria-label="Engine"]', "up");
    await page.waitForSelector('svg[role="img"] polyline.ready', { timeout: 30_000 });
    // The playground's session was a new identifier: a claim the server counted, warm (the pool had one ready).
    await waitForText('section[aria-label="Claim hit rate"]', "100 %");
    await shot("health");
  });

  it("forgets the token on sign-out", async () => {
    await page.locator(aria("Sign out", "button")).click();
    await page.locator(aria("Admin token", "textbox")).wait();
    const stored = await page.evaluate(() => JSON.stringify({ ...sessionStorage, ...localStorage }));
    assert.ok(!stored.includes(ADMIN_TOKEN));
  });

  it("sent no request off the server's origin and logged no error", () => {
    const elsewhere = requested.filter(
      (u) => !(u.startsWith("data:") || u.startsWith("blob:") || new URL(u).origin === origin),
    );
    assert.deepEqual(elsewhere, []);
    assert.ok(
      requested.some((u) => u.includes("/console/assets/")),
      "the page loaded its assets from the server",
    );
    assert.deepEqual(problems, []);
  });
});
