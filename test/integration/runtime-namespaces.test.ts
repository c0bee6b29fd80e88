/**
 * Namespaces joined by path, the cgroup namespace, mount propagation, linux.devices and
 * namespaced sysctls.
 */
import { mkdirSync, readlinkSync, rmdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

import { describe, expect, it } from '@jest/globals';

import { runtimeSuite } from '../fixtures/runtime.js';

const suite = runtimeSuite('rn');

describe('namespaces joined by path', () => {
  it("shares the first container's pid, network, ipc and uts namespaces", async () => {
    const first = await suite.bundleFor('sleep 1000', { hostname: 'shared-host' });
    await suite.rt.ok(['run', '-d', '-b', first.dir, first.id]);
    const { pid } = await suite.rt.state(first.id);
    const ns = (t: string): string => `/proc/${pid}/ns/${t}`;
    const second = await suite.bundleFor(
      'hostname; for t in net ipc pid; do readlink /proc/self/ns/$t; done; echo $$',
      {
        linux: {
          namespaces: [
            { type: 'pid', path: ns('pid') },
            { type: 'network', path: ns('net') },
            { type: 'ipc', path: ns('ipc') },
            { type: 'uts', path: ns('uts') },
            { type: 'mount' },
          ],
        },
      },
    );
    // A hostname would be set in the joined uts namespace (as runc does): keep the first's.
    delete second.config.hostname;
    await second.writeConfig();
    const r = await suite.rt.run(['run', '-b', second.dir, second.id]);
    expect(r.stderr).toBe('');
    const [host, net, ipc, pidns, mypid] = r.stdout.trim().split('\n');
    expect(host).toBe('shared-host');
    expect(net).toBe(readlinkSync(ns('net')));
    expect(ipc).toBe(readlinkSync(ns('ipc')));
    expect(pidns).toBe(readlinkSync(ns('pid')));
    expect(mypid).not.toBe('1'); // the first container's init is 1 in that namespace
    await suite.rt.ok(['delete', '--force', first.id]);
  });

  it('names the namespace path it could not join', async () => {
    const b = await suite.bundleFor('true', {
      linux: {
        namespaces: [{ type: 'network', path: '/proc/999999999/ns/net' }, { type: 'mount' }],
      },
    });
    delete b.config.hostname;
    await b.writeConfig();
    const r = await suite.rt.run(['run', '-b', b.dir, b.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('linux.namespaces network: open `/proc/999999999/ns/net`: ENOENT');
  });
});

describe('cgroup namespace', () => {
  it('shows the container its own cgroup as the root', async () => {
    const r = await suite.sh('cat /proc/self/cgroup', {
      linux: {
        namespaces: [
          { type: 'pid' },
          { type: 'uts' },
          { type: 'mount' },
          { type: 'ipc' },
          { type: 'network' },
          { type: 'cgroup' },
        ],
      },
    });
    const paths = r.stdout
      .trim()
      .split('\n')
      .filter((l) => /memory|pids|^0::/.test(l))
      .map((l) => l.slice(l.lastIndexOf(':') + 1));
    expect(paths.length).toBeGreaterThan(0);
    for (const p of paths) expect(p).toBe('/');
  });
});

describe('mount propagation', () => {
  it('rslave: a mount made on the host under the source later appears inside', async () => {
    const b = await suite.bundle({ rootfs: 'copy' });
    const src = `${b.dir}/prop`;
    mkdirSync(src);
    // The source must be a mount point with shared propagation to have anything to receive.
    execFileSync('mount', ['--bind', '--make-shared', src, src]);
    execFileSync('mount', ['--make-shared', src]);
    try {
      b.config.process.args = [
        '/bin/sh',
        '-c',
        'while ! test -e /prop/late/marker; do sleep 0.02; done; echo seen',
      ];
      b.config.mounts = [
        ...(b.config.mounts ?? []),
        { destination: '/prop', type: 'bind', source: src, options: ['rbind', 'rslave'] },
      ];
      await b.writeConfig();
      await suite.rt.ok(['run', '-d', '-b', b.dir, b.id]);
      mkdirSync(`${src}/late`);
      execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', `${src}/late`]);
      execFileSync('touch', [`${src}/late/marker`]);
      await suite.rt.waitFor(b.id, 'stopped');
      execFileSync('umount', [`${src}/late`]);
      rmdirSync(`${src}/late`);
      await suite.rt.ok(['delete', b.id]);
    } finally {
      execFileSync('umount', ['-l', src]);
    }
  });
});

describe('linux.devices and sysctl', () => {
  it('creates a configured device node, usable through the device cgroup', async () => {
    const r = await suite.sh('ls -l /dev/mynull | cut -c1; echo hi > /dev/mynull && echo written', {
      linux: { devices: [{ path: '/dev/mynull', type: 'c', major: 1, minor: 3, fileMode: 0o600 }] },
    });
    expect(r.stdout).toBe('c\nwritten\n');
  });

  it('sets a namespaced sysctl inside the container only', async () => {
    const caps = ['CAP_SYS_ADMIN', 'CAP_NET_ADMIN'];
    const r = await suite.sh('cat /proc/sys/net/ipv4/ip_unprivileged_port_start', {
      linux: { sysctl: { 'net.ipv4.ip_unprivileged_port_start': '80' } },
      process: { capabilities: { bounding: caps, effective: caps, permitted: caps } },
    });
    expect(r.stdout).toBe('80\n');
    expect(
      execFileSync('cat', ['/proc/sys/net/ipv4/ip_unprivileged_port_start'], { encoding: 'utf8' }),
    ).not.toBe('80\n');
  });
});
