/**
 * One container-id rule: the native core validates it (common/container_id.h, used by
 * conductor-runtime and conductor-shim), TypeScript derives ids that pass
 * (runtime-core/src/container-id.ts). Both binaries and the TS pattern must decide alike for
 * every id here, and every id containerIdFor derives — long names included — must pass them.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from '@jest/globals';

import {
  CONTAINER_ID_PATTERN,
  containerIdFor,
  isValidContainerId,
} from '../../runtime-core/src/container-id.js';
import { buildOutput } from '../../runtime-core/src/paths.js';
import { FIXTURE_ROOT } from '../fixtures/rootfs.js';

const root = mkdtempSync(join(FIXTURE_ROOT, 'cid-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** What conductor-runtime says of the id: refused as invalid, or accepted (no such container). */
function runtimeAccepts(id: string): boolean {
  const r = spawnSync(buildOutput('conductor-runtime'), ['--root', root, 'state', id], {
    encoding: 'utf8',
  });
  if (/invalid container id/.test(r.stderr)) return false;
  expect(r.stderr).toMatch(/does not exist/);
  return true;
}

/** What conductor-shim says: invalid id, or past the id check (its --dir does not exist). */
function shimAccepts(id: string): boolean {
  const missing = join(root, 'missing');
  const r = spawnSync(
    buildOutput('conductor-shim'),
    [
      '--id',
      id,
      '--bundle',
      missing,
      '--dir',
      missing,
      '--runtime',
      '/bin/false',
      '--runtime-root',
      root,
    ],
    { encoding: 'utf8' },
  );
  if (/invalid container id/.test(r.stdout)) return false;
  expect(r.stdout).toMatch(/stat `.*missing`: ENOENT/);
  return true;
}

const long = (n: number, c = 'a'): string => c.repeat(n);

const CORPUS = [
  'a',
  'Z',
  '0',
  'default_web',
  'web-1.2_x',
  long(63),
  long(64),
  long(65),
  `9${long(63, '-')}`,
  '',
  '-web',
  '_web',
  '.web',
  '.',
  '..',
  'a/b',
  '../etc',
  'a b',
  'a\tb',
  'web:1',
  'wéb',
  'web\u200b',
  'a*',
  'A.B-C_D',
];

describe('the container-id rule', () => {
  it('is decided alike by conductor-runtime, conductor-shim and the TypeScript pattern', () => {
    const decisions = CORPUS.map((id) => ({
      id,
      ts: isValidContainerId(id),
      runtime: runtimeAccepts(id),
      shim: shimAccepts(id),
    }));
    for (const d of decisions)
      expect({ id: d.id, runtime: d.runtime, shim: d.shim }).toEqual({
        id: d.id,
        runtime: d.ts,
        shim: d.ts,
      });
    // The corpus has both kinds, and the boundary: 64 passes, 65 does not.
    expect(isValidContainerId(long(64))).toBe(true);
    expect(isValidContainerId(long(65))).toBe(false);
    expect(decisions.filter((d) => d.ts).length).toBeGreaterThan(4);
    expect(CONTAINER_ID_PATTERN.test('')).toBe(false);
  });

  it('derives ids the native core accepts, distinct for long names', () => {
    const ns = 'namespace-with-a-rather-long-name';
    const names = ['web', long(30, 'x'), long(63, 'y'), `${long(40, 'z')}-1`, `${long(40, 'z')}-2`];
    const ids = names.map((n) => containerIdFor(ns, n));
    for (const id of ids) {
      expect(id.length).toBeLessThanOrEqual(64);
      expect(runtimeAccepts(id)).toBe(true);
      expect(shimAccepts(id)).toBe(true);
    }
    expect(new Set(ids).size).toBe(ids.length);
    expect(containerIdFor('default', 'web')).toBe('default_web');
  });
});
