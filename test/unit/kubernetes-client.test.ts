/**
 * The Kubernetes source's pure parts: what an API error means to a reconciler, the merge patch a
 * status write sends, the back-off between informer restarts, how events fold into series, and
 * the `conductor up` flags that choose it.
 * The source against a real API server is test/integration/kubernetes-client.test.ts.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from '@jest/globals';
import { ApiException, type EventsV1Event } from '@kubernetes/client-node';

import { eventRecord } from '../../controller/cli/cluster.js';
import { parseNodeLabels, parseUpArgs } from '../../controller/cli/up.js';
import { ConflictError, NotFoundError, selects } from '../../controller/client/client.js';
import {
  apiErrorCode,
  backoffDelay,
  describeApiError,
  EventRecorder,
  eventKey,
  KubernetesClient,
  mergePatch,
  REPORTING_CONTROLLER,
  statusWriteError,
  type EventSink,
} from '../../controller/source/kubernetes-client.js';
import { silentLogger, type Logger } from '../../runtime-core/src/index.js';

const status = (code: number, reason: string, message: string): ApiException<string> =>
  new ApiException(
    code,
    `HTTP-Code: ${code}`,
    JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, message, code }),
    {},
  );

describe('API errors', () => {
  it('maps 409 to ConflictError and 404 to NotFoundError, naming the object', () => {
    const conflict = statusWriteError(
      'Container',
      'ns/web',
      '41',
      status(409, 'Conflict', 'the object has been modified'),
    );
    expect(conflict).toBeInstanceOf(ConflictError);
    expect(conflict).toMatchObject({ kind: 'Container', key: 'ns/web', readAt: '41' });
    const gone = statusWriteError('Image', 'ns/base', '7', status(404, 'NotFound', 'not found'));
    expect(gone).toBeInstanceOf(NotFoundError);
    expect(gone.message).toBe('Image ns/base not found');
  });

  it('keeps other failures as errors with the server message and the cause', () => {
    const invalid = status(422, 'Invalid', 'status.phase: Unsupported value: "Bogus"');
    const err = statusWriteError('Container', 'ns/web', '41', invalid);
    expect(err).not.toBeInstanceOf(ConflictError);
    expect(err).not.toBeInstanceOf(NotFoundError);
    expect(err.message).toBe(
      'Container ns/web: writing status failed: HTTP 422: status.phase: Unsupported value: "Bogus"',
    );
    expect(err.cause).toBe(invalid);
  });

  it("reads the code of an ApiException and of the watch's errors", () => {
    expect(apiErrorCode(status(410, 'Expired', 'too old resource version'))).toBe(410);
    expect(apiErrorCode(Object.assign(new Error('Gone'), { statusCode: 410 }))).toBe(410);
    expect(apiErrorCode(new Error('ECONNREFUSED'))).toBeUndefined();
    expect(apiErrorCode('nope')).toBeUndefined();
  });

  it('describes a body that is not a Status, and plain errors', () => {
    expect(describeApiError(new ApiException(503, 'x', 'upstream down\n', {}))).toBe(
      'HTTP 503: upstream down',
    );
    expect(describeApiError(new ApiException(500, 'x', '', {}))).toBe('HTTP 500: no message');
    expect(describeApiError(new Error('connect ECONNREFUSED 127.0.0.1:6443'))).toBe(
      'connect ECONNREFUSED 127.0.0.1:6443',
    );
  });
});

describe('mergePatch', () => {
  it('sends changes, and null for what the new status no longer has', () => {
    expect(
      mergePatch(
        { phase: 'Running', ip: '10.79.0.2', restartCount: 0, reason: 'x' },
        { phase: 'Failed', restartCount: 0, exitCode: 1 },
      ),
    ).toEqual({ phase: 'Failed', ip: null, reason: null, exitCode: 1 });
  });

  it('recurses into objects and replaces arrays whole', () => {
    const conditions = [{ type: 'Ready', status: 'True' }];
    expect(
      mergePatch(
        { config: { env: { A: '1', B: '2' }, cmd: ['sh'] }, conditions: [] },
        { config: { env: { A: '1' }, cmd: ['sh', '-c'] }, conditions },
      ),
    ).toEqual({ config: { env: { B: null }, cmd: ['sh', '-c'] }, conditions });
  });

  it('is empty for equal values whatever their key order, and treats undefined as absent', () => {
    expect(mergePatch({ a: { x: 1, y: 2 } }, { a: { y: 2, x: 1 } })).toEqual({});
    expect(mergePatch({ a: 1, b: 2 }, { a: 1, b: undefined })).toEqual({ b: null });
    expect(mergePatch({}, { phase: 'Pending' })).toEqual({ phase: 'Pending' });
  });
});

describe('backoffDelay', () => {
  const b = { baseMs: 500, maxMs: 30_000 };

  it('doubles from the base up to the cap, jittered within the upper half', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const ceiling = Math.min(30_000, 500 * 2 ** attempt);
      expect(backoffDelay(attempt, b, () => 0)).toBe(ceiling / 2);
      expect(backoffDelay(attempt, b, () => 0.999999)).toBeCloseTo(ceiling, -1);
      const d = backoffDelay(attempt, b);
      expect(d).toBeGreaterThanOrEqual(ceiling / 2);
      expect(d).toBeLessThanOrEqual(ceiling);
    }
    expect(backoffDelay(40, b, () => 1)).toBe(30_000);
  });

  it('spreads agents that fail together', () => {
    const delays = new Set(Array.from({ length: 50 }, () => Math.round(backoffDelay(3, b))));
    expect(delays.size).toBeGreaterThan(10);
  });
});

describe('events', () => {
  const web = { kind: 'Container' as const, namespace: 'ns', name: 'web', uid: 'u1' };

  it('keys events by object, type, reason, message and reporter', () => {
    const k = eventKey(web, 'Normal', 'Started', 'started web', 'node-a');
    expect(eventKey({ ...web }, 'Normal', 'Started', 'started web', 'node-a')).toBe(k);
    expect(eventKey({ ...web, uid: 'u2' }, 'Normal', 'Started', 'started web', 'node-a')).not.toBe(
      k,
    );
    expect(eventKey(web, 'Warning', 'Started', 'started web', 'node-a')).not.toBe(k);
    expect(eventKey(web, 'Normal', 'Replacing', 'started web', 'node-a')).not.toBe(k);
    expect(eventKey(web, 'Normal', 'Started', 'started web again', 'node-a')).not.toBe(k);
    expect(eventKey(web, 'Normal', 'Started', 'started web', 'node-b')).not.toBe(k);
    // No separator can make two different events one key.
    expect(eventKey({ ...web, name: 'a","b' }, 'Normal', 'c', 'd', 'n')).not.toBe(
      eventKey({ ...web, name: 'a' }, 'Normal', 'b","c', 'd', 'n'),
    );
  });

  /** A sink that records calls; writes resolve when release() is called. */
  function fakeSink(fail: { create?: boolean; patch?: boolean } = {}) {
    const calls: { op: 'create' | 'patch'; namespace: string; name: string; body: unknown }[] = [];
    const waiting: (() => void)[] = [];
    const wait = () => new Promise<void>((r) => waiting.push(r));
    const sink: EventSink = {
      async create(namespace, event: EventsV1Event) {
        calls.push({ op: 'create', namespace, name: event.metadata?.name ?? '', body: event });
        await wait();
        if (fail.create) throw new Error('create refused');
      },
      async patch(namespace, name, body) {
        calls.push({ op: 'patch', namespace, name, body });
        await wait();
        if (fail.patch) throw new Error('patch refused');
      },
    };
    const release = async () => {
      for (let i = 0; i < 10; i++) {
        while (waiting.length) waiting.shift()?.();
        await new Promise((r) => setImmediate(r));
      }
    };
    return { sink, calls, release };
  }

  it('creates the first occurrence as an events.k8s.io/v1 Event about the object', async () => {
    const { sink, calls, release } = fakeSink();
    const at = new Date('2026-01-02T03:04:05.678Z');
    const rec = new EventRecorder(sink, 'node-a', silentLogger, () => at);
    rec.record(web, 'Normal', 'Started', 'started web');
    await release();
    await rec.flush();
    expect(calls).toHaveLength(1);
    const event = calls[0]?.body as EventsV1Event;
    expect(event).toMatchObject({
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { namespace: 'ns' },
      type: 'Normal',
      reason: 'Started',
      action: 'Started',
      note: 'started web',
      regarding: {
        apiVersion: 'conductor.dev/v1alpha1',
        kind: 'Container',
        namespace: 'ns',
        name: 'web',
        uid: 'u1',
      },
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: 'node-a',
    });
    expect(event.metadata?.name).toMatch(/^web\.[0-9a-f]+$/);
    // MicroTime: six fractional digits, as the API server parses it.
    expect(event.eventTime.toISOString()).toBe('2026-01-02T03:04:05.678000Z');
    expect(event.series).toBeUndefined();
  });

  it('folds repeats into the series of one Event, one write at a time', async () => {
    const { sink, calls, release } = fakeSink();
    let now = Date.parse('2026-01-02T03:04:05.000Z');
    const rec = new EventRecorder(sink, 'node-a', silentLogger, () => new Date(now));
    rec.record(web, 'Normal', 'Started', 'started web');
    // Three repeats while the create is in flight: one patch after it, with count 4.
    for (let i = 0; i < 3; i++) {
      now += 1000;
      rec.record(web, 'Normal', 'Started', 'started web');
    }
    expect(calls.map((c) => c.op)).toEqual(['create']);
    await release();
    await rec.flush();
    expect(calls.map((c) => c.op)).toEqual(['create', 'patch']);
    expect(calls[1]?.name).toBe(calls[0]?.name);
    expect(calls[1]?.body).toEqual({
      series: { count: 4, lastObservedTime: '2026-01-02T03:04:08.000000Z' },
    });
    now += 1000;
    rec.record(web, 'Normal', 'Started', 'started web');
    await release();
    await rec.flush();
    expect(calls[2]).toMatchObject({ op: 'patch', body: { series: { count: 5 } } });
    // Another message is another event.
    rec.record(web, 'Normal', 'Started', 'started web with pid 7');
    await release();
    await rec.flush();
    expect(calls[3]?.op).toBe('create');
    expect(calls[3]?.name).not.toBe(calls[0]?.name);
  });

  it('starts a new Event once the last repeat is older than the series window', async () => {
    const { sink, calls, release } = fakeSink();
    let now = 0;
    const rec = new EventRecorder(sink, 'node-a', silentLogger, () => new Date(now));
    rec.record(web, 'Warning', 'BackOff', 'back-off restarting');
    await release();
    now += 6 * 60_000;
    rec.record(web, 'Warning', 'BackOff', 'back-off restarting');
    await release();
    now += 6 * 60_000 + 1;
    rec.record(web, 'Warning', 'BackOff', 'back-off restarting');
    await release();
    await rec.flush();
    expect(calls.map((c) => c.op)).toEqual(['create', 'patch', 'create']);
    expect(calls[2]?.name).not.toBe(calls[0]?.name);
  });

  it('never throws: failed writes are logged, and a failed create is not patched', async () => {
    const warned: string[] = [];
    const log: Logger = { ...silentLogger, warn: (msg) => warned.push(msg) };
    const { sink, calls, release } = fakeSink({ create: true });
    const rec = new EventRecorder(sink, 'node-a', log);
    expect(() => rec.record(web, 'Normal', 'Started', 'x')).not.toThrow();
    rec.record(web, 'Normal', 'Started', 'x');
    await release();
    await rec.flush();
    expect(calls.map((c) => c.op)).toEqual(['create']);
    expect(warned).toEqual(['creating an event failed']);
    // The next occurrence tries to create it again.
    rec.record(web, 'Normal', 'Started', 'x');
    await release();
    await rec.flush();
    expect(calls.map((c) => c.op)).toEqual(['create', 'create']);
  });

  it('creates a new Event when patching the series fails (e.g. the Event expired)', async () => {
    const { sink, calls, release } = fakeSink({ patch: true });
    const rec = new EventRecorder(sink, 'node-a', silentLogger);
    for (let i = 0; i < 3; i++) {
      rec.record(web, 'Normal', 'Pulled', 'pulled');
      await release();
    }
    await rec.flush();
    expect(calls.map((c) => c.op)).toEqual(['create', 'patch', 'create']);
  });
});

describe('conductor up --kubeconfig', () => {
  it('takes a kubeconfig and a node name, resolved against the working directory', () => {
    expect(parseUpArgs(['--kubeconfig', 'kc.yaml', '--node-name', 'node-1.lab'], '/work')).toEqual({
      help: false,
      kubeconfig: '/work/kc.yaml',
      nodeName: 'node-1.lab',
      watchDir: '/etc/conductor/manifests',
      stateDir: '/var/lib/conductor',
      metricsAddr: '127.0.0.1:9090',
      logLevel: 'info',
      concurrency: { Container: 4 },
    });
    expect(parseUpArgs(['--kubeconfig', '/etc/kc'], '/').nodeName).toBeUndefined();
    expect(parseUpArgs([], '/').kubeconfig).toBeUndefined();
  });

  it('refuses a watch dir with a kubeconfig, a node name without one, and bad names', () => {
    expect(() => parseUpArgs(['--kubeconfig', 'kc', '--watch', 'dir'], '/')).toThrow(
      '--watch and --kubeconfig exclude each other',
    );
    expect(() => parseUpArgs(['--node-name', 'a'], '/')).toThrow(
      '--node-name is for Kubernetes mode (with --kubeconfig or --in-cluster)',
    );
    expect(() => parseUpArgs(['--in-cluster', '--watch', 'dir'], '/')).toThrow(
      '--watch and --in-cluster exclude each other',
    );
    expect(() => parseUpArgs(['--in-cluster', '--kubeconfig', 'kc'], '/')).toThrow(
      '--kubeconfig and --in-cluster exclude each other',
    );
    // The DaemonSet's arguments.
    expect(
      parseUpArgs(['--in-cluster', '--node-name=node-1', '--metrics-addr=0.0.0.0:9464'], '/'),
    ).toMatchObject({ inCluster: {}, nodeName: 'node-1', metricsAddr: '0.0.0.0:9464' });
    expect(() => parseUpArgs(['--kubeconfig', ''], '/')).toThrow('--kubeconfig needs a path');
    for (const bad of ['Node1', 'node_1', '-node', 'node.', 'a'.repeat(254)]) {
      expect(() => parseUpArgs(['--kubeconfig', 'kc', `--node-name=${bad}`], '/')).toThrow(
        '--node-name must be a lower-case DNS name',
      );
    }
  });
});

describe('conductor up: the node flags', () => {
  it('takes a build context (an existing directory) and the size of the node part', () => {
    const here = process.cwd();
    expect(
      parseUpArgs(
        ['--kubeconfig', 'kc', '--build-context', 'manifests/demo', '--node-cidr-mask-size', '26'],
        here,
      ),
    ).toMatchObject({ buildContext: `${here}/manifests/demo`, nodeCidrMaskSize: 26 });
    expect(() => parseUpArgs(['--build-context', 'manifests/demo'], here)).toThrow(
      '--build-context is for Kubernetes mode (with --kubeconfig or --in-cluster)',
    );
    expect(() => parseUpArgs(['--kubeconfig', 'kc', '--build-context', 'nowhere'], here)).toThrow(
      '--build-context nowhere: not a directory',
    );
    expect(() =>
      parseUpArgs(['--kubeconfig', 'kc', '--build-context', 'package.json'], here),
    ).toThrow('--build-context package.json: not a directory');
    expect(() => parseUpArgs(['--node-cidr-mask-size', '24'], here)).toThrow(
      '--node-cidr-mask-size is for Kubernetes mode',
    );
    for (const bad of ['31', '-1', '24.5', 'x', ''])
      expect(() =>
        parseUpArgs(['--kubeconfig', 'kc', `--node-cidr-mask-size=${bad}`], here),
      ).toThrow('--node-cidr-mask-size must be a prefix length of at most 30');
  });
});

describe("a node's labels and a Container's nodeSelector", () => {
  it('parses --node-labels as the kubelet does, checking keys and values', () => {
    expect(parseNodeLabels('disk=ssd,topology.kubernetes.io/zone=a,empty=')).toEqual({
      disk: 'ssd',
      'topology.kubernetes.io/zone': 'a',
      empty: '',
    });
    expect(parseUpArgs(['--kubeconfig', 'kc', '--node-labels', 'disk=ssd'], '/')).toMatchObject({
      nodeLabels: { disk: 'ssd' },
    });
    expect(() => parseUpArgs(['--node-labels', 'disk=ssd'], '/')).toThrow(
      '--node-labels is for Kubernetes mode',
    );
    expect(() => parseNodeLabels('disk')).toThrow(
      '--node-labels takes KEY=VALUE[,KEY=VALUE...], got "disk"',
    );
    expect(() => parseNodeLabels('=x')).toThrow('got "=x"');
    expect(() => parseNodeLabels('a=1,a=2')).toThrow('--node-labels: a given twice');
    expect(() => parseNodeLabels('bad key=1')).toThrow('--node-labels: Invalid value: "bad key"');
    expect(() => parseNodeLabels(`k=${'v'.repeat(64)}`)).toThrow(
      'must be no more than 63 characters',
    );
  });

  it('a selector matches a node with every one of its labels; none matches every node', () => {
    const labels = { disk: 'ssd', zone: 'a' };
    expect(selects(undefined, labels)).toBe(true);
    expect(selects({}, {})).toBe(true);
    expect(selects({ disk: 'ssd' }, labels)).toBe(true);
    expect(selects({ disk: 'ssd', zone: 'a' }, labels)).toBe(true);
    expect(selects({ disk: 'ssd', zone: 'b' }, labels)).toBe(false);
    expect(selects({ gpu: 'yes' }, labels)).toBe(false);
    expect(selects({ disk: '' }, {})).toBe(false);
  });
});

describe('KubernetesClient.open', () => {
  it('rejects a kubeconfig it cannot read, naming the flag and the file', async () => {
    await expect(
      KubernetesClient.open({
        kubeconfig: '/nonexistent/kubeconfig',
        nodeName: 'n',
        logger: silentLogger,
      }),
    ).rejects.toThrow(/^--kubeconfig \/nonexistent\/kubeconfig: ENOENT/);
  });

  it('in-cluster: names what a Pod would have and is missing', async () => {
    const saved = [process.env.KUBERNETES_SERVICE_HOST, process.env.KUBERNETES_SERVICE_PORT];
    const open = (root: string) =>
      KubernetesClient.open({ inCluster: { root }, nodeName: 'n', logger: silentLogger });
    const root = mkdtempSync(join(tmpdir(), 'in-cluster-'));
    try {
      delete process.env.KUBERNETES_SERVICE_HOST;
      delete process.env.KUBERNETES_SERVICE_PORT;
      await expect(open(root)).rejects.toThrow(
        '--in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set',
      );
      process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
      process.env.KUBERNETES_SERVICE_PORT = '6443';
      const dir = join(root, 'var/run/secrets/kubernetes.io/serviceaccount');
      await expect(open(root)).rejects.toThrow(`--in-cluster: no ServiceAccount token in ${dir}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'token'), 't');
      await expect(open(root)).rejects.toThrow(`no ServiceAccount ca.crt in ${dir}`);
      writeFileSync(join(dir, 'ca.crt'), '');
      await expect(open(root)).resolves.toBeInstanceOf(KubernetesClient);
      await expect(
        KubernetesClient.open({
          inCluster: { root },
          kubeconfig: '/x',
          nodeName: 'n',
          logger: silentLogger,
        }),
      ).rejects.toThrow('--kubeconfig and --in-cluster exclude each other');
    } finally {
      rmSync(root, { recursive: true, force: true });
      const [host, port] = saved;
      if (host === undefined) delete process.env.KUBERNETES_SERVICE_HOST;
      else process.env.KUBERNETES_SERVICE_HOST = host;
      if (port === undefined) delete process.env.KUBERNETES_SERVICE_PORT;
      else process.env.KUBERNETES_SERVICE_PORT = port;
    }
  });
});

describe('eventRecord (conductor describe --kubeconfig)', () => {
  it('shows a series as one event: its count, first and latest times', () => {
    expect(
      eventRecord({
        type: 'Warning',
        reason: 'BackOff',
        note: 'Back-off restarting failed container',
        eventTime: '2026-12-04T10:00:00.000000Z',
        series: { count: 18, lastObservedTime: '2026-12-04T10:00:40.000000Z' },
      }),
    ).toEqual({
      time: '2026-12-04T10:00:40.000000Z',
      type: 'Warning',
      reason: 'BackOff',
      message: 'Back-off restarting failed container',
      count: 18,
      firstTime: '2026-12-04T10:00:00.000000Z',
    });
    // A single event: no count; client-node's Dates are taken too.
    expect(
      eventRecord({ type: 'Normal', reason: 'Started', note: 'x', eventTime: new Date(0) }),
    ).toEqual({
      time: '1970-01-01T00:00:00.000Z',
      type: 'Normal',
      reason: 'Started',
      message: 'x',
    });
  });
});
