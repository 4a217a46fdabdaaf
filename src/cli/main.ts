// The `sessionpool` command: `serve` starts the server; every other command is a client of it (program.ts).
// The only place that reads process.env and argv.
import { enableCompileCache } from "node:module";

// Node's compile cache keeps the type-stripped and compiled modules between runs (in the OS temp dir, unless
// NODE_COMPILE_CACHE says elsewhere or NODE_DISABLE_COMPILE_CACHE is set): a command then starts in a fraction of
// the time. It covers only modules loaded after this call, hence the dynamic imports below.
enableCompileCache();

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "serve") {
    // serve.ts pulls in the whole server (fastify, SQLite, the Docker client): loaded only for `serve`.
    const [{ serve }, { UsageError }] = await Promise.all([import("./serve.ts"), import("./errors.ts")]);
    try {
      return await serve(rest, process.env);
    } catch (err) {
      const e = err as { code?: string; message?: string };
      if (
        err instanceof UsageError ||
        e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" ||
        e.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" ||
        e.code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL"
      ) {
        process.stderr.write(`sessionpool: ${e.message}\n`);
        return 2;
      }
      process.stderr.write(`sessionpool: ${e.message ?? String(err)}\n`);
      if (process.env["SESSIONPOOL_DEBUG"]) console.error(err);
      return 1;
    }
  }
  const { runCli } = await import("./program.ts");
  return runCli(argv, {
    env: process.env,
    terminal: {
      stdinIsTTY: process.stdin.isTTY === true,
      stderrIsTTY: process.stderr.isTTY === true,
      stdoutIsTTY: process.stdout.isTTY === true,
    },
    stdout: (data) => process.stdout.write(data),
    stderr: (text) => process.stderr.write(text),
  });
}

main(process.argv.slice(2)).then(
  // Exit once stdout has taken everything written to it (a pipe may still be draining).
  (code) => process.stdout.write("", () => process.exit(code)),
  (err: unknown) => {
    process.stderr.write(`sessionpool: ${(err as Error)?.message ?? String(err)}\n`);
    process.exit(1);
  },
);
