/**
 * The parts of the runtime-spec that the OCI validation suite (oci-validation.test.ts) checks
 * only loosely or not at all: hooks (stages, order, state, timeouts, failures), user
 * namespaces, a relative cgroupsPath, rootfsPropagation, deprecated fields, failures reported
 * by create rather than after start, and a container without a mount namespace.
 */
import { existsSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from '@jest/globals';

import {
  listCgroups,
  ociConfig,
  type Bundle,
  type DeepPartial,
  type OciSpec,
} from '../fixtures/index.js';
import { runtimeSuite } from '../fixtures/runtime.js';

const suite = runtimeSuite('ro');

/** The runtime-spec's hook stages, in the order they run. */
const HOOK_STAGES = [
  'prestart',
  'createRuntime',
  'createContainer',
  'startContainer',
  'poststart',
  'poststop',
];

interface HookLine {
  stage: string;
  mnt: string;
  state: { id: string; status: string; pid: number; bundle: string; annotations?: object };
}

/**
 * A hook that appends `<stage> <its mount namespace> <the state on its stdin>` to `log`. `sh` is
 * the host's /bin/sh, or the container's for startContainer (its path resolves in the
 * container).
 */
function logHook(stage: string, log: string, sh = '/bin/sh'): { path: string; args: string[] } {
  return {
    path: sh,
    args: [
      'sh',
      '-c',
      `printf '%s %s ' ${stage} "$(readlink /proc/self/ns/mnt)" >> ${log}; cat >> ${log}; echo >> ${log}`,
    ],
  };
}

/** The hooks' lines of `file` (a line `process` is the container's own). */
function readHookLog(file: string): HookLine[] {
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .filter((line) => line !== 'process')
    .map((line) => {
      const [stage = '', mnt = '', ...rest] = line.split(' ');
      return { stage, mnt, state: JSON.parse(rest.join(' ')) as HookLine['state'] };
    });
}

/** No state directory, no cgroup, for `b` (a create that failed unwound everything). */
function expectNothingLeft(b: Bundle): void {
  expect(listCgroups().filter((c) => c.endsWith(`/${b.id}`))).toEqual([]);
  expect(() => readFileSync(join(suite.rt.root, b.id, 'state.json'))).toThrow();
}

describe('hooks', () => {
  it('runs every stage in order, each with the state and in the namespace the spec says', async () => {
    const b = await suite.bundleFor('echo process >> /hooks.log', {
      root: { readonly: false },
      annotations: { 'org.example/a': 'b' },
    });
    const log = join(b.rootfs, 'hooks.log');
    b.config.hooks = {
      prestart: [logHook('prestart', log)],
      createRuntime: [logHook('createRuntime', log)],
      createContainer: [logHook('createContainer', log)],
      startContainer: [logHook('startContainer', '/hooks.log', '/bin/sh')],
      poststart: [logHook('poststart', log)],
      poststop: [logHook('poststop', log)],
    };
    await b.writeConfig();
    await suite.rt.ok(['create', '-b', b.dir, b.id]);
    const { pid } = await suite.rt.state(b.id);
    const containerMnt = readlinkSync(`/proc/${pid}/ns/mnt`);
    const hostMnt = readlinkSync('/proc/self/ns/mnt');
    expect(readHookLog(log).map((l) => l.stage)).toEqual([
      'prestart',
      'createRuntime',
      'createContainer',
    ]);
    await suite.rt.ok(['start', b.id]);
    await suite.rt.waitFor(b.id, 'stopped');
    await suite.rt.ok(['delete', b.id]);

    const lines = readHookLog(log);
    const stages = readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(' ')[0]);
    // The process's own line lands between startContainer and poststart or after poststart:
    // poststart waits for its execve, not for its output.
    expect(stages.filter((s) => s !== 'process')).toEqual(HOOK_STAGES);
    expect(stages.indexOf('process')).toBeGreaterThan(stages.indexOf('startContainer'));
    const byStage = new Map(lines.map((l) => [l.stage, l]));
    const status = (s: string): string | undefined => byStage.get(s)?.state.status;
    expect(status('createRuntime')).toBe('creating');
    expect(status('createContainer')).toBe('creating');
    expect(status('startContainer')).toBe('created');
    expect(status('poststart')).toBe('running');
    expect(status('poststop')).toBe('stopped');
    // pid is the container's as the host sees it, also for the hooks run inside it.
    for (const s of byStage.keys()) {
      expect(byStage.get(s)?.state).toMatchObject({
        id: b.id,
        pid,
        bundle: b.dir,
        annotations: { 'org.example/a': 'b' },
      });
    }
    for (const s of ['prestart', 'createRuntime', 'poststart', 'poststop'])
      expect(byStage.get(s)?.mnt).toBe(hostMnt); // the runtime's namespace
    expect(byStage.get('createContainer')?.mnt).toBe(containerMnt);
    expect(byStage.get('startContainer')?.mnt).toBe(containerMnt);
  });

  it('fails create when a prestart hook fails, with its output, runs poststop, leaves nothing', async () => {
    const b = await suite.bundleFor('touch /ran', { root: { readonly: false } });
    const log = join(b.rootfs, 'after.log');
    b.config.hooks = {
      prestart: [{ path: '/bin/sh', args: ['sh', '-c', 'echo no network for you >&2; exit 3'] }],
      poststop: [logHook('poststop', log)],
    };
    await b.writeConfig();
    const r = await suite.rt.run(['create', '-b', b.dir, b.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      'hooks.prestart[0]: `/bin/sh` exited with status 3: no network for you',
    );
    expectNothingLeft(b);
    expect(() => readFileSync(join(b.rootfs, 'ran'))).toThrow();
    // The lifecycle goes on at destroy and poststop, as the spec says for a failing prestart.
    expect(readHookLog(log).map((l) => [l.stage, l.state.status])).toEqual([
      ['poststop', 'stopped'],
    ]);
  });

  it('kills a hook that outlives its timeout and fails the create', async () => {
    const b = await suite.bundleFor('true');
    b.config.hooks = { createRuntime: [{ path: '/bin/sleep', args: ['sleep', '30'], timeout: 1 }] };
    await b.writeConfig();
    const started = Date.now();
    const r = await suite.rt.run(['create', '-b', b.dir, b.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('hooks.createRuntime[0]: `/bin/sleep` timed out after 1 s (killed)');
    expect(Date.now() - started).toBeLessThan(20_000);
    expectNothingLeft(b);
  });

  it('warns about a failing poststart or poststop hook and goes on, as the spec says', async () => {
    const b = await suite.bundleFor('true', { root: { readonly: false } });
    const log = join(b.rootfs, 'after.log');
    b.config.hooks = {
      poststart: [{ path: '/bin/false', args: ['false'] }, logHook('poststart', log)],
      poststop: [{ path: '/bin/false', args: ['false'] }, logHook('poststop', log)],
    };
    await b.writeConfig();
    await suite.rt.ok(['create', '-b', b.dir, b.id]);
    const start = await suite.rt.run(['start', b.id]);
    expect(start.code).toBe(0);
    expect(start.stderr).toContain(
      'warning: hooks.poststart[0]: `/bin/false` exited with status 1',
    );
    await suite.rt.waitFor(b.id, 'stopped');
    const del = await suite.rt.run(['delete', b.id]);
    expect(del.code).toBe(0);
    expect(del.stderr).toContain('warning: hooks.poststop[0]: `/bin/false` exited with status 1');
    expect(readHookLog(log).map((l) => l.stage)).toEqual(['poststart', 'poststop']);
  });

  it('refuses a hook with a relative path or an unknown stage', async () => {
    for (const [hooks, message] of [
      [
        { prestart: [{ path: 'bin/true' }] },
        'hooks.prestart[0].path: `bin/true` must be an absolute path',
      ],
      [{ prestop: [{ path: '/bin/true' }] }, 'hooks.prestop: unknown hook stage'],
      [
        { poststop: [{ path: '/bin/true', timeout: 0 }] },
        'hooks.poststop[0].timeout: must be a positive',
      ],
    ] as const) {
      const b = await suite.bundleFor('true');
      b.config.hooks = hooks;
      await b.writeConfig();
      const r = await suite.rt.run(['create', '-b', b.dir, b.id]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(message);
      expectNothingLeft(b);
    }
  });
});

describe('user namespaces', () => {
  const userns: DeepPartial<OciSpec> & { linux: NonNullable<DeepPartial<OciSpec>['linux']> } = {
    linux: {
      namespaces: [...(ociConfig().linux.namespaces ?? []), { type: 'user' }],
      uidMappings: [{ containerID: 0, hostID: 200000, size: 65536 }],
      gidMappings: [{ containerID: 0, hostID: 200000, size: 65536 }],
    },
  };

  it("runs the process as the namespace's root, an unprivileged uid on the host", async () => {
    const b = await suite.bundleFor('sleep 1000', userns);
    await suite.rt.ok(['run', '-d', '-b', b.dir, b.id]);
    const { pid } = await suite.rt.state(b.id);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    expect(/^Uid:\s+(\d+)/m.exec(status)?.[1]).toBe('200000');
    expect(/^Gid:\s+(\d+)/m.exec(status)?.[1]).toBe('200000');
    expect(readlinkSync(`/proc/${pid}/ns/user`)).not.toBe(readlinkSync('/proc/self/ns/user'));
    expect(readFileSync(`/proc/${pid}/uid_map`, 'utf8').trim().split(/\s+/)).toEqual([
      '0',
      '200000',
      '65536',
    ]);
    await suite.rt.ok(['delete', '--force', b.id]);
  });

  it('makes the default devices by binding the host nodes (mknod is not allowed there)', async () => {
    const r = await suite.sh('echo hi > /dev/null && head -c 4 /dev/zero | wc -c', userns);
    expect(r).toMatchObject({ code: 0, stdout: '4\n' });
  });

  it("shows a bind mount through the container's maps with `idmap`, as nobody's without", async () => {
    const b = await suite.bundleFor('stat -c "%u %g" /idmapped/file /plain/file', {
      ...userns,
      root: { readonly: false },
    });
    const data = join(b.dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'file'), 'x'); // owned by the host's root
    // The namespace's root cannot create them in a rootfs the host's root owns.
    for (const d of ['idmapped', 'plain']) mkdirSync(join(b.rootfs, d));
    b.config.mounts = [
      ...(b.config.mounts ?? []),
      { destination: '/idmapped', type: 'bind', source: data, options: ['bind', 'idmap'] },
      { destination: '/plain', type: 'bind', source: data, options: ['bind'] },
    ];
    await b.writeConfig();
    const r = await suite.rt.run(['run', '-b', b.dir, b.id]);
    expect(r).toMatchObject({ code: 0, stdout: '0 0\n65534 65534\n' });
  });

  it("applies a mount's own uidMappings and gidMappings, without a user namespace too", async () => {
    const b = await suite.bundleFor('stat -c "%u %g" /idmapped/file', {
      root: { readonly: false },
    });
    const data = join(b.dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'file'), 'x');
    b.config.mounts = [
      ...(b.config.mounts ?? []),
      {
        destination: '/idmapped',
        type: 'bind',
        source: data,
        options: ['bind'],
        uidMappings: [{ containerID: 0, hostID: 4242, size: 1 }],
        gidMappings: [{ containerID: 0, hostID: 4343, size: 1 }],
      },
    ];
    await b.writeConfig();
    const r = await suite.rt.run(['run', '-b', b.dir, b.id]);
    expect(r).toMatchObject({ code: 0, stdout: '4242 4343\n' });
  });

  it('needs both mappings, and mappings need a user namespace', async () => {
    const b = await suite.bundleFor('true', {
      linux: { ...userns.linux, uidMappings: [] },
    });
    let r = await suite.rt.run(['create', '-b', b.dir, b.id]);
    expect(r.stderr).toContain(
      'a new user namespace needs linux.uidMappings and linux.gidMappings',
    );
    const c = await suite.bundleFor('true', {
      linux: { uidMappings: userns.linux.uidMappings, gidMappings: userns.linux.gidMappings },
    });
    r = await suite.rt.run(['create', '-b', c.dir, c.id]);
    expect(r.stderr).toContain('linux.uidMappings: id mappings need a new user namespace');
    expectNothingLeft(b);
    expectNothingLeft(c);
  });
});

describe('cgroupsPath', () => {
  it('takes a relative path from the root of each hierarchy, as crun does', async () => {
    const b = await suite.bundleFor('cat /proc/self/cgroup');
    b.config.linux.cgroupsPath = b.id;
    await b.writeConfig();
    const r = await suite.rt.run(['run', '-b', b.dir, b.id]);
    expect(r.code).toBe(0);
    const memory = r.stdout.split('\n').find((l) => /:memory:|^0::/.test(l));
    expect(memory?.slice(memory.lastIndexOf(':') + 1)).toBe(`/${b.id}`);
    expect(listCgroups().filter((c) => c.includes(`/${b.id}`))).toEqual([]);
  });
});

describe('rootfsPropagation', () => {
  const rootLine = (mountinfo: string): string =>
    mountinfo.split('\n').find((l) => l.split(' ')[4] === '/') ?? '';

  it.each([
    ['shared', /shared:\d+/],
    ['unbindable', /unbindable/],
    ['private', /^[^:]*$/],
  ])("makes the container's / %s, without touching the host's", async (prop, want) => {
    const hostBefore = rootLine(readFileSync('/proc/self/mountinfo', 'utf8'));
    const r = await suite.sh('cat /proc/self/mountinfo', { linux: { rootfsPropagation: prop } });
    expect(r.code).toBe(0);
    // Optional fields (shared:N, master:N, unbindable) sit between field 6 and the " - ".
    const fields = rootLine(r.stdout).split(' - ')[0]?.split(' ').slice(6).join(' ') ?? '';
    expect(fields).toMatch(want);
    expect(rootLine(readFileSync('/proc/self/mountinfo', 'utf8'))).toBe(hostBefore);
  });
});

describe('fields the runtime ignores with a warning', () => {
  it('ignores linux.resources.memory.kernel and kernelTCP (deprecated) and applies the rest', async () => {
    const b = await suite.bundleFor('sleep 1000', {
      linux: { resources: { memory: { limit: 64 << 20, kernel: 32 << 20, kernelTCP: 16 << 20 } } },
    });
    const r = await suite.rt.run(['run', '-d', '-b', b.dir, b.id]);
    expect(r.stderr).toContain('warning: linux.resources.memory.kernel ignored: deprecated');
    expect(r.stderr).toContain('warning: linux.resources.memory.kernelTCP ignored: deprecated');
    expect(r.code).toBe(0);
    try {
      // The limit beside them is applied (memory.max on v2, memory.limit_in_bytes on v1).
      const v2 = `/sys/fs/cgroup/conductor/${b.id}/memory.max`;
      const limit = existsSync('/sys/fs/cgroup/cgroup.controllers')
        ? readFileSync(v2, 'utf8')
        : readFileSync(`/sys/fs/cgroup/memory/conductor/${b.id}/memory.limit_in_bytes`, 'utf8');
      expect(limit.trim()).toBe(String(64 << 20));
    } finally {
      await suite.rt.ok(['delete', '--force', b.id]);
    }
  });

  it('ignores linux.mountLabel on a host without SELinux', async () => {
    const r = await suite.sh('true', {
      linux: { mountLabel: 'system_u:object_r:container_file_t:s0' },
    });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(
      'warning: linux.mountLabel `system_u:object_r:container_file_t:s0` ignored',
    );
  });
});

describe("failures are create's, not start's", () => {
  it('reports an rlimit the kernel refuses at create, and leaves nothing', async () => {
    // A hard RLIMIT_NOFILE above fs.nr_open is refused even to root.
    const nrOpen = Number(readFileSync('/proc/sys/fs/nr_open', 'utf8'));
    const b = await suite.bundleFor('touch /ran', {
      root: { readonly: false },
      process: { rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: nrOpen + 1 }] },
    });
    const r = await suite.rt.run(['create', '-b', b.dir, b.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`process.rlimits RLIMIT_NOFILE 1024:${nrOpen + 1}`);
    expect(r.stderr).toContain('EPERM');
    expectNothingLeft(b);
  });

  it('reports a capability outside the bounding set at create', async () => {
    // One the runtime's own bounding set lacks, if this host has one; else every cap is there
    // and nothing can fail.
    const bnd = BigInt(
      `0x${/^CapBnd:\s+([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0'}`,
    );
    const names = ['CAP_SYS_RESOURCE', 'CAP_SYS_MODULE', 'CAP_SYS_TIME', 'CAP_WAKE_ALARM'];
    const numbers = [24, 16, 25, 35];
    const missing = names.find((_, i) => ((bnd >> BigInt(numbers[i] ?? 0)) & 1n) === 0n);
    if (!missing) return;
    const b = await suite.bundleFor('true', {
      process: {
        capabilities: { bounding: [missing], effective: [missing], permitted: [missing] },
      },
    });
    const r = await suite.rt.run(['create', '-b', b.dir, b.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('process.capabilities: capset: EPERM');
    expectNothingLeft(b);
  });
});

describe('a container without a mount namespace', () => {
  const noMountNs: DeepPartial<OciSpec> = {
    linux: { namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'network' }] },
  };

  it("shares the runtime's mount namespace and is only chroot'ed into its rootfs", async () => {
    const b = await suite.bundleFor('sleep 1000', noMountNs);
    delete b.config.mounts;
    delete b.config.linux.maskedPaths;
    delete b.config.linux.readonlyPaths;
    b.config.root.readonly = false;
    await b.writeConfig();
    await suite.rt.ok(['run', '-d', '-b', b.dir, b.id]);
    const { pid } = await suite.rt.state(b.id);
    expect(readlinkSync(`/proc/${pid}/ns/mnt`)).toBe(readlinkSync('/proc/self/ns/mnt'));
    expect(readlinkSync(`/proc/${pid}/root`)).toBe(b.rootfs);
    await suite.rt.ok(['delete', '--force', b.id]);
  });

  it('refuses mounts it would have to make on the host', async () => {
    const b = await suite.bundleFor('true', noMountNs);
    const r = await suite.rt.run(['create', '-b', b.dir, b.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("mounts: needs a mount namespace of the container's own");
    expectNothingLeft(b);
  });
});

describe('features', () => {
  interface Features {
    ociVersionMax: string;
    hooks: string[];
    mountOptions: string[];
    linux: {
      namespaces: string[];
      capabilities: string[];
      seccomp: { actions: string[]; operators: string[]; supportedFlags: string[] };
      mountExtensions: { idmap: { enabled: boolean } };
    };
  }
  const features = async (): Promise<Features> =>
    JSON.parse(await suite.rt.ok(['features'])) as Features;

  it('lists what the runtime supports, in the shape of runtime-spec features.md', async () => {
    const f = await features();
    expect(f.ociVersionMax).toBe('1.3.0');
    expect(f.hooks).toEqual(HOOK_STAGES);
    expect([...f.linux.namespaces].sort()).toEqual(
      ['cgroup', 'ipc', 'mount', 'network', 'pid', 'user', 'uts'].sort(),
    );
    expect(f.linux.capabilities).toContain('CAP_CHECKPOINT_RESTORE');
    expect(f.linux.mountExtensions.idmap.enabled).toBe(true);
    expect(f.mountOptions).toEqual(expect.arrayContaining(['idmap', 'rbind', 'ro', 'rshared']));
  });

  it('accepts every seccomp action, operator and flag it lists', async () => {
    const { seccomp } = (await features()).linux;
    // Syscalls a `true` never makes, one per action, so none of the actions fires.
    const unused = [
      'acct',
      'kexec_load',
      'swapon',
      'swapoff',
      'reboot',
      'init_module',
      'delete_module',
      'syslog',
      'pivot_root',
      'quotactl',
    ];
    const r = await suite.sh('true', {
      linux: {
        seccomp: {
          defaultAction: 'SCMP_ACT_ALLOW',
          flags: seccomp.supportedFlags,
          syscalls: [
            ...seccomp.actions.map((action, i) => ({ names: [unused[i] ?? 'acct'], action })),
            ...seccomp.operators.map((op) => ({
              names: ['personality'],
              action: 'SCMP_ACT_ERRNO',
              args: [{ index: 0, value: 0xdead, valueTwo: 0xdead, op }],
            })),
          ],
        },
      },
    });
    expect(r).toMatchObject({ code: 0, stderr: '' });
  });
});
