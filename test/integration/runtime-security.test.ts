/**
 * What the container's process may do: capabilities (all five sets), no_new_privs, the seccomp
 * filter (the real default profile podman and Docker ship), user and groups, rlimits,
 * oomScoreAdj; and the runtime binary a container can reach is a sealed copy (CVE-2019-5736).
 */
import { openSync, readFileSync, readlinkSync } from 'node:fs';

import { describe, expect, it } from '@jest/globals';

import { DEFAULT_CAPABILITIES } from '../../runtime-core/src/oci-config.js';
import { seccompForCapabilities } from '../../runtime-core/src/seccomp.js';
import { finished, runtimeSuite } from '../fixtures/runtime.js';

const suite = runtimeSuite('rs');

function statusField(status: string, name: string): string {
  const line = status.split('\n').find((l) => l.startsWith(`${name}:`));
  return line?.split(':')[1]?.trim() ?? '';
}

/** The bit mask the kernel shows in /proc/PID/status for a list of capability names. */
function capMask(names: readonly string[]): string {
  const numbers: Record<string, number> = {
    CAP_CHOWN: 0,
    CAP_DAC_OVERRIDE: 1,
    CAP_FOWNER: 3,
    CAP_FSETID: 4,
    CAP_KILL: 5,
    CAP_SETGID: 6,
    CAP_SETUID: 7,
    CAP_SETPCAP: 8,
    CAP_NET_BIND_SERVICE: 10,
    CAP_NET_RAW: 13,
    CAP_SYS_CHROOT: 18,
    CAP_SYS_ADMIN: 21,
    CAP_MKNOD: 27,
    CAP_AUDIT_WRITE: 29,
    CAP_SETFCAP: 31,
  };
  let mask = 0n;
  for (const n of names) {
    const bit = numbers[n];
    if (bit === undefined) throw new Error(`capMask: add ${n}`);
    mask |= 1n << BigInt(bit);
  }
  return mask.toString(16).padStart(16, '0');
}

describe('capabilities', () => {
  it('sets all five sets as configured', async () => {
    const caps = ['CAP_CHOWN', 'CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_SETUID', 'CAP_SETGID'];
    const r = await suite.sh('cat /proc/self/status', {
      process: {
        capabilities: {
          bounding: caps,
          permitted: caps,
          effective: ['CAP_CHOWN', 'CAP_KILL', 'CAP_SETUID', 'CAP_SETGID'],
          inheritable: ['CAP_NET_BIND_SERVICE'],
          ambient: ['CAP_NET_BIND_SERVICE'],
        },
      },
    });
    expect(statusField(r.stdout, 'CapBnd')).toBe(capMask(caps));
    expect(statusField(r.stdout, 'CapPrm')).toBe(capMask(caps));
    // sh is exec'd with the ambient set raised: it keeps NET_BIND_SERVICE effective.
    expect(statusField(r.stdout, 'CapInh')).toBe(capMask(['CAP_NET_BIND_SERVICE']));
    expect(statusField(r.stdout, 'CapAmb')).toBe(capMask(['CAP_NET_BIND_SERVICE']));
  });

  it("gives Docker's default set and enforces it (no CAP_SYS_ADMIN: mount fails)", async () => {
    const caps = DEFAULT_CAPABILITIES.map((c) => (c.startsWith('CAP_') ? c : `CAP_${c}`));
    const r = await suite.sh(
      'grep CapEff /proc/self/status; mount -t tmpfs none /tmp 2>&1; echo rc=$?',
      {
        root: { path: 'rootfs', readonly: false },
        process: { capabilities: { bounding: caps, effective: caps, permitted: caps } },
      },
    );
    expect(statusField(r.stdout, 'CapEff')).toBe(capMask(caps));
    expect(r.stdout).toMatch(/permission denied.*\nrc=1\n$/);
  });
});

describe('no_new_privs', () => {
  it('is set when configured and not otherwise', async () => {
    const on = await suite.sh('grep NoNewPrivs /proc/self/status', {
      process: { noNewPrivileges: true },
    });
    expect(on.stdout).toBe('NoNewPrivs:\t1\n');
    const off = await suite.sh('grep NoNewPrivs /proc/self/status', {
      process: { noNewPrivileges: false },
    });
    expect(off.stdout).toBe('NoNewPrivs:\t0\n');
  });
});

describe('seccomp', () => {
  const caps = DEFAULT_CAPABILITIES.map((c) => (c.startsWith('CAP_') ? c : `CAP_${c}`));

  it('loads the default profile and blocks what it blocks', async () => {
    // swapon is refused by the profile whatever the capabilities: with CAP_SYS_ADMIN and no
    // filter the kernel gets to look at /dev/null (EINVAL); with the filter it never does.
    const admin = [...caps, 'CAP_SYS_ADMIN'];
    const process = { capabilities: { bounding: admin, effective: admin, permitted: admin } };
    const script = 'grep Seccomp: /proc/self/status; swapon /dev/null 2>&1; echo rc=$?';
    const filtered = await suite.sh(script, {
      process,
      linux: { seccomp: seccompForCapabilities(admin) as unknown as Record<string, unknown> },
    });
    expect(filtered.stdout).toMatch(/^Seccomp:\t2\n.*Operation not permitted\nrc=1\n$/s);
    const unfiltered = await suite.sh(script, { process });
    expect(unfiltered.stdout).toMatch(/^Seccomp:\t0\n.*Invalid argument\nrc=1\n$/s);
  });

  it('applies a custom rule with an errno, and argument conditions', async () => {
    const r = await suite.sh('mkdir /tmp/x 2>&1; echo rc=$?', {
      root: { path: 'rootfs', readonly: false },
      linux: {
        seccomp: {
          defaultAction: 'SCMP_ACT_ALLOW',
          architectures: ['SCMP_ARCH_X86_64'],
          syscalls: [
            { names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
            {
              names: ['personality'],
              action: 'SCMP_ACT_ERRNO',
              args: [{ index: 0, value: 8, op: 'SCMP_CMP_EQ' }],
            },
          ],
        },
      },
    });
    expect(r.stdout).toContain('Permission denied');
    expect(r.stdout).toContain('rc=1');
  });

  it('reports a bad profile at create, naming the field, and leaves nothing', async () => {
    const b = await suite.bundleFor('true', {
      linux: { seccomp: { defaultAction: 'SCMP_ACT_SOMETIMES', syscalls: [] } },
    });
    const r = await suite.rt.run(['create', '-b', b.dir, b.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      'linux.seccomp.defaultAction: action `SCMP_ACT_SOMETIMES` is not supported',
    );
    expect((await suite.rt.run(['state', b.id])).stderr).toContain('does not exist');
  });
});

describe('user, groups, rlimits, oomScoreAdj', () => {
  it('runs as the configured uid, gid and additional groups', async () => {
    const r = await suite.sh('id -u; id -g; id -G', {
      process: { user: { uid: 1234, gid: 5678, additionalGids: [5678, 91, 92] } },
    });
    expect(r.stdout).toBe('1234\n5678\n5678 91 92\n');
  });

  it('sets rlimits, and refuses one above the hard limit with a clear error', async () => {
    const r = await suite.sh('ulimit -n; ulimit -Hn', {
      process: { rlimits: [{ type: 'RLIMIT_NOFILE', soft: 321, hard: 654 }] },
    });
    expect(r.stdout).toBe('321\n654\n');
    const bad = await suite.sh('true', {
      process: { rlimits: [{ type: 'RLIMIT_NOFILE', soft: 5, hard: 3 }] },
    });
    expect(bad.stderr).toContain('process.rlimits[0]: soft limit 5 exceeds hard 3');
  });

  it('sets oom_score_adj', async () => {
    const r = await suite.sh('cat /proc/self/oom_score_adj', { process: { oomScoreAdj: 123 } });
    expect(r.stdout).toBe('123\n');
  });
});

describe('CVE-2019-5736: the runtime binary', () => {
  it('is a sealed memfd copy while a container runs, never the host file', async () => {
    const b = await suite.bundleFor('echo ready; sleep 1000');
    const child = suite.rt.spawn(['run', '-b', b.dir, b.id]);
    const done = finished(child);
    await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
    const exe = readlinkSync(`/proc/${child.pid}/exe`);
    expect(exe).toMatch(/^\/memfd:conductor-runtime/);
    // Writable opens of the sealed copy fail (ETXTBSY while running; EPERM by the seals).
    expect(() => openSync(`/proc/${child.pid}/exe`, 'r+')).toThrow(/ETXTBSY|EPERM/);
    // ...and the host binary is not what the process maps.
    const maps = readFileSync(`/proc/${child.pid}/maps`, 'utf8');
    expect(maps).not.toContain('build/Release/conductor-runtime');
    await suite.rt.ok(['kill', b.id, 'KILL']);
    await done;
  });
});
