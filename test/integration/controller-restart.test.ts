/**
 * The controller as its own process (`conductor up`), SIGKILLed in the middle of reconciling 20
 * containers and started again: everything converges, nothing is duplicated, nothing running is
 * restarted, and what changed while it was down (a container exited, a manifest edited) is
 * picked up.
 */
import type { ChildProcess } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from '@jest/globals';

import type { Container, Image } from '../../controller/api/types.generated.js';
import { ContainerRuntime } from '../../runtime-core/src/containers.js';
import { defaultInstallationName } from '../../runtime-core/src/installation.js';
import { netnsNames } from '../../runtime-core/src/network/network.js';
import {
  ControllerHarness,
  buildDist,
  busyboxImage,
  containerManifest,
} from '../fixtures/controller.js';
import { assertNoLeaks, hostSnapshot, uniqueId, type HostSnapshot } from '../fixtures/index.js';

const NS = uniqueId('cr');
let h: ControllerHarness;
let before: HostSnapshot;
let child: ChildProcess | undefined;
let stderrOf: () => string = () => '';

function up(): ChildProcess {
  const p = h.spawnUp();
  stderrOf = p.stderr;
  return p.child;
}

async function exited(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((resolve) => p.once('exit', () => resolve()));
}

beforeAll(async () => {
  before = hostSnapshot();
  // The command runs the compiled CLI: build it from the sources under test.
  await buildDist();
  h = await ControllerHarness.create(NS);
}, 120_000);

afterAll(async () => {
  if (child) {
    child.kill('SIGTERM');
    await exited(child);
  }
  await h.cleanup();
  assertNoLeaks(before, { idPrefix: NS });
});

const running = (o: Container | undefined): boolean =>
  o?.status?.phase === 'Running' && o.status.conditions?.[0]?.status === 'True';

it('converges after a SIGKILL mid-reconcile, without duplicates or needless restarts', async () => {
  await h.write('image.yaml', busyboxImage(NS));
  child = up();
  await h
    .waitFor<Image>('Image', 'busybox', (o) => o?.status?.phase === 'Ready', 60_000)
    .catch((err: Error) => {
      throw new Error(`${err.message}\ncontroller stderr:\n${stderrOf()}`);
    });
  const names = Array.from({ length: 20 }, (_, i) => `c-${i}`);
  const docs = names.map((n) => containerManifest(NS, n, { command: ['sleep', '1000'] }));
  docs.push(containerManifest(NS, 'short', { command: ['sleep', '1'], restartPolicy: 'Never' }));
  await h.write('many.yaml', docs.join('\n---\n'));

  // Kill it while it is still working through the list.
  const runtime = new ContainerRuntime({ stateDir: h.stateDir });
  for (;;) {
    const infos = await runtime.list();
    if (infos.filter((i) => i.status === 'running').length >= 5) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill('SIGKILL');
  await exited(child);
  const survivors = new Map(
    (await runtime.list()).filter((i) => i.status === 'running').map((i) => [i.id, i.pid]),
  );
  expect(survivors.size).toBeGreaterThanOrEqual(5);

  // While it is down: `short` exits, one container leaves the manifest, one joins it.
  await runtime.waitForExit(`${NS}_short`).catch(() => undefined);
  const edited = names
    .filter((n) => n !== 'c-0')
    .map((n) => containerManifest(NS, n, { command: ['sleep', '1000'] }));
  edited.push(containerManifest(NS, 'short', { command: ['sleep', '1'], restartPolicy: 'Never' }));
  edited.push(containerManifest(NS, 'late', { command: ['sleep', '1000'] }));
  await h.write('many.yaml', edited.join('\n---\n'));
  // What a kill in the middle of an attachment record's write leaves (it happened in CI).
  await writeFile(join(h.stateDir, 'network', 'attachments', '.999999.1.tmp'), '{"id":');

  child = up();
  const wanted = [...names.filter((n) => n !== 'c-0'), 'late'];
  for (const n of wanted) {
    await h.waitFor<Container>('Container', n, running, 60_000).catch((err: Error) => {
      throw new Error(`${err.message}\ncontroller stderr:\n${stderrOf()}`);
    });
  }
  await h.waitFor<Container>('Container', 'short', (o) => o?.status?.phase === 'Succeeded', 30_000);
  await h.waitFor('Container', 'c-0', (o) => o === undefined, 30_000);

  const now = (await runtime.list()).filter((i) => i.status === 'running');
  const ids = now.map((i) => i.id).sort();
  expect(ids).toEqual(wanted.map((n) => `${NS}_${n}`).sort());
  // Adopted, not restarted: every survivor still has the pid it had before the kill.
  for (const [id, pid] of survivors) {
    if (id === `${NS}_c-0` || id === `${NS}_short`) continue;
    expect(now.find((i) => i.id === id)?.pid).toBe(pid);
  }
  // Networking of a controller killed in the middle of a burst of ADDs: after the restart every
  // container has one attachment, one netns and one address, and nothing else holds any (c-0,
  // removed while it was down, has none left).
  const all = (await runtime.list()).map((i) => i.id).sort();
  const attachments = (await readdir(join(h.stateDir, 'network', 'attachments')))
    .map((f) => f.replace(/\.json$/, ''))
    .sort();
  expect(attachments).toEqual(all);
  const installation = defaultInstallationName(h.stateDir);
  expect(
    netnsNames()
      .filter((n) => n.startsWith(`${installation}-`))
      .map((n) => n.slice(installation.length + 1))
      .sort(),
  ).toEqual(all);
  const ipam = join(h.stateDir, 'network', 'ipam', installation);
  const owners = await Promise.all(
    (await readdir(ipam))
      .filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))
      .map(async (f) => (await readFile(join(ipam, f), 'utf8')).split('\n')[0]?.trim() ?? ''),
  );
  expect(owners.sort()).toEqual(all);
}, 240_000);

it('keeps uid, creationTimestamp and generation across a restart; a change made while down is one more generation', async () => {
  const meta = async (n: string) => (await h.object<Container>('Container', n))?.metadata;
  const before1 = await meta('c-1');
  const before2 = await meta('c-2');
  expect(before1?.uid).toBeDefined();
  child?.kill('SIGTERM');
  if (child) await exited(child);

  const names = Array.from({ length: 20 }, (_, i) => `c-${i}`).filter((n) => n !== 'c-0');
  const docs = names.map((n) =>
    containerManifest(NS, n, {
      command: ['sleep', '1000'],
      ...(n === 'c-2' ? { env: [{ name: 'CHANGED', value: 'while-down' }] } : {}),
    }),
  );
  docs.push(containerManifest(NS, 'short', { command: ['sleep', '1'], restartPolicy: 'Never' }));
  docs.push(containerManifest(NS, 'late', { command: ['sleep', '1000'] }));
  await h.write('many.yaml', docs.join('\n---\n'));
  child = up();

  const gen2 = (before2?.generation ?? 0) + 1;
  const after2 = await h.waitFor<Container>(
    'Container',
    'c-2',
    (o) => running(o) && o?.status?.observedGeneration === gen2,
    60_000,
  );
  expect(after2?.metadata).toMatchObject({
    uid: before2?.uid,
    creationTimestamp: before2?.creationTimestamp,
    generation: gen2,
  });
  expect(await meta('c-1')).toMatchObject({
    uid: before1?.uid,
    creationTimestamp: before1?.creationTimestamp,
    generation: before1?.generation,
  });
}, 120_000);
