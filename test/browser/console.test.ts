// The web console (docs/console.md) in a real headless browser: Debian's chromium driven by puppeteer-core (no
// browser download), against a real server on the real engine. Signs in, sees a pool made through the API, creates,
// edits and deletes a pool through its forms (watching its provisioning state live), runs code and sees its output,
// a figure and a traceback, uploads, downloads, lists and deletes files, stops and deletes sessions, and checks
// that no request left the server's origin and nothing went wrong in the page. Writes docs/console-*.png.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import puppeteer, { type Browser, type CDPSession, type Page } from "puppeteer-core";
import { armPoolUrl, metric, type RuntimeFixture, startRuntimeServer, until } from "../helpers/runtime.ts";
import { ADMIN_TOKEN, call, ROOT, runToExit } from "../helpers/server.ts";

// The few DOM names the functions run in the page use (the project is type-checked without the DOM library).
interface PageElement {
  textContent: string | null;
  children: ArrayLike<PageElement>;
  name: string;
  value: string;
  src: string;
  naturalWidth: number;
  decode(): Promise<void>;
}
declare const document: { body: unknown; querySelectorAll(selector: string): Iterable<PageElement> };
/** What the page keeps for noteStates: the observer and the states it saw. */
interface PageGlobals {
  MutationObserver: new (
    callback: () => void,
  ) => { observe(target: unknown, options: Record<string, boolean>): void; disconnect(): void };
  stateNotes?: { states: string[]; observer: { disconnect(): void } };
}

const CHROMIUM = "/usr/bin/chromium";
const SKIP = existsSync(CHROMIUM)
  ? undefined
  : "lacks: chromium at /usr/bin/chromium (scripts/test.sh installs Debian's package when run as root)";
const POOL = "consolepy";
/** The pool the create form makes (in a resource group of its own), edits and deletes. */
const FORM_POOL = "consoleform";
const FORM_RG = `console${randomBytes(3).toString("hex")}`;
/** The pools list's columns, the row's header (the pool's name) being 0. */
const STATE = 3;
const MAX = 6;
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

/** Waits until the table has no row named `name` (its header cell). */
async function waitForRowGone(name: string, timeout = 120_000): Promise<void> {
  await page.waitForFunction(
    (want: string) => ![...document.querySelectorAll("tbody th")].some((th) => th.textContent === want),
    { timeout, polling: 100 },
    name,
  );
}

/** Waits until the pools list has a row named `name` whose cells hold `cells` (column index: text). */
async function waitForPoolRow(name: string, cells: Record<number, string>, timeout = 120_000): Promise<void> {
  await page.waitForFunction(
    (want: string, expected: Record<number, string>) =>
      [...document.querySelectorAll("tbody tr")].some(
        (tr) =>
          tr.children[0]?.textContent === want &&
          Object.entries(expected).every(([i, text]) => tr.children[Number(i)]?.textContent === text),
      ),
    { timeout, polling: 100 },
    name,
    cells,
  );
}

/**
 * Notes, in the page, every provisioning state the pools list shows for `name` as it renders (a mutation
 * observer sees each render, however short-lived, which polling from here could miss).
 */
async function noteStates(name: string): Promise<void> {
  await page.evaluate(
    (want: string, column: number) => {
      const g = globalThis as unknown as PageGlobals;
      const states: string[] = [];
      const note = () => {
        const row = [...document.querySelectorAll("tbody tr")].find(
          (tr) => tr.children[0]?.textContent === want,
        );
        const state = row?.children[column]?.textContent ?? "(no row)";
        if (states.at(-1) !== state) states.push(state);
      };
      g.stateNotes?.observer.disconnect();
      const observer = new g.MutationObserver(note);
      observer.observe(document.body, { childList: true, subtree: true, characterData: true });
      g.stateNotes = { states, observer };
      note();
    },
    name,
    STATE,
  );
}

/** The states noted since noteStates, in order (each change once); stops noting. */
async function notedStates(): Promise<string[]> {
  return page.evaluate(() => {
    const g = globalThis as unknown as PageGlobals;
    g.stateNotes?.observer.disconnect();
    return g.stateNotes?.states ?? [];
  });
}

/**
 * Submits the pool form with `button` and waits for it to close and for the form's pool to show `max` and
 * Succeeded; the states its row showed meanwhile must end InProgress → Succeeded (the change is shown live).
 */
async function submitAndWatchState(button: string, formSelector: string, max: string): Promise<void> {
  await noteStates(FORM_POOL);
  await page.locator(aria(button, "button")).click();
  await page.waitForSelector(formSelector, { hidden: true });
  await waitForPoolRow(FORM_POOL, { [STATE]: "Succeeded", [MAX]: max });
  const states = await notedStates();
  assert.deepEqual(
    states.slice(states.indexOf("InProgress")),
    ["InProgress", "Succeeded"],
    states.join(" → "),
  );
}

/** The form pool as the public API answers it. */
async function formPool() {
  const r = await call("GET", armPoolUrl(fx.url, FORM_POOL, FORM_RG, "2025-10-02-preview"));
  // A 404's body has no properties: its assertions read the status only.
  const properties = (r.body as { properties?: PoolProperties } | undefined)?.properties;
  return { status: r.status, text: r.text, properties: properties ?? ({} as PoolProperties) };
}

interface PoolProperties {
  provisioningState: string;
  containerType: string;
  scaleConfiguration: { maxConcurrentSessions: number; readySessionInstances: number };
  dynamicPoolConfiguration: {
    lifecycleConfiguration: {
      lifecycleType: string;
      cooldownPeriodInSeconds?: number;
      maxAlivePeriodInSeconds?: number;
    };
  };
}

/** The playground's session identifier. */
async function playgroundIdentifier(): Promise<string> {
  return page.$eval('input[name="identifier"]', (el) => (el as unknown as PageElement).value);
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
    // The pool the console made is not the fixture's: deleted here (a no-op once the test deleted it).
    await fx?.deletePool(FORM_POOL, FORM_RG).catch(() => {});
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

  it("creates a pool with the form and shows its state live: InProgress, then Succeeded", async () => {
    await page.locator(aria("New pool", "button")).click();
    await page.locator(aria("Name", "textbox")).fill(FORM_POOL);
    await page.locator(aria("Resource group", "textbox")).fill(FORM_RG);
    await page.locator(aria("Max sessions", "spinbutton")).fill("3");
    await page.locator(aria("Ready sessions", "spinbutton")).fill("1");
    // Provisioning starts a warm sandbox; the list shows the pool at once and its state as it changes.
    await submitAndWatchState("Create", 'form[aria-label="Create a pool"]', "3");

    const pool = await formPool();
    assert.equal(pool.status, 200, pool.text);
    assert.equal(pool.properties.provisioningState, "Succeeded");
    assert.equal(pool.properties.containerType, "PythonLTS");
    assert.deepEqual(pool.properties.scaleConfiguration, {
      maxConcurrentSessions: 3,
      readySessionInstances: 1,
    });
    const lifecycle = pool.properties.dynamicPoolConfiguration.lifecycleConfiguration;
    assert.equal(lifecycle.lifecycleType, "Timed");
    assert.equal(lifecycle.cooldownPeriodInSeconds, 300);
  });

  it("edits the pool's scale and lifecycle (PATCH) and shows the change live", async () => {
    await page.locator(aria(`Edit ${FORM_POOL}`, "button")).click();
    const form = `form[aria-label="Edit pool ${FORM_POOL}"]`;
    await page.waitForSelector(form);
    // The form starts from the pool's own values.
    const before = await page.$$eval(`${form} input, ${form} select`, (els) =>
      els.map((el) => `${(el as unknown as PageElement).name}=${(el as unknown as PageElement).value}`),
    );
    assert.deepEqual(before, [
      "maxConcurrentSessions=3",
      "readySessionInstances=1",
      "lifecycleType=Timed",
      "cooldownPeriodInSeconds=300",
    ]);

    await page.locator(aria("Max sessions", "spinbutton")).fill("5");
    await page.locator(aria("Ready sessions", "spinbutton")).fill("0");
    // OnContainerExit is for custom containers only (the API's rule): a PythonLTS pool is offered Timed alone.
    const lifecycles = await page.$$eval(`${form} select[name="lifecycleType"] option`, (els) =>
      els.map((el) => (el as unknown as PageElement).value),
    );
    assert.deepEqual(lifecycles, ["Timed"]);
    await page.locator(aria("Cooldown (seconds)", "spinbutton")).fill("600");
    await submitAndWatchState("Save", form, "5");

    const pool = await formPool();
    assert.equal(pool.status, 200, pool.text);
    assert.deepEqual(pool.properties.scaleConfiguration, {
      maxConcurrentSessions: 5,
      readySessionInstances: 0,
    });
    const lifecycle = pool.properties.dynamicPoolConfiguration.lifecycleConfiguration;
    assert.equal(lifecycle.lifecycleType, "Timed");
    assert.equal(lifecycle.cooldownPeriodInSeconds, 600);
  });

  it("deletes the pool only once the deletion is confirmed", async () => {
    const dialog = aria(`Delete pool ${FORM_POOL}?`, "dialog");
    await page.locator(aria(`Delete ${FORM_POOL}`, "button")).click();
    await page.locator(dialog).wait();
    await page.locator(`dialog ${aria("Cancel", "button")}`).click();
    await page.waitForSelector("dialog", { hidden: true });
    // Cancelled: nothing was sent, the pool is there as it was.
    const kept = await formPool();
    assert.equal(kept.status, 200, kept.text);
    assert.equal(kept.properties.provisioningState, "Succeeded");
    await waitForPoolRow(FORM_POOL, { [STATE]: "Succeeded" });

    await page.locator(aria(`Delete ${FORM_POOL}`, "button")).click();
    await page.locator(dialog).wait();
    await page.locator(`dialog ${aria("Delete", "button")}`).click();
    await page.waitForSelector("dialog", { hidden: true });
    await waitForRowGone(FORM_POOL);
    const gone = await formPool();
    assert.equal(gone.status, 404, gone.text);
    assert.deepEqual(await fx.containers(FORM_POOL, FORM_RG), [], "no sandbox of the pool is left");
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

  it("lists what the code wrote to /mnt/data and deletes a file", async () => {
    const identifier = await playgroundIdentifier();
    await typeCode("open('/mnt/data/made-by-code.txt', 'w').write('six times seven')");
    await page.locator(aria("Run", "button")).click();
    // The list is read again after each run: the file the code wrote is there, beside the uploaded one.
    await page.locator(aria("made-by-code.txt", "rowheader")).wait();
    await page.locator(aria("upload-source.bin", "rowheader")).wait();
    const sizes = await page.$$eval(".files tbody tr", (rows) =>
      rows.map((r) => `${r.children[0]?.textContent}: ${r.children[1]?.textContent}`),
    );
    assert.ok(sizes.includes("made-by-code.txt: 15 B"), sizes.join("\n"));

    await page.locator(aria("Delete file upload-source.bin", "button")).click();
    await waitForRowGone("upload-source.bin");
    await page.locator(aria("made-by-code.txt", "rowheader")).wait();
    const listed = await call(
      "GET",
      `${fx.endpoint(POOL)}/files?api-version=2025-10-02-preview&identifier=${encodeURIComponent(identifier)}`,
    );
    assert.equal(listed.status, 200, listed.text);
    const names = (listed.body as { value: { name: string }[] }).value.map((f) => f.name);
    assert.deepEqual(names, ["made-by-code.txt"]);
  });

  it("lists the session in the sessions view and stops it", async () => {
    const identifier = await playgroundIdentifier();
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

  it("deletes a session in the sessions view", async () => {
    const doomed = "console-doomed";
    // A second session, made through the API once the pool has a warm sandbox to hand out: the claim is warm, so
    // the health view's hit rate (checked below) stays 100 %.
    await until(
      "a ready session in the pool",
      async () => (await metric(fx.url, "sessionpool_pool_ready_sessions", `/${POOL}"`)) >= 1,
    );
    const made = await fx.exec(POOL, doomed, "6 * 7");
    assert.equal(made.status, 200, made.text);
    // The sessions view reads the list every few seconds: the new session shows without a reload.
    await page.locator(aria(doomed, "rowheader")).wait();
    await page.locator(aria(`Delete ${doomed}`, "button")).click();
    await waitForText('[role="status"]', `Session ${doomed} deleted.`);
    await waitForRowGone(doomed, 60_000);
    const listed = await call("GET", `${fx.endpoint(POOL)}/listSessions?api-version=2025-10-02-preview`);
    assert.equal(listed.status, 200, listed.text);
    const ids = (listed.body as { sessions: { identifier: string }[] }).sessions.map((s) => s.identifier);
    assert.ok(!ids.includes(doomed), ids.join(", "));
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
