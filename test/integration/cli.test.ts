/**
 * The conductor CLI in-process (`main(argv, io)`) against a real state directory written by
 * the test exactly as controller/README.md's on-disk contract says the controller writes it,
 * and a real watch directory. `apply` needs a running controller: controller.json points at
 * this test process (its pid and /proc start time).
 */
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { EventEmitter } from 'node:events';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { parse as parseYaml } from 'yaml';

import { main } from '../../controller/cli/main.js';
import type { CliIO } from '../../controller/cli/io.js';
import { procStartTime } from '../../controller/cli/state.js';

const NOW = new Date('2026-11-28T12:00:00Z');
const minutesAgo = (m: number): string => new Date(NOW.getTime() - m * 60_000).toISOString();

let root: string;
let stateDir: string;
let watchDir: string;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(...argv: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const io: CliIO = {
    stdout: (t) => void (stdout += t),
    stderr: (t) => void (stderr += t),
    cwd: root,
    now: () => NOW,
    signals: new EventEmitter(),
  };
  const code = await main([...argv, '--state-dir', stateDir], io);
  return { code, stdout, stderr };
}

function writeJson(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(value, null, 2));
}

const web = {
  apiVersion: 'conductor.dev/v1alpha1',
  kind: 'Container',
  metadata: {
    name: 'web',
    namespace: 'default',
    uid: '7d0c1f4e-0000-4000-8000-000000000001',
    generation: 2,
    resourceVersion: '7',
    creationTimestamp: minutesAgo(5),
    labels: { app: 'web' },
  },
  spec: {
    image: 'busybox',
    command: ['httpd', '-f'],
    ports: [
      { containerPort: 80, protocol: 'TCP' },
      { containerPort: 443, protocol: 'TCP' },
    ],
    restartPolicy: 'Always',
    terminationGracePeriodSeconds: 30,
    network: 'bridge',
  },
  status: {
    phase: 'Running',
    observedGeneration: 2,
    containerID: 'default_web',
    ip: '10.77.0.2',
    restartCount: 1,
    reason: 'Started',
    conditions: [
      {
        type: 'Ready',
        status: 'True',
        reason: 'ContainerReady',
        message: '',
        lastTransitionTime: minutesAgo(3),
      },
    ],
  },
};

const db = {
  apiVersion: 'conductor.dev/v1alpha1',
  kind: 'Container',
  metadata: { name: 'db', namespace: 'prod', creationTimestamp: minutesAgo(60 * 50) },
  spec: { image: 'busybox', restartPolicy: 'Always', network: 'none' },
  status: { phase: 'Pending', reason: 'ImageNotReady', restartCount: 0 },
};

const image = {
  apiVersion: 'conductor.dev/v1alpha1',
  kind: 'Image',
  metadata: { name: 'busybox', namespace: 'default', creationTimestamp: minutesAgo(10) },
  spec: { from: 'scratch' },
  status: { phase: 'Ready', digest: 'sha256:abc', size: 1234 },
};

const service = {
  apiVersion: 'conductor.dev/v1alpha1',
  kind: 'Service',
  metadata: { name: 'web', namespace: 'default', creationTimestamp: minutesAgo(1) },
  spec: { selector: { app: 'web' }, ports: [{ port: 80, protocol: 'TCP' }], type: 'ClusterIP' },
  status: { clusterIP: '10.78.0.10', endpoints: [{ ip: '10.77.0.2' }, { ip: '10.77.0.3' }] },
};

const WEB_YAML = `# the web front end
apiVersion: conductor.dev/v1alpha1
kind: Container
metadata:
  name: web
  labels:
    app: web
spec:
  image: busybox
  command: [httpd, -f]
  ports:
    - containerPort: 80
    - containerPort: 443
---
apiVersion: conductor.dev/v1alpha1
kind: Service
metadata:
  name: web # published on the node
spec:
  selector:
    app: web
  ports:
    - port: 80
`;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'conductor-cli-'));
  stateDir = join(root, 'state');
  watchDir = join(root, 'watch');
  mkdirSync(watchDir, { recursive: true });
  for (const [plural, obj] of [
    ['containers', web],
    ['containers', db],
    ['images', image],
    ['services', service],
  ] as const) {
    writeJson(
      join(stateDir, 'objects', plural, obj.metadata.namespace, `${obj.metadata.name}.json`),
      obj,
    );
  }
  writeJson(join(stateDir, 'sources.json'), {
    watchDir,
    files: {
      'web.yaml': {
        objects: [
          { kind: 'Container', namespace: 'default', name: 'web' },
          { kind: 'Service', namespace: 'default', name: 'web' },
        ],
        errors: [],
      },
      'broken.yaml': {
        objects: [],
        errors: [{ line: 3, column: 5, path: 'spec.image', message: 'Required value' }],
      },
    },
  });
  mkdirSync(join(stateDir, 'events', 'containers', 'default'), { recursive: true });
  writeFileSync(
    join(stateDir, 'events', 'containers', 'default', 'web.jsonl'),
    [
      {
        time: minutesAgo(4),
        type: 'Normal',
        reason: 'Created',
        message: 'Created container default_web',
      },
      { time: minutesAgo(2), type: 'Warning', reason: 'BackOff', message: 'Back-off restarting' },
    ]
      .map((e) => JSON.stringify(e))
      .join('\n') + '\n',
  );
  writeFileSync(join(watchDir, 'web.yaml'), WEB_YAML);
});

afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

/** controller.json of a running controller: this process. */
function controllerIsThisProcess(): void {
  writeJson(join(stateDir, 'controller.json'), {
    pid: process.pid,
    pidStartTime: procStartTime(process.pid),
    watchDir,
    metricsAddr: '127.0.0.1:9090',
    startedAt: NOW.toISOString(),
    version: '0.1.0',
  });
}

/** Files in the watch dir, hidden ones included (no temporary file may be left behind). */
const watchFiles = (): string[] => readdirSync(watchDir).sort();

describe('conductor get', () => {
  beforeEach(controllerIsThisProcess);

  it('prints the printer columns of the CRD as a kubectl table', async () => {
    const r = await run('get', 'containers');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      'NAME   PHASE     IMAGE     IP          PORTS    RESTARTS   AGE\n' +
        'web    Running   busybox   10.77.0.2   80,443   1          5m\n',
    );
    // Files that failed to load are reported after the table.
    expect(r.stderr).toBe('error: broken.yaml:3:5: spec.image: Required value\n');
  });

  it('accepts short names, kinds and singulars; -A adds NAMESPACE; -o wide adds priority columns', async () => {
    const all = await run('get', 'cctr', '-A');
    expect(all.stdout).toBe(
      'NAMESPACE   NAME   PHASE     IMAGE     IP          PORTS    RESTARTS   AGE\n' +
        'default     web    Running   busybox   10.77.0.2   80,443   1          5m\n' +
        'prod        db     Pending   busybox                        0          2d2h\n',
    );
    const wide = await run('get', 'Container', '-n', 'prod', '-o', 'wide');
    expect(wide.stdout).toBe(
      'NAME   PHASE     IMAGE     IP   NODE   PORTS   RESTARTS   REASON          AGE\n' +
        'db     Pending   busybox                       0          ImageNotReady   2d2h\n',
    );
    expect((await run('get', 'service')).stdout).toBe(
      'NAME   CLUSTER-IP   PORTS   ENDPOINTS             AGE\n' +
        'web    10.78.0.10   80      10.77.0.2,10.77.0.3   60s\n',
    );
  });

  it('get all lists every kind with qualified names', async () => {
    const r = await run('get', 'all');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('NAME                          PHASE   FROM      SIZE     AGE\n');
    // The size as `conductor images` prints it (1234 bytes).
    expect(r.stdout).toContain('image.conductor.dev/busybox   Ready   scratch   1.23kB   10m\n');
    expect(r.stdout).toContain('container.conductor.dev/web');
    expect(r.stdout).toContain('service.conductor.dev/web');
    expect(r.stdout).not.toContain('/db'); // another namespace
  });

  it('-o json prints the stored object, and a List without a name', async () => {
    const one = await run('get', 'containers', 'web', '-o', 'json');
    expect(one.code).toBe(0);
    expect(JSON.parse(one.stdout)).toEqual(web);
    expect(one.stdout).toMatch(/^\{\n {4}"apiVersion"/); // 4-space indent, sorted keys

    const list = await run('get', 'cctr', '-A', '-o', 'json');
    expect(JSON.parse(list.stdout)).toEqual({
      apiVersion: 'v1',
      kind: 'List',
      metadata: { resourceVersion: '' },
      items: [web, db],
    });
  });

  it('-o yaml prints the same objects as YAML', async () => {
    const r = await run('get', 'containers', '-o', 'yaml');
    expect(r.code).toBe(0);
    expect(parseYaml(r.stdout)).toEqual({
      apiVersion: 'v1',
      kind: 'List',
      metadata: { resourceVersion: '' },
      items: [web],
    });
    expect(r.stdout).toContain('items:\n- apiVersion: conductor.dev/v1alpha1\n');
  });

  it('fails with NotFound for a missing name and with an unknown resource type', async () => {
    const missing = await run('get', 'containers', 'nope');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('error: containers.conductor.dev "nope" not found\n');
    const unknown = await run('get', 'pods');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('error: the server doesn\'t have a resource type "pods"\n');
    const empty = await run('get', 'images', '-n', 'prod');
    expect(empty.code).toBe(0);
    expect(empty.stderr).toContain('No resources found in prod namespace.\n');
  });
});

describe('conductor get events', () => {
  beforeEach(controllerIsThisProcess);

  /** More events: an Image's in prod, a folded repeat, a deleted container's (no object). */
  function moreEvents(): void {
    const add = (plural: string, ns: string, name: string, events: object[]): void => {
      mkdirSync(join(stateDir, 'events', plural, ns), { recursive: true });
      writeFileSync(
        join(stateDir, 'events', plural, ns, `${name}.jsonl`),
        events.map((e) => JSON.stringify(e)).join('\n') + '\n',
      );
    };
    add('images', 'prod', 'base', [
      { time: minutesAgo(3), type: 'Normal', reason: 'Built', message: 'image base built' },
    ]);
    add('containers', 'default', 'old', [
      {
        time: minutesAgo(1),
        firstTime: minutesAgo(9),
        count: 3,
        type: 'Warning',
        reason: 'BackOff',
        message: 'Back-off restarting failed container old',
      },
      {
        time: '2026-11-28T11:59:58.500Z',
        type: 'Normal',
        reason: 'Killing',
        message: 'Stopping container old',
      },
    ]);
  }

  it('lists the events as kubectl get events does, oldest first; -A adds NAMESPACE; --for one object', async () => {
    moreEvents();
    const r = await run('get', 'events');
    expect(r).toEqual({
      code: 0,
      stderr: '',
      stdout:
        'LAST SEEN          TYPE      REASON    OBJECT          MESSAGE\n' +
        '4m                 Normal    Created   container/web   Created container default_web\n' +
        '2m                 Warning   BackOff   container/web   Back-off restarting\n' +
        '60s (x3 over 9m)   Warning   BackOff   container/old   Back-off restarting failed container old\n' +
        '1s                 Normal    Killing   container/old   Stopping container old\n',
    });
    const all = await run('get', 'ev', '-A');
    expect(all.stdout.split('\n').slice(0, 4)).toEqual([
      'NAMESPACE   LAST SEEN          TYPE      REASON    OBJECT          MESSAGE',
      'default     4m                 Normal    Created   container/web   Created container default_web',
      'prod        3m                 Normal    Built     image/base      image base built',
      'default     2m                 Warning   BackOff   container/web   Back-off restarting',
    ]);
    const one = await run('get', 'events', '--for', 'cctr/old');
    expect(one.stdout).toBe(
      'LAST SEEN          TYPE      REASON    OBJECT          MESSAGE\n' +
        '60s (x3 over 9m)   Warning   BackOff   container/old   Back-off restarting failed container old\n' +
        '1s                 Normal    Killing   container/old   Stopping container old\n',
    );
    const none = await run('get', 'events', '-n', 'empty');
    expect(none).toEqual({
      code: 0,
      stdout: '',
      stderr: 'No resources found in empty namespace.\n',
    });
  });

  it('-o wide adds SOURCE, FIRST SEEN and COUNT; -o json|yaml prints events.k8s.io/v1 Events', async () => {
    moreEvents();
    const wide = await run('get', 'events', '--for', 'container/old', '-o', 'wide');
    expect(wide.stdout).toBe(
      'LAST SEEN   TYPE      REASON    OBJECT          SOURCE      MESSAGE                                    FIRST SEEN   COUNT\n' +
        '60s         Warning   BackOff   container/old   conductor   Back-off restarting failed container old   9m           3\n' +
        '1s          Normal    Killing   container/old   conductor   Stopping container old                     1s           1\n',
    );
    const json = JSON.parse(
      (await run('get', 'events', '--for', 'container/old', '-o', 'json')).stdout,
    ) as {
      kind: string;
      items: Record<string, unknown>[];
    };
    expect(json.kind).toBe('List');
    expect(json.items[0]).toMatchObject({
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { namespace: 'default' },
      eventTime: minutesAgo(9),
      series: { count: 3, lastObservedTime: minutesAgo(1) },
      type: 'Warning',
      reason: 'BackOff',
      note: 'Back-off restarting failed container old',
      regarding: {
        apiVersion: 'conductor.dev/v1alpha1',
        kind: 'Container',
        namespace: 'default',
        name: 'old',
      },
    });
    expect(json.items[1]).not.toHaveProperty('series');
    const yaml = parseYaml((await run('get', 'events', '-o', 'yaml')).stdout) as {
      items: unknown[];
    };
    expect(yaml.items).toHaveLength(4);
  });

  it('-w prints the listing, then each event recorded or repeated, until Ctrl-C', async () => {
    let stdout = '';
    const signals = new EventEmitter();
    const io: CliIO = {
      stdout: (t) => void (stdout += t),
      stderr: () => undefined,
      cwd: root,
      now: () => NOW,
      signals,
    };
    const done = main(['get', 'events', '-w', '--state-dir', stateDir], io);
    const until = async (text: string): Promise<void> => {
      for (let i = 0; i < 100 && !stdout.includes(text); i++)
        await new Promise((r) => setTimeout(r, 50));
      expect(stdout).toContain(text);
    };
    await until('Back-off restarting\n');
    const path = join(stateDir, 'events', 'containers', 'default', 'web.jsonl');
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    // The controller folds a repeat of the BackOff, and records a Killing.
    const backOff = {
      ...(JSON.parse(lines[1] ?? '{}') as object),
      time: minutesAgo(0.5),
      count: 2,
      firstTime: minutesAgo(2),
    };
    const killing = {
      time: minutesAgo(0.1),
      type: 'Normal',
      reason: 'Killing',
      message: 'Stopping container web',
    };
    writeFileSync(
      path,
      [lines[0], JSON.stringify(backOff), JSON.stringify(killing)].join('\n') + '\n',
    );
    await until('Stopping container web\n');
    signals.emit('SIGINT');
    expect(await done).toBe(130);
    expect(stdout).toBe(
      'LAST SEEN   TYPE      REASON    OBJECT          MESSAGE\n' +
        '4m          Normal    Created   container/web   Created container default_web\n' +
        '2m          Warning   BackOff   container/web   Back-off restarting\n' +
        '30s (x2 over 2m)   Warning   BackOff   container/web   Back-off restarting\n' +
        '6s                 Normal    Killing   container/web   Stopping container web\n',
    );
  });

  it('takes no NAME; --watch and --for are for events only', async () => {
    const named = await run('get', 'events', 'web');
    expect(named.code).toBe(2);
    expect(named.stderr).toContain('error: get events takes no NAME: use --for KIND/NAME');
    const watch = await run('get', 'containers', '-w');
    expect(watch.code).toBe(2);
    expect(watch.stderr).toContain('error: --watch is for events only\n');
    const badFor = await run('get', 'events', '--for', 'web');
    expect(badFor.stderr).toContain('error: --for must be KIND/NAME, got "web"\n');
  });
});

describe('conductor describe', () => {
  beforeEach(controllerIsThisProcess);

  it('shows metadata, spec, status, conditions, events and the defining file', async () => {
    const r = await run('describe', 'cctr', 'web');
    expect(r.code).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/^Name: +web\nNamespace: +default\nLabels: +app=web\n/);
    expect(out).toMatch(/Source: +web\.yaml\n/);
    expect(out).toContain('Spec:\n  Image:');
    expect(out).toMatch(/ {4}Container Port: +80\n/);
    expect(out).toMatch(/Restart Count: +1\n/);
    expect(out).toMatch(
      /Conditions:\n {2}Type +Status +Reason +Age +Message\n {2}-+ .*\n {2}Ready +True +ContainerReady +3m/,
    );
    expect(out).toMatch(/Events:\n {2}Type +Reason +Age +Message\n/);
    expect(out).toMatch(/Normal +Created +4m +Created container default_web\n/);
    expect(out).toMatch(/Warning +BackOff +2m +Back-off restarting\n$/);
  });

  it('shows only the events of this object, not those of a deleted one of the same name', async () => {
    const path = join(stateDir, 'events', 'containers', 'default', 'web.jsonl');
    const earlier = {
      time: minutesAgo(30),
      type: 'Normal',
      reason: 'Killing',
      message: 'Stopping container web',
    };
    writeFileSync(path, `${JSON.stringify(earlier)}\n${readFileSync(path, 'utf8')}`);
    const r = await run('describe', 'cctr', 'web');
    expect(r.stdout).toMatch(/Normal +Created +4m/);
    expect(r.stdout).not.toContain('Stopping container web');
  });

  it('shows the errors of the file that defines the object', async () => {
    const sources = JSON.parse(readFileSync(join(stateDir, 'sources.json'), 'utf8')) as {
      files: Record<string, { errors: unknown[] }>;
    };
    (sources.files['web.yaml'] as { errors: unknown[] }).errors = [
      { line: 12, column: 7, path: 'spec.ports[1].containerPort', message: 'Invalid value: 70000' },
    ];
    writeJson(join(stateDir, 'sources.json'), sources);
    const r = await run('describe', 'container', 'web');
    expect(r.stdout).toContain(
      'Errors:\n  web.yaml:12:7: spec.ports[1].containerPort: Invalid value: 70000\n',
    );
  });

  it('fails for a missing object', async () => {
    const r = await run('describe', 'container', 'db'); // it is in prod, not default
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('error: containers.conductor.dev "db" not found\n');
  });
});

describe('without a running controller', () => {
  it('get, describe and images fail where no controller has ever run, as kubectl without a server', async () => {
    stateDir = join(root, 'never-used');
    for (const argv of [
      ['get', 'all'],
      ['get', 'events'],
      ['describe', 'container', 'web'],
      ['images'],
    ]) {
      const r = await run(...argv);
      expect(r).toEqual({
        code: 1,
        stdout: '',
        stderr: `error: no controller is running for state dir ${stateDir} (start one with \`conductor up --state-dir ${stateDir}\`)\n`,
      });
    }
  });

  it('show what a stopped controller last recorded, with a warning', async () => {
    // A controller.json left by a controller that died, its pid now someone else's.
    writeJson(join(stateDir, 'controller.json'), { pid: process.pid, pidStartTime: '1', watchDir });
    const warning = `warning: no controller is running for state dir ${stateDir} (start one with \`conductor up --state-dir ${stateDir}\`); showing what it last recorded\n`;
    const got = await run('get', 'containers');
    expect(got.code).toBe(0);
    expect(got.stdout).toContain('web    Running');
    expect(got.stderr).toBe(`${warning}error: broken.yaml:3:5: spec.image: Required value\n`);
    const described = await run('describe', 'container', 'web');
    expect(described.code).toBe(0);
    expect(described.stderr).toBe(warning);
    expect(described.stdout).toContain('Name:         web');
  });
});

describe('conductor apply', () => {
  it('refuses without a running controller', async () => {
    const src = join(root, 'api.yaml');
    writeFileSync(
      src,
      'apiVersion: conductor.dev/v1alpha1\nkind: Image\nmetadata: {name: x}\nspec: {from: scratch}\n',
    );
    const none = await run('apply', '-f', src);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no controller is running');
    // A controller.json left by a controller that died, its pid now someone else's.
    writeJson(join(stateDir, 'controller.json'), { pid: process.pid, pidStartTime: '1', watchDir });
    expect((await run('apply', '-f', src)).code).toBe(1);
    expect(watchFiles()).toEqual(['web.yaml']);
  });

  it('copies files atomically and says created, configured or unchanged per object', async () => {
    controllerIsThisProcess();
    const srcDir = join(root, 'src');
    mkdirSync(srcDir);
    writeFileSync(join(srcDir, 'web.yaml'), WEB_YAML);
    writeFileSync(
      join(srcDir, 'api.json'),
      JSON.stringify({
        apiVersion: 'conductor.dev/v1alpha1',
        kind: 'Container',
        metadata: { name: 'api' },
        spec: { image: 'busybox' },
      }),
    );
    writeFileSync(join(srcDir, '.hidden.yaml'), 'not: read');
    writeFileSync(join(srcDir, 'notes.txt'), 'not a manifest');
    const inode = statSync(join(watchDir, 'web.yaml')).ino;

    const r = await run('apply', '-f', 'src');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      'container.conductor.dev/api created\n' +
        'container.conductor.dev/web unchanged\n' +
        'service.conductor.dev/web unchanged\n',
    );
    expect(watchFiles()).toEqual(['api.json', 'web.yaml']);
    // web.yaml had the same content: not rewritten (a rename would give a new inode).
    expect(statSync(join(watchDir, 'web.yaml')).ino).toBe(inode);

    // A changed spec is `configured`, and the file is replaced by rename.
    writeFileSync(join(srcDir, 'web.yaml'), WEB_YAML.replace('image: busybox', 'image: nginx'));
    const again = await run('apply', '-f', join(srcDir, 'web.yaml'));
    expect(again.stdout).toBe(
      'container.conductor.dev/web configured\nservice.conductor.dev/web unchanged\n',
    );
    expect(readFileSync(join(watchDir, 'web.yaml'), 'utf8')).toContain('image: nginx');
    expect(statSync(join(watchDir, 'web.yaml')).ino).not.toBe(inode);
    expect(watchFiles()).toEqual(['api.json', 'web.yaml']);
  });

  it('reports invalid manifests with their lines and copies nothing', async () => {
    controllerIsThisProcess();
    const good = join(root, 'good.yaml');
    const bad = join(root, 'bad.yaml');
    writeFileSync(
      good,
      'apiVersion: conductor.dev/v1alpha1\nkind: Image\nmetadata: {name: x}\nspec: {from: scratch}\n',
    );
    writeFileSync(
      bad,
      'apiVersion: conductor.dev/v1alpha1\nkind: Container\nmetadata:\n  name: bad\nspec:\n  image: busybox\n  ports:\n    - containerPort: 70000\n',
    );
    const r = await run('apply', '-f', good, '-f', bad);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      new RegExp(`^error: ${bad}:8:22: spec\\.ports\\[0\\]\\.containerPort: Invalid value: 70000`),
    );
    expect(watchFiles()).toEqual(['web.yaml']);
  });

  it('refuses an object another watch-dir file already defines', async () => {
    controllerIsThisProcess();
    const other = join(root, 'other.yaml');
    writeFileSync(other, WEB_YAML.split('---')[0] ?? '');
    const r = await run('apply', '-f', other);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `Container default/web is already defined by ${join(watchDir, 'web.yaml')}`,
    );
    expect(watchFiles()).toEqual(['web.yaml']);
  });
});

describe('conductor delete', () => {
  it('-f removes the watch-dir file of the same name when it defines the same objects', async () => {
    controllerIsThisProcess();
    const src = join(root, 'web.yaml');
    writeFileSync(src, WEB_YAML.split('---')[0] ?? '');
    const mismatch = await run('delete', '-f', src);
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toContain('does not define the same objects');
    expect(watchFiles()).toEqual(['web.yaml']);

    writeFileSync(src, WEB_YAML.replace('image: busybox', 'image: other'));
    const r = await run('delete', '-f', src);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      'container.conductor.dev/web deleted\nservice.conductor.dev/web deleted\n',
    );
    expect(watchFiles()).toEqual([]);
  });

  it('KIND NAME rewrites the defining file without the object, and removes it when empty', async () => {
    // No controller running: the watch dir is the one sources.json recorded.
    const r = await run('delete', 'cctr', 'web');
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('container.conductor.dev/web deleted\n');
    const left = readFileSync(join(watchDir, 'web.yaml'), 'utf8');
    expect(left).not.toContain('kind: Container');
    expect(left).toContain('kind: Service');
    expect(left).toContain('# published on the node'); // comments of other documents are kept
    expect(watchFiles()).toEqual(['web.yaml']);

    expect((await run('delete', 'service', 'web')).stdout).toBe(
      'service.conductor.dev/web deleted\n',
    );
    expect(watchFiles()).toEqual([]);

    const missing = await run('delete', 'service', 'web');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('error: services.conductor.dev "web" not found\n');
  });

  it('KIND NAME removes one item of a List and finds files sources.json does not know yet', async () => {
    writeFileSync(
      join(watchDir, 'list.json'),
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [
          {
            apiVersion: 'conductor.dev/v1alpha1',
            kind: 'Image',
            metadata: { name: 'a' },
            spec: { from: 'scratch' },
          },
          {
            apiVersion: 'conductor.dev/v1alpha1',
            kind: 'Image',
            metadata: { name: 'b' },
            spec: { from: 'scratch' },
          },
        ],
      }),
    );
    const r = await run('delete', 'cimg', 'a');
    expect(r.stdout).toBe('image.conductor.dev/a deleted\n');
    const left = JSON.parse(readFileSync(join(watchDir, 'list.json'), 'utf8')) as {
      items: { metadata: { name: string } }[];
    };
    expect(left.items.map((i) => i.metadata.name)).toEqual(['b']);
    expect(watchFiles()).toEqual(['list.json', 'web.yaml']);
  });
});
