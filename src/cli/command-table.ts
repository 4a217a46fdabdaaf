// Every CLI command as one row: where it sits in the tree, its help line, its flags (in help order; the global
// flags follow), its handler and its help examples. program.ts builds commander's commands from these rows.
import type { Command } from "commander";
import { configure, login, logout } from "./commands/login.ts";
import { MCP_CLIENTS, mcpConfig } from "./commands/mcp-config.ts";
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
import type { CliContext } from "./context.ts";
import { intArg, opt, poolOptions, refOptions, sessionOptions, waitOptions } from "./flags.ts";
import type { CommandResult } from "./output.ts";

export type Action = (ctx: CliContext, opts: Record<string, unknown>) => Promise<CommandResult>;

/** Adds flags to a command; applied in a row's order, which is their order in its help. */
export type Flags = (cmd: Command) => Command;

export interface CommandGroup {
  /** The words before the group's commands: ["session"], ["session", "code-interpreter"]. */
  path: string[];
  help: string;
}

export interface CommandSpec {
  /** The command's words: ["create"], ["session", "code-interpreter", "execute"]. */
  path: string[];
  help: string;
  flags: Flags[];
  handler: Action;
  examples: [what: string, how: string][];
}

const fileFlags: Flags = (cmd) =>
  cmd
    .addOption(opt("--filename <name>", "the file's name (may include a directory)"))
    .addOption(opt("--path <dir>", "directory under /mnt/data"));
const session: Flags = (cmd) => sessionOptions(cmd);

export const COMMAND_GROUPS: CommandGroup[] = [
  { path: ["session"], help: "Use the sessions of a pool: run code, move files, stop sessions." },
  {
    path: ["session", "code-interpreter"],
    help: "Run code and manage files in a code-interpreter (PythonLTS) session.",
  },
];

export const COMMANDS: CommandSpec[] = [
  // ---- pools ----
  {
    path: ["create"],
    help: "Create a session pool.",
    flags: [(cmd) => refOptions(cmd, false), (cmd) => poolOptions(cmd, true), waitOptions],
    handler: createPool,
    examples: [
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
    ],
  },
  {
    path: ["update"],
    help: "Update a session pool (reads it, then PATCHes only what changes).",
    flags: [(cmd) => refOptions(cmd), (cmd) => poolOptions(cmd, false), waitOptions],
    handler: updatePool,
    examples: [
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
    ],
  },
  {
    path: ["show"],
    help: "Show a session pool.",
    flags: [(cmd) => refOptions(cmd)],
    handler: showPool,
    examples: [
      ["Show a pool", "sessionpool show -n pool1 -g rg1"],
      [
        "Print only its session limit",
        "sessionpool show -n pool1 -g rg1 --query properties.scaleConfiguration.maxConcurrentSessions -o tsv",
      ],
      [
        "Show a pool by resource id",
        "sessionpool show --ids /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg1/providers/Microsoft.App/sessionPools/pool1",
      ],
    ],
  },
  {
    path: ["list"],
    help: "List session pools in a resource group, or in the subscription.",
    flags: [
      (cmd) =>
        cmd.addOption(
          opt("-g, --resource-group <group>", "resource group (default: configured; else all groups)"),
        ),
    ],
    handler: listPools,
    examples: [
      ["List all pools as a table", "sessionpool list -o table"],
      ["List the names of the pools in a group", "sessionpool list -g rg1 --query [].name -o tsv"],
    ],
  },
  {
    path: ["delete"],
    help: "Delete a session pool and end its sessions.",
    flags: [
      (cmd) => cmd.addOption(opt("-y, --yes", "do not prompt for confirmation")),
      (cmd) => refOptions(cmd),
      waitOptions,
    ],
    handler: deletePool,
    examples: [
      ["Delete a pool, asking first", "sessionpool delete -n pool1 -g rg1"],
      ["Delete a pool from a script", "sessionpool delete -n pool1 -g rg1 --yes"],
    ],
  },
  {
    path: ["get-token"],
    help: "Get a data-plane token for a session pool (POST getAuthtoken); prints the token.",
    flags: [(cmd) => refOptions(cmd)],
    handler: getToken,
    examples: [
      ["Keep a token for the pool's data plane", "TOKEN=$(sessionpool get-token -n pool1 -g rg1)"],
      ["See when it expires", "sessionpool get-token -n pool1 -g rg1 --query properties.expires -o tsv"],
    ],
  },

  {
    path: ["mcp-config"],
    help: "Print a ready-to-paste MCP client configuration for a pool's MCP server (endpoint and API key).",
    flags: [
      (cmd) => refOptions(cmd, false),
      (cmd) =>
        cmd.addOption(
          opt(
            "--client <client>",
            "the configuration's shape: json (default), vscode (.vscode/mcp.json) or claude (.mcp.json)",
          ).choices(MCP_CLIENTS),
        ),
    ],
    handler: mcpConfig,
    examples: [
      [
        "Enable a pool's MCP server, then configure VS Code for it",
        "sessionpool mcp-config -n pool1 -g rg1 --client vscode > .vscode/mcp.json",
      ],
      [
        "Add it to Claude Code's project servers",
        "sessionpool mcp-config -n pool1 -g rg1 --client claude > .mcp.json",
      ],
      ["Only the API key", "sessionpool mcp-config -n pool1 -g rg1 --query 'headers.\"x-ms-apikey\"' -o tsv"],
    ],
  },

  // ---- sessions ----
  {
    path: ["session", "code-interpreter", "execute"],
    help: "Execute code in a session (created on first use).",
    flags: [
      (cmd) =>
        cmd
          .addOption(opt("--code <code>", "the code; '@FILE' reads it from a file, '-' from standard input"))
          .addOption(
            opt("--timeout-in-seconds <seconds>", "longest run time, 1 to 220 (default 60)").argParser(
              intArg(1, 220),
            ),
          ),
      session,
    ],
    handler: execute,
    examples: [
      [
        "Run a line of Python",
        "sessionpool session code-interpreter execute -n pool1 -g rg1 -i user1 --code 'print(1+1)'",
      ],
      [
        "Run a script and print only its output",
        "sessionpool session code-interpreter execute -n pool1 -g rg1 -i user1 --code @job.py --query result.stdout -o tsv",
      ],
    ],
  },
  {
    path: ["session", "code-interpreter", "upload-file"],
    help: "Upload a local file into the session's /mnt/data.",
    flags: [
      (cmd) =>
        cmd
          .addOption(opt("--filepath <file>", "the local file to upload"))
          .addOption(opt("--path <dir>", "directory under /mnt/data to put it in")),
      session,
    ],
    handler: uploadFile,
    examples: [
      [
        "Upload data.csv",
        "sessionpool session code-interpreter upload-file -n pool1 -g rg1 -i user1 --filepath ./data.csv",
      ],
    ],
  },
  {
    path: ["session", "code-interpreter", "list-files"],
    help: "List the files in the session's /mnt/data.",
    flags: [(cmd) => cmd.addOption(opt("--path <dir>", "directory under /mnt/data")), session],
    handler: listFiles,
    examples: [
      [
        "List files as a table",
        "sessionpool session code-interpreter list-files -n pool1 -g rg1 -i user1 -o table",
      ],
    ],
  },
  {
    path: ["session", "code-interpreter", "show-file-content"],
    help: "Print a file's content.",
    flags: [fileFlags, session],
    handler: showFileContent,
    examples: [
      [
        "Download a result",
        "sessionpool session code-interpreter show-file-content -n pool1 -g rg1 -i user1 --filename out.png > out.png",
      ],
    ],
  },
  {
    path: ["session", "code-interpreter", "show-file-metadata"],
    help: "Show a file's name, size, type and time.",
    flags: [fileFlags, session],
    handler: showFileMetadata,
    examples: [
      [
        "Show a file's size",
        "sessionpool session code-interpreter show-file-metadata -n pool1 -g rg1 -i user1 --filename data.csv --query sizeInBytes",
      ],
    ],
  },
  {
    path: ["session", "code-interpreter", "delete-file"],
    help: "Delete a file from the session.",
    flags: [fileFlags, session],
    handler: deleteFile,
    examples: [
      [
        "Delete a file",
        "sessionpool session code-interpreter delete-file -n pool1 -g rg1 -i user1 --filename data.csv",
      ],
    ],
  },
  {
    path: ["session", "stop"],
    help: "Stop a session now instead of waiting for its lifecycle to end it.",
    flags: [session],
    handler: stopSession,
    examples: [["Stop a session", "sessionpool session stop -n pool1 -g rg1 -i user1"]],
  },
  {
    path: ["session", "list"],
    help: "List the sessions in use in a pool.",
    flags: [(cmd) => sessionOptions(cmd, false)],
    handler: listSessions,
    examples: [["List sessions as a table", "sessionpool session list -n pool1 -g rg1 -o table"]],
  },
  {
    path: ["session", "show"],
    help: "Show a session: when it was created, last used and expires.",
    flags: [session],
    handler: showSession,
    examples: [["Show a session", "sessionpool session show -n pool1 -g rg1 -i user1"]],
  },
  {
    path: ["session", "delete"],
    help: "Delete a session and its files.",
    flags: [session],
    handler: deleteSession,
    examples: [["Delete a session", "sessionpool session delete -n pool1 -g rg1 -i user1"]],
  },

  // ---- connection and defaults ----
  {
    path: ["login"],
    help: "Check and save the server's address and a credential for it.",
    flags: [
      (cmd) =>
        cmd
          .addOption(opt("--endpoint <url>", "the server, e.g. https://127.0.0.1:8443"))
          .addOption(
            opt("--token <token>", "the credential (visible to other local users in the process list)"),
          )
          .addOption(opt("--token-file <file>", "read the credential from a file, or '-' for standard input"))
          .addOption(
            opt(
              "--ca-file <file>",
              "PEM CA certificate to trust for this server (e.g. from --tls-self-signed)",
            ),
          ),
    ],
    handler: login,
    examples: [
      [
        "Log in to a local server with its generated admin token",
        "sessionpool login --endpoint http://127.0.0.1:8080 --token-file .sessionpool/admin-token",
      ],
      [
        "Log in to a server with a self-signed certificate",
        "sessionpool login --endpoint https://10.0.0.5:8443 --token-file admin-token --ca-file ca.pem",
      ],
    ],
  },
  {
    path: ["logout"],
    help: "Remove the saved credential.",
    flags: [],
    handler: (ctx) => logout(ctx),
    examples: [["Forget the credential", "sessionpool logout"]],
  },
  {
    path: ["configure"],
    help: "Set defaults used when a flag is not given.",
    flags: [
      (cmd) =>
        cmd
          .addOption(
            opt(
              "--defaults <name=value...>",
              "defaults to set: group, location, subscription, output ('name=' clears)",
            ),
          )
          .addOption(opt("-l, --list-defaults", "list the defaults")),
    ],
    handler: configure,
    examples: [
      ["Work in one group and location", "sessionpool configure --defaults group=rg1 location=eastus"],
      ["Clear the default group", "sessionpool configure --defaults group="],
      ["Show the defaults", "sessionpool configure --list-defaults -o table"],
    ],
  },
];
