import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  statSync,
} from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import {
  BUNDLE_ROOT,
  assertNoLeaks,
  busyboxRootfs,
  findLeaks,
  hostSnapshot,
  makeBundle,
  ociConfig,
  processInfo,
  uniqueId,
  type HostSnapshot,
} from '../fixtures/index.js';

const PREFIX = uniqueId('fx');

let before: HostSnapshot;
let runtimeRoot: string;

beforeAll(async () => {
  before = hostSnapshot();
  runtimeRoot = await mkdtemp('/tmp/conductor-fx-runc-');
});

afterAll(async () => {
  await rm(runtimeRoot, { recursive: true, force: true });
  assertNoLeaks(before, { idPrefix: PREFIX, runtimeRoots: [runtimeRoot] });
});

describe('uniqueId', () => {
  it('gives distinct ids that are valid container ids', () => {
    const ids = new Set(Array.from({ length: 200 }, () => uniqueId('x')));
    expect(ids.size).toBe(200);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/);
    expect(uniqueId(PREFIX).startsWith(`${PREFIX}-`)).toBe(true);
  });

  it('rejects a prefix that cannot start a container id', () => {
    expect(() => uniqueId('-bad')).toThrow(/invalid id/);
  });
});

describe('busyboxRootfs', () => {
  it('builds a rootfs with busybox applets, users and the usual directories', async () => {
    const rootfs = await busyboxRootfs();
    expect(await busyboxRootfs()).toBe(rootfs);
    expect(statSync(join(rootfs, 'bin/busybox')).mode & 0o111).not.toBe(0);
    for (const applet of ['sh', 'ps', 'id', 'hostname', 'sleep', 'true', 'cat']) {
      expect(readlinkSync(join(rootfs, 'bin', applet))).toBe('busybox');
    }
    const passwd = readFileSync(join(rootfs, 'etc/passwd'), 'utf8');
    expect(passwd).toMatch(/^root:x:0:0:/m);
    expect(passwd).toMatch(/^nobody:x:65534:65534:/m);
    expect(readFileSync(join(rootfs, 'etc/group'), 'utf8')).toMatch(/^root:x:0:/m);
    expect(readFileSync(join(rootfs, 'etc/hostname'), 'utf8').trim()).toBe('busybox');
    expect(statSync(join(rootfs, 'tmp')).mode & 0o7777).toBe(0o1777);
    for (const dir of ['proc', 'sys', 'dev', 'root']) {
      expect(statSync(join(rootfs, dir)).isDirectory()).toBe(true);
    }
  });

  it('runs under chroot', async () => {
    const rootfs = await busyboxRootfs();
    const r = spawnSync('chroot', [rootfs, '/bin/sh', '-c', 'id -un; echo ok'], {
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('root\nok\n');
  });
});

describe('ociConfig', () => {
  it('has sane defaults: no terminal, five namespaces, cgroupsPath from the id', () => {
    const cfg = ociConfig({}, 'abc');
    expect(cfg.process.terminal).toBe(false);
    expect(cfg.linux.namespaces?.map((n) => n.type).sort()).toEqual(
      ['ipc', 'mount', 'network', 'pid', 'uts'].sort(),
    );
    expect(cfg.linux.cgroupsPath).toBe('/conductor/abc');
    expect(cfg.mounts?.map((m) => m.destination)).toEqual([
      '/proc',
      '/dev',
      '/dev/pts',
      '/dev/shm',
      '/dev/mqueue',
      '/sys',
    ]);
    expect(cfg.linux.maskedPaths).toContain('/proc/kcore');
    expect(cfg.linux.readonlyPaths).toContain('/proc/sys');
  });

  it('merges objects and replaces arrays', () => {
    const cfg = ociConfig({
      process: { args: ['/bin/sleep', '1'], user: { uid: 65534, gid: 65534 } },
      linux: { resources: { memory: { limit: 32 << 20 } } },
    });
    expect(cfg.process.args).toEqual(['/bin/sleep', '1']);
    expect(cfg.process.user).toEqual({ uid: 65534, gid: 65534 });
    expect(cfg.process.cwd).toBe('/');
    expect(cfg.linux.resources?.memory?.limit).toBe(32 << 20);
    expect(cfg.linux.resources?.devices).toEqual([{ allow: false, access: 'rwm' }]);
    expect(ociConfig().linux.resources?.memory).toBeUndefined();
  });
});

describe('makeBundle', () => {
  it('shares the cached rootfs for a read-only root and copies it for a writable one', async () => {
    const rootfs = await busyboxRootfs();
    const ro = await makeBundle({ prefix: PREFIX });
    const rw = await makeBundle({ prefix: PREFIX, overrides: { root: { readonly: false } } });
    try {
      expect(ro.dir.startsWith(`${BUNDLE_ROOT}/${ro.id}-`)).toBe(true);
      expect(ro.rootfs).toBe(rootfs);
      const written = JSON.parse(readFileSync(ro.configPath, 'utf8')) as { root: unknown };
      expect(written.root).toEqual({ path: rootfs, readonly: true });
      expect(rw.rootfs).toBe(join(rw.dir, 'rootfs'));
      expect(readlinkSync(join(rw.rootfs, 'bin/sh'))).toBe('busybox');
      expect(lstatSync(join(rw.rootfs, 'sbin')).isSymbolicLink()).toBe(true);
      expect(statSync(join(rw.rootfs, 'tmp')).mode & 0o7777).toBe(0o1777);
    } finally {
      await ro.remove();
      await rw.remove();
    }
    expect(existsSync(ro.dir)).toBe(false);
    expect(existsSync(rw.dir)).toBe(false);
    expect(existsSync(rootfs)).toBe(true);
  });

  it('makes a bundle that runc runs', async () => {
    const id = uniqueId(PREFIX);
    const bundle = await makeBundle({
      id,
      overrides: {
        process: { args: ['/bin/sh', '-c', 'hostname; echo pid=$$; id -u'] },
        // A top-level cgroup: runc removes its leaf but never the parent (/conductor) it made.
        linux: { cgroupsPath: `/${id}` },
      },
    });
    try {
      const r = spawnSync('runc', ['--root', runtimeRoot, 'run', '-b', bundle.dir, bundle.id], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('busybox\npid=1\n0\n');
      expect(r.status).toBe(0);
    } finally {
      await bundle.remove();
    }
  });
});

describe('leak checks', () => {
  it('finds mounts, cgroups, processes and state dirs named with the prefix', async () => {
    const snap = hostSnapshot();
    const id = uniqueId(PREFIX);
    const bundle = await makeBundle({ id });
    const mnt = join(bundle.dir, 'mnt');
    mkdirSync(mnt);
    const cgroup = `/sys/fs/cgroup/pids/${id}`;
    const state = join(runtimeRoot, id);
    // argv[0] carries the id, as a shim's --id argument would.
    const sleeper = spawn('sleep', ['600'], { stdio: 'ignore', argv0: id });
    const info = processInfo(sleeper.pid ?? -1);
    try {
      expect(spawnSync('mount', ['-t', 'tmpfs', 'tmpfs', mnt]).status).toBe(0);
      mkdirSync(cgroup);
      mkdirSync(state);
      const report = findLeaks(snap, {
        idPrefix: PREFIX,
        pids: info ? [info] : [],
        runtimeRoots: [runtimeRoot],
      });
      expect(report.mounts).toEqual([mnt]);
      expect(report.cgroups).toEqual([cgroup]);
      expect(report.stateDirs).toEqual([state]);
      expect(report.processes).toHaveLength(1);
      expect(report.processes[0]).toContain(`${id} 600`);
      expect(() => assertNoLeaks(snap, { idPrefix: PREFIX, runtimeRoots: [runtimeRoot] })).toThrow(
        /mounts: .*\n.*cgroups: /,
      );
      await expect(bundle.remove()).rejects.toThrow(/still mounted/);
    } finally {
      spawnSync('umount', [mnt]);
      if (existsSync(cgroup)) rmdirSync(cgroup);
      if (existsSync(state)) rmdirSync(state);
      sleeper.kill('SIGKILL');
      await new Promise((resolve) => sleeper.once('exit', resolve));
      await bundle.remove();
    }
    expect(
      findLeaks(snap, { idPrefix: PREFIX, pids: info ? [info] : [], runtimeRoots: [runtimeRoot] }),
    ).toEqual({
      mounts: [],
      cgroups: [],
      processes: [],
      stateDirs: [],
    });
  });
});
