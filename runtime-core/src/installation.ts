/**
 * An installation: one state directory and the names it owns on the host. Several
 * installations coexist on one machine (`--state-dir`), so every host-level name one creates —
 * the cgroup parent now; the bridge, nftables table, netns and veth names and the DNS address
 * with networking — derives from its name, and two installations never share one. The default
 * state directory's installation is `conductor` (today's names: cgroups under /conductor);
 * another state directory's is `cnd-` and 8 hex digits of its path's SHA-256, unless given.
 *
 * The name a state directory was first started with is recorded in it (installation.json), so
 * a later start without the flag keeps it; a controller holds a claim on its name under
 * /run/conductor/installations while it runs, so a second state directory cannot take it.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, rm, rmdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';

import { errCode, procStartTime, writeJsonAtomic } from './files.js';
import { DEFAULT_STATE_DIR } from './paths.js';

export const DEFAULT_INSTALLATION = 'conductor';

/**
 * Lower-case letters, digits and `-`, starting with a letter, at most 14 characters: a name the
 * bridge (`<name>0`) and other interface names can be made of within Linux's 15.
 */
export const INSTALLATION_PATTERN = /^[a-z]([a-z0-9-]{0,12}[a-z0-9])?$/;

/** Where running controllers claim their installation's name (tmpfs: gone with a reboot). */
export const CLAIMS_DIR = '/run/conductor/installations';

export class InstallationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InstallationError';
  }
}

export function validateInstallationName(name: string, field = 'installation'): string {
  if (!INSTALLATION_PATTERN.test(name)) {
    throw new InstallationError(
      `${field}: ${JSON.stringify(name)} is not a valid installation name (lower-case letters, digits and "-", starting with a letter, at most 14 characters)`,
    );
  }
  return name;
}

/** `conductor` for the default state directory, `cnd-<8 hex of sha256(path)>` for another. */
export function defaultInstallationName(stateDir: string): string {
  const dir = resolve(stateDir);
  if (dir === DEFAULT_STATE_DIR) return DEFAULT_INSTALLATION;
  return `cnd-${createHash('sha256').update(dir).digest('hex').slice(0, 8)}`;
}

/** The host-level names of an installation. */
export interface HostNames {
  /** The cgroup every container's cgroup is made under: `/<name>` (linux.cgroupsPath's parent). */
  cgroupParent: string;
}

export function hostNames(installation: string): HostNames {
  return { cgroupParent: `/${validateInstallationName(installation)}` };
}

interface InstallationRecord {
  name: string;
}

export function installationFile(stateDir: string): string {
  return join(stateDir, 'installation.json');
}

/** The name recorded in a state directory, if any. */
export function recordedInstallation(stateDir: string): string | undefined {
  try {
    const rec = JSON.parse(readFileSync(installationFile(stateDir), 'utf8')) as InstallationRecord;
    return typeof rec.name === 'string' ? validateInstallationName(rec.name) : undefined;
  } catch (err) {
    if (errCode(err) === 'ENOENT') return undefined;
    throw new InstallationError(
      `${installationFile(stateDir)}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

/**
 * The installation a state directory is: the one asked for, else the one recorded, else the
 * default for its path.
 */
export function installationOf(stateDir: string, requested?: string): string {
  if (requested !== undefined) return validateInstallationName(requested);
  return recordedInstallation(stateDir) ?? defaultInstallationName(stateDir);
}

/**
 * Records `name` as the state directory's installation. Asking for another name than the one
 * recorded is refused while the state directory has containers (they live under the old names);
 * `containers` says how many it has.
 */
export async function recordInstallation(
  stateDir: string,
  name: string,
  containers: number,
): Promise<void> {
  const recorded = recordedInstallation(stateDir);
  if (recorded === name) return;
  if (recorded !== undefined && containers > 0) {
    throw new InstallationError(
      `state dir ${stateDir} is installation ${JSON.stringify(recorded)} (its ${containers} container(s) have cgroups under /${recorded}): run it with --installation ${recorded}, or remove its containers first`,
    );
  }
  await writeJsonAtomic(installationFile(stateDir), { name } satisfies InstallationRecord);
}

interface Claim {
  stateDir: string;
  pid: number;
  pidStartTime: string;
}

/**
 * Claims `name` for the controller of `stateDir` (this process) while it runs. Refused if a
 * live controller of another state directory holds it: the two would share cgroups (and, with
 * networking, a bridge and a table). A claim left by a dead process is taken over. Returns the
 * release function.
 */
export async function claimInstallation(
  name: string,
  stateDir: string,
  claimsDir = CLAIMS_DIR,
): Promise<() => Promise<void>> {
  const path = join(claimsDir, `${validateInstallationName(name)}.json`);
  const dir = resolve(stateDir);
  let other: Claim | undefined;
  try {
    other = JSON.parse(await readFile(path, 'utf8')) as Claim;
  } catch {
    other = undefined;
  }
  if (other && resolve(other.stateDir) !== dir && procStartTime(other.pid) === other.pidStartTime) {
    throw new InstallationError(
      `installation name ${JSON.stringify(name)} is in use by the controller of state dir ${other.stateDir} (pid ${other.pid}): give this one another with --installation`,
    );
  }
  const mine: Claim = {
    stateDir: dir,
    pid: process.pid,
    pidStartTime: procStartTime(process.pid) ?? '',
  };
  // Retried: a controller stopping at this moment may remove the (empty) directory.
  for (let attempt = 0; ; attempt++) {
    try {
      await writeJsonAtomic(path, mine);
      break;
    } catch (err) {
      if (errCode(err) !== 'ENOENT' || attempt >= 3) throw err;
    }
  }
  return async () => {
    try {
      const now = JSON.parse(await readFile(path, 'utf8')) as Claim;
      if (now.pid === mine.pid && now.pidStartTime === mine.pidStartTime && now.stateDir === dir)
        await rm(path, { force: true });
    } catch {
      // Gone already.
    }
    // The directories go with the last claim (rmdir: not while another controller has one).
    if (claimsDir === CLAIMS_DIR)
      for (const d of [CLAIMS_DIR, dirname(CLAIMS_DIR)]) await rmdir(d).catch(() => undefined);
  };
}
