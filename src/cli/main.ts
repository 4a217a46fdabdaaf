// The `sessionpool` command: dispatches to subcommands. The only place that reads process.env and argv.
import { serve, UsageError } from "./serve.ts";

const HELP = `Usage: sessionpool <command> [options]

Commands:
  serve     start the server (see 'sessionpool serve --help')

Run 'sessionpool <command> --help' for a command's options.
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return serve(rest, process.env);
    case undefined:
    case "-h":
    case "--help":
    case "help":
      process.stdout.write(HELP);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command '${command}'. Run 'sessionpool --help'.`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const e = err as { code?: string; message?: string };
    if (
      err instanceof UsageError ||
      e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" ||
      e.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" ||
      e.code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL"
    ) {
      process.stderr.write(`sessionpool: ${e.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`sessionpool: ${e.message ?? String(err)}\n`);
    if (process.env["SESSIONPOOL_DEBUG"]) console.error(err);
    process.exit(1);
  },
);
