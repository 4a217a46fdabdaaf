// The flags commands share, as commander options: value parsers (a bad value is a usage error, exit status 2),
// the global flags every command takes, -n/-g/--ids, waiting, the pool settings of create/update, and help examples.
import { type Command, InvalidArgumentError, Option } from "commander";
import { CONTAINER_TYPES, LIFECYCLE_TYPES, NETWORK_STATUSES } from "./commands/pool-body.ts";
import { DEFAULT_TIMEOUT_SECONDS } from "./lro.ts";
import { OUTPUT_FORMATS } from "./output.ts";

export function intArg(min: number, max: number) {
  return (text: string): number => {
    const n = Number(text);
    if (!/^-?\d+$/.test(text.trim()) || n < min || n > max) {
      throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}.`);
    }
    return n;
  };
}

export function numberArg(text: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError("expected a number.");
  return n;
}

export function enumArg(values: readonly string[]) {
  return (text: string): string => {
    const match = values.find((v) => v.toLowerCase() === text.toLowerCase());
    if (!match) throw new InvalidArgumentError(`allowed values: ${values.join(", ")}.`);
    return match;
  };
}

export function opt(flags: string, description: string): Option {
  return new Option(flags, description);
}

const GLOBAL = "Global Options:";

export function withGlobals(cmd: Command): Command {
  return cmd
    .addOption(opt("-o, --output <format>", "output format").choices(OUTPUT_FORMATS).helpGroup(GLOBAL))
    .addOption(opt("--query <jmespath>", "JMESPath query string, see http://jmespath.org/").helpGroup(GLOBAL))
    .addOption(
      opt(
        "--subscription <id>",
        "subscription id (default: configured, else 00000000-0000-0000-0000-000000000000)",
      ).helpGroup(GLOBAL),
    )
    .addOption(opt("--verbose", "increase logging verbosity").helpGroup(GLOBAL))
    .addOption(
      opt("--debug", "show every HTTP call (method, URL, status, time) and stack traces").helpGroup(GLOBAL),
    )
    .addOption(opt("--only-show-errors", "only show errors, suppressing warnings").helpGroup(GLOBAL));
}

export function examples(cmd: Command, lines: [string, string][]): Command {
  const text = lines.map(([what, how]) => `  ${what}\n    $ ${how}\n`).join("\n");
  return cmd.addHelpText("after", `\nExamples:\n${text}`);
}

export function refOptions(cmd: Command, ids = true): Command {
  cmd
    .addOption(opt("-n, --name <name>", "name of the session pool"))
    .addOption(
      opt(
        "-g, --resource-group <group>",
        "resource group (default: 'sessionpool configure --defaults group=')",
      ),
    );
  if (ids) {
    cmd.addOption(
      opt("--ids <id...>", "one or more session pool resource ids, instead of --name and --resource-group"),
    );
  }
  return cmd;
}

export function waitOptions(cmd: Command): Command {
  return cmd
    .addOption(opt("--no-wait", "do not wait for the long-running operation to finish"))
    .addOption(
      opt(
        "--timeout <seconds>",
        `how long to wait for the operation (default ${DEFAULT_TIMEOUT_SECONDS})`,
      ).argParser(intArg(1, 7 * 24 * 3600)),
    );
}

const CFG = "Configuration Options:";
const SCALE = "Scale Options:";
const CONTAINER = "Container Options (CustomContainer pools):";
const IDENTITY = "Identity Options:";
const group = (o: Option, heading: string) => o.helpGroup(heading);

/** The pool settings of create (`create`) and update, in the order and groups their help shows them. */
export function poolOptions(cmd: Command, create: boolean): Command {
  for (const add of [locationOptions, configOptions, scaleOptions, containerOptions, identityOptions]) {
    add(cmd, create);
  }
  return cmd;
}

/** -l (and, on create, the environment and container type: fixed once the pool exists). */
function locationOptions(cmd: Command, create: boolean): Command {
  cmd.addOption(
    group(
      opt(
        "-l, --location <location>",
        create
          ? "location (default: configured, else 'local')"
          : "the pool's location; it cannot change after create (a different one is sent, and refused)",
      ),
      CFG,
    ),
  );
  if (create) {
    cmd.addOption(
      group(
        opt(
          "--environment <env>",
          "managed environment name or resource id; only for CustomContainer pools (optional here)",
        ),
        CFG,
      ),
    );
    cmd.addOption(
      group(
        opt("--container-type <type>", `${CONTAINER_TYPES.join(", ")} (default: PythonLTS)`).argParser(
          enumArg(CONTAINER_TYPES),
        ),
        CFG,
      ),
    );
  }
  return cmd;
}

/** Lifecycle, network and secrets. */
function configOptions(cmd: Command, create: boolean): Command {
  return cmd
    .addOption(
      group(
        opt(
          "--lifecycle-type <type>",
          `${LIFECYCLE_TYPES.join(", ")}${create ? " (default: Timed; OnContainerExit if only --max-alive-period is given)" : ""}`,
        ).argParser(enumArg(LIFECYCLE_TYPES)),
        CFG,
      ),
    )
    .addOption(
      group(
        opt(
          "--cooldown-period <seconds>",
          `idle seconds before a Timed session ends${create ? " (default 300)" : ""}`,
        ).argParser(intArg(0, 1_000_000)),
        CFG,
      ),
    )
    .addOption(
      group(
        opt(
          "--max-alive-period <seconds>",
          `longest life of an OnContainerExit session${create ? " (default 3600)" : ""}`,
        ).argParser(intArg(0, 10_000_000)),
        CFG,
      ),
    )
    .addOption(
      group(
        opt(
          "--network-status <status>",
          `${NETWORK_STATUSES.join(", ")}${create ? " (default: EgressDisabled)" : ""}`,
        ).argParser(enumArg(NETWORK_STATUSES)),
        CFG,
      ),
    )
    .addOption(
      group(
        opt(
          "-s, --secrets <name=value...>",
          `${create ? "pool secrets" : "the pool's secrets, replacing all it has"}; "" for none`,
        ),
        CFG,
      ),
    );
}

function scaleOptions(cmd: Command, create: boolean): Command {
  return cmd
    .addOption(
      group(
        opt("--max-sessions <n>", `maximum concurrent sessions${create ? " (default 10)" : ""}`).argParser(
          intArg(0, 1_000_000),
        ),
        SCALE,
      ),
    )
    .addOption(
      group(
        opt(
          "--ready-sessions <n>",
          `warm sessions kept ready${create ? " (default 5, at most --max-sessions)" : ""}`,
        ).argParser(intArg(0, 1_000_000)),
        SCALE,
      ),
    );
}

/** The container of a CustomContainer pool: image, resources, environment, command, port, registry. */
function containerOptions(cmd: Command, create: boolean): Command {
  return cmd
    .addOption(group(opt("-i, --image <image>", "container image"), CONTAINER))
    .addOption(group(opt("--container-name <name>", "container name (default: the pool name)"), CONTAINER))
    .addOption(group(opt("--cpu <cores>", "CPU cores, 0.25 to 2.0").argParser(numberArg), CONTAINER))
    .addOption(group(opt("--memory <size>", "memory, 0.5Gi to 4.0Gi, e.g. 1Gi"), CONTAINER))
    .addOption(
      group(
        opt(
          "--env-vars <name=value...>",
          `environment variables; 'name=secretref:secret' reads a pool secret${create ? "" : '; "" clears them'}`,
        ),
        CONTAINER,
      ),
    )
    .addOption(
      group(
        opt(
          "--command <part...>",
          `command line replacing the image's entrypoint${create ? "" : '; "" clears it'}`,
        ),
        CONTAINER,
      ),
    )
    .addOption(
      group(
        opt("--args <arg...>", `arguments for the command${create ? "" : '; "" clears them'}`),
        CONTAINER,
      ),
    )
    .addOption(
      group(
        opt(
          "--target-port <port>",
          `port the container serves HTTP on${create ? " (required)" : ""}`,
        ).argParser(intArg(1, 65535)),
        CONTAINER,
      ),
    )
    .addOption(
      group(opt("--registry-server <server>", "container registry, e.g. myacr.azurecr.io"), CONTAINER),
    )
    .addOption(group(opt("--registry-username <user>", "registry user name"), CONTAINER))
    .addOption(
      group(
        opt(
          "--registry-password <password>",
          "registry password, stored as a pool secret (or 'secretref:NAME' for an existing one)",
        ),
        CONTAINER,
      ),
    )
    .addOption(
      group(
        opt("--registry-identity <id>", "'system' or a user-assigned identity to pull images with"),
        CONTAINER,
      ),
    );
}

function identityOptions(cmd: Command, _create: boolean): Command {
  return cmd
    .addOption(
      group(
        opt("--mi-system-assigned", "give the pool a system-assigned identity usable in sessions"),
        IDENTITY,
      ),
    )
    .addOption(
      group(
        opt(
          "--mi-user-assigned <id...>",
          "user-assigned identities (names or resource ids) usable in sessions",
        ),
        IDENTITY,
      ),
    );
}

export function sessionOptions(cmd: Command, identifier = true): Command {
  cmd
    .addOption(opt("-n, --name <name>", "name of the session pool"))
    .addOption(
      opt(
        "-g, --resource-group <group>",
        "resource group (default: 'sessionpool configure --defaults group=')",
      ),
    );
  if (identifier)
    cmd.addOption(opt("-i, --identifier <id>", "the session's identifier (4 to 128 characters)"));
  cmd.addOption(
    opt("--pool-endpoint <url>", "the pool's management endpoint, to skip reading it from the pool"),
  );
  return cmd;
}
