// The command tree (commander): which commands exist, their flags (flags.ts) and help examples, and the one place
// that prints results and turns errors into exit codes.
import { Command, CommanderError } from "commander";
import { configure, login, logout } from "./commands/login.ts";
import {
  deleteFile,
  deleteSession,
  execute,
  listFiles,
  listSessions,
  showFileContent,
  showFileMetadata,
  showSession,
  stopSession,
  uploadFile,
} from "./commands/session.ts";
import { createPool, deletePool, getToken, listPools, showPool, updatePool } from "./commands/sessionpool.ts";
import { CliContext, type GlobalOptions, type Terminal } from "./context.ts";
import { CliError, EXIT } from "./errors.ts";
import {
  examples,
  intArg,
  opt,
  poolOptions,
  refOptions,
  sessionOptions,
  waitOptions,
  withGlobals,
} from "./flags.ts";
import { type CommandResult, render } from "./output.ts";

export interface CliIo {
  env: NodeJS.ProcessEnv;
  terminal: Terminal;
  stdout: (data: string | Buffer) => void;
  stderr: (text: string) => void;
}

type Action = (ctx: CliContext, opts: Record<string, unknown>) => Promise<CommandResult>;

export function buildProgram(io: CliIo): Command {
  const program = new Command("sessionpool");
  program
    .description(
      "Manage self-hosted session pools (Azure Container Apps dynamic sessions) and their sessions.\n" +
        "Connect with SESSIONPOOL_ENDPOINT and SESSIONPOOL_TOKEN, or 'sessionpool login'.",
    )
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout(s),
      writeErr: (s) => io.stderr(s),
      outputError: (s, write) => write(`ERROR: ${s.replace(/^error: /, "")}`),
    })
    .showHelpAfterError("(add --help for usage)")
    .configureHelp({ sortSubcommands: false, showGlobalOptions: false });

  const leaf = (parent: Command, name: string, description: string, action: Action): Command => {
    const cmd = parent.command(name).description(description);
    cmd.action(async (_opts: unknown, command: Command) => run(command, io, action));
    return cmd;
  };

  // ---- pools ----

  const create = leaf(program, "create", "Create a session pool.", (ctx, o) => createPool(ctx, o));
  examples(withGlobals(waitOptions(poolOptions(refOptions(create, false), true))), [
    [
      "Create a Python code-interpreter pool with az's defaults (10 sessions, 5 ready, 300 s cooldown)",
      "sessionpool create -n pool1 -g rg1",
    ],
    [
      "Create a small pool and show it as a table",
      "sessionpool create -n pool1 -g rg1 --max-sessions 2 --ready-sessions 1 -o table",
    ],
    [
      "Create a custom-container pool pulling from a private registry",
      'sessionpool create -n web1 -g rg1 --container-type CustomContainer -i myacr.azurecr.io/app:v1 --target-port 8080 --registry-server myacr.azurecr.io --registry-username me --registry-password "$PASS" --env-vars MODE=prod KEY=secretref:apikey -s apikey=s3cret',
    ],
  ]);

  const update = leaf(
    program,
    "update",
    "Update a session pool (reads it, then PATCHes only what changes).",
    (ctx, o) => updatePool(ctx, o),
  );
  examples(withGlobals(waitOptions(poolOptions(refOptions(update), false))), [
    [
      "Allow more sessions and keep more warm",
      "sessionpool update -n pool1 -g rg1 --max-sessions 20 --ready-sessions 4",
    ],
    ["End idle sessions after ten minutes", "sessionpool update -n pool1 -g rg1 --cooldown-period 600"],
    [
      "Roll a custom-container pool to a new image",
      "sessionpool update -n web1 -g rg1 --image myacr.azurecr.io/app:v2",
    ],
    [
      "Give the pool exactly these secrets (the others are deleted)",
      "sessionpool update -n web1 -g rg1 --secrets apikey=s3cret dbpass=hunter2",
    ],
    [
      "Remove every environment variable and argument",
      'sessionpool update -n web1 -g rg1 --env-vars "" --args ""',
    ],
  ]);

  const show = leaf(program, "show", "Show a session pool.", (ctx, o) => showPool(ctx, o));
  examples(withGlobals(refOptions(show)), [
    ["Show a pool", "sessionpool show -n pool1 -g rg1"],
    [
      "Print only its session limit",
      "sessionpool show -n pool1 -g rg1 --query properties.scaleConfiguration.maxConcurrentSessions -o tsv",
    ],
    [
      "Show a pool by resource id",
      "sessionpool show --ids /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg1/providers/Microsoft.App/sessionPools/pool1",
    ],
  ]);

  const list = leaf(
    program,
    "list",
    "List session pools in a resource group, or in the subscription.",
    (ctx, o) => listPools(ctx, o),
  );
  list.addOption(
    opt("-g, --resource-group <group>", "resource group (default: configured; else all groups)"),
  );
  examples(withGlobals(list), [
    ["List all pools as a table", "sessionpool list -o table"],
    ["List the names of the pools in a group", "sessionpool list -g rg1 --query [].name -o tsv"],
  ]);

  const del = leaf(program, "delete", "Delete a session pool and end its sessions.", (ctx, o) =>
    deletePool(ctx, o),
  );
  del.addOption(opt("-y, --yes", "do not prompt for confirmation"));
  examples(withGlobals(waitOptions(refOptions(del))), [
    ["Delete a pool, asking first", "sessionpool delete -n pool1 -g rg1"],
    ["Delete a pool from a script", "sessionpool delete -n pool1 -g rg1 --yes"],
  ]);

  const token = leaf(
    program,
    "get-token",
    "Get a data-plane token for a session pool (POST getAuthtoken); prints the token.",
    (ctx, o) => getToken(ctx, o),
  );
  examples(withGlobals(refOptions(token)), [
    ["Keep a token for the pool's data plane", "TOKEN=$(sessionpool get-token -n pool1 -g rg1)"],
    ["See when it expires", "sessionpool get-token -n pool1 -g rg1 --query properties.expires -o tsv"],
  ]);

  // ---- sessions ----

  const session = program
    .command("session")
    .description("Use the sessions of a pool: run code, move files, stop sessions.");
  const ci = session
    .command("code-interpreter")
    .description("Run code and manage files in a code-interpreter (PythonLTS) session.");

  const exec = leaf(ci, "execute", "Execute code in a session (created on first use).", (ctx, o) =>
    execute(ctx, o),
  );
  exec
    .addOption(opt("--code <code>", "the code; '@FILE' reads it from a file, '-' from standard input"))
    .addOption(
      opt("--timeout-in-seconds <seconds>", "longest run time, 1 to 220 (default 60)").argParser(
        intArg(1, 220),
      ),
    );
  examples(withGlobals(sessionOptions(exec)), [
    [
      "Run a line of Python",
      "sessionpool session code-interpreter execute -n pool1 -g rg1 -i user1 --code 'print(1+1)'",
    ],
    [
      "Run a script and print only its output",
      "sessionpool session code-interpreter execute -n pool1 -g rg1 -i user1 --code @job.py --query result.stdout -o tsv",
    ],
  ]);

  const upload = leaf(ci, "upload-file", "Upload a local file into the session's /mnt/data.", (ctx, o) =>
    uploadFile(ctx, o),
  );
  upload
    .addOption(opt("--filepath <file>", "the local file to upload"))
    .addOption(opt("--path <dir>", "directory under /mnt/data to put it in"));
  examples(withGlobals(sessionOptions(upload)), [
    [
      "Upload data.csv",
      "sessionpool session code-interpreter upload-file -n pool1 -g rg1 -i user1 --filepath ./data.csv",
    ],
  ]);

  const listF = leaf(ci, "list-files", "List the files in the session's /mnt/data.", (ctx, o) =>
    listFiles(ctx, o),
  );
  listF.addOption(opt("--path <dir>", "directory under /mnt/data"));
  examples(withGlobals(sessionOptions(listF)), [
    [
      "List files as a table",
      "sessionpool session code-interpreter list-files -n pool1 -g rg1 -i user1 -o table",
    ],
  ]);

  const fileFlags = (cmd: Command) =>
    cmd
      .addOption(opt("--filename <name>", "the file's name (may include a directory)"))
      .addOption(opt("--path <dir>", "directory under /mnt/data"));

  const content = leaf(ci, "show-file-content", "Print a file's content.", (ctx, o) =>
    showFileContent(ctx, o),
  );
  examples(withGlobals(sessionOptions(fileFlags(content))), [
    [
      "Download a result",
      "sessionpool session code-interpreter show-file-content -n pool1 -g rg1 -i user1 --filename out.png > out.png",
    ],
  ]);

  const meta = leaf(ci, "show-file-metadata", "Show a file's name, size, type and time.", (ctx, o) =>
    showFileMetadata(ctx, o),
  );
  examples(withGlobals(sessionOptions(fileFlags(meta))), [
    [
      "Show a file's size",
      "sessionpool session code-interpreter show-file-metadata -n pool1 -g rg1 -i user1 --filename data.csv --query sizeInBytes",
    ],
  ]);

  const delF = leaf(ci, "delete-file", "Delete a file from the session.", (ctx, o) => deleteFile(ctx, o));
  examples(withGlobals(sessionOptions(fileFlags(delF))), [
    [
      "Delete a file",
      "sessionpool session code-interpreter delete-file -n pool1 -g rg1 -i user1 --filename data.csv",
    ],
  ]);

  const stop = leaf(
    session,
    "stop",
    "Stop a session now instead of waiting for its lifecycle to end it.",
    (ctx, o) => stopSession(ctx, o),
  );
  examples(withGlobals(sessionOptions(stop)), [
    ["Stop a session", "sessionpool session stop -n pool1 -g rg1 -i user1"],
  ]);

  const listS = leaf(session, "list", "List the sessions in use in a pool.", (ctx, o) =>
    listSessions(ctx, o),
  );
  examples(withGlobals(sessionOptions(listS, false)), [
    ["List sessions as a table", "sessionpool session list -n pool1 -g rg1 -o table"],
  ]);

  const showS = leaf(
    session,
    "show",
    "Show a session: when it was created, last used and expires.",
    (ctx, o) => showSession(ctx, o),
  );
  examples(withGlobals(sessionOptions(showS)), [
    ["Show a session", "sessionpool session show -n pool1 -g rg1 -i user1"],
  ]);

  const delS = leaf(session, "delete", "Delete a session and its files.", (ctx, o) => deleteSession(ctx, o));
  examples(withGlobals(sessionOptions(delS)), [
    ["Delete a session", "sessionpool session delete -n pool1 -g rg1 -i user1"],
  ]);

  // ---- connection and defaults ----

  const loginCmd = leaf(
    program,
    "login",
    "Check and save the server's address and a credential for it.",
    (ctx, o) => login(ctx, o),
  );
  loginCmd
    .addOption(opt("--endpoint <url>", "the server, e.g. https://127.0.0.1:8443"))
    .addOption(opt("--token <token>", "the credential (visible to other local users in the process list)"))
    .addOption(opt("--token-file <file>", "read the credential from a file, or '-' for standard input"))
    .addOption(
      opt("--ca-file <file>", "PEM CA certificate to trust for this server (e.g. from --tls-self-signed)"),
    );
  examples(withGlobals(loginCmd), [
    [
      "Log in to a local server with its generated admin token",
      "sessionpool login --endpoint http://127.0.0.1:8080 --token-file .sessionpool/admin-token",
    ],
    [
      "Log in to a server with a self-signed certificate",
      "sessionpool login --endpoint https://10.0.0.5:8443 --token-file admin-token --ca-file ca.pem",
    ],
  ]);

  const logoutCmd = leaf(program, "logout", "Remove the saved credential.", (ctx) => logout(ctx));
  examples(withGlobals(logoutCmd), [["Forget the credential", "sessionpool logout"]]);

  const configureCmd = leaf(program, "configure", "Set defaults used when a flag is not given.", (ctx, o) =>
    configure(ctx, o),
  );
  configureCmd
    .addOption(
      opt(
        "--defaults <name=value...>",
        "defaults to set: group, location, subscription, output ('name=' clears)",
      ),
    )
    .addOption(opt("-l, --list-defaults", "list the defaults"));
  examples(withGlobals(configureCmd), [
    ["Work in one group and location", "sessionpool configure --defaults group=rg1 location=eastus"],
    ["Clear the default group", "sessionpool configure --defaults group="],
    ["Show the defaults", "sessionpool configure --list-defaults -o table"],
  ]);

  // Handled before commander (it has its own flags and help); listed here so 'sessionpool --help' shows it.
  program.command("serve").description("Start the server (see 'sessionpool serve --help').");

  return program;
}

async function run(command: Command, io: CliIo, action: Action): Promise<void> {
  const opts = command.opts() as Record<string, unknown> & GlobalOptions;
  const ctx = new CliContext(opts, io.env, io.terminal);
  try {
    const result = await action(ctx, opts);
    const out = await render(result, ctx.output);
    if (out.length > 0) io.stdout(out);
  } finally {
    await ctx.close();
  }
}

/** Runs the CLI (everything but `serve`); returns the exit status. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const debug = argv.includes("--debug");
  const program = buildProgram(io);
  if (argv.length === 0) {
    io.stdout(program.helpInformation());
    return EXIT.usage;
  }
  try {
    await program.parseAsync(argv, { from: "user" });
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has printed the message or the help already.
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version") return EXIT.ok;
      return EXIT.usage;
    }
    if (err instanceof CliError) {
      io.stderr(`ERROR: ${err.display()}\n`);
      if (debug) io.stderr(`${err.stack}\n`);
      return err.exitCode;
    }
    const e = err as Error;
    io.stderr(`ERROR: ${e?.message ?? String(err)}\n`);
    if (debug) io.stderr(`${e?.stack ?? ""}\n`);
    return EXIT.serverError;
  }
}
