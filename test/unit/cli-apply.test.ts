/** The pure parts of apply and delete: relative paths, verdicts, removing one object from a file. */
import { describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { applyVerdict } from '../../controller/cli/apply.js';
import { removeObjectFromText } from '../../controller/cli/delete.js';
import { existsUnder, relativePaths } from '../../controller/cli/paths.js';
import type { StoredObject } from '../../controller/cli/state.js';
import type { ConductorObject } from '../../controller/api/types.generated.js';

describe('relativePaths', () => {
  it("lists an Image's relative copy sources and archive paths, not absolute ones", () => {
    expect(
      relativePaths({
        kind: 'Image',
        spec: {
          from: 'oci-archive:images/base.tar:latest',
          steps: [
            { copy: { src: 'rootfs', dest: '/' } },
            { copy: { src: '/abs', dest: '/' } },
            { run: ['true'] },
          ],
        },
      }),
    ).toEqual([
      { field: 'spec.from', path: 'images/base.tar:latest' },
      { field: 'spec.steps[0].copy.src', path: 'rootfs' },
    ]);
    expect(
      relativePaths({ kind: 'Image', spec: { from: 'docker.io/library/alpine:3.20' } }),
    ).toEqual([]);
    expect(relativePaths({ kind: 'Image', spec: { from: 'oci:/layouts/a' } })).toEqual([]);
    expect(relativePaths({ kind: 'Container', spec: { from: 'oci:x' } })).toEqual([]);
  });

  it('existsUnder accepts a trailing :TAG', () => {
    const dir = mkdtempSync(join(tmpdir(), 'conductor-cli-paths-'));
    try {
      writeFileSync(join(dir, 'base.tar'), '');
      expect(existsUnder(dir, 'base.tar')).toBe(true);
      expect(existsUnder(dir, 'base.tar:latest')).toBe(true);
      expect(existsUnder(dir, 'other.tar')).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('applyVerdict', () => {
  const desired = {
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Container',
    metadata: { name: 'web', namespace: 'default', labels: { app: 'web' } },
    spec: {
      image: 'bb',
      restartPolicy: 'Always',
      network: 'bridge',
      terminationGracePeriodSeconds: 30,
    },
  } as ConductorObject;
  const stored = (patch: Partial<StoredObject>): StoredObject => ({
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Container',
    metadata: {
      name: 'web',
      namespace: 'default',
      labels: { app: 'web' },
      uid: 'u',
      generation: 3,
    },
    spec: {
      network: 'bridge',
      terminationGracePeriodSeconds: 30,
      restartPolicy: 'Always',
      image: 'bb',
    },
    status: { phase: 'Running' },
    ...patch,
  });

  it('created when not stored, unchanged whatever the key order and server-set fields', () => {
    expect(applyVerdict(desired, undefined)).toBe('created');
    expect(applyVerdict(desired, stored({}))).toBe('unchanged');
  });

  it('configured when spec, labels or annotations differ', () => {
    expect(applyVerdict(desired, stored({ spec: { image: 'other' } }))).toBe('configured');
    expect(applyVerdict(desired, stored({ metadata: { name: 'web', namespace: 'default' } }))).toBe(
      'configured',
    );
  });
});

describe('removeObjectFromText', () => {
  const text = `# first
apiVersion: conductor.dev/v1alpha1
kind: Container
metadata: {name: a}
spec: {image: bb}
---
# second
apiVersion: conductor.dev/v1alpha1
kind: Container
metadata: {name: b, namespace: prod}
spec: {image: bb}
`;
  const id = (name: string, namespace = 'default') => ({ kind: 'Container', namespace, name });

  it("drops the object's document and keeps the others with their comments", () => {
    const out = removeObjectFromText(text, 'f.yaml', id('a'));
    expect(out).toBe(
      '---\n# second\napiVersion: conductor.dev/v1alpha1\nkind: Container\nmetadata: { name: b, namespace: prod }\nspec: { image: bb }\n',
    );
  });

  it('null when nothing is left, undefined when the file does not define it', () => {
    const one = removeObjectFromText(text, 'f.yaml', id('a'));
    expect(removeObjectFromText(one ?? '', 'f.yaml', id('b', 'prod'))).toBeNull();
    expect(removeObjectFromText(text, 'f.yaml', id('b'))).toBeUndefined(); // wrong namespace
    expect(removeObjectFromText(text, 'f.yaml', { ...id('a'), kind: 'Image' })).toBeUndefined();
  });

  it('refuses a file that does not parse', () => {
    expect(() => removeObjectFromText('a: [\n', 'bad.yaml', id('a'))).toThrow(/does not parse/);
  });
});
