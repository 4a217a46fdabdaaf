// A playground per pool: a session identifier, a code editor, Run (or Ctrl+Enter) with the output streamed in as
// it is produced (POST /executions with Accept: text/event-stream, docs/streaming.md), figures as images, errors
// with their traceback; and the session's files in /mnt data (upload, list, download, delete).
import { useRef, useState } from "preact/hooks";
import { type Api, type FileInfo, type Pool, serverEvents } from "./api.ts";
import { CodeEditor, type EditorHandle, languageOf } from "./editor.tsx";
import { ErrorBanner, Field, ItemTable, type PoolViewProps, RowButton, View } from "./ui.tsx";
import { errorText, formatBytes, formatTime, poolHref, useFailure, usePoll, usePolled } from "./util.ts";

const SAMPLES: Record<string, string> = {
  PythonLTS:
    "import matplotlib.pyplot as plt\n\nprint('hello from', __name__)\nplt.plot([1, 3, 2, 4])\nplt.show()\n6 * 7\n",
  NodeLTS: "const xs = [1, 2, 3];\nconsole.log('sum', xs.reduce((a, b) => a + b));\nxs.map((x) => x * 2)\n",
  Shell: "uname -a\nls -la /mnt/data\n",
};

interface Output {
  parts: { stream: "stdout" | "stderr"; text: string }[];
  images: { mimeType: string; base64Data: string }[];
  status?: string;
  result?: unknown;
  error?: string;
  durationMs?: number;
}

function appendPart(out: Output, stream: "stdout" | "stderr", text: string): Output {
  const last = out.parts.at(-1);
  const parts =
    last?.stream === stream
      ? [...out.parts.slice(0, -1), { stream, text: last.text + text }]
      : [...out.parts, { stream, text }];
  return { ...out, parts };
}

function identifierKey(pool: string): string {
  return `sessionpool.console.identifier.${pool}`;
}

function newIdentifier(): string {
  return `console-${Math.random().toString(36).slice(2, 8)}`;
}

export function PlaygroundView({ api, resourceGroup, name }: PoolViewProps) {
  const [pool, setPool] = useState<Pool>();
  const { error } = usePolled(
    async () => {
      setPool(await api.getPool(resourceGroup, name));
    },
    10_000,
    [api, resourceGroup, name],
  );
  return (
    <View
      id="playground"
      title={`Playground: ${name}`}
      bar={
        <>
          <a href="#/pools">All pools</a>
          <a href={poolHref("sessions", resourceGroup, name)}>Sessions</a>
        </>
      }
    >
      <ErrorBanner error={error} />
      {pool ? <Playground api={api} pool={pool} /> : !error && <p>Loading…</p>}
    </View>
  );
}

function Playground({ api, pool }: { api: Api; pool: Pool }) {
  const type = pool.properties.containerType;
  const [identifier, setIdentifier] = useState(
    () => sessionStorage.getItem(identifierKey(pool.id)) ?? newIdentifier(),
  );
  const [known, setKnown] = useState<string[]>([]);
  const [output, setOutput] = useState<Output>();
  const [running, setRunning] = useState(false);
  const [filesVersion, setFilesVersion] = useState(0);
  const editor = useRef<EditorHandle>(null);

  usePoll(
    async () => {
      const sessions = await api.listSessions(pool).catch(() => []);
      setKnown(sessions.map((s) => s.identifier));
    },
    5000,
    [api, pool.id],
  );

  const chooseIdentifier = (v: string) => {
    setIdentifier(v);
    sessionStorage.setItem(identifierKey(pool.id), v);
  };

  const run = async () => {
    if (running || editor.current === null) return;
    const code = editor.current.text();
    setRunning(true);
    let out: Output = { parts: [], images: [] };
    setOutput(out);
    const update = (next: Output) => {
      out = next;
      setOutput(next);
    };
    try {
      const body =
        type === "Shell" ? { shellCommand: code, timeoutInSeconds: 60 } : { code, timeoutInSeconds: 60 };
      const res = await api.dataPlane(
        pool,
        "POST",
        "/executions",
        { identifier },
        {
          body: JSON.stringify(body),
          headers: { "content-type": "application/json", accept: "text/event-stream" },
        },
      );
      for await (const e of serverEvents(res)) {
        const data = JSON.parse(e.data) as Record<string, unknown>;
        if (e.event === "stdout" || e.event === "stderr")
          update(appendPart(out, e.event, String(data["text"])));
        else if (e.event === "image")
          update({ ...out, images: [...out.images, data as Output["images"][number]] });
        else if (e.event === "result") {
          const result = (data["result"] ?? {}) as Record<string, unknown>;
          const err = data["error"] as { code?: string; message?: string } | undefined;
          update({
            ...out,
            status: String(data["status"]),
            result: result["executionResult"],
            durationMs: Number(result["executionTimeInMilliseconds"] ?? 0),
            ...(err ? { error: `${err.code ?? "Error"}: ${err.message ?? ""}` } : {}),
          });
        }
      }
    } catch (err) {
      update({ ...out, error: errorText(err) });
    } finally {
      setRunning(false);
      setFilesVersion((v) => v + 1);
    }
  };

  return (
    <div class="playground">
      <div class="runbar">
        <Field
          label="Session identifier"
          name="identifier"
          list="known-identifiers"
          value={identifier}
          onInput={chooseIdentifier}
        />
        <datalist id="known-identifiers">
          {known.map((k) => (
            <option key={k} value={k} />
          ))}
        </datalist>
        <button type="button" class="secondary" onClick={() => chooseIdentifier(newIdentifier())}>
          New identifier
        </button>
        <button type="button" onClick={run} disabled={running} aria-keyshortcuts="Control+Enter">
          {running ? "Running…" : "Run"}
        </button>
        <span class="hint">Ctrl+Enter runs · {type}</span>
      </div>
      <CodeEditor
        language={languageOf(type)}
        initial={SAMPLES[type] ?? ""}
        label="Code"
        onRun={() => void run()}
        handle={editor}
      />
      <OutputPanel output={output} running={running} />
      <FilesPanel
        key={identifier}
        api={api}
        pool={pool}
        identifier={identifier}
        live={filesVersion > 0 || known.includes(identifier)}
        version={filesVersion}
      />
    </div>
  );
}

function OutputPanel({ output, running }: { output: Output | undefined; running: boolean }) {
  return (
    <section class="output" aria-label="Output" aria-busy={running}>
      <h2>Output</h2>
      {output === undefined ? (
        <p class="hint">Run the code to see its output here.</p>
      ) : (
        <>
          <pre role="log" aria-label="Output stream" aria-live="polite" hidden={output.parts.length === 0}>
            {output.parts.map((p, i) => (
              <span key={i} class={p.stream}>
                {p.text}
              </span>
            ))}
          </pre>
          {output.images.map((img, i) => (
            <img
              key={i}
              class="figure"
              alt={`Figure ${i + 1}`}
              src={`data:${img.mimeType};base64,${img.base64Data}`}
            />
          ))}
          {output.result !== undefined && output.result !== "" && (
            <p class="result">
              <span class="hint">Result</span> <code>{String(output.result)}</code>
            </p>
          )}
          <ErrorBanner error={output.error} />
          {output.status !== undefined && (
            <p class="hint" role="status">
              Status {output.status} in {output.durationMs} ms
            </p>
          )}
        </>
      )}
    </section>
  );
}

function FilesPanel(props: { api: Api; pool: Pool; identifier: string; live: boolean; version: number }) {
  const { api, pool, identifier } = props;
  const [uploaded, setUploaded] = useState(false);
  const live = props.live || uploaded;
  const [files, setFiles] = useState<FileInfo[]>();
  const { error, setError, attempt } = useFailure();
  const [chosen, setChosen] = useState<File>();
  const [busy, setBusy] = useState(false);

  const refresh = async () => {
    // Listing files starts a session when the identifier has none: list only once it has one.
    if (!live) {
      setFiles(undefined);
      return;
    }
    await attempt(async () => {
      setFiles(await api.listFiles(pool, identifier));
      setError(undefined);
    });
  };
  usePoll(refresh, 15_000, [api, pool.id, identifier, live, props.version]);

  const upload = async (e: Event) => {
    e.preventDefault();
    if (!chosen) return;
    setBusy(true);
    await attempt(async () => {
      const form = new FormData();
      form.append("file", chosen, chosen.name);
      await api.dataPlane(pool, "POST", "/files", { identifier }, { body: form });
      setUploaded(true);
      setFiles(await api.listFiles(pool, identifier));
    });
    setBusy(false);
  };
  const pathOf = (f: FileInfo) => (f.directory === "" ? f.name : `${f.directory}/${f.name}`);
  const download = (f: FileInfo) =>
    attempt(async () => {
      const res = await api.dataPlane(pool, "GET", `/files/${encodeURIComponent(pathOf(f))}/content`, {
        identifier,
      });
      const url = URL.createObjectURL(await res.blob());
      const a = document.createElement("a");
      a.href = url;
      a.download = f.name;
      a.click();
      // The download has its own copy once it starts; the URL is only needed until then.
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    });
  const remove = (f: FileInfo) =>
    attempt(async () => {
      await api.dataPlane(pool, "DELETE", `/files/${encodeURIComponent(pathOf(f))}`, { identifier });
      await refresh();
    });

  return (
    <section class="files" aria-labelledby="files-title">
      <h2 id="files-title">Files in /mnt/data</h2>
      <form class="upload" aria-label="Upload a file" onSubmit={upload}>
        <label>
          File to upload
          <input type="file" name="file" onChange={(e) => setChosen(e.currentTarget.files?.[0])} />
        </label>
        <button type="submit" disabled={!chosen || busy}>
          Upload
        </button>
        <button type="button" class="secondary" onClick={() => void refresh()}>
          Refresh files
        </button>
      </form>
      <ErrorBanner error={error} />
      <ItemTable
        items={files}
        loading={<p class="hint">The session starts with its first run or upload.</p>}
        empty={<p class="hint">No files.</p>}
        caption={`Files of session ${identifier}`}
        columns={["Name", "Size", "Modified"]}
        row={(f) => ({
          key: pathOf(f),
          header: pathOf(f),
          cells: [
            f.type === "directory" ? "directory" : formatBytes(f.sizeInBytes),
            formatTime(f.lastModifiedAt),
          ],
          actions: (
            <>
              {f.type !== "directory" && (
                <RowButton kind="secondary" label={`Download ${pathOf(f)}`} onClick={() => download(f)}>
                  Download
                </RowButton>
              )}
              <RowButton kind="danger" label={`Delete file ${pathOf(f)}`} onClick={() => remove(f)}>
                Delete
              </RowButton>
            </>
          ),
        })}
      />
    </section>
  );
}
