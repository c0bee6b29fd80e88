import { describe, expect, it } from '@jest/globals';

import {
  formatManifestError,
  identityKey,
  parseFieldPath,
  parseManifests,
  type FieldError,
  type KubeObject,
  type ValidateFn,
} from '../../controller/source/manifests.js';

/**
 * A stand-in for controller/validation: Container needs spec.image, ports need an integer
 * containerPort, restartPolicy defaults to Always. Enough to exercise the contract.
 */
const validate: ValidateFn<KubeObject> = (obj) => {
  const o = obj as KubeObject & { spec?: Record<string, unknown> };
  const errors: FieldError[] = [];
  if (o.apiVersion !== 'conductor.dev/v1alpha1') {
    errors.push({ path: 'apiVersion', message: `Unsupported value: "${o.apiVersion}"` });
  }
  if (!['Image', 'Container', 'Service'].includes(o.kind)) {
    errors.push({ path: 'kind', message: `Unsupported value: "${o.kind}"` });
  }
  const spec = o.spec ?? {};
  if (o.kind === 'Container' && typeof spec.image !== 'string') {
    errors.push({ path: 'spec.image', message: 'Required value' });
  }
  if (Array.isArray(spec.ports)) {
    spec.ports.forEach((p: unknown, i) => {
      const port = (p as Record<string, unknown>).containerPort;
      if (!Number.isInteger(port)) {
        errors.push({
          path: `spec.ports[${i}].containerPort`,
          message: `Invalid value: ${JSON.stringify(port)}: must be an integer`,
        });
      }
    });
  }
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, object: { ...o, spec: { restartPolicy: 'Always', ...spec } } };
};

const parse = (text: string, file = 'web.yaml') => parseManifests(text, { file, validate });

const container = (name: string, extra = '') => `apiVersion: conductor.dev/v1alpha1
kind: Container
metadata:
  name: ${name}
spec:
  image: busybox
${extra}`;

describe('parseManifests', () => {
  it('reads every document of a multi-document YAML file, skipping empty ones', () => {
    const text = [
      '# leading comment only',
      '---',
      container('web'),
      '---',
      '---',
      '# just a comment',
      '---',
      container('db').replace('name: db', 'name: db\n  namespace: prod'),
      '...',
      '---',
      '',
    ].join('\n');
    const { objects, errors } = parse(text);
    expect(errors).toEqual([]);
    expect(objects.map((o) => identityKey(o.identity))).toEqual([
      'Container/default/web',
      'Container/prod/db',
    ]);
    // namespace is defaulted into the object, and validate's defaulting is kept
    expect(objects[0]?.object.metadata.namespace).toBe('default');
    expect(objects[0]?.object).toMatchObject({
      spec: { image: 'busybox', restartPolicy: 'Always' },
    });
    expect(objects[0]?.line).toBe(3);
    expect(objects[1]?.line).toBe(14);
  });

  it('treats an empty file or a file of comments as defining nothing', () => {
    expect(parse('')).toEqual({ objects: [], errors: [] });
    expect(parse('# nothing here\n---\n')).toEqual({ objects: [], errors: [] });
    expect(parse('{}', 'empty.json').errors).not.toEqual([]);
  });

  it('reads JSON files, with positions in errors', () => {
    const good = JSON.stringify(
      {
        apiVersion: 'conductor.dev/v1alpha1',
        kind: 'Image',
        metadata: { name: 'busybox' },
        spec: { from: 'scratch' },
      },
      null,
      2,
    );
    const ok = parse(good, 'img.json');
    expect(ok.errors).toEqual([]);
    expect(ok.objects[0]?.identity).toEqual({
      kind: 'Image',
      namespace: 'default',
      name: 'busybox',
    });

    const bad = parse(good.replace('"Image"', '"Imag"'), 'img.json');
    expect(bad.objects).toEqual([]);
    expect(bad.errors).toEqual([
      { file: 'img.json', line: 3, column: 11, path: 'kind', message: 'Unsupported value: "Imag"' },
    ]);

    const broken = parse('{"apiVersion": "v1",\n  "kind": }', 'broken.json');
    expect(broken.errors.length).toBeGreaterThan(0);
    expect(broken.errors[0]).toMatchObject({ file: 'broken.json', line: 2 });
  });

  it('reports YAML syntax errors with line and column, and defines nothing', () => {
    const text = `${container('web')}---\n${container('db')}  ports: [ {containerPort: 80\n`;
    const { objects, errors } = parse(text);
    expect(objects).toEqual([]);
    expect(errors.length).toBeGreaterThan(0);
    expect(errors[0]?.line).toBeGreaterThanOrEqual(13);
    expect(errors[0]?.file).toBe('web.yaml');
    expect(formatManifestError(errors[0] ?? { file: '', message: 'none' })).toMatch(
      /^web\.yaml:\d+:\d+: /,
    );
    // yaml's own " at line N, column M" suffix is not repeated
    expect(errors[0]?.message).not.toMatch(/at line/);
  });

  it('rejects tabs for indentation and duplicate keys', () => {
    expect(parse('kind: Container\n\tmetadata: {}\n').errors[0]?.line).toBe(2);
    const dup = parse(`${container('web')}  image: other\n`);
    expect(dup.errors[0]).toMatchObject({ line: 7, column: 3 });
    expect(dup.errors[0]?.message).toMatch(/unique/i);
  });

  it('points validation errors at the offending field', () => {
    const text = `${container('web')}  ports:\n    - containerPort: 80\n    - containerPort: http\n`;
    const { errors } = parse(text);
    expect(errors).toEqual([
      {
        file: 'web.yaml',
        line: 9,
        column: 22,
        path: 'spec.ports[1].containerPort',
        message: 'Invalid value: "http": must be an integer',
      },
    ]);
    expect(formatManifestError(errors[0] ?? { file: '', message: 'none' })).toBe(
      'web.yaml:9:22: spec.ports[1].containerPort: Invalid value: "http": must be an integer',
    );
  });

  it('points a missing field at the object that should hold it', () => {
    const text = container('web').replace('  image: busybox\n', '  command: [sh]\n');
    const { errors } = parse(text);
    expect(errors).toEqual([
      { file: 'web.yaml', line: 6, column: 3, path: 'spec.image', message: 'Required value' },
    ]);
  });

  it('checks identity: apiVersion, kind, metadata.name and namespace', () => {
    const noName = parse(
      'apiVersion: conductor.dev/v1alpha1\nkind: Container\nmetadata:\n  labels: {}\n',
    );
    expect(noName.errors).toEqual([
      {
        file: 'web.yaml',
        line: 4,
        column: 3,
        path: 'metadata.name',
        message: 'Required value: name is required',
      },
    ]);
    const badName = parse(container('Web_1'));
    expect(badName.errors[0]).toMatchObject({ line: 4, column: 9, path: 'metadata.name' });
    expect(badName.errors[0]?.message).toMatch(/RFC 1123 subdomain/);
    const badNs = parse(container('web').replace('name: web', 'name: web\n  namespace: A.B'));
    expect(badNs.errors[0]).toMatchObject({ line: 5, path: 'metadata.namespace' });
    const noKind = parse('apiVersion: v1\nmetadata: {name: x}\n');
    expect(noKind.errors).toEqual([
      { file: 'web.yaml', line: 1, column: 1, path: 'kind', message: 'Required value' },
    ]);
    const scalar = parse('just a string\n');
    expect(scalar.errors[0]?.message).toMatch(/expected an object/);
    const list = parse('- a\n- b\n');
    expect(list.errors[0]?.message).toMatch(/expected an object, got a list/);
  });

  it('rejects the whole file when any document is invalid', () => {
    const text = `${container('web')}---\n${container('db').replace('image: busybox', 'command: []')}`;
    const { objects, errors } = parse(text);
    expect(objects).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ path: 'spec.image', line: 13 });
  });

  it('rejects the same object twice in one file, naming both places', () => {
    const text = `${container('web')}---\n${container('web')}`;
    const { objects, errors } = parse(text);
    expect(objects).toEqual([]);
    expect(errors).toEqual([
      {
        file: 'web.yaml',
        line: 8,
        message: 'Duplicate value: Container default/web is already defined at web.yaml:1',
      },
    ]);
  });

  it('reads kind: List documents item by item', () => {
    const text = `apiVersion: v1
kind: List
items:
  - apiVersion: conductor.dev/v1alpha1
    kind: Container
    metadata: {name: a}
    spec: {image: busybox}
  - apiVersion: conductor.dev/v1alpha1
    kind: Container
    metadata: {name: b}
    spec: {ports: [{containerPort: 80}]}
`;
    const { errors } = parse(text);
    expect(errors).toEqual([
      { file: 'web.yaml', line: 11, column: 11, path: 'spec.image', message: 'Required value' },
    ]);
    const fixed = parse(text.replace('spec: {ports', 'spec: {image: x, ports'));
    expect(fixed.objects.map((o) => o.identity.name)).toEqual(['a', 'b']);
    expect(fixed.objects[1]?.line).toBe(8);
  });

  it('refuses alias bombs instead of expanding them', () => {
    const lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 12; i++) {
      const prev = String.fromCharCode(96 + i);
      const cur = String.fromCharCode(97 + i);
      lines.push(`${cur}: &${cur} [${Array(10).fill(`*${prev}`).join(', ')}]`);
    }
    const { objects, errors } = parse(lines.join('\n'));
    expect(objects).toEqual([]);
    expect(errors[0]?.message).toMatch(/alias/i);
  });

  it('uses YAML 1.2: yes/no and on/off stay strings, no timestamps', () => {
    const text = container('web', '  env: [{name: X, value: yes}]\n  hostname: on\n');
    const obj = parse(text).objects[0]?.object as unknown as { spec: Record<string, unknown> };
    expect(obj.spec.hostname).toBe('on');
    expect(obj.spec.env).toEqual([{ name: 'X', value: 'yes' }]);
  });
});

describe('parseFieldPath', () => {
  it('splits apiserver-style paths', () => {
    expect(parseFieldPath('spec.ports[0].containerPort')).toEqual([
      'spec',
      'ports',
      0,
      'containerPort',
    ]);
    expect(parseFieldPath('metadata.labels[app.kubernetes.io/name]')).toEqual([
      'metadata',
      'labels',
      'app.kubernetes.io/name',
    ]);
    expect(parseFieldPath("metadata.annotations['a.b']")).toEqual([
      'metadata',
      'annotations',
      'a.b',
    ]);
    expect(parseFieldPath('')).toEqual([]);
  });
});

describe('formatManifestError', () => {
  it('omits what is not known', () => {
    expect(formatManifestError({ file: 'a.yaml', message: 'm' })).toBe('a.yaml: m');
    expect(formatManifestError({ file: 'a.yaml', line: 3, message: 'm' })).toBe('a.yaml:3: m');
    expect(
      formatManifestError({ file: 'a.yaml', line: 3, column: 1, path: 'spec', message: 'm' }),
    ).toBe('a.yaml:3:1: spec: m');
  });
});
