/**
 * build/Release/nsjoin (runtime-core/native/examples/nsjoin.cc), the seed's first lesson: a
 * second process joins the first's PID and UTS namespaces through a pidfd and sees the same
 * hostname and PID numbering. Root, real kernel.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { nsInodes } from '../../runtime-core/src/native.js';
import { buildOutput } from '../../runtime-core/src/paths.js';
import {
  assertNoLeaks,
  processInfo,
  uniqueId,
  hostSnapshot,
  type HostSnapshot,
} from '../fixtures/index.js';

const NSJOIN = buildOutput('nsjoin');
const PREFIX = uniqueId('nsjoin');
let before: HostSnapshot;
const started: number[] = [];

beforeAll(() => {
  before = hostSnapshot();
});

afterAll(() => {
  assertNoLeaks(before, { idPrefix: PREFIX, pids: started });
});

/** `first hostname=x pid=1 host_pid=42` → { role: 'first', hostname: 'x', pid: '1', ... } */
function parse(stdout: string): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  for (const line of stdout.trim().split('\n')) {
    const [role = '', ...fields] = line.split(' ');
    out.set(role, Object.fromEntries(fields.map((f) => f.split('=', 2) as [string, string])));
  }
  return out;
}

function gone(pid: number): boolean {
  const info = processInfo(pid);
  if (!info) return true;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
}

describe('nsjoin demo', () => {
  it("second joins the first: same hostname (not the host's), same PID numbering", () => {
    const name = `${PREFIX}-demo`;
    const r = spawnSync(NSJOIN, ['demo', name], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = parse(r.stdout);
    const host = lines.get('host');
    const first = lines.get('first');
    const second = lines.get('second');

    expect(host?.hostname).toBe(hostname());
    expect(first?.hostname).toBe(name);
    expect(second?.hostname).toBe(name);
    expect(name).not.toBe(hostname());

    expect(first?.pid).toBe('1');
    expect(second?.pid).not.toBe('1');
    expect(second?.first_pid).toBe('1');
    // Both also live in the host's PID namespace, under other numbers.
    const firstHostPid = Number(first?.host_pid);
    const secondHostPid = Number(second?.host_pid);
    expect(firstHostPid).toBeGreaterThan(1);
    expect(secondHostPid).toBeGreaterThan(1);
    expect(secondHostPid).not.toBe(firstHostPid);

    // The demo killed and reaped the first; the second is reaped too.
    started.push(firstHostPid, secondHostPid);
    expect(gone(firstHostPid)).toBe(true);
    expect(gone(secondHostPid)).toBe(true);
  });

  it('prints usage for bad arguments', () => {
    const r = spawnSync(NSJOIN, ['join', 'abc'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('usage: nsjoin');
  });
});

describe('nsjoin join PID -- CMD', () => {
  const name = `${PREFIX}-join`;
  let holder: ChildProcess | undefined;
  let inner = 0; // PID 1 of the new namespaces, as the host sees it

  beforeAll(async () => {
    // unshare forks the namespaces' PID 1: a shell that sets the hostname, then sleeps.
    holder = spawn(
      'unshare',
      [
        '--pid',
        '--uts',
        '--fork',
        '--kill-child',
        'sh',
        '-c',
        `hostname ${name}; echo ready; exec sleep 1000`,
      ],
      // stderr piped, unread: unshare complains when its PID 1 is SIGKILLed (harmless).
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    started.push(holder.pid ?? 0);
    await new Promise<void>((resolve) => holder?.stdout?.once('data', () => resolve()));
    const pid = holder.pid ?? 0;
    inner = Number(readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim());
    started.push(inner);
  });

  afterAll(async () => {
    if (!holder) return;
    const exit = new Promise((resolve) => holder?.once('exit', resolve));
    // unshare ignores SIGTERM while it waits; its PID 1 dying ends it (and the namespace).
    if (inner > 0) process.kill(inner, 'SIGKILL');
    await exit;
  });

  it("runs CMD in the target's PID and UTS namespaces", () => {
    const r = spawnSync(NSJOIN, ['join', String(inner), '--', 'sh', '-c', 'hostname; echo $$'], {
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const [host, pid] = r.stdout.trim().split('\n');
    expect(host).toBe(name);
    expect(Number(pid)).toBeGreaterThan(1); // numbered inside the namespace, after its PID 1
  });

  it("joins exactly the target's pid and uts namespaces (same /proc/PID/ns links)", () => {
    const r = spawnSync(
      NSJOIN,
      [
        'join',
        String(inner),
        '--',
        'readlink',
        '/proc/self/ns/pid',
        '/proc/self/ns/uts',
        '/proc/self/ns/net',
      ],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(0);
    const [pidNs, utsNs, netNs] = r.stdout.trim().split('\n');
    const target = nsInodes(inner);
    expect(pidNs).toBe(target.pid);
    expect(utsNs).toBe(target.uts);
    // Only those two: the network namespace stays ours (unshare did not make a new one).
    expect(netNs).toBe(nsInodes(process.pid).net);
    expect(target.pid).not.toBe(nsInodes(process.pid).pid);
  });

  it("exits with the command's exit code", () => {
    const r = spawnSync(NSJOIN, ['join', String(inner), '--', 'sh', '-c', 'exit 7']);
    expect(r.status).toBe(7);
  });

  it('names the failing step for a process that does not exist', async () => {
    const c = spawn('true');
    await new Promise((resolve) => c.once('exit', resolve));
    const r = spawnSync(NSJOIN, ['join', String(c.pid), '--', 'true'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`pidfd_open ${c.pid}: ESRCH`);
  });
});
