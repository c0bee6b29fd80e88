import { describe, expect, it } from '@jest/globals';
import { parse } from 'yaml';

import type { Container, Image, Service } from '../../controller/api/index.js';
import { formatManifestError, parseManifests } from '../../controller/source/manifests.js';
import {
  formatFieldError,
  formatFieldErrors,
  parseQuantity,
  validateManifest,
  validateObject,
  validateStatus,
  ValidationError,
  Validator,
  type FieldError,
} from '../../controller/validation/index.js';
import { INVALID_MANIFESTS, pathSet } from '../fixtures/invalid-manifests.js';

/** The errors of an invalid manifest, formatted as the API server prints them. */
function errorsOf(manifest: unknown): string[] {
  const result = validateObject(manifest);
  if (result.ok) throw new Error(`expected errors, got ${JSON.stringify(result.object)}`);
  return result.errors.map(formatFieldError);
}

function valid(manifest: unknown): unknown {
  const result = validateObject(manifest);
  if (!result.ok) throw new Error(formatFieldErrors(result.errors));
  return result.object;
}

const container = (spec: Record<string, unknown>, metadata: Record<string, unknown> = {}) => ({
  apiVersion: 'conductor.dev/v1alpha1',
  kind: 'Container',
  metadata: { name: 'web', ...metadata },
  spec: { image: 'busybox', ...spec },
});

describe('validateObject: valid manifests get the API server defaults', () => {
  it('defaults a minimal Container, nested and in array items', () => {
    const obj = valid(
      parse(`
apiVersion: conductor.dev/v1alpha1
kind: Container
metadata:
  name: web
  labels: {app: web}
spec:
  image: busybox
  command: [httpd, -f]
  env:
    - name: EMPTY
    - {name: GREETING, value: hello}
  ports:
    - containerPort: 80
      hostPort: 8080
  readinessProbe:
    httpGet: {port: http}
  livenessProbe:
    tcpSocket: {port: 80}
    periodSeconds: 5
  volumes:
    - name: data
      emptyDir: {}
    - name: conf
      hostPath: {path: /etc/web}
  volumeMounts:
    - {name: data, mountPath: /data}
  resources:
    limits: {cpu: 500m, memory: 64Mi, pids: 100}
`),
    ) as Container;
    expect(obj.metadata).toEqual({ name: 'web', namespace: 'default', labels: { app: 'web' } });
    expect(obj.spec.restartPolicy).toBe('Always');
    expect(obj.spec.network).toBe('bridge');
    expect(obj.spec.terminationGracePeriodSeconds).toBe(30);
    expect(obj.spec.env).toEqual([
      { name: 'EMPTY', value: '' },
      { name: 'GREETING', value: 'hello' },
    ]);
    expect(obj.spec.ports).toEqual([{ containerPort: 80, hostPort: 8080, protocol: 'TCP' }]);
    expect(obj.spec.readinessProbe).toEqual({
      httpGet: { port: 'http', path: '/', scheme: 'HTTP' },
      initialDelaySeconds: 0,
      periodSeconds: 10,
      timeoutSeconds: 1,
      failureThreshold: 3,
      successThreshold: 1,
    });
    expect(obj.spec.livenessProbe?.periodSeconds).toBe(5);
    expect(obj.spec.volumes).toEqual([
      { name: 'data', emptyDir: { medium: '' } },
      { name: 'conf', hostPath: { path: '/etc/web', type: '' } },
    ]);
    expect(obj.spec.volumeMounts).toEqual([{ name: 'data', mountPath: '/data', readOnly: false }]);
  });

  it('defaults an Image and accepts a one-key step of each kind', () => {
    const obj = valid({
      apiVersion: 'conductor.dev/v1alpha1',
      kind: 'Image',
      metadata: { name: 'busybox.v1', namespace: 'apps' },
      spec: {
        from: 'scratch',
        steps: [
          { copy: { src: './rootfs', dest: '/' } },
          { run: 'echo hi > /hello' },
          { env: { PATH: '/bin' } },
          { workdir: '/srv' },
          { user: '1000:1000' },
        ],
        config: { cmd: ['sh'], exposedPorts: [{ port: 80 }] },
        registry: {},
      },
    }) as Image;
    expect(obj.metadata.namespace).toBe('apps');
    expect(obj.spec.config?.exposedPorts).toEqual([{ port: 80, protocol: 'TCP' }]);
    expect(obj.spec.registry).toEqual({ tlsVerify: true });
  });

  it('defaults a Service and accepts targetPort as a number or a name', () => {
    const obj = valid({
      apiVersion: 'conductor.dev/v1alpha1',
      kind: 'Service',
      metadata: { name: 'web' },
      spec: {
        selector: { app: 'web' },
        ports: [
          { name: 'http', port: 80, targetPort: 8080 },
          { name: 'admin', port: 81, targetPort: 'admin' },
        ],
      },
    }) as Service;
    expect(obj.spec.type).toBe('ClusterIP');
    expect(obj.spec.ports.map((p) => [p.targetPort, p.protocol])).toEqual([
      [8080, 'TCP'],
      ['admin', 'TCP'],
    ]);
  });

  it('accepts quantities as numbers and strings', () => {
    for (const limits of [
      { cpu: 2, memory: 67108864 },
      { cpu: '0.5', memory: '64Mi' },
      { cpu: '250m', memory: '1G' },
    ]) {
      expect(validateObject(container({ resources: { limits } })).ok).toBe(true);
    }
  });

  it('drops status and system metadata, does not modify its input', () => {
    const manifest = container(
      {},
      { uid: 'x', generation: 4, creationTimestamp: '2026-01-01T00:00:00Z', resourceVersion: '9' },
    );
    const input = { ...manifest, status: { phase: 'Running' } };
    const copy = structuredClone(input);
    const obj = valid(input) as Container;
    expect(obj.status).toBeUndefined();
    expect(obj.metadata).toEqual({ name: 'web', namespace: 'default' });
    expect(input).toEqual(copy);
  });

  it('treats null as unset, then defaults', () => {
    const obj = valid(container({ restartPolicy: null, env: null })) as Container;
    expect(obj.spec.restartPolicy).toBe('Always');
    expect(obj.spec.env).toBeUndefined();
  });
});

describe('validateObject: errors read as the API server’s', () => {
  it('bounds', () => {
    expect(errorsOf(container({ ports: [{ containerPort: 70000 }] }))).toEqual([
      'spec.ports[0].containerPort: Invalid value: 70000: must be less than or equal to 65535',
    ]);
    expect(errorsOf(container({ ports: [{ containerPort: 80, hostPort: 0 }] }))).toEqual([
      'spec.ports[0].hostPort: Invalid value: 0: must be greater than or equal to 1',
    ]);
  });

  it('enums', () => {
    expect(errorsOf(container({ restartPolicy: 'Sometimes' }))).toEqual([
      'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
    ]);
    expect(errorsOf(container({ network: 'overlay' }))).toEqual([
      'spec.network: Unsupported value: "overlay": supported values: "bridge", "none", "host"',
    ]);
  });

  it('required fields', () => {
    expect(errorsOf({ ...container({}), spec: { command: ['sh'] } })).toEqual([
      'spec.image: Required value',
    ]);
    expect(errorsOf({ ...container({}), spec: undefined })).toEqual(['spec: Required value']);
    expect(errorsOf(container({ env: [{ value: 'x' }] }))).toEqual([
      'spec.env[0].name: Required value',
    ]);
  });

  it('types, including int-or-string', () => {
    expect(errorsOf(container({ ports: [{ containerPort: '80' }] }))).toEqual([
      'spec.ports[0].containerPort: Invalid value: "80": must be of type integer',
    ]);
    expect(errorsOf(container({ resources: { limits: { memory: true } } }))).toEqual([
      'spec.resources.limits.memory: Invalid value: true: must be of type integer or string',
    ]);
    expect(errorsOf(container({ resources: { limits: { cpu: 0.5 } } }))).toEqual([
      'spec.resources.limits.cpu: Invalid value: 0.5: must be of type integer or string (write a fraction as a string: "0.5", "500m")',
    ]);
    // an empty string is reported once, not also for its pattern
    expect(errorsOf(container({ image: '' }))).toEqual(['spec.image: Required value']);
    expect(errorsOf(container({ resources: { limits: { memory: '64 MB' } } }))).toEqual([
      'spec.resources.limits.memory: Invalid value: "64 MB": must be a quantity such as "500m", "0.5", "64Mi" or "1G"',
    ]);
    expect(errorsOf(container({ resources: { limits: { memory: '-1', cpu: -1 } } }))).toEqual([
      'spec.resources.limits.cpu: Invalid value: -1: must be greater than or equal to 0',
      'spec.resources.limits.memory: Invalid value: "-1": must be a quantity such as "500m", "0.5", "64Mi" or "1G"',
    ]);
  });

  it('rejects a step with two keys, and one with none', () => {
    const image = (steps: unknown[]) => ({
      apiVersion: 'conductor.dev/v1alpha1',
      kind: 'Image',
      metadata: { name: 'img' },
      spec: { from: 'scratch', steps },
    });
    expect(errorsOf(image([{ run: 'true' }, { run: 'true', workdir: '/' }]))).toEqual([
      'spec.steps[1]: Forbidden: may not specify more than 1 of: copy, run, env, workdir, user (found run, workdir)',
    ]);
    expect(errorsOf(image([{}]))).toEqual([
      'spec.steps[0]: Required value: must specify one of: copy, run, env, workdir, user',
    ]);
  });

  it('rejects a probe or volume with no handler or two', () => {
    expect(errorsOf(container({ livenessProbe: { periodSeconds: 5 } }))).toEqual([
      'spec.livenessProbe: Required value: must specify one of: exec, httpGet, tcpSocket',
    ]);
    expect(
      errorsOf(container({ volumes: [{ name: 'v', emptyDir: {}, hostPath: { path: '/tmp' } }] })),
    ).toEqual([
      'spec.volumes[0]: Forbidden: may not specify more than 1 of: hostPath, emptyDir (found hostPath, emptyDir)',
    ]);
  });

  it('rejects unknown fields with their path, at every level', () => {
    expect(
      errorsOf({
        ...container({ restartpolicy: 'Never', ports: [{ containerPort: 80, hostport: 8080 }] }),
        extra: 1,
      }),
    ).toEqual([
      'unknown field "extra"',
      'unknown field "spec.restartpolicy"',
      'unknown field "spec.ports[0].hostport"',
    ]);
    expect(errorsOf(container({}, { nmae: 'x' }))).toEqual(['unknown field "metadata.nmae"']);
  });

  it('rejects duplicates in list-type maps', () => {
    expect(errorsOf(container({ env: [{ name: 'A' }, { name: 'A', value: 'x' }] }))).toEqual([
      'spec.env[1]: Duplicate value: {"name":"A"}',
    ]);
    // protocol is part of the key, after defaulting
    expect(
      errorsOf(
        container({ ports: [{ containerPort: 53, protocol: 'TCP' }, { containerPort: 53 }] }),
      ),
    ).toEqual(['spec.ports[1]: Duplicate value: {"containerPort":53,"protocol":"TCP"}']);
    expect(
      validateObject(
        container({ ports: [{ containerPort: 53 }, { containerPort: 53, protocol: 'UDP' }] }),
      ).ok,
    ).toBe(true);
  });

  it('checks the CEL rule: volumeMounts name volumes', () => {
    expect(errorsOf(container({ volumeMounts: [{ name: 'data', mountPath: '/data' }] }))).toEqual([
      'spec: Invalid value: every volumeMounts[].name must name a volume in spec.volumes',
    ]);
    // As the API server, CEL rules are not evaluated on an object with blocking errors.
    expect(
      errorsOf(
        container({ restartPolicy: 'x', volumeMounts: [{ name: 'data', mountPath: '/data' }] }),
      ),
    ).toEqual([
      'spec.restartPolicy: Unsupported value: "x": supported values: "Always", "OnFailure", "Never"',
    ]);
  });

  it('reports all errors at once', () => {
    expect(
      errorsOf(
        container({ restartPolicy: 'x', terminationGracePeriodSeconds: -1, workingDir: 'rel' }),
      ),
    ).toHaveLength(3);
  });

  it('apiVersion and kind', () => {
    expect(errorsOf({ ...container({}), apiVersion: 'v1' })).toEqual([
      'apiVersion: Unsupported value: "v1": supported values: "conductor.dev/v1alpha1"',
    ]);
    expect(errorsOf({ ...container({}), kind: 'Pod' })).toEqual([
      'kind: Unsupported value: "Pod": supported values: "Image", "Container", "Service"',
    ]);
    expect(errorsOf({ metadata: { name: 'x' } })).toEqual([
      'apiVersion: Required value',
      'kind: Required value',
    ]);
    expect(errorsOf('just a string')).toEqual([
      '<root>: Invalid value: "just a string": must be an object',
    ]);
  });

  it('metadata: names by kind, namespace, labels', () => {
    expect(errorsOf(container({}, { name: undefined }))).toEqual([
      'metadata.name: Required value: name or generateName is required',
    ]);
    expect(errorsOf(container({}, { name: 'Web' }))).toEqual([
      expect.stringMatching(
        /^metadata\.name: Invalid value: "Web": a lowercase RFC 1123 label must/,
      ),
    ]);
    // Containers are hostnames: no dots; Images may have them.
    expect(errorsOf(container({}, { name: 'web.v1' }))).toHaveLength(1);
    expect(
      errorsOf({
        apiVersion: 'conductor.dev/v1alpha1',
        kind: 'Service',
        metadata: { name: '1web' },
        spec: { ports: [{ port: 80 }] },
      }),
    ).toEqual([
      expect.stringMatching(/^metadata\.name: Invalid value: "1web": a DNS-1035 label must/),
    ]);
    expect(errorsOf(container({}, { name: 'a'.repeat(64) }))).toEqual([
      'metadata.name: Too long: may not be more than 63 bytes',
    ]);
    expect(errorsOf(container({}, { namespace: 'Prod' }))).toHaveLength(1);
    expect(errorsOf(container({}, { labels: { app: 'a b' } }))).toEqual([
      expect.stringMatching(/^metadata\.labels: Invalid value: "a b": a valid label must be/),
    ]);
    expect(errorsOf(container({}, { labels: { 'bad key!': 'x' } }))).toHaveLength(1);
    expect(errorsOf(container({}, { generateName: 'web-' }))).toEqual([
      'metadata.generateName: Forbidden: not supported in directory mode',
    ]);
  });

  it('Service: at least one port', () => {
    expect(
      errorsOf({
        apiVersion: 'conductor.dev/v1alpha1',
        kind: 'Service',
        metadata: { name: 'web' },
        spec: { ports: [] },
      }),
    ).toEqual(['spec.ports: Required value: must have at least 1 item']);
  });

  it('map keys are path segments, as in the API server', () => {
    expect(
      errorsOf({
        apiVersion: 'conductor.dev/v1alpha1',
        kind: 'Service',
        metadata: { name: 'web' },
        spec: { selector: { app: 1 }, ports: [{ port: 80 }] },
      }),
    ).toEqual(['spec.selector.app: Invalid value: 1: must be of type string']);
  });
});

describe('the invalid manifests table (test/fixtures/invalid-manifests.ts)', () => {
  // The same table runs against a real API server in test/integration/schema-parity.test.ts.
  it('has unique names, one object a case', () => {
    const names = INVALID_MANIFESTS.map((c) => c.name);
    expect(new Set(names).size).toBe(names.length);
  });

  it.each(INVALID_MANIFESTS.map((c) => [c.name, c] as const))(
    "%s: refused at the table's field paths",
    (_name, c) => {
      const result = validateManifest(c.manifest);
      expect(result.ok).toBe(false);
      const paths = result.ok ? [] : pathSet(result.errors.map((e) => e.path));
      expect(paths).toEqual(pathSet(c.paths));
    },
  );
});

describe('validateStatus', () => {
  const ready = {
    type: 'Ready',
    status: 'True',
    reason: 'ContainerRunning',
    message: '',
    lastTransitionTime: '2026-11-28T13:00:00Z',
    observedGeneration: 1,
  };

  it('accepts a status Conductor writes', () => {
    expect(
      validateStatus('Container', {
        phase: 'Running',
        conditions: [ready],
        observedGeneration: 1,
        containerID: 'default_web_1',
        pid: 4242,
        ip: '10.77.0.2',
        startedAt: '2026-11-28T13:00:00.123Z',
        restartCount: 0,
      }),
    ).toEqual([]);
    expect(
      validateStatus('Service', {
        clusterIP: '10.78.0.10',
        endpoints: [{ name: 'web', ip: '10.77.0.2', ready: true }],
      }),
    ).toEqual([]);
  });

  it('rejects what the API server would refuse in a status update', () => {
    const errors = validateStatus('Image', {
      phase: 'Built',
      conditions: [{ ...ready, reason: 'not camel case', lastTransitionTime: 'yesterday' }],
      sizeBytes: 1,
    }).map(formatFieldError);
    expect(errors).toEqual([
      'unknown field "status.sizeBytes"',
      'status.phase: Unsupported value: "Built": supported values: "Pending", "Pulling", "Building", "Ready", "Failed"',
      expect.stringMatching(
        /^status\.conditions\[0\]\.lastTransitionTime: Invalid value: "yesterday": must be a valid date-time/,
      ),
      expect.stringMatching(
        /^status\.conditions\[0\]\.reason: Invalid value: "not camel case": must match/,
      ),
    ]);
  });
});

describe('validateManifest', () => {
  it('is the validate callback of parseManifests: errors point at the line of the field', () => {
    const text = [
      'apiVersion: conductor.dev/v1alpha1',
      'kind: Container',
      'metadata: {name: web}',
      'spec:',
      '  image: busybox',
      '  ports:',
      '    - containerPort: 70000',
      '  restartpolicy: Never',
      '',
    ].join('\n');
    const result = parseManifests(text, { file: 'web.yaml', validate: validateManifest });
    expect(result.errors.map(formatManifestError)).toEqual([
      'web.yaml:8:18: spec.restartpolicy: Unknown field',
      'web.yaml:7:22: spec.ports[0].containerPort: Invalid value: 70000: must be less than or equal to 65535',
    ]);
  });
});

describe('Validator.mustValidate', () => {
  it('throws a ValidationError whose message lists the errors', () => {
    const validator = new Validator();
    expect(() => validator.mustValidate(container({ restartPolicy: 'x' }))).toThrow(
      ValidationError,
    );
    expect(() => validator.mustValidate(container({ restartPolicy: 'x' }))).toThrow(
      /^spec\.restartPolicy: Unsupported value: "x"/,
    );
  });
});

describe('formatFieldError', () => {
  it('omits the value for Required, Forbidden and Too long, as field.Error does', () => {
    const errors: FieldError[] = [
      { type: 'FieldValueRequired', field: 'spec.image' },
      { type: 'FieldValueForbidden', field: 'spec.x', detail: 'no' },
      { type: 'FieldValueTooLong', field: 'spec.x', detail: 'may not be more than 3 characters' },
      { type: 'FieldValueInvalid', field: 'spec.x', badValue: { a: 1 }, detail: 'bad' },
    ];
    expect(errors.map(formatFieldError)).toEqual([
      'spec.image: Required value',
      'spec.x: Forbidden: no',
      'spec.x: Too long: may not be more than 3 characters',
      'spec.x: Invalid value: {"a":1}: bad',
    ]);
  });
});

describe('parseQuantity', () => {
  it('parses Kubernetes quantities', () => {
    expect(parseQuantity('500m')).toBeCloseTo(0.5);
    expect(parseQuantity(2)).toBe(2);
    expect(parseQuantity('64Mi')).toBe(64 * 1024 * 1024);
    expect(parseQuantity('1G')).toBe(1e9);
    expect(parseQuantity('1E')).toBe(1e18);
    expect(parseQuantity('1e3')).toBe(1000);
    expect(parseQuantity('.5')).toBe(0.5);
    expect(() => parseQuantity('64 MB')).toThrow(/invalid quantity/);
    expect(() => parseQuantity('-1')).toThrow(/invalid quantity/);
  });
});
