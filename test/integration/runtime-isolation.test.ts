/**
 * What a container sees: its own PID 1 and processes, hostname, root filesystem, the mounts the
 * config names, the default devices, masked and read-only paths.
 */
import { writeFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';

import { describe, expect, it } from '@jest/globals';

import { ociConfig, type OciMount } from '../fixtures/index.js';
import { runtimeSuite } from '../fixtures/runtime.js';

const suite = runtimeSuite('ri');
const ociConfigMounts = (): OciMount[] | undefined => ociConfig().mounts;
const PREFIX = suite.prefix;

describe('pid namespace', () => {
  it('runs the process as PID 1 and shows only the container processes in /proc', async () => {
    const r = await suite.sh(
      'echo $$; sleep 10 & ls /proc | grep -E "^[0-9]+$" | sort -n | tr "\\n" " "; kill %1',
    );
    expect(r.code).toBe(0);
    const [pid, procs] = r.stdout.split('\n');
    expect(pid).toBe('1');
    // sh (1), sleep, ls, grep, sort, tr: a handful of small numbers, nothing from the host.
    const pids = (procs ?? '').trim().split(' ').map(Number);
    expect(pids[0]).toBe(1);
    expect(pids.length).toBeLessThan(10);
    expect(Math.max(...pids)).toBeLessThan(20);
  });
});

describe('uts namespace', () => {
  it('has its own hostname and does not change the host', async () => {
    const caps = ['CAP_SYS_ADMIN'];
    const r = await suite.sh('hostname; hostname changed-inside; hostname', {
      hostname: 'box-one',
      process: { capabilities: { bounding: caps, effective: caps, permitted: caps } },
    });
    expect(r.stdout).toBe('box-one\nchanged-inside\n');
    expect(hostname()).not.toBe('changed-inside');
  });
});

describe('root filesystem', () => {
  it('shows the rootfs, not the host, after pivot_root', async () => {
    const marker = `/tmp/${PREFIX}-host-only`;
    writeFileSync(marker, 'host');
    try {
      const r = await suite.sh(
        `test -e ${marker} && echo visible || echo invisible; ls /; cat /proc/self/mountinfo | awk '$5 == "/" {print $4}'`,
      );
      expect(r.stdout.split('\n')[0]).toBe('invisible');
      expect(r.stdout).toContain('bin\ndev\netc\n');
      expect(r.stdout).not.toContain('home\n');
      // The root mount's root is the rootfs directory, not the host's /.
      expect(r.stdout.trim().split('\n').pop()).not.toBe('/');
    } finally {
      rmSync(marker);
    }
  });

  it('makes the root read-only when root.readonly is set', async () => {
    const r = await suite.sh('touch /x 2>&1; echo $?');
    expect(r.stdout).toContain('Read-only file system');
    const rw = await suite.sh('touch /x && echo ok', { root: { path: 'rootfs', readonly: false } });
    expect(rw.stdout).toBe('ok\n');
  });
});

describe('mounts', () => {
  it('mounts proc, sysfs (ro), /dev tmpfs, devpts, shm and mqueue as configured', async () => {
    const r = await suite.sh('cat /proc/mounts');
    const mounts = new Map(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => l.split(' '))
        .map(([, dest, type, opts]) => [dest, { type, opts: (opts ?? '').split(',') }]),
    );
    expect(mounts.get('/proc')?.type).toBe('proc');
    expect(mounts.get('/sys')).toMatchObject({ type: 'sysfs' });
    expect(mounts.get('/sys')?.opts).toEqual(
      expect.arrayContaining(['ro', 'nosuid', 'nodev', 'noexec']),
    );
    expect(mounts.get('/dev')?.type).toBe('tmpfs');
    expect(mounts.get('/dev/pts')?.type).toBe('devpts');
    expect(mounts.get('/dev/shm')?.opts).toEqual(
      expect.arrayContaining(['nosuid', 'nodev', 'noexec']),
    );
    expect(mounts.get('/dev/mqueue')?.type).toBe('mqueue');
  });

  it("mounts the container's own cgroups read-only at /sys/fs/cgroup", async () => {
    const r = await suite.sh(
      'cat /sys/fs/cgroup/pids/pids.max; ls /sys/fs/cgroup/memory/memory.limit_in_bytes; echo 1 > /sys/fs/cgroup/pids/pids.max 2>&1; echo rc=$?',
      {
        linux: { resources: { pids: { limit: 42 } } },
        mounts: [
          ...(ociConfigMounts() ?? []),
          { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro'] },
        ],
      },
    );
    expect(r.stdout).toBe('42\n/sys/fs/cgroup/memory/memory.limit_in_bytes\nrc=1\n');
    expect(r.stderr).toContain('Read-only file system');
  });

  it('bind mounts a host directory read-only, and read-write', async () => {
    const b = await suite.bundle({ rootfs: 'copy' });
    const dir = `${b.dir}/shared`;
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir);
    writeFileSync(`${dir}/hello`, 'from host\n');
    b.config.process.args = [
      '/bin/sh',
      '-c',
      'cat /ro/hello; touch /ro/x 2>&1; echo inside > /rw/new; cat /rw/new',
    ];
    b.config.mounts = [
      ...(b.config.mounts ?? []),
      {
        destination: '/ro',
        type: 'bind',
        source: dir,
        options: ['rbind', 'ro', 'nosuid', 'nodev'],
      },
      { destination: '/rw', type: 'bind', source: dir, options: ['bind', 'rw'] },
    ];
    await b.writeConfig();
    const r = await suite.rt.run(['run', '-b', b.dir, b.id]);
    expect(r.stdout).toMatch(/^from host\n.*Read-only file system\ninside\n$/s);
  });

  it('never lets a symlink in the rootfs aim a mount at the host', async () => {
    const b = await suite.bundle({ rootfs: 'copy' });
    const { symlinkSync } = await import('node:fs');
    // /evil -> /tmp/<prefix>-escape: resolved inside the rootfs, not on the host.
    const hostTarget = `/tmp/${PREFIX}-escape`;
    symlinkSync(hostTarget, `${b.rootfs}/evil`);
    b.config.process.args = [
      '/bin/sh',
      '-c',
      `test -d /tmp${hostTarget.slice(4)} && echo contained`,
    ];
    b.config.mounts = [
      ...(b.config.mounts ?? []),
      { destination: '/evil', type: 'tmpfs', source: 'tmpfs' },
    ];
    await b.writeConfig();
    const r = await suite.rt.run(['run', '-b', b.dir, b.id]);
    expect(r).toMatchObject({ code: 0, stdout: 'contained\n', stderr: '' });
    const { existsSync } = await import('node:fs');
    expect(existsSync(hostTarget)).toBe(false);
  });
});

describe('/dev', () => {
  it('creates the default devices and /dev/fd links', async () => {
    const r = await suite.sh(
      'echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c && ls -l /dev/fd /dev/ptmx /dev/stdin | sed "s/.*-> //"',
    );
    expect(r.stdout).toBe('4\n4\n/proc/self/fd\npts/ptmx\n/proc/self/fd/0\n');
  });

  it('denies devices the config does not allow, even with CAP_MKNOD', async () => {
    const caps = ['CAP_MKNOD', 'CAP_DAC_OVERRIDE'];
    const r = await suite.sh(
      'mknod /dev/hostdisk b 8 0 && head -c 1 /dev/hostdisk > /dev/null; echo rc=$?',
      {
        process: { capabilities: { bounding: caps, effective: caps, permitted: caps } },
      },
    );
    expect(r.stdout).toContain('rc=1');
    expect(r.stderr).toMatch(/Operation not permitted/);
  });
});

describe('masked and read-only paths', () => {
  it('hides masked paths and refuses writes to read-only ones', async () => {
    // /proc/timer_list has content on the host; masked, it reads as empty (/dev/null).
    const r = await suite.sh(
      'wc -c < /proc/timer_list; ls /proc/acpi | wc -l; echo 1 > /proc/sys/kernel/domainname 2>&1; echo rc=$?; echo 1 > /proc/sysrq-trigger; echo rc=$?',
    );
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('0');
    expect(lines[1]).toBe('0');
    expect(r.stdout).not.toContain('rc=0');
    expect(r.stderr).toContain('Read-only file system');
  });
});

describe('network namespace', () => {
  it('has only a loopback device, up (127.0.0.1 works inside)', async () => {
    const r = await suite.sh(
      'ls /sys/class/net; cat /sys/class/net/lo/flags; nc -l -p 7000 -e echo pong & sleep 0.2; nc 127.0.0.1 7000 </dev/null',
    );
    // IFF_UP | IFF_LOOPBACK
    expect(r.stdout).toBe('lo\n0x9\npong\n');
  });
});
