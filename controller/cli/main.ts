/**
 * The `conductor` command. `main(argv, io)` runs one command line and resolves to its exit
 * code; all output goes through `io`, so tests run it in-process. bin/conductor.js is the
 * launcher that calls it with the process's arguments and streams.
 *
 * Every command but `up` works from the state directory alone (controller/README.md, "On-disk
 * contract"): no API server, several installations side by side with --state-dir.
 */
import { CliError, UsageError, errorMessage, processIO, type CliIO } from './io.js';

type Command = (argv: string[], io: CliIO) => Promise<number>;
interface Loaded {
  run: Command;
  usage: string;
}

/**
 * Each command's module is loaded only when it runs (a short-lived CLI pays for every module it
 * imports: `conductor build` need not load the controller, `conductor get` not the builder).
 */
const COMMANDS: Record<string, { load: () => Promise<Loaded>; summary: string }> = {
  up: {
    load: async () => {
      const m = await import('./up.js');
      return { run: m.up, usage: m.UP_USAGE };
    },
    summary: 'Run the controller in the foreground',
  },
  apply: {
    load: async () => {
      const m = await import('./apply.js');
      return { run: m.apply, usage: m.APPLY_USAGE };
    },
    summary: 'Apply manifests to the running controller',
  },
  get: {
    load: async () => {
      const m = await import('./get.js');
      return { run: m.get, usage: m.GET_USAGE };
    },
    summary: 'Display one or many resources',
  },
  describe: {
    load: async () => {
      const m = await import('./describe.js');
      return { run: m.describe, usage: m.DESCRIBE_USAGE };
    },
    summary: 'Show details of a resource',
  },
  delete: {
    load: async () => {
      const m = await import('./delete.js');
      return { run: m.del, usage: m.DELETE_USAGE };
    },
    summary: 'Delete resources',
  },
  logs: {
    load: async () => {
      const m = await import('./logs.js');
      return { run: m.logs, usage: m.LOGS_USAGE };
    },
    summary: 'Print the logs of a Container',
  },
  exec: {
    load: async () => {
      const m = await import('./exec.js');
      return { run: m.exec, usage: m.EXEC_USAGE };
    },
    summary: 'Run a command in a Container',
  },
  top: {
    load: async () => {
      const m = await import('./top.js');
      return { run: m.top, usage: m.TOP_USAGE };
    },
    summary: "Display running Containers' resource usage (CPU, memory, network, pids)",
  },
  stats: {
    load: async () => {
      const m = await import('./top.js');
      return { run: m.top, usage: m.TOP_USAGE };
    },
    summary: 'The same as top (docker stats)',
  },
  images: {
    load: async () => {
      const m = await import('./images.js');
      return { run: m.images, usage: m.IMAGES_USAGE };
    },
    summary: 'List images; prune unused layers',
  },
  image: {
    load: async () => {
      const m = await import('./image.js');
      return { run: m.image, usage: m.IMAGE_USAGE };
    },
    summary: 'Export an Image as an archive (docker load, kind load image-archive)',
  },
  build: {
    load: async () => {
      const m = await import('./build.js');
      return { run: m.build, usage: m.BUILD_USAGE };
    },
    summary: 'Build Images without the controller',
  },
  down: {
    load: async () => {
      const m = await import('./down.js');
      return { run: m.down, usage: m.DOWN_USAGE };
    },
    summary: "Remove a stopped controller's containers and network from the host",
  },
  version: {
    load: async () => {
      const m = await import('./version.js');
      return { run: m.version, usage: m.VERSION_USAGE };
    },
    summary: 'Print the version',
  },
};

function loadCommand(name: string): Promise<Loaded> {
  const c = COMMANDS[name];
  if (!c) throw new Error(`no command ${name}`);
  return c.load();
}

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
    io.stdout(topic !== undefined && COMMANDS[topic] ? (await loadCommand(topic)).usage : USAGE);
    return 0;
  }
  if (name === '--version') return (await loadCommand('version')).run([], io);
  if (!COMMANDS[name]) {
    io.stderr(`error: unknown command ${JSON.stringify(name)} for "conductor"\n`);
    io.stderr(`Run 'conductor --help' for usage.\n`);
    return 2;
  }
  try {
    return await (await loadCommand(name)).run(rest, io);
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
