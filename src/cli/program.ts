// The command tree (commander): which commands exist, their flags (flags.ts) and help examples, and the one place
// that prints results and turns errors into exit codes.
import { Command, CommanderError } from "commander";
import { type Action, COMMAND_GROUPS, COMMANDS } from "./command-table.ts";
import { CliContext, type GlobalOptions, type Terminal } from "./context.ts";
import { CliError, EXIT } from "./errors.ts";
import { examples, withGlobals } from "./flags.ts";
import { render } from "./output.ts";

export interface CliIo {
  env: NodeJS.ProcessEnv;
  terminal: Terminal;
  stdout: (data: string | Buffer) => void;
  stderr: (text: string) => void;
}

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

  // Groups are made when their first command is (help lists commands and groups in the table's order).
  const parents = new Map<string, Command>([["", program]]);
  const parentOf = (path: string[]): Command => {
    const key = path.join(" ");
    let cmd = parents.get(key);
    if (!cmd) {
      const group = COMMAND_GROUPS.find((g) => g.path.join(" ") === key);
      if (!group) throw new Error(`no command group '${key}' in the command table`);
      cmd = parentOf(path.slice(0, -1)).command(path.at(-1)!).description(group.help);
      parents.set(key, cmd);
    }
    return cmd;
  };
  for (const spec of COMMANDS) {
    const cmd = parentOf(spec.path.slice(0, -1)).command(spec.path.at(-1)!).description(spec.help);
    cmd.action(async (_opts: unknown, command: Command) => run(command, io, spec.handler));
    examples(withGlobals(spec.flags.reduce((c, add) => add(c), cmd)), spec.examples);
  }

  // Handled before commander (it has its own flags and help); listed here so 'sessionpool --help' shows it.
  program.command("serve").description("Start the server (see 'sessionpool serve --help').");

  return program;
}

async function run(command: Command, io: CliIo, action: Action): Promise<void> {
  const opts = command.opts() as Record<string, unknown> & GlobalOptions;
  const ctx = new CliContext(opts, io.env, io.terminal, io);
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
