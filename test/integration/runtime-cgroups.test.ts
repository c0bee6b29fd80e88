/**
 * linux.resources on this hybrid host (v1 controllers + a cgroup2 mount): memory limit and OOM
 * kill, pids limit, CPU quota; and the v2 backend's files, written into a stand-in cgroup2 tree
 * (CONDUCTOR_CGROUP_ROOT/MODE) so the v2 path is exercised without a v2 host.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from '@jest/globals';

import { FIXTURE_ROOT, listCgroups } from '../fixtures/index.js';
import { RUNTIME, runtimeSuite } from '../fixtures/runtime.js';

const suite = runtimeSuite('rc');
const PREFIX = suite.prefix;

const v1 = (controller: string, id: string, file: string): string =>
  `/sys/fs/cgroup/${controller}/conductor/${id}/${file}`;

function keyed(text: string, key: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${key} `));
  return Number(line?.split(' ')[1] ?? NaN);
}

describe('memory', () => {
  it('OOM-kills a process over the limit: 137, and the cgroup counts the kill', async () => {
    // busybox tail buffers a "line" of /dev/zero without end.
    const limits = { linux: { resources: { memory: { limit: 32 * 1024 * 1024 } } } };
    const b = await suite.bundleFor('tail /dev/zero', limits);
    await suite.rt.ok(['create', '-b', b.dir, b.id]);
    expect(readFileSync(v1('memory', b.id, 'memory.limit_in_bytes'), 'utf8').trim()).toBe(
      String(32 * 1024 * 1024),
    );
    await suite.rt.ok(['start', b.id]);
    await suite.rt.waitFor(b.id, 'stopped');
    const oom = readFileSync(v1('memory', b.id, 'memory.oom_control'), 'utf8');
    expect(keyed(oom, 'oom_kill')).toBeGreaterThan(0);
    await suite.rt.ok(['delete', b.id]);

    const fg = await suite.bundleFor('tail /dev/zero', limits);
    expect((await suite.rt.run(['run', '-b', fg.dir, fg.id])).code).toBe(137);
  });
});

describe('pids', () => {
  it('stops fork at pids.limit', async () => {
    const b = await suite.bundleFor('for i in $(seq 20); do sleep 5 & done; echo done', {
      linux: { resources: { pids: { limit: 8 } } },
    });
    const r = await suite.rt.run(['run', '-b', b.dir, b.id]);
    expect(r.stderr).toMatch(/can't fork|Resource temporarily unavailable/);
  });
});

describe('cpu', () => {
  it('holds a busy loop to a 50% quota of one core, within a tolerance', async () => {
    const b = await suite.bundleFor('while :; do :; done', {
      linux: { resources: { cpu: { quota: 50000, period: 100000, shares: 512 } } },
    });
    await suite.rt.ok(['run', '-d', '-b', b.dir, b.id]);
    expect(readFileSync(v1('cpu', b.id, 'cpu.cfs_quota_us'), 'utf8').trim()).toBe('50000');
    expect(readFileSync(v1('cpu', b.id, 'cpu.shares'), 'utf8').trim()).toBe('512');
    // cpuacct.usage over wall time: the seed's cgroup lesson. Measured over 2 s; the
    // tolerance is wide because CI machines are noisy, but 100% (no limit) is far outside it.
    const usage = (): bigint =>
      BigInt(readFileSync(v1('cpuacct', b.id, 'cpuacct.usage'), 'utf8').trim());
    await new Promise((r) => setTimeout(r, 300));
    const u0 = usage();
    const t0 = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, 2000));
    const share = Number(usage() - u0) / Number(process.hrtime.bigint() - t0);
    expect(share).toBeGreaterThan(0.3);
    expect(share).toBeLessThan(0.6);
    await suite.rt.ok(['delete', '--force', b.id]);
  });
});

describe('devices', () => {
  const caps = ['CAP_MKNOD', 'CAP_DAC_OVERRIDE'];
  const attached = (id: string): string =>
    execFileSync('bpftool', ['cgroup', 'show', `/sys/fs/cgroup/unified/conductor/${id}`], {
      encoding: 'utf8',
    });

  it('on request, also attaches the v2 eBPF device filter on this hybrid host, and it denies', async () => {
    const b = await suite.bundleFor('sleep 1000', {
      annotations: { 'conductor.dev/device-filter': 'ebpf' },
      process: { capabilities: { bounding: caps, effective: caps, permitted: caps } },
    });
    await suite.rt.ok(['run', '-d', '-b', b.dir, b.id]);
    expect(attached(b.id)).toMatch(/\bcgroup_device\b|\bdevice\b/);
    const out = await suite.rt.ok([
      'exec',
      b.id,
      '--',
      'sh',
      '-c',
      'mknod /dev/hostdisk b 8 0 2>&1; echo rc=$?',
    ]);
    expect(out).toMatch(/Operation not permitted\nrc=1/);
    await suite.rt.ok(['delete', '--force', b.id]);
  });

  it('by default leaves device rules to the v1 controller (no eBPF program)', async () => {
    const b = await suite.bundleFor('sleep 1000');
    await suite.rt.ok(['run', '-d', '-b', b.dir, b.id]);
    expect(attached(b.id).trim()).toBe('');
    await suite.rt.ok(['delete', '--force', b.id]);
  });
});

describe('blockIO', () => {
  // A whole disk of this machine (throttles take disks, not partitions), as major:minor.
  const disk = readdirSync('/sys/block')
    .filter((d) => !/^(loop|ram|zram|dm-|sr)/.test(d))
    .map((d) => readFileSync(`/sys/block/${d}/dev`, 'utf8').trim())[0];
  const pureV2 = existsSync('/sys/fs/cgroup/cgroup.controllers');

  it('throttles reads and writes of a disk (blkio.throttle.* on v1, io.max on v2)', async () => {
    if (!disk) return; // no block device at all: nothing to throttle
    const [major = 0, minor = 0] = disk.split(':').map(Number);
    const b = await suite.bundleFor('sleep 1000', {
      linux: {
        resources: {
          blockIO: {
            throttleReadBpsDevice: [{ major, minor, rate: 1048576 }],
            throttleWriteIOPSDevice: [{ major, minor, rate: 100 }],
          },
        },
      },
    });
    await suite.rt.ok(['run', '-d', '-b', b.dir, b.id]);
    try {
      if (pureV2) {
        const io = readFileSync(`/sys/fs/cgroup/conductor/${b.id}/io.max`, 'utf8');
        expect(io).toContain(`${disk} rbps=1048576 wbps=max riops=max wiops=100`);
      } else {
        expect(readFileSync(v1('blkio', b.id, 'blkio.throttle.read_bps_device'), 'utf8')).toBe(
          `${disk} 1048576\n`,
        );
        expect(readFileSync(v1('blkio', b.id, 'blkio.throttle.write_iops_device'), 'utf8')).toBe(
          `${disk} 100\n`,
        );
      }
    } finally {
      await suite.rt.ok(['delete', '--force', b.id]);
    }
  });

  it('applies a weight where the I/O scheduler has weights, and otherwise says so at create', async () => {
    const b = await suite.bundleFor('sleep 1000', {
      linux: { resources: { blockIO: { weight: 300 } } },
    });
    const r = await suite.rt.run(['run', '-d', '-b', b.dir, b.id]);
    if (r.code !== 0) {
      // No weight file in the container's cgroup: the field is named, nothing is left.
      expect(r.stderr).toContain('cannot apply linux.resources.blockIO.weight');
      expect(listCgroups().filter((c) => c.endsWith(`/${b.id}`))).toEqual([]);
      return;
    }
    try {
      const dir = pureV2
        ? `/sys/fs/cgroup/conductor/${b.id}`
        : `/sys/fs/cgroup/blkio/conductor/${b.id}`;
      // io.weight takes 1..10000 (300 → 2930, runc's conversion); the others blkio's 10..1000.
      const [file, want] = pureV2
        ? existsSync(join(dir, 'io.weight'))
          ? ['io.weight', 'default 2930']
          : ['io.bfq.weight', 'default 300']
        : existsSync(join(dir, 'blkio.weight'))
          ? ['blkio.weight', '300']
          : ['blkio.bfq.weight', '300'];
      expect(readFileSync(join(dir, file), 'utf8')).toContain(want);
    } finally {
      await suite.rt.ok(['delete', '--force', b.id]);
    }
  });

  it('refuses a weight out of range, naming the field', async () => {
    const b = await suite.bundleFor('true', { linux: { resources: { blockIO: { weight: 5 } } } });
    const r = await suite.rt.run(['create', '-b', b.dir, b.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('linux.resources.blockIO.weight: must be within 10..1000');
  });
});

describe('cgroup v2 backend (stand-in tree)', () => {
  it('writes memory.max, cpu.max, cpu.weight, pids.max, io.weight and io.max, and removes the cgroup', async () => {
    const tree = mkdtempSync(join(FIXTURE_ROOT, `${PREFIX}-v2-`));
    const b = await suite.bundleFor('true', {
      linux: {
        resources: {
          memory: { limit: 64 * 1024 * 1024 },
          cpu: { quota: 25000, period: 100000, shares: 1024 },
          pids: { limit: 10 },
          blockIO: {
            weight: 500,
            throttleReadBpsDevice: [{ major: 254, minor: 0, rate: 1048576 }],
          },
        },
      },
    });
    // No device rules: on v2 they are an eBPF program, which needs a real cgroup2 directory.
    delete b.config.linux.resources?.devices;
    await b.writeConfig();
    const dir = join(tree, 'conductor', b.id);
    mkdirSync(dir, { recursive: true });
    const files = [
      'cgroup.procs',
      'memory.max',
      'cpu.max',
      'cpu.weight',
      'pids.max',
      'io.weight',
      'io.max',
    ];
    for (const f of files) writeFileSync(join(dir, f), '');
    writeFileSync(join(tree, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
    writeFileSync(join(tree, 'cgroup.subtree_control'), '');
    const env = { ...process.env, CONDUCTOR_CGROUP_ROOT: tree, CONDUCTOR_CGROUP_MODE: 'v2' };
    const runtime = (args: string[]): Promise<number | null> =>
      new Promise((resolve) => {
        const child = spawn(RUNTIME, ['--root', suite.rt.root, ...args], { env, stdio: 'ignore' });
        child.on('exit', (code) => resolve(code));
      });
    try {
      expect(await runtime(['create', '-b', b.dir, b.id])).toBe(0);
      const read = (f: string): string => readFileSync(join(dir, f), 'utf8').trim();
      expect(read('memory.max')).toBe(String(64 * 1024 * 1024));
      expect(read('cpu.max')).toBe('25000 100000');
      expect(read('cpu.weight')).toBe('39'); // runc's conversion of 1024 shares
      expect(read('pids.max')).toBe('10');
      expect(read('io.weight')).toBe('default 4950'); // runc's conversion of blkio weight 500
      expect(read('io.max')).toBe('254:0 rbps=1048576');
      expect(readFileSync(join(tree, 'cgroup.subtree_control'), 'utf8')).toMatch(/\+/);
      // A stand-in tree cannot hold processes: empty its files so delete can rmdir like on v2.
      for (const f of files) rmSync(join(dir, f));
      expect(await runtime(['delete', '--force', b.id])).toBe(0);
      expect(() => readFileSync(join(tree, 'conductor'))).toThrow(/ENOENT/);
    } finally {
      rmSync(tree, { recursive: true, force: true });
    }
  });
});
