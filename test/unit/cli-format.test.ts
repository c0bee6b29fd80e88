/** The CLI's pure output formatting: AGE, tables, JSONPath printer columns, JSON/YAML. */
import { describe, expect, it } from '@jest/globals';

import type { PrinterColumn } from '../../controller/api/crd.js';
import { describeObject, humanize } from '../../controller/cli/describe.js';
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
});
