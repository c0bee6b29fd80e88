/**
 * The `conductor` command. `main(argv, io)` runs one command line and resolves to its exit
 * code; all output goes through `io`, so tests run it in-process. bin/conductor.js is the
 * launcher that calls it with the process's arguments and streams.
 *
 * Every command but `up` works from the state directory alone (controller/README.md, "On-disk
 * contract"): no API server, several installations side by side with --state-dir.
 */
import { apply, APPLY_USAGE } from './apply.js';
import { build, BUILD_USAGE } from './build.js';
import { del, DELETE_USAGE } from './delete.js';
import { describe, DESCRIBE_USAGE } from './describe.js';
import { exec, EXEC_USAGE } from './exec.js';
import { get, GET_USAGE } from './get.js';
import { images, IMAGES_USAGE } from './images.js';
import { CliError, UsageError, errorMessage, processIO, type CliIO } from './io.js';
import { logs, LOGS_USAGE } from './logs.js';
import { up, UP_USAGE } from './up.js';
import { version, VERSION_USAGE } from './version.js';

type Command = (argv: string[], io: CliIO) => Promise<number>;

const COMMANDS: Record<string, { run: Command; usage: string; summary: string }> = {
  up: { run: up, usage: UP_USAGE, summary: 'Run the controller in the foreground' },
  apply: { run: apply, usage: APPLY_USAGE, summary: 'Apply manifests to the running controller' },
  get: { run: get, usage: GET_USAGE, summary: 'Display one or many resources' },
  describe: { run: describe, usage: DESCRIBE_USAGE, summary: 'Show details of a resource' },
  delete: { run: del, usage: DELETE_USAGE, summary: 'Delete resources' },
  logs: { run: logs, usage: LOGS_USAGE, summary: 'Print the logs of a Container' },
  exec: { run: exec, usage: EXEC_USAGE, summary: 'Run a command in a Container' },
  images: { run: images, usage: IMAGES_USAGE, summary: 'List images; prune unused layers' },
  build: { run: build, usage: BUILD_USAGE, summary: 'Build Images without the controller' },
  version: { run: version, usage: VERSION_USAGE, summary: 'Print the version' },
};

export const USAGE = `conductor runs containers on this node from Kubernetes-style manifests.

Usage:
  conductor COMMAND [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(10)}${c.summary}`)
  .join('\n')}

Every command takes --state-dir DIR (default /var/lib/conductor) and --help.
`;

/** Runs one command line (without the program name); resolves to the exit code. Never throws. */
export async function main(argv: string[], io: CliIO = processIO()): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined;
    io.stdout(topic !== undefined && COMMANDS[topic] ? COMMANDS[topic].usage : USAGE);
    return 0;
  }
  if (name === '--version') return version([], io);
  const command = COMMANDS[name];
  if (!command) {
    io.stderr(`error: unknown command ${JSON.stringify(name)} for "conductor"\n`);
    io.stderr(`Run 'conductor --help' for usage.\n`);
    return 2;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`error: ${err.message}\nSee 'conductor ${name} --help' for usage.\n`);
      return err.exitCode;
    }
    if (err instanceof CliError) {
      io.stderr(`error: ${err.message}\n`);
      return err.exitCode;
    }
    // Unexpected: still one line on stderr, with what failed.
    io.stderr(`error: ${errorMessage(err)}\n`);
    return 1;
  }
}
