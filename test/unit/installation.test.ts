/**
 * Installations (runtime-core/src/installation.ts): the names a state dir owns on the host, the
 * record of its name, and the claim a running controller holds on it.
 */
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { procStartTime } from '../../runtime-core/src/files.js';
import {
  claimInstallation,
  defaultInstallationName,
  hostNames,
  installationOf,
  recordInstallation,
  validateInstallationName,
} from '../../runtime-core/src/installation.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'installation-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('names', () => {
  it("keeps today's names for the default state dir and derives a short one for another", () => {
    expect(defaultInstallationName('/var/lib/conductor')).toBe('conductor');
    expect(defaultInstallationName('/var/lib/conductor/')).toBe('conductor');
    const other = defaultInstallationName('/tmp/c1');
    expect(other).toMatch(/^cnd-[0-9a-f]{8}$/);
    expect(defaultInstallationName('/tmp/c1')).toBe(other);
    expect(defaultInstallationName('/tmp/c2')).not.toBe(other);
    expect(hostNames('conductor')).toEqual({ cgroupParent: '/conductor' });
    expect(hostNames(other)).toEqual({ cgroupParent: `/${other}` });
  });

  it('refuses names that could not become an interface name or a cgroup of ours', () => {
    for (const bad of ['', 'Conductor', '1abc', 'a/b', '..', 'a_b', 'abcdefghijklmno', 'x-'])
      expect(() => validateInstallationName(bad)).toThrow(/not a valid installation name/);
    for (const good of ['a', 'conductor', 'cnd-0123abcd', 'abcdefghijklmn'])
      expect(validateInstallationName(good)).toBe(good);
  });
});

describe('the record in the state dir', () => {
  it('is what a later start without a name uses; another name is refused while containers exist', async () => {
    expect(installationOf(dir)).toBe(defaultInstallationName(dir));
    await recordInstallation(dir, 'blue', 0);
    expect(JSON.parse(readFileSync(join(dir, 'installation.json'), 'utf8'))).toEqual({
      name: 'blue',
    });
    expect(installationOf(dir)).toBe('blue');
    expect(installationOf(dir, 'green')).toBe('green');
    await expect(recordInstallation(dir, 'green', 2)).rejects.toThrow(
      `state dir ${dir} is installation "blue" (its 2 container(s) have cgroups under /blue): run it with --installation blue, or remove its containers first`,
    );
    await recordInstallation(dir, 'green', 0);
    expect(installationOf(dir)).toBe('green');
  });

  it('names the file when it is damaged', () => {
    writeFileSync(join(dir, 'installation.json'), '{not json');
    expect(() => installationOf(dir)).toThrow(join(dir, 'installation.json'));
  });
});

describe('the claim of a running controller', () => {
  let sleeper: ChildProcess | undefined;
  afterEach(() => {
    sleeper?.kill('SIGKILL');
    sleeper = undefined;
  });

  it("refuses a name a live controller of another state dir holds; takes over a dead one's", async () => {
    const claims = join(dir, 'claims');
    // Another live process (a stand-in for another controller) holds `blue` for /srv/a.
    sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    const pid = sleeper.pid ?? 0;
    const claim = (stateDir: string, p: number, start: string | undefined) => ({
      stateDir,
      pid: p,
      pidStartTime: start ?? '',
    });
    mkdirSync(claims);
    writeFileSync(
      join(claims, 'blue.json'),
      JSON.stringify(claim('/srv/a', pid, procStartTime(pid))),
    );
    await expect(claimInstallation('blue', '/srv/b', claims)).rejects.toThrow(
      `installation name "blue" is in use by the controller of state dir /srv/a (pid ${pid}): give this one another with --installation`,
    );
    // The same state dir may claim it again (a restarted controller whose file was left).
    const release = await claimInstallation('blue', '/srv/a', claims);
    await release();
    expect(existsSync(join(claims, 'blue.json'))).toBe(false);
    // A claim whose process is gone (its pid's start time no longer matches) is taken over.
    writeFileSync(join(claims, 'blue.json'), JSON.stringify(claim('/srv/a', pid, '1')));
    const mine = await claimInstallation('blue', '/srv/b', claims);
    expect(JSON.parse(readFileSync(join(claims, 'blue.json'), 'utf8'))).toMatchObject({
      stateDir: '/srv/b',
      pid: process.pid,
    });
    await mine();
    expect(existsSync(join(claims, 'blue.json'))).toBe(false);
  });
});
