/**
 * Ownership by construction: a stopped controller leaves nothing behind that keeps a process
 * alive. In process, stopping a manager that runs containers (with probes and exit watches)
 * leaves no active handle it made (`process.getActiveResourcesInfo()`); as its own process,
 * `conductor up` exits by itself after SIGTERM — bin/conductor.js has no process.exit to paper
 * over a leftover handle. The containers keep running in both cases, as documented.
 */
import { createHook } from 'node:async_hooks';
import type { ChildProcess } from 'node:child_process';

import { afterAll, beforeAll, expect, it } from '@jest/globals';

import type { Container } from '../../controller/api/types.generated.js';
import { ContainerRuntime } from '../../runtime-core/src/containers.js';
import {
  ControllerHarness,
  buildDist,
  busyboxImage,
  containerManifest,
} from '../fixtures/controller.js';
import { assertNoLeaks, hostSnapshot, uniqueId, type HostSnapshot } from '../fixtures/index.js';

const NS = uniqueId('ml');
let h: ControllerHarness;
let before: HostSnapshot;
let child: ChildProcess | undefined;

beforeAll(async () => {
  before = hostSnapshot();
  await buildDist();
  h = await ControllerHarness.create(NS);
  await h.write('image.yaml', busyboxImage(NS));
  await h.write(
    'containers.yaml',
    [
      containerManifest(
        NS,
        'probed',
        {
          command: ['sleep', '1000'],
          readinessProbe: { exec: { command: ['true'] }, periodSeconds: 1 },
          livenessProbe: { tcpSocket: { port: 9 }, periodSeconds: 1, failureThreshold: 1000 },
        },
        { app: 'web' },
      ),
      containerManifest(NS, 'plain', { command: ['sleep', '1000'] }, { app: 'web' }),
      JSON.stringify({
        apiVersion: 'conductor.dev/v1alpha1',
        kind: 'Service',
        metadata: { name: 'web', namespace: NS },
        spec: { selector: { app: 'web' }, ports: [{ port: 80 }] },
      }),
    ].join('\n---\n'),
  );
}, 120_000);

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await h.cleanup();
  assertNoLeaks(before, { idPrefix: NS });
});

const running = (o: Container | undefined): boolean =>
  o?.status?.phase === 'Running' &&
  o.status.conditions?.find((c) => c.type === 'Ready')?.status === 'True';

/** Active resources by type (Timeout, TCPServerWrap, FSEventWrap, ...), counted. */
function activeResources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) counts.set(r, (counts.get(r) ?? 0) + 1);
  return counts;
}

/**
 * The async resources made from now on and still alive, with where each was made. Jest runs
 * this file in its own process and its reporter's timers come and go
 * (node_modules/@jest/reporters): a count of active handles alone once took those for the
 * manager's (3 Timeouts in CI), so a leak must also be one the manager made.
 */
const HANDLE_TYPES: Record<string, string> = {
  Timeout: 'Timeout',
  TCPWRAP: 'TCPSocketWrap',
  TCPSERVERWRAP: 'TCPServerWrap',
  PIPEWRAP: 'PipeWrap',
  PROCESSWRAP: 'ProcessWrap',
  FSEVENTWRAP: 'FSEventWrap',
  SIGNALWRAP: 'SignalWrap',
  STATWATCHER: 'StatWatcher',
};
function trackHandles(): {
  live: Map<number, { type: string; stack: string }>;
  disable: () => void;
} {
  const live = new Map<number, { type: string; stack: string }>();
  const hook = createHook({
    init(id, type) {
      const shown = HANDLE_TYPES[type];
      if (!shown) return;
      const stack = new Error().stack?.split('\n').slice(3, 10).join('\n') ?? '';
      if (stack.includes('node_modules/@jest/') || stack.includes('manager-lifecycle.test.ts'))
        return;
      live.set(id, { type: shown, stack });
    },
    destroy(id) {
      live.delete(id);
    },
  }).enable();
  return { live, disable: () => hook.disable() };
}

it('stopping a manager with running containers leaves no active handle behind', async () => {
  const baseline = activeResources();
  const handles = trackHandles();
  await h.start();
  for (const n of ['probed', 'plain']) await h.waitFor<Container>('Container', n, running, 60_000);
  // A probe has run (the readiness probe made it ready), so its timers are pending now.
  const during = activeResources();
  expect([...during.values()].reduce((a, b) => a + b, 0)).toBeGreaterThan(
    [...baseline.values()].reduce((a, b) => a + b, 0),
  );
  await h.stop();
  // Let closed handles finish closing (their close callbacks run on the next turns).
  await new Promise((r) => setTimeout(r, 200));
  const after = activeResources();
  const left = [...after].filter(([type, n]) => n > (baseline.get(type) ?? 0));
  // The 200 ms timer above has fired; anything else more than before is the manager's leak.
  handles.disable();
  const made = [...handles.live.values()];
  const leaked = left.filter(([type]) => made.some((m) => m.type === type));
  expect(leaked.length === 0 ? [] : [leaked, ...made.map((m) => `${m.type}${m.stack}`)]).toEqual(
    [],
  );
  const runtime = new ContainerRuntime({ stateDir: h.stateDir });
  const infos = await runtime.list();
  expect(
    infos
      .filter((i) => i.status === 'running')
      .map((i) => i.id)
      .sort(),
  ).toEqual([`${NS}_plain`, `${NS}_probed`].sort());
}, 120_000);

it('`conductor up` exits by itself on SIGTERM while its containers run on', async () => {
  const up = h.spawnUp();
  child = up.child;
  // Adopted: ready again, probes running, exits watched.
  await h.waitFor<Container>(
    'Container',
    'probed',
    (o) => running(o) && (o?.status?.restartCount ?? 0) === 0,
    60_000,
  );
  await new Promise((r) => setTimeout(r, 1500)); // a probe period or so
  const p = child;
  const code = await new Promise<number | string>((resolve) => {
    // A hang is the failure: bounded well above a normal stop (which takes well under 1 s).
    const timer = setTimeout(() => resolve('still running 20 s after SIGTERM'), 20_000);
    p.once('exit', (c, s) => {
      clearTimeout(timer);
      resolve(c ?? String(s));
    });
    p.kill('SIGTERM');
  });
  expect({ code, stderr: code === 0 ? '' : up.stderr() }).toEqual({ code: 0, stderr: '' });
  const runtime = new ContainerRuntime({ stateDir: h.stateDir });
  expect((await runtime.inspect(`${NS}_probed`)).status).toBe('running');
}, 120_000);
