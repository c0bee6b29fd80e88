import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { readCrd, schemaOf } from '../../controller/api/crd.js';
import { KIND_NAMES, KINDS, type Kind } from '../../controller/api/kinds.js';
import { formatFieldError, Validator } from '../../controller/validation/index.js';
import { OpenAPIValidator } from '../../controller/validation/openapi.js';
import {
  loadPrecompiled,
  precompiledName,
  precompiledSource,
} from '../../controller/validation/precompiled.js';

const REPO = join(import.meta.dirname, '..', '..');
const API = 'conductor.dev/v1alpha1';
const container = (spec: Record<string, unknown>) => ({
  apiVersion: API,
  kind: 'Container',
  metadata: { name: 'web' },
  spec: { image: 'busybox', ...spec },
});
const image = (spec: Record<string, unknown>) => ({
  apiVersion: API,
  kind: 'Image',
  metadata: { name: 'img' },
  spec: { from: 'scratch', ...spec },
});
const service = (spec: Record<string, unknown>) => ({
  apiVersion: API,
  kind: 'Service',
  metadata: { name: 'svc' },
  spec: { selector: { app: 'web' }, ports: [{ port: 80 }], ...spec },
});

/** Manifests, valid and invalid, touching every keyword and format the CRDs use. */
const MANIFESTS: unknown[] = [
  container({}),
  container({
    command: ['sh'],
    env: [{ name: 'A', value: '1' }],
    ports: [{ containerPort: 80, hostPort: 8080, protocol: 'UDP' }],
    resources: { limits: { cpu: '500m', memory: '64Mi', pids: 100 } },
    livenessProbe: { exec: { command: ['true'] }, periodSeconds: 5 },
    readinessProbe: { httpGet: { port: 'http', path: '/' } },
    volumes: [{ name: 'v', emptyDir: {} }],
    volumeMounts: [{ name: 'v', mountPath: '/v' }],
  }),
  container({ ports: [{ containerPort: 70000 }] }),
  container({ ports: [{ containerPort: 80, hostPort: 0 }] }),
  container({ ports: [{ containerPort: 2 ** 31 }] }),
  container({ ports: [{ containerPort: '80' }] }),
  container({ restartPolicy: 'Sometimes', network: 'overlay' }),
  container({ env: [{ value: 'x' }] }),
  container({ resources: { limits: { memory: true, cpu: 0.5 } } }),
  container({ resources: { limits: { memory: '64 MB', cpu: -1 } } }),
  container({ image: '' }),
  container({ livenessProbe: { periodSeconds: 5 } }),
  container({ volumes: [{ name: 'v', emptyDir: {}, hostPath: { path: '/tmp' } }] }),
  container({ terminationGracePeriodSeconds: 2 ** 60, workingDir: 'rel' }),
  container({ restartpolicy: 'Never' }),
  image({ steps: [{ run: 'true' }, { run: 'true', workdir: '/' }, {}] }),
  image({ steps: [{ copy: { src: 'a', dest: '/b', chown: '1:1' } }, { env: { A: 'b' } }] }),
  image({ from: 7, config: { cmd: 'not-a-list' } }),
  image({ from: 'x'.repeat(5000) }),
  service({}),
  service({ ports: [] }),
  service({
    ports: [
      { port: 80, targetPort: 'http' },
      { port: 0, protocol: 'ICMP' },
    ],
  }),
  service({ selector: 'app=web' }),
];

const STATUSES: [Kind, unknown][] = [
  ['Container', { phase: 'Running', pid: 4242, restartCount: 0, ip: '10.77.0.2' }],
  ['Container', { phase: 'Exploded', pid: -1, startedAt: 'yesterday' }],
  [
    'Image',
    {
      phase: 'Built',
      conditions: [
        { type: 'Ready', status: 'Maybe', reason: 'not camel', lastTransitionTime: 'x' },
      ],
    },
  ],
  ['Service', { clusterIP: '10.78.0.10', endpoints: [{ name: 'web', ip: '10.77.0.2', ready: 1 }] }],
];

describe('validators compiled ahead of time (the build’s dist/crds/*.validators.cjs)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'precompiled-'));
    for (const kind of KIND_NAMES) {
      const { crd, sha256 } = readCrd(kind);
      const name = precompiledName(KINDS[kind].file);
      writeFileSync(join(dir, name), precompiledSource(schemaOf(crd), sha256));
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('give exactly the errors and defaults ajv compiled at run time gives', () => {
    const ahead = new Validator(undefined, { precompiledDir: dir });
    const runtime = new Validator(undefined, { precompiledDir: join(dir, 'none') });
    for (const kind of KIND_NAMES) {
      expect(ahead.compiledAheadOfTime(kind)).toBe(true);
      expect(runtime.compiledAheadOfTime(kind)).toBe(false);
    }
    let invalid = 0;
    for (const manifest of MANIFESTS) {
      const want = runtime.validate(manifest);
      expect(ahead.validate(manifest)).toEqual(want);
      if (!want.ok) invalid++;
    }
    for (const [kind, status] of STATUSES) {
      const want = runtime.validateStatus(kind, status);
      expect(ahead.validateStatus(kind, status)).toEqual(want);
      if (want.length > 0) invalid++;
    }
    // Not a comparison of two empty lists: most of the corpus is refused, for many reasons.
    expect(invalid).toBeGreaterThan(20);
    // The formats' functions travel in the generated module's source, and run there.
    const some = ahead.validate(MANIFESTS[4]);
    expect(some.ok ? [] : some.errors.map(formatFieldError)).toEqual([
      'spec.ports[0].containerPort: Invalid value: 2147483648: must be less than or equal to 65535',
      'spec.ports[0].containerPort: Invalid value: 2147483648: must be a valid int32',
    ]);
  });

  it('never need ajv', () => {
    const { crd, sha256 } = readCrd('Image');
    const pre = loadPrecompiled(
      KINDS.Image.file,
      sha256,
      join(dir, precompiledName('images.yaml')),
    );
    if (!pre) throw new Error('the Image validators did not load');
    const spec = schemaOf(crd).properties?.spec;
    if (!spec) throw new Error('no spec schema');
    const noAjv = () => {
      throw new Error('ajv was asked for');
    };
    const v = new OpenAPIValidator(spec, 'spec', noAjv, pre.spec);
    expect(v.validate({ from: 'scratch' })).toEqual([]);
    expect(v.validate({ from: 'scratch', steps: [{}] }).map(formatFieldError)).toEqual([
      'spec.steps[0]: Required value: must specify one of: copy, run, env, workdir, user',
    ]);
  });

  it('are not used when made from other CRD text (a stale build)', () => {
    const { sha256 } = readCrd('Container');
    const path = join(dir, precompiledName(KINDS.Container.file));
    expect(loadPrecompiled(KINDS.Container.file, sha256, path)).toBeDefined();
    expect(loadPrecompiled(KINDS.Container.file, sha256.replace(/^./, 'x'), path)).toBeUndefined();
    expect(loadPrecompiled(KINDS.Container.file, sha256, join(dir, 'missing.cjs'))).toBeUndefined();
  });

  it('are what the build left in dist/crds, for the CRDs as they are now', () => {
    for (const kind of KIND_NAMES) {
      const { file } = KINDS[kind];
      const built = join(REPO, 'dist', 'crds', precompiledName(file));
      expect(loadPrecompiled(file, readCrd(kind).sha256, built)).toBeDefined();
    }
  });
});
