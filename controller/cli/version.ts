/** `conductor version`: this CLI's version, and the running controller's if there is one. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { COMMON_OPTIONS, parseCommand } from './flags.js';
import type { CliIO } from './io.js';
import { StateDir } from './state.js';

export const VERSION_USAGE = `Print the version of the CLI and of the running controller.

Usage:
  conductor version [--state-dir DIR]
`;

/** package.json's version, found from this module's location (works from sources and dist/). */
export function cliVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'conductor' && pkg.version) return pkg.version;
    } catch {
      // not here: keep walking up
    }
    const parent = dirname(dir);
    if (parent === dir) return 'unknown';
    dir = parent;
  }
}

export async function version(argv: string[], io: CliIO): Promise<number> {
  const { values } = parseCommand('version', () =>
    parseArgs({
      args: argv,
      options: COMMON_OPTIONS,
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) {
    io.stdout(VERSION_USAGE);
    return 0;
  }
  io.stdout(`Client Version: v${cliVersion()}\n`);
  const controller = await new StateDir(values['state-dir']).runningController();
  io.stdout(
    controller
      ? `Controller Version: v${controller.version ?? 'unknown'} (pid ${controller.pid}, watching ${controller.watchDir})\n`
      : `Controller Version: not running (state dir ${values['state-dir']})\n`,
  );
  return 0;
}
