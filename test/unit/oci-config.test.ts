import { describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  ANNOTATION_ID,
  ANNOTATION_NAME,
  DEFAULT_CAPABILITIES,
  InvalidSpecError,
  buildOciConfig,
  defaultRlimits,
  resolveCapabilities,
  type RunSpec,
} from '../../runtime-core/src/oci-config.js';
import { convertSeccompProfile, type SeccompProfile } from '../../runtime-core/src/seccomp.js';

const host = { arch: 'amd64', kernel: '6.18.44' };
const base: RunSpec = { id: 'web-1', args: ['/bin/sh', '-c', 'true'] };
const build = (spec: Partial<RunSpec>) =>
  buildOciConfig({ ...base, ...spec }, { seccompHost: host, nofileHardLimit: 20000 });

function invalid(spec: Partial<RunSpec>): InvalidSpecError {
  try {
    build(spec);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidSpecError);
    return err as InvalidSpecError;
  }
  throw new Error(`expected ${JSON.stringify(spec)} to be rejected`);
}

describe('buildOciConfig defaults', () => {
  const cfg = build({});

  it('uses Docker’s default capabilities with empty inheritable and ambient sets', () => {
    const caps = cfg.process.capabilities;
    expect(caps.bounding).toEqual([...DEFAULT_CAPABILITIES]);
    expect(caps.effective).toEqual([...DEFAULT_CAPABILITIES]);
    expect(caps.permitted).toEqual([...DEFAULT_CAPABILITIES]);
    expect(caps.inheritable).toEqual([]);
    expect(caps.ambient).toEqual([]);
    expect(DEFAULT_CAPABILITIES).toHaveLength(14);
    expect(cfg.process.noNewPrivileges).toBe(true);
    expect(cfg.process.terminal).toBe(false);
  });

  it('masks and protects the paths runc does', () => {
    expect(cfg.linux.maskedPaths).toEqual(
      expect.arrayContaining([
        '/proc/kcore',
        '/proc/keys',
        '/proc/timer_list',
        '/sys/firmware',
        '/proc/scsi',
      ]),
    );
    expect(cfg.linux.readonlyPaths).toEqual([
      '/proc/bus',
      '/proc/fs',
      '/proc/irq',
      '/proc/sys',
      '/proc/sysrq-trigger',
    ]);
  });

  it('mounts proc, dev, devpts, shm, mqueue, sysfs and cgroup read-only where runc does', () => {
    const byDest = Object.fromEntries(cfg.mounts.map((m) => [m.destination, m]));
    expect(Object.keys(byDest)).toEqual([
      '/proc',
      '/dev',
      '/dev/pts',
      '/dev/shm',
      '/dev/mqueue',
      '/sys',
      '/sys/fs/cgroup',
    ]);
    expect(byDest['/dev/pts']?.options).toEqual(
      expect.arrayContaining(['newinstance', 'ptmxmode=0666']),
    );
    expect(byDest['/dev/shm']?.options).toContain('size=65536k');
    expect(byDest['/sys']?.options).toEqual(
      expect.arrayContaining(['ro', 'nosuid', 'noexec', 'nodev']),
    );
    expect(byDest['/sys/fs/cgroup']?.options).toContain('ro');
  });

  it('creates pid, ipc, uts, mount, network and cgroup namespaces', () => {
    expect(cfg.linux.namespaces.map((n) => n.type).sort()).toEqual(
      ['cgroup', 'ipc', 'mount', 'network', 'pid', 'uts'].sort(),
    );
  });

  it('fills in process, root, hostname, cgroupsPath, annotations and rlimits', () => {
    expect(cfg.process.args).toEqual(base.args);
    expect(cfg.process.cwd).toBe('/');
    expect(cfg.process.user).toEqual({ uid: 0, gid: 0 });
    expect(cfg.process.env).toContain(
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    );
    expect(cfg.process.env).toContain('HOSTNAME=web-1');
    expect(cfg.root).toEqual({ path: 'rootfs', readonly: false });
    expect(cfg.hostname).toBe('web-1');
    expect(cfg.linux.cgroupsPath).toBe('/conductor/web-1');
    expect(cfg.annotations[ANNOTATION_ID]).toBe('web-1');
    expect(cfg.process.rlimits).toEqual([{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 20000 }]);
    expect(cfg.linux.resources).toEqual({ devices: [{ allow: false, access: 'rwm' }] });
  });

  it('derives a valid hostname from any valid id', () => {
    expect(build({ id: 'my_app.v1' }).hostname).toBe('my-app-v1');
    expect(build({ id: 'x'.repeat(63) + '_' }).hostname).toBe('x'.repeat(63));
    expect(build({ id: 'a__' }).hostname).toBe('a');
  });

  it('never asks for a higher hard nofile limit than the host allows', () => {
    expect(defaultRlimits(512)).toEqual([{ type: 'RLIMIT_NOFILE', soft: 512, hard: 512 }]);
    expect(defaultRlimits(4_000_000)[0]?.hard).toBe(1048576);
  });

  it('converts the host’s default seccomp profile for x86-64', () => {
    const seccomp = cfg.linux.seccomp;
    expect(seccomp?.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(seccomp?.architectures).toEqual(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
    const allowed = (name: string) =>
      seccomp?.syscalls.some(
        (s) => s.action === 'SCMP_ACT_ALLOW' && s.names.includes(name) && !s.args,
      );
    expect(allowed('read')).toBe(true);
    expect(allowed('arch_prctl')).toBe(true); // includes.arches amd64
    expect(allowed('chroot')).toBe(true); // CAP_SYS_CHROOT is a default
    expect(allowed('bpf')).toBe(false); // needs CAP_SYS_ADMIN
    expect(allowed('kexec_load')).toBe(false);
    expect(allowed('s390_runtime_instr')).toBe(false);
  });
});

describe('buildOciConfig from the spec', () => {
  it('turns CPU cores into quota/period and shares', () => {
    expect(build({ resources: { cpu: 0.5 } }).linux.resources.cpu).toEqual({
      quota: 50000,
      period: 100000,
      shares: 512,
    });
    expect(build({ resources: { cpu: 2 } }).linux.resources.cpu).toEqual({
      quota: 200000,
      period: 100000,
      shares: 2048,
    });
    expect(build({ resources: { cpu: 0.25 } }).linux.resources.cpu?.quota).toBe(25000);
  });

  it('sets memory and pids limits', () => {
    const r = build({ resources: { memoryBytes: 32 * 1024 * 1024, pids: 64 } }).linux.resources;
    expect(r.memory).toEqual({ limit: 33554432 });
    expect(r.pids).toEqual({ limit: 64 });
  });

  it('places network namespaces by mode', () => {
    const net = (network: RunSpec['network']) =>
      build({ network }).linux.namespaces.filter((n) => n.type === 'network');
    expect(net({ mode: 'none' })).toEqual([{ type: 'network' }]);
    expect(net({ mode: 'bridge' })).toEqual([{ type: 'network' }]);
    expect(net({ mode: 'host' })).toEqual([]);
    expect(net({ mode: 'bridge', netnsPath: '/run/netns/x' })).toEqual([
      { type: 'network', path: '/run/netns/x' },
    ]);
  });

  it('adds and drops capabilities as Docker does', () => {
    const caps = build({
      capabilities: { add: ['net_admin', 'CAP_SYS_PTRACE'], drop: ['MKNOD', 'cap_kill'] },
    }).process.capabilities.bounding;
    expect(caps).toContain('CAP_NET_ADMIN');
    expect(caps).toContain('CAP_SYS_PTRACE');
    expect(caps).not.toContain('CAP_MKNOD');
    expect(caps).not.toContain('CAP_KILL');
    expect(resolveCapabilities(['NET_BIND_SERVICE'], ['ALL'])).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(resolveCapabilities(['ALL'], ['SYS_ADMIN'])).not.toContain('CAP_SYS_ADMIN');
    expect(resolveCapabilities(['ALL'], []).length).toBeGreaterThan(38);
  });

  it('resolves seccomp rules against the container’s capabilities', () => {
    const rulesFor = (name: string, add: string[]) =>
      build({ capabilities: { add } }).linux.seccomp?.syscalls.filter((s) =>
        s.names.includes(name),
      ) ?? [];
    // Without CAP_SYS_ADMIN the profile only has its EPERM rule for bpf; with it, only the allow rule.
    expect(rulesFor('bpf', []).map((s) => s.action)).toEqual(['SCMP_ACT_ERRNO']);
    expect(rulesFor('bpf', ['SYS_ADMIN']).map((s) => s.action)).toEqual(['SCMP_ACT_ALLOW']);
    expect(rulesFor('perf_event_open', ['SYS_ADMIN']).map((s) => s.action)).toEqual([
      'SCMP_ACT_ALLOW',
    ]);
    const withoutChroot = build({
      capabilities: { drop: ['SYS_CHROOT'] },
    }).linux.seccomp?.syscalls.filter((s) => s.names.includes('chroot'));
    expect(withoutChroot?.map((s) => [s.action, s.errnoRet])).toEqual([['SCMP_ACT_ERRNO', 1]]);
  });

  it('adds bind and tmpfs mounts after the defaults', () => {
    const dir = mkdtempSync(join(tmpdir(), 'oci-config-'));
    try {
      const cfg = build({
        mounts: [
          { type: 'bind', hostPath: dir, containerPath: '/data', readOnly: true },
          { type: 'bind', hostPath: dir, containerPath: '/rw/./x/' },
          { type: 'tmpfs', containerPath: '/scratch', sizeBytes: 1 << 20 },
        ],
      });
      const user = cfg.mounts.slice(7);
      expect(user[0]).toEqual({
        destination: '/data',
        type: 'bind',
        source: dir,
        options: ['rbind', 'ro', 'nosuid', 'nodev', 'rprivate'],
      });
      expect(user[1]?.destination).toBe('/rw/x');
      expect(user[1]?.options).toContain('rw');
      expect(user[2]).toEqual({
        destination: '/scratch',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'nodev', 'mode=1777', 'size=1048576'],
      });
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('takes user, env, cwd, hostname, read-only root and name', () => {
    const cfg = build({
      user: { uid: 1000, gid: 100, additionalGids: [5] },
      env: { FOO: 'bar=baz', PATH: '/bin' },
      workingDir: '/srv',
      hostname: 'web',
      readonlyRootfs: true,
      name: 'default/web',
    });
    expect(cfg.process.user).toEqual({ uid: 1000, gid: 100, additionalGids: [5] });
    expect(cfg.process.env).toEqual(['PATH=/bin', 'HOSTNAME=web', 'FOO=bar=baz']);
    expect(cfg.process.cwd).toBe('/srv');
    expect(cfg.hostname).toBe('web');
    expect(cfg.root.readonly).toBe(true);
    expect(cfg.annotations[ANNOTATION_NAME]).toBe('default/web');
  });
});

describe('buildOciConfig validation names the field', () => {
  it.each<[string, Partial<RunSpec>, RegExp]>([
    ['id', { id: '-bad' }, /^invalid container spec: id: /],
    ['id', { id: 'a'.repeat(65) }, /id: must match/],
    ['id', { id: 'a/b' }, /id: /],
    ['args', { args: [] }, /args: must be a non-empty array/],
    ['env.A=B', { env: { 'A=B': 'x' } }, /env\.A=B: name/],
    ['workingDir', { workingDir: 'srv' }, /workingDir: must be an absolute path/],
    ['workingDir', { workingDir: '/srv/../etc' }, /workingDir: must not contain "\.\."/],
    ['hostname', { hostname: 'under_score' }, /hostname: /],
    ['user.uid', { user: { uid: -1, gid: 0 } }, /user\.uid: /],
    ['resources.cpu', { resources: { cpu: 0 } }, /resources\.cpu: must be a positive number/],
    ['resources.cpu', { resources: { cpu: 0.001 } }, /resources\.cpu: must be at least/],
    [
      'resources.memoryBytes',
      { resources: { memoryBytes: 1.5 } },
      /resources\.memoryBytes: must be a positive integer/,
    ],
    ['resources.pids', { resources: { pids: 0 } }, /resources\.pids: /],
    [
      'capabilities.add[0]',
      { capabilities: { add: ['NOT_A_CAP'] } },
      /capabilities\.add\[0\]: unknown capability/,
    ],
    ['privileged', { privileged: true }, /privileged: privileged containers are not supported/],
    ['network.mode', { network: { mode: 'weird' as 'none' } }, /network\.mode: /],
    [
      'mounts[0].containerPath',
      { mounts: [{ type: 'tmpfs', containerPath: '/a/../../etc' }] },
      /mounts\[0\]\.containerPath: must not contain "\.\."/,
    ],
    [
      'mounts[0].containerPath',
      { mounts: [{ type: 'tmpfs', containerPath: 'rel' }] },
      /mounts\[0\]\.containerPath: must be an absolute path/,
    ],
    [
      'mounts[0].containerPath',
      { mounts: [{ type: 'tmpfs', containerPath: '/proc/sys' }] },
      /under \/proc/,
    ],
    [
      'mounts[0].hostPath',
      { mounts: [{ type: 'bind', hostPath: '/nonexistent/conductor-test', containerPath: '/x' }] },
      /mounts\[0\]\.hostPath: \/nonexistent\/conductor-test: ENOENT/,
    ],
    [
      'mounts[1].containerPath',
      {
        mounts: [
          { type: 'tmpfs', containerPath: '/x' },
          { type: 'tmpfs', containerPath: '/x/' },
        ],
      },
      /mounts\[1\]\.containerPath: duplicate/,
    ],
  ])('%s', (field, spec, message) => {
    const err = invalid(spec);
    expect(err.field).toBe(field);
    expect(err.message).toMatch(message);
  });
});

describe('convertSeccompProfile', () => {
  const profile: SeccompProfile = {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: 38,
    archMap: [
      { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
      { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
    ],
    syscalls: [
      { names: ['read'], action: 'SCMP_ACT_ALLOW', args: [], includes: {}, excludes: {} },
      { names: ['only_admin'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN'] } },
      {
        names: ['not_admin'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: 1,
        excludes: { caps: ['CAP_SYS_ADMIN'] },
      },
      {
        names: ['two_caps'],
        action: 'SCMP_ACT_ALLOW',
        includes: { caps: ['CAP_SYS_ADMIN', 'CAP_KILL'] },
      },
      { names: ['arm_only'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['arm', 'arm64'] } },
      { names: ['not_amd64'], action: 'SCMP_ACT_ALLOW', excludes: { arches: ['amd64'] } },
      { names: ['new_kernel'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '6.20' } },
      { names: ['old_kernel_only'], action: 'SCMP_ACT_ALLOW', excludes: { minKernel: '5.4' } },
      {
        names: ['personality'],
        action: 'SCMP_ACT_ALLOW',
        args: [{ index: 0, value: 8, valueTwo: 0, op: 'SCMP_CMP_EQ' }],
        includes: { minKernel: '4.0' },
      },
    ],
  };
  const names = (caps: string[], h = host) =>
    convertSeccompProfile(profile, caps, h).syscalls.flatMap((s) => s.names);

  it('keeps the defaults and the native architecture with its sub-architectures', () => {
    const out = convertSeccompProfile(profile, [], host);
    expect(out.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(out.defaultErrnoRet).toBe(38);
    expect(out.architectures).toEqual(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
    expect(out.syscalls[0]).toEqual({ names: ['read'], action: 'SCMP_ACT_ALLOW' });
    expect(out.syscalls.find((s) => s.names[0] === 'personality')?.args).toEqual([
      { index: 0, value: 8, valueTwo: 0, op: 'SCMP_CMP_EQ' },
    ]);
    expect(out.syscalls.find((s) => s.names[0] === 'not_admin')?.errnoRet).toBe(1);
  });

  it('resolves includes/excludes by capability (all included caps required)', () => {
    expect(names([])).toEqual(['read', 'not_admin', 'personality']);
    expect(names(['CAP_SYS_ADMIN'])).toEqual(['read', 'only_admin', 'personality']);
    expect(names(['CAP_SYS_ADMIN', 'CAP_KILL'])).toEqual([
      'read',
      'only_admin',
      'two_caps',
      'personality',
    ]);
  });

  it('resolves by architecture and kernel version', () => {
    const arm = { arch: 'arm64', kernel: '5.3.0' };
    expect(names([], arm)).toEqual([
      'read',
      'not_admin',
      'arm_only',
      'not_amd64',
      'old_kernel_only',
      'personality',
    ]);
    expect(convertSeccompProfile(profile, [], arm).architectures).toEqual([
      'SCMP_ARCH_AARCH64',
      'SCMP_ARCH_ARM',
    ]);
    expect(names([], { arch: 'amd64', kernel: '6.20.1' })).toContain('new_kernel');
  });

  it('rejects profiles moby rejects', () => {
    expect(() =>
      convertSeccompProfile({ ...profile, architectures: ['SCMP_ARCH_X86_64'] }, [], host),
    ).toThrow(/either "architectures" or "archMap"/);
    expect(() =>
      convertSeccompProfile(
        { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ name: 'x', action: 'SCMP_ACT_ALLOW' }] },
        [],
        host,
      ),
    ).toThrow(/deprecated "name"/);
  });
});
