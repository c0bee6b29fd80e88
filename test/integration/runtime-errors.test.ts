/**
 * Bad input to conductor-runtime: a clear error naming the file and field, exit code 1, and
 * nothing left behind — no state, no cgroup, no process, no mount.
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs';

import { describe, expect, it } from '@jest/globals';

import { listCgroups, type Bundle } from '../fixtures/index.js';
import { runtimeSuite } from '../fixtures/runtime.js';

const suite = runtimeSuite('re');

/** Creates with a config edited by `edit` and expects a failure mentioning `message`. */
async function expectCreateError(
  edit: (config: Record<string, unknown>, b: Bundle) => void,
  message: string,
): Promise<void> {
  const b = await suite.bundle({});
  const config = b.config as unknown as Record<string, unknown>;
  edit(config, b);
  // Written as is: Bundle.writeConfig() would put root.path back.
  writeFileSync(b.configPath, JSON.stringify(config));
  const r = await suite.rt.run(['create', '--bundle', b.dir, b.id]);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain(message);
  // Nothing half-made: no state directory, no cgroup with this id.
  expect(readdirSync(suite.rt.root).filter((n) => n === b.id)).toEqual([]);
  expect(listCgroups().filter((c) => c.endsWith(`/${b.id}`))).toEqual([]);
}

describe('invalid config.json', () => {
  it('reports invalid JSON with the file name', async () => {
    const b = await suite.bundle({});
    writeFileSync(b.configPath, '{"ociVersion": "1.0.2", ');
    const r = await suite.rt.run(['create', '-b', b.dir, b.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${b.configPath}: invalid JSON`);
  });

  it('names a missing required field', async () => {
    await expectCreateError((c) => delete c.root, 'config.json: root: required');
  });

  it('names a field of the wrong type, with its index', async () => {
    await expectCreateError(
      (c) => ((c.process as Record<string, unknown>).args = ['/bin/sh', 7]),
      'process.args[1]: must be a string',
    );
  });

  it('refuses fields it does not support rather than ignoring them', async () => {
    await expectCreateError(
      (c) =>
        ((c.linux as Record<string, unknown>).namespaces = [{ type: 'mount' }, { type: 'time' }]),
      'linux.namespaces[1].type: `time` namespaces are not supported',
    );
    await expectCreateError(
      (c) => ((c.linux as Record<string, unknown>).intelRdt = { closID: 'x' }),
      'linux.intelRdt: not supported by conductor-runtime',
    );
    await expectCreateError(
      (c) => ((c.process as Record<string, unknown>).terminal = true),
      'process.terminal: true is not supported',
    );
    await expectCreateError(
      (c) => ((c.linux as Record<string, unknown>).sysctl = { 'kernel.hostname': 'x' }),
      'linux.sysctl.kernel.hostname: not a namespaced sysctl',
    );
  });

  it('rejects a missing rootfs', async () => {
    await expectCreateError(
      (c) => ((c.root as Record<string, unknown>).path = '/nonexistent/rootfs'),
      'root.path `/nonexistent/rootfs`: ENOENT',
    );
  });

  it('rejects an invalid container id', async () => {
    const b = await suite.bundle({});
    const r = await suite.rt.run(['create', '-b', b.dir, '../escape']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('invalid container id `../escape`');
    expect(existsSync(`${suite.rt.root}/../escape`)).toBe(false);
  });
});

describe('failures inside the container init', () => {
  it('report the failing step and unwind everything', async () => {
    await expectCreateError(
      (c) =>
        (c.mounts as unknown[]).push({
          destination: '/data',
          type: 'bind',
          source: '/nonexistent/source',
          options: ['bind'],
        }),
      'bind mount source `/nonexistent/source`: ENOENT',
    );
  });

  it('report a program that does not exist at create, not later', async () => {
    await expectCreateError(
      (c) => ((c.process as Record<string, unknown>).args = ['no-such-program']),
      'exec `no-such-program`: executable file not found in $PATH',
    );
  });
});
