/**
 * The real control plane of hack/control-plane.sh (etcd and kube-apiserver built from the Go
 * module proxy, on 127.0.0.1) and the project's API on it: the CRDs in crds/ install and become
 * Established, the examples in manifests/examples/ pass a server-side dry run, a manifest that
 * breaks the schema is refused with the field it breaks, and status is written only through the
 * status subresource. Then `down` must leave none of the processes `up` started and no DIR.
 *
 * The first run builds the binaries (about 7 minutes on 2 cores, under nice) into
 * /var/cache/conductor/tools; later runs reuse them and take seconds.
 */
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { procStatFields } from '../../runtime-core/src/files.js';
import {
  CONTROL_PLANE_BUILD_TIMEOUT,
  CONTROL_PLANE_SCRIPT,
  controlPlaneBinaries,
} from '../fixtures/control-plane.js';
import { REPO_ROOT } from '../fixtures/controller.js';
import { FIXTURE_ROOT } from '../fixtures/index.js';

const SCRIPT = CONTROL_PLANE_SCRIPT;
const CRDS = ['containers.conductor.dev', 'images.conductor.dev', 'services.conductor.dev'];

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

interface Recorded {
  name: string;
  pid: number;
  startTime: string;
}

const run = (cmd: string, args: string[], input?: string): Run => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
};

/** Runs CMD and returns its stdout; throws with its stderr when it fails. */
const ok = (cmd: string, args: string[], input?: string): string => {
  const r = run(cmd, args, input);
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}\n${r.stderr}${r.stdout}`);
  }
  return r.stdout;
};

/** The last line of stdout: the scripts print a path last. */
const lastLine = (out: string): string => out.trim().split('\n').pop() ?? '';

/** Running, and the same process (a zombie counts as gone; a reused pid is someone else). */
const alive = (p: Recorded): boolean => {
  const fields = procStatFields(p.pid);
  return fields !== undefined && fields[0] !== 'Z' && fields[19] === p.startTime;
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const readPids = (dir: string): Recorded[] =>
  readFileSync(join(dir, 'pids'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const [name = '', pid = '', startTime = ''] = line.split(' ');
      return { name, pid: Number(pid), startTime };
    });

let bin = '';
let dir = '';
let kubeconfig = '';
/** What `up` started, read from DIR/pids while it is there. */
let started: Recorded[] = [];
/** Directories the refusal tests made. */
const foreign: string[] = [];

const kubectl = (args: string[], input?: string): Run =>
  run(join(bin, 'kubectl'), ['--kubeconfig', kubeconfig, ...args], input);
const kubectlOk = (args: string[], input?: string): string =>
  ok(join(bin, 'kubectl'), ['--kubeconfig', kubeconfig, ...args], input);

beforeAll(() => {
  mkdirSync(FIXTURE_ROOT, { recursive: true });
  bin = controlPlaneBinaries();
  dir = mkdtempSync(join(FIXTURE_ROOT, 'control-plane-'));
  kubeconfig = lastLine(ok(SCRIPT, ['up', dir]));
  started = readPids(dir);
}, CONTROL_PLANE_BUILD_TIMEOUT);

afterAll(() => {
  // When `down` was not reached or failed: stop what `up` recorded, by pid and start time.
  if (dir !== '' && existsSync(dir)) run(SCRIPT, ['down', dir]);
  // `up` refused before marking it as its own (down leaves such a DIR alone): still empty.
  if (dir !== '' && existsSync(dir) && readdirSync(dir).length === 0)
    rmSync(dir, { recursive: true });
  for (const p of started) if (alive(p)) process.kill(p.pid, 'SIGKILL');
  for (const d of foreign) rmSync(d, { recursive: true, force: true });
}, 60_000);

describe('hack/control-plane.sh', () => {
  it('starts etcd and kube-apiserver, records them, and is ready', () => {
    expect(kubeconfig).toBe(join(dir, 'kubeconfig'));
    expect(started.map((p) => p.name)).toEqual(['etcd', 'kube-apiserver']);
    for (const p of started) expect(alive(p)).toBe(true);
    expect(kubectlOk(['get', '--raw', '/readyz']).trim()).toBe('ok');
    // The trap: /readyz can say ok before the bootstrap controller made `default`.
    expect(kubectlOk(['get', 'namespace', 'default', '-o', 'name']).trim()).toBe(
      'namespace/default',
    );
    expect(ok(SCRIPT, ['status', dir])).toMatch(/kube-apiserver: ready at https:\/\/127\.0\.0\.1:/);
  });

  it('authenticates the admin as system:masters and has RBAC on', () => {
    expect(kubectlOk(['auth', 'can-i', '*', '*']).trim()).toBe('yes');
    const anonymous = kubectl(['--as', 'nobody', 'get', 'namespaces']);
    expect(anonymous.status).not.toBe(0);
    expect(anonymous.stderr).toMatch(/forbidden/i);
  });

  it('says so when up is run on a DIR that is up, and changes nothing', () => {
    const r = run(SCRIPT, ['up', dir]);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/is up already/);
    expect(lastLine(r.stdout)).toBe(kubeconfig);
    expect(readPids(dir)).toEqual(started);
  });

  it('refuses a DIR that is not its own, for up and down alike', () => {
    const other = mkdtempSync(join(FIXTURE_ROOT, 'control-plane-foreign-'));
    foreign.push(other);
    writeFileSync(join(other, 'keep-me'), 'not a control plane\n');
    for (const verb of ['up', 'down']) {
      const r = run(SCRIPT, [verb, other]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/not a control-plane directory/);
    }
    expect(readFileSync(join(other, 'keep-me'), 'utf8')).toBe('not a control plane\n');
  });

  it("installs the project's CRDs, which become Established", async () => {
    const applied = kubectlOk(['apply', '-f', join(REPO_ROOT, 'crds'), '-o', 'name']);
    expect(applied.trim().split('\n').sort()).toEqual(
      CRDS.map((c) => `customresourcedefinition.apiextensions.k8s.io/${c}`),
    );
    kubectlOk([
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      ...CRDS.map((c) => `crd/${c}`),
    ]);
    // Structural (v1 refuses anything else) and served, with the fields documented once the
    // API server has published the CRDs' OpenAPI, which it does a moment after Established.
    const explain = ['explain', 'images.spec.from', '--api-version=conductor.dev/v1alpha1'];
    let r = kubectl(explain);
    for (let deadline = Date.now() + 30_000; r.status !== 0 && Date.now() < deadline;) {
      await sleep(500);
      r = kubectl(explain);
    }
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/FIELD: *from/);
  });

  it('accepts manifests/examples/ in a server-side dry run, and stores nothing', () => {
    const out = kubectlOk([
      'apply',
      '--dry-run=server',
      '-f',
      join(REPO_ROOT, 'manifests/examples'),
    ]);
    expect(out).toMatch(/^image\.conductor\.dev\/busybox created \(server dry run\)$/m);
    expect(out).toMatch(/^container\.conductor\.dev\/hello created \(server dry run\)$/m);
    expect(kubectlOk(['get', 'images.conductor.dev', '-o', 'name']).trim()).toBe('');
  });

  it('refuses a manifest that breaks the schema, naming the fields', () => {
    const bad = [
      'apiVersion: conductor.dev/v1alpha1',
      'kind: Image',
      'metadata: { name: bad }',
      'spec:',
      "  from: ''",
      '  steps:',
      '    - copy: { src: rootfs, dest: relative/path }',
      '',
    ].join('\n');
    const r = kubectl(['apply', '--dry-run=server', '-f', '-'], bad);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/spec\.from: Invalid value/);
    expect(r.stderr).toMatch(/spec\.steps\[0\]\.copy\.dest: Invalid value/);
  });

  it('writes status only through the status subresource', () => {
    kubectlOk(['apply', '-f', join(REPO_ROOT, 'manifests/examples/busybox.yaml')]);
    const get = (): { generation: number; phase: string | undefined } => {
      const o = JSON.parse(kubectlOk(['get', 'images.conductor.dev', 'busybox', '-o', 'json'])) as {
        metadata: { generation: number };
        status?: { phase?: string };
      };
      return { generation: o.metadata.generation, phase: o.status?.phase };
    };
    const patch = ['patch', 'images.conductor.dev', 'busybox', '--type=merge'];
    const status = JSON.stringify({ status: { phase: 'Ready' } });
    // Through the main resource, status is dropped: nothing changes.
    expect(kubectlOk([...patch, '-p', status])).toMatch(/patched \(no change\)/);
    expect(get()).toEqual({ generation: 1, phase: undefined });
    // Through the subresource it is written, and the generation stays.
    kubectlOk([...patch, '--subresource=status', '-p', status]);
    expect(get()).toEqual({ generation: 1, phase: 'Ready' });
    // And the status subresource does not take a spec change.
    kubectlOk([...patch, '--subresource=status', '-p', '{"spec":{"from":"debian:bookworm"}}']);
    const spec = kubectlOk([
      'get',
      'images.conductor.dev',
      'busybox',
      '-o',
      'jsonpath={.spec.from}',
    ]);
    expect(spec).toBe('scratch');
    kubectlOk(['delete', 'images.conductor.dev', 'busybox', '--wait=true']);
  });

  it('down stops every process up started and removes DIR', () => {
    expect(started.length).toBe(2);
    const r = run(SCRIPT, ['down', dir]);
    expect(r.stderr).toMatch(/stopped, and removed/);
    expect(r.status).toBe(0);
    expect(started.filter(alive)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    // A second down has nothing to do.
    expect(run(SCRIPT, ['down', dir]).status).toBe(0);
  });
});
