/**
 * `conductor down`: removes everything a state dir runs on the host, for when its controller is
 * not running (a stopped controller leaves its containers running, by design): every container
 * is killed and removed with its address, netns, published ports and volumes, then the node
 * network goes — the bridge, its routes, the service table and DNS. The manifests and the
 * objects' records stay: the next `conductor up` starts them again.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { COMMON_OPTIONS, parseCommand } from './flags.js';
import { CliError, type CliIO } from './io.js';
import { StateDir } from './state.js';

export const DOWN_USAGE = `Remove what a state dir runs on this host: its containers and its network.

Usage:
  conductor down [--state-dir DIR]

Every container is stopped at once and removed with its network (address, netns, published
ports) and volumes; then the bridge, its routes, the nftables table and the DNS server go
(the ranges and conflist directory are the ones the network was made with, whatever the flags
of the \`conductor up\` that made it).
The controller must not be running (stop it first: containers outlive it by design). Images
and the objects' records stay.
`;

export async function down(argv: string[], io: CliIO): Promise<number> {
  const { values } = parseCommand('down', () =>
    parseArgs({ args: argv, options: COMMON_OPTIONS, allowPositionals: false, strict: true }),
  );
  if (values.help) {
    io.stdout(DOWN_USAGE);
    return 0;
  }
  const stateDir = resolve(io.cwd, values['state-dir']);
  const running = await new StateDir(stateDir).runningController();
  if (running) {
    throw new CliError(
      `the controller of ${stateDir} is running (pid ${running.pid}): stop it first, then run conductor down`,
    );
  }
  // The runtime core (and its native addon) only for this command.
  const { RuntimeCore, recordedNetwork } = await import('../../runtime-core/src/index.js');
  // With the ranges and conflist directory its network was made with, whatever they were.
  const network = await recordedNetwork(stateDir);
  const core = await RuntimeCore.open({ stateDir, ...(network ? { network } : {}) });
  try {
    const containers = await core.list();
    await core.removeAll();
    io.stdout(`removed ${containers.length} container(s) and the network of ${stateDir}\n`);
  } finally {
    await core.close();
  }
  return 0;
}
