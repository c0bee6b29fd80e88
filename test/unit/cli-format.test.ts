/** The CLI's pure output formatting: AGE, tables, JSONPath printer columns, JSON/YAML. */
import { describe, expect, it } from '@jest/globals';

import type { PrinterColumn } from '../../controller/api/crd.js';
import { loadCrd, schemaOf } from '../../controller/api/crd.js';
import { describeObject, humanize } from '../../controller/cli/describe.js';
import { foldEvent } from '../../controller/store/state-store.js';
import {
  age,
  formatTable,
  humanDuration,
  listOf,
  objectTable,
  printerCell,
  toJSON,
  toYAML,
} from '../../controller/cli/format.js';
import { evaluateJsonPath, parseJsonPath } from '../../controller/cli/jsonpath.js';
import { printerColumns, resolveResources } from '../../controller/cli/resources.js';

const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

describe('humanDuration (apimachinery HumanDuration)', () => {
  it.each([
    [-5 * S, '<invalid>'],
    [-500, '0s'],
    [0, '0s'],
    [5 * S, '5s'],
    [119 * S, '119s'],
    [2 * M, '2m'],
    [3 * M + 20 * S, '3m20s'],
    [10 * M, '10m'],
    [179 * M, '179m'],
    [3 * H, '3h'],
    [7 * H + 59 * M, '7h59m'],
    [8 * H, '8h'],
    [47 * H, '47h'],
    [2 * D, '2d'],
    [2 * D + 2 * H, '2d2h'],
    [8 * D, '8d'],
    [729 * D, '729d'],
    [730 * D, '2y'],
    [731 * D, '2y1d'],
    [9 * 365 * D, '9y'],
  ])('%d ms → %s', (ms, text) => {
    expect(humanDuration(ms)).toBe(text);
  });

  it('age reads RFC 3339 timestamps and says <unknown> without one', () => {
    const now = new Date('2026-11-28T12:00:00Z');
    expect(age('2026-11-28T11:55:00Z', now)).toBe('5m');
    expect(age(undefined, now)).toBe('<unknown>');
    expect(age('yesterday', now)).toBe('<unknown>');
  });
});

describe('formatTable', () => {
  it('pads every column but the last to its widest cell plus 3 spaces', () => {
    expect(
      formatTable([
        ['NAME', 'PHASE', 'AGE'],
        ['a-long-name', 'Running', '5s'],
        ['b', '', '10d'],
      ]),
    ).toBe(
      'NAME          PHASE     AGE\n' +
        'a-long-name   Running   5s\n' +
        'b                       10d\n',
    );
  });

  it('prints nothing for no rows', () => {
    expect(formatTable([])).toBe('');
  });
});

describe('JSONPath of printer columns', () => {
  const obj = {
    spec: { ports: [{ port: 80 }, { port: 443 }, {}], labels: { 'app.kubernetes.io/name': 'web' } },
    status: { phase: 'Running', restartCount: 0, ip: null },
  };

  it('follows fields, indexes, wildcards and quoted keys', () => {
    expect(evaluateJsonPath(obj, '.status.phase')).toEqual(['Running']);
    expect(evaluateJsonPath(obj, '.status.restartCount')).toEqual([0]);
    expect(evaluateJsonPath(obj, '.spec.ports[*].port')).toEqual([80, 443]);
    expect(evaluateJsonPath(obj, '.spec.ports[1].port')).toEqual([443]);
    expect(evaluateJsonPath(obj, '.spec.ports[-1]')).toEqual([{}]);
    expect(evaluateJsonPath(obj, ".spec.labels['app.kubernetes.io/name']")).toEqual(['web']);
    expect(evaluateJsonPath(obj, '{.status.phase}')).toEqual(['Running']);
  });

  it('finds nothing for missing or null fields and non-arrays', () => {
    expect(evaluateJsonPath(obj, '.status.ip')).toEqual([]);
    expect(evaluateJsonPath(obj, '.status.missing.deeper')).toEqual([]);
    expect(evaluateJsonPath(obj, '.status.phase[*]')).toEqual([]);
  });

  it('rejects paths that are not simple', () => {
    expect(() => parseJsonPath('.spec..port')).toThrow(/unsupported JSONPath/);
    expect(() => parseJsonPath('.items[?(@.x)]')).toThrow(/unsupported JSONPath/);
    expect(() => parseJsonPath('')).toThrow(/unsupported JSONPath/);
  });
});

describe('printer columns', () => {
  const now = new Date('2026-11-28T12:00:00Z');

  it('come from the CRDs, with AGE last as a date column', () => {
    const names = (kind: 'Image' | 'Container' | 'Service'): string[] =>
      printerColumns(kind).map((c) => c.name);
    expect(names('Container')).toEqual([
      'Phase',
      'Image',
      'IP',
      'Node',
      'Ports',
      'Restarts',
      'Reason',
      'Age',
    ]);
    expect(printerColumns('Container').at(-1)).toMatchObject({
      type: 'date',
      jsonPath: '.metadata.creationTimestamp',
    });
    for (const kind of ['Image', 'Service'] as const) expect(names(kind).at(-1)).toBe('Age');
  });

  it('cells join several values with commas, leave missing ones empty, show dates as age', () => {
    const ports: PrinterColumn = { name: 'Ports', type: 'string', jsonPath: '.spec.ports[*].port' };
    const created: PrinterColumn = {
      name: 'Age',
      type: 'date',
      jsonPath: '.metadata.creationTimestamp',
    };
    const obj = {
      metadata: { creationTimestamp: '2026-11-28T09:00:00Z' },
      spec: { ports: [{ port: 80 }, { port: 53 }] },
    };
    expect(printerCell(obj, ports, now)).toBe('80,53');
    expect(printerCell({}, ports, now)).toBe('');
    expect(printerCell(obj, created, now)).toBe('3h');
  });

  it("shows an Image's Size column as `conductor images` does, not as raw bytes", () => {
    const size = printerColumns('Image').find((c) => c.name === 'Size');
    expect(size).toMatchObject({ type: 'integer' });
    expect(printerCell({ status: { size: 1984241 } }, size as PrinterColumn, now)).toBe('1.98MB');
    expect(printerCell({ status: {} }, size as PrinterColumn, now)).toBe('');
  });

  it('objectTable: NAME first, NAMESPACE with -A, priority columns only when wide', () => {
    const columns: PrinterColumn[] = [
      { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
      { name: 'Reason', type: 'string', jsonPath: '.status.reason', priority: 1 },
    ];
    const objects = [
      {
        metadata: { name: 'web', namespace: 'prod' },
        status: { phase: 'Failed', reason: 'OOMKilled' },
      },
    ];
    const base = { columns, wide: false, allNamespaces: false, qualifiedNames: false, now };
    expect(objectTable('Container', objects, base)).toEqual([
      ['NAME', 'PHASE'],
      ['web', 'Failed'],
    ]);
    expect(
      objectTable('Container', objects, {
        ...base,
        wide: true,
        allNamespaces: true,
        qualifiedNames: true,
      }),
    ).toEqual([
      ['NAMESPACE', 'NAME', 'PHASE', 'REASON'],
      ['prod', 'container.conductor.dev/web', 'Failed', 'OOMKilled'],
    ]);
  });
});

describe('resource names', () => {
  it('accept plural, singular, kind, short name, group-qualified, comma lists and all', () => {
    expect(resolveResources('containers')).toEqual(['Container']);
    expect(resolveResources('Container')).toEqual(['Container']);
    expect(resolveResources('cimg,csvc')).toEqual(['Image', 'Service']);
    expect(resolveResources('services.conductor.dev')).toEqual(['Service']);
    expect(resolveResources('all')).toEqual(['Image', 'Container', 'Service']);
    expect(() => resolveResources('pods')).toThrow(
      'the server doesn\'t have a resource type "pods"',
    );
  });
});

describe('JSON and YAML output', () => {
  const obj = { spec: { b: 1, a: [{ y: 1, x: 2 }] }, apiVersion: 'v', kind: 'K' };

  it('JSON: keys sorted, 4-space indent, trailing newline', () => {
    expect(toJSON(obj)).toBe(
      '{\n    "apiVersion": "v",\n    "kind": "K",\n    "spec": {\n        "a": [\n            {\n                "x": 2,\n                "y": 1\n            }\n        ],\n        "b": 1\n    }\n}\n',
    );
  });

  it("YAML: keys sorted, sequences at their key's indentation, long strings unfolded", () => {
    const long = 'x'.repeat(120);
    expect(toYAML({ ...obj, note: long })).toBe(
      `apiVersion: v\nkind: K\nnote: ${long}\nspec:\n  a:\n  - x: 2\n    y: 1\n  b: 1\n`,
    );
  });

  it('several objects are a List', () => {
    expect(listOf([obj])).toEqual({
      apiVersion: 'v1',
      items: [obj],
      kind: 'List',
      metadata: { resourceVersion: '' },
    });
  });
});

describe('describe', () => {
  it('humanizes field names as kubectl describe does', () => {
    expect(humanize('containerPort')).toBe('Container Port');
    expect(humanize('hostIP')).toBe('Host IP');
    expect(humanize('clusterIPAddress')).toBe('Cluster IP Address');
    expect(humanize('image')).toBe('Image');
    expect(humanize('uid')).toBe('UID');
    expect(humanize('ip')).toBe('IP');
    expect(humanize('containerID')).toBe('Container ID');
  });

  it('lays out an object without status, conditions or events', () => {
    const text = describeObject(
      {
        apiVersion: 'conductor.dev/v1alpha1',
        kind: 'Image',
        metadata: { name: 'busybox', namespace: 'default', generation: 1 },
        spec: {
          from: 'scratch',
          steps: [{ copy: { src: 'rootfs', dest: '/' } }],
          env: ['A=1', 'B=2'],
        },
      },
      { events: [], now: new Date() },
    );
    expect(text).toBe(
      [
        'Name:         busybox',
        'Namespace:    default',
        'Labels:       <none>',
        'Annotations:  <none>',
        'API Version:  conductor.dev/v1alpha1',
        'Kind:         Image',
        'Source:       <none>',
        'Metadata:',
        '  Generation:  1',
        'Spec:',
        '  From:  scratch',
        '  Steps:',
        '    Copy:',
        '      Src:   rootfs',
        '      Dest:  /',
        '  Env:  A=1, B=2',
        'Status:',
        'Conditions:  <none>',
        'Events:  <none>',
        '',
      ].join('\n'),
    );
  });

  const container = {
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Container',
    metadata: { name: 'hello', namespace: 'default' },
    spec: {
      image: 'busybox',
      command: ['/bin/sh', '-c'],
      args: ["trap 'echo bye' TERM\necho hello\nsleep 100\n"],
      env: [{ name: 'MODE', value: 'demo' }],
    },
  };

  it('keeps every line of a multi-line arg under its key, indented', () => {
    const text = describeObject(container, {
      events: [],
      schema: schemaOf(loadCrd('Container')),
      now: new Date(),
    });
    expect(text).toContain(
      [
        'Spec:',
        '  Image:    busybox',
        '  Command:  /bin/sh, -c',
        '  Args:',
        "    trap 'echo bye' TERM",
        '    echo hello',
        '    sleep 100',
        '  Env:',
        '    Name:   MODE',
        '    Value:  demo',
      ].join('\n'),
    );
  });

  it("prints a map's keys as they are: label keys and env names are data, not fields", () => {
    const service = {
      apiVersion: 'conductor.dev/v1alpha1',
      kind: 'Service',
      metadata: { name: 'hello', namespace: 'default' },
      spec: { selector: { app: 'hello', 'app.kubernetes.io/tier': 'web' } },
    };
    const text = describeObject(service, {
      events: [],
      schema: schemaOf(loadCrd('Service')),
      now: new Date(),
    });
    expect(text).toContain(
      [
        '  Selector:',
        '    app:                     hello',
        '    app.kubernetes.io/tier:  web',
      ].join('\n'),
    );
    const image = {
      apiVersion: 'conductor.dev/v1alpha1',
      kind: 'Image',
      metadata: { name: 'b', namespace: 'default' },
      spec: { from: 'scratch', config: { env: { PATH: '/bin', http_proxy: 'x' } } },
    };
    expect(
      describeObject(image, { events: [], schema: schemaOf(loadCrd('Image')), now: new Date() }),
    ).toContain(
      ['  Config:', '    Env:', '      PATH:        /bin', '      http_proxy:  x'].join('\n'),
    );
  });

  it('folds repeated events as kubectl shows them: x18 over 40s', () => {
    const now = new Date('2026-11-28T12:00:40Z');
    const text = describeObject(container, {
      events: [
        { time: '2026-11-28T12:00:00Z', type: 'Normal', reason: 'Started', message: 'started' },
        {
          time: '2026-11-28T12:00:37Z',
          firstTime: '2026-11-28T12:00:00Z',
          count: 18,
          type: 'Warning',
          reason: 'Failed',
          message: 'exec /bin/sh: ENOENT',
        },
      ],
      now,
    });
    expect(text).toContain(
      [
        'Events:',
        '  Type      Reason    Age                 Message',
        '  ----      ------    ----                -------',
        '  Normal    Started   40s                 started',
        '  Warning   Failed    3s (x18 over 40s)   exec /bin/sh: ENOENT',
      ].join('\n'),
    );
  });
});

describe('foldEvent (the event recorder)', () => {
  const ev = (time: string, reason: string, message = 'm') =>
    ({ time, type: 'Warning', reason, message }) as const;

  it('folds a repeat into the earlier event: count, first and last time, moved to the end', () => {
    let events = foldEvent([], ev('t1', 'Failed'), 50);
    events = foldEvent(events, ev('t2', 'Started'), 50);
    events = foldEvent(events, ev('t3', 'Failed'), 50);
    events = foldEvent(events, ev('t4', 'Failed'), 50);
    expect(events).toEqual([
      ev('t2', 'Started'),
      { ...ev('t4', 'Failed'), count: 3, firstTime: 't1' },
    ]);
  });

  it('keeps distinct messages apart and at most `kept` events, the oldest dropped', () => {
    let events = foldEvent([], ev('t1', 'Failed', 'a'), 2);
    events = foldEvent(events, ev('t2', 'Failed', 'b'), 2);
    events = foldEvent(events, ev('t3', 'Failed', 'c'), 2);
    expect(events.map((e) => e.message)).toEqual(['b', 'c']);
  });
});
