/**
 * Images through the controller and the CLI, end to end: an Image pulled from a real registry
 * with a run step and a config, a Container that inherits its command from it, an Image built on
 * another (waiting for it), a failing build's status, `conductor images`, refusing to delete an
 * Image a Container uses, `conductor images prune`, and `conductor build -f` sharing the
 * controller's cache.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from '@jest/globals';

import type { Container, Image } from '../../controller/api/types.generated.js';
import { ContainerRuntime } from '../../runtime-core/src/containers.js';
import { mountOverlay } from '../../runtime-core/src/native.js';
import { ControllerHarness, REPO_ROOT, buildDist, type CliRun } from '../fixtures/controller.js';
import {
  assertNoLeaks,
  busyboxImage,
  hostSnapshot,
  pushImage,
  saveArchive,
  startRegistry,
  uniqueId,
  type HostSnapshot,
  type Registry,
} from '../fixtures/index.js';

const NS = uniqueId('imc');
let h: ControllerHarness;
let before: HostSnapshot;
let registry: Registry;
let from: string;

beforeAll(async () => {
  before = hostSnapshot();
  await buildDist();
  registry = await startRegistry({ prefix: NS });
  await pushImage(await busyboxImage(), registry, `${NS}/busybox:1`);
  from = `${registry.host}/${NS}/busybox:1`;
  h = await ControllerHarness.create(NS);
  await h.start({ images: { buildIdPrefix: `${NS}-build` } });
}, 120_000);

afterAll(async () => {
  await h?.cleanup();
  await registry?.stop();
  assertNoLeaks(before, { idPrefix: NS });
});

const conductor = (args: string[], input?: string): Promise<CliRun> => h.cli(args, input);

function image(name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Image',
    metadata: { name, namespace: NS },
    spec,
  });
}

function container(name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Container',
    metadata: { name, namespace: NS },
    spec: { terminationGracePeriodSeconds: 1, ...spec },
  });
}

const ready = (o: Image | undefined): boolean => o?.status?.phase === 'Ready';

it('pulls, builds and runs: the container inherits the image configuration', async () => {
  await h.write(
    'app.json',
    image('app', {
      from,
      registry: { tlsVerify: false },
      steps: [{ env: { WHO: 'conductor' } }, { run: 'echo "hello $WHO" > /greeting' }],
      config: { cmd: ['/bin/sh', '-c', 'cat /greeting; echo "$PATH"; exec sleep 1000'] },
    }),
  );
  const img = await h.waitFor<Image>('Image', 'app', ready);
  expect(img?.status).toMatchObject({
    observedGeneration: 1,
    stepsRun: 1,
    stepsCached: 0,
    config: { env: { PATH: '/bin', WHO: 'conductor' } },
  });
  expect(img?.status?.baseDigest).toMatch(/^sha256:[a-f0-9]{64}$/);
  expect(img?.status?.layers?.map((l) => l.createdBy)).toEqual([
    expect.stringMatching(/^pull sha256:/),
    'run echo "hello $WHO" > /greeting',
  ]);
  await h.write('app-ctr.json', container('app', { image: 'app' }));
  await h.waitFor<Container>('Container', 'app', (o) => o?.status?.phase === 'Running');
  let logs: CliRun | undefined;
  for (let i = 0; i < 100; i++) {
    logs = await conductor(['logs', '-n', NS, 'app']);
    if (logs.stdout.includes('/bin')) break;
  }
  expect(logs?.stdout).toBe('hello conductor\n/bin\n');

  const listed = await conductor(['images', '-n', NS]);
  expect(listed.code).toBe(0);
  expect(listed.stdout).toMatch(
    new RegExp(
      `^NAMESPACE +NAME +FROM +PHASE +DIGEST +LAYERS +SIZE +CREATED\\n${NS} +app +${from.replace(/[./]/g, '\\$&')} +Ready +[a-f0-9]{12} +2 +[0-9.]+[kM]B +\\d+s ago\\n$`,
    ),
  );

  const refused = await conductor(['delete', '-n', NS, 'image', 'app']);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toBe(
    'error: image.conductor.dev/app is used by container(s) app: delete them first\n',
  );
  expect(existsSync(join(h.watchDir, 'app.json'))).toBe(true);
}, 60_000);

it('builds an Image on another once that one is Ready', async () => {
  await h.write(
    'derived.json',
    image('derived', { from: 'image:base', steps: [{ run: 'touch /derived' }] }),
  );
  await h.waitFor<Image>('Image', 'derived', (o) => o?.status?.phase === 'Pending');
  await h.write(
    'base.json',
    image('base', { from, registry: { tlsVerify: false }, steps: [{ run: 'touch /base' }] }),
  );
  const base = await h.waitFor<Image>('Image', 'base', ready);
  const derived = await h.waitFor<Image>('Image', 'derived', ready);
  expect(derived?.status?.layers?.slice(0, 2)).toEqual(base?.status?.layers);
}, 60_000);

it('records a failed build with its step and output, then recovers when the spec is fixed', async () => {
  const broken = {
    from,
    registry: { tlsVerify: false },
    steps: [{ run: 'echo about to fail; exit 7' }],
  };
  await h.write('broken.json', image('broken', broken));
  const failed = await h.waitFor<Image>('Image', 'broken', (o) => o?.status?.phase === 'Failed');
  expect(failed?.status).toMatchObject({ failedStep: 0, observedGeneration: 1 });
  expect(failed?.status?.message).toMatch(
    /^spec\.steps\[0\]\.run: .*exited with code 7; last output:\nabout to fail$/,
  );
  expect(failed?.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
    status: 'False',
    reason: 'BuildFailed',
  });
  await h.write('broken.json', image('broken', { ...broken, steps: [{ run: 'true' }] }));
  await h.waitFor<Image>('Image', 'broken', (o) => ready(o) && o?.status?.observedGeneration === 2);
}, 60_000);

it('the files an Image copies are inputs: an edit rebuilds it and replaces its Containers', async () => {
  // From an archive next to the manifest: a local input too (and a restart's check of the
  // inputs asks no registry).
  await saveArchive(await busyboxImage(), 'oci-archive', join(h.watchDir, 'busybox.tar'));
  const site = join(h.watchDir, 'site');
  await mkdir(site);
  await writeFile(join(site, 'index.html'), 'v1\n');
  await h.write(
    'site.json',
    image('site', {
      from: 'oci-archive:busybox.tar',
      steps: [{ copy: { src: 'site', dest: '/site' } }, { run: 'ls /site > /listing' }],
      config: { cmd: ['/bin/sh', '-c', 'cat /site/index.html; exec sleep 1000'] },
    }),
  );
  await h.write('site-ctr.json', container('site', { image: 'site' }));
  // Replaced: running again, from the image's new digest.
  const runningFrom = async (img: Image | undefined): Promise<Container | undefined> =>
    h.waitFor<Container>(
      'Container',
      'site',
      (o) => o?.status?.phase === 'Running' && o.status.imageID === img?.status?.digest,
    );
  // What the container (replaced as often as the image changes) prints. An edit may reach the
  // watcher as more than one event on a loaded machine, and so make more than one build: the
  // checks below wait for the content, then look at the image and container that show it.
  const logsShow = async (text: string): Promise<void> => {
    let out = '';
    for (let i = 0; i < 500 && out !== text; i++) {
      out = (await conductor(['logs', '-n', NS, 'site'])).stdout;
      if (out !== text) await new Promise((r) => setTimeout(r, 20));
    }
    expect(out).toBe(text);
  };
  const current = async (): Promise<Image | undefined> => h.waitFor<Image>('Image', 'site', ready);
  const v1 = await current();
  const first = await runningFrom(v1);
  await logsShow('v1\n');

  // Edited in place: only the copy step and the ones after it run again.
  await writeFile(join(site, 'index.html'), 'v2\n');
  await logsShow('v2\n');
  const v2 = await current();
  expect(v2?.status?.digest).not.toBe(v1?.status?.digest);
  expect(v2?.status).toMatchObject({ observedGeneration: 1, stepsRun: 2, stepsCached: 0 });
  expect(v2?.status?.layers?.[0]).toEqual(v1?.status?.layers?.[0]);
  const second = await runningFrom(v2);
  expect(second?.status?.startedAt).not.toBe(first?.status?.startedAt);

  // Edited while the controller is down: seen when it starts.
  await h.stop();
  await writeFile(join(site, 'index.html'), 'v3\n');
  await h.start({ images: { buildIdPrefix: `${NS}-build` } });
  await logsShow('v3\n');
  const v3 = await current();
  expect(v3?.status?.digest).not.toBe(v2?.status?.digest);
  const third = await runningFrom(v3);

  // Nothing changed while it was down: the start's check finds every step cached and leaves
  // the status as it was (no Building in between, the last real build's figures kept).
  await h.stop();
  const ctl = await h.start({ images: { buildIdPrefix: `${NS}-build` } });
  const images = readdirSync(join(h.stateDir, 'objects', 'images', NS)).filter(
    (n) => n.endsWith('.json') && !n.startsWith('.'),
  ).length;
  const metric = (text: string, name: string): number =>
    text
      .split('\n')
      .filter((l) => l.startsWith(name))
      .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  for (let i = 0; ; i++) {
    const { host, port } = ctl.metricsAddress;
    const text = await (await fetch(`http://${host}:${port}/metrics`)).text();
    const done = metric(text, 'controller_runtime_reconcile_total{controller="image"');
    const busy =
      metric(text, 'workqueue_depth{name="image"') +
      metric(text, 'controller_runtime_active_workers{controller="image"');
    if (done >= images && busy === 0) break;
    if (i > 500) throw new Error(`image reconciles: ${done} of ${images}, ${busy} busy`);
    await new Promise((r) => setTimeout(r, 10));
  }
  expect((await h.object<Image>('Image', 'site'))?.status).toEqual(v3?.status);
  expect((await runningFrom(v3))?.status?.startedAt).toBe(third?.status?.startedAt);

  // A build that failed for a missing source succeeds once the source appears.
  await h.write(
    'late.json',
    image('late', {
      from: 'oci-archive:busybox.tar',
      steps: [{ copy: { src: 'late/app.conf', dest: '/etc/app.conf' } }],
    }),
  );
  const failed = await h.waitFor<Image>('Image', 'late', (o) => o?.status?.phase === 'Failed');
  expect(failed?.status?.message).toMatch(/late\/app\.conf/);
  await mkdir(join(h.watchDir, 'late'));
  await writeFile(join(h.watchDir, 'late', 'app.conf'), 'x=1\n');
  await h.waitFor<Image>('Image', 'late', ready);
  await h.remove('site-ctr.json');
  await h.remove('site.json');
  await h.remove('late.json');
}, 90_000);

it('a copy source filled while the controller watches is built once, when complete', async () => {
  // The newcomer's case: the Image is applied first (and fails: no rootfs), then
  // hack/busybox-rootfs.sh fills the directory in the watch dir — hundreds of files and links,
  // deep inside a directory that did not exist.
  await h.write(
    'burst.json',
    image('burst', { from: 'scratch', steps: [{ copy: { src: 'burst', dest: '/' } }] }),
  );
  await h.write(
    'burst-ctr.json',
    container('burst', {
      image: 'burst',
      command: ['/bin/sh', '-c', 'ls /bin | wc -l; cat /etc/group; exec sleep 1000'],
    }),
  );
  await h.waitFor<Image>('Image', 'burst', (o) => o?.status?.phase === 'Failed');
  const filled = await new Promise<number>((resolve) =>
    spawn(join(REPO_ROOT, 'hack', 'busybox-rootfs.sh'), [join(h.watchDir, 'burst')], {
      stdio: 'ignore',
    }).on('close', (code) => resolve(code ?? 1)),
  );
  expect(filled).toBe(0);
  const img = await h.waitFor<Image>('Image', 'burst', ready);
  const ctr = await h.waitFor<Container>(
    'Container',
    'burst',
    (o) => o?.status?.phase === 'Running' && o.status.imageID === img?.status?.digest,
  );
  // Long enough for a second build (or a replaced container) to show, were there one.
  await new Promise((r) => setTimeout(r, 1500));
  const events = async (plural: string): Promise<string[]> =>
    readFileSync(join(h.stateDir, 'events', plural, NS, 'burst.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .flatMap((l) => {
        // Repeats are folded into one line with a count.
        const e = JSON.parse(l) as { reason: string; count?: number };
        return Array<string>(e.count ?? 1).fill(e.reason);
      });
  expect((await events('images')).filter((r) => r === 'Built')).toHaveLength(1);
  expect(await events('containers')).toEqual(['Created', 'Started']);
  const now = await h.object<Container>('Container', 'burst');
  expect(now?.status).toMatchObject({ restartCount: 0, startedAt: ctr?.status?.startedAt });
  expect((await h.object<Image>('Image', 'burst'))?.status?.digest).toBe(img?.status?.digest);
  // Built from the whole tree: every applet link and the last file the script writes.
  const applets = readdirSync(join(h.watchDir, 'burst', 'bin')).length;
  let out = '';
  for (let i = 0; i < 200 && !out.includes('nogroup'); i++) {
    out = (await conductor(['logs', '-n', NS, 'burst'])).stdout;
    if (!out.includes('nogroup')) await new Promise((r) => setTimeout(r, 20));
  }
  expect(out).toBe(`${applets}\nroot:x:0:\nnogroup:x:65534:\n`);
  await h.remove('burst-ctr.json');
  await h.remove('burst.json');
  await h.waitFor('Container', 'burst', (o) => o === undefined);
}, 60_000);

it('conductor build shares the cache; images prune keeps only what is used', async () => {
  const manifest = join(h.base, 'cli-image.json');
  await writeFile(
    manifest,
    image('app', {
      from,
      registry: { tlsVerify: false },
      steps: [{ env: { WHO: 'conductor' } }, { run: 'echo "hello $WHO" > /greeting' }],
      config: { cmd: ['/bin/sh', '-c', 'cat /greeting; echo "$PATH"; exec sleep 1000'] },
    }),
  );
  const built = await conductor(['build', '-f', manifest]);
  expect(built.stderr).toBe('');
  expect(built.stdout).toMatch(
    /\[app\] step 2\/2: run echo "hello \$WHO" > \/greeting \(cached\)\n/,
  );
  expect(built.stdout).toMatch(
    /image\.conductor\.dev\/app built sha256:[a-f0-9]{64} \(.*; 0 step\(s\) run, 1 cached\)/,
  );

  // `derived` goes: its own layer is used by nothing else any more.
  const layersBefore = readdirSync(join(h.stateDir, 'layers')).filter((n) =>
    /^[a-f0-9]{64}$/.test(n),
  );
  await h.remove('derived.json');
  await h.waitFor<Image>('Image', 'derived', (o) => o === undefined);
  await h.stop(); // no grace period without a running controller
  // A build in progress (its process lives: this one) keeps its half-made layer, however old;
  // a dead build's goes.
  const deadPid = await new Promise<number>((resolve) => {
    const p = spawn('true');
    p.on('exit', () => resolve(p.pid ?? 0));
  });
  const liveTmp = join(h.stateDir, 'layers', `.tmp-${process.pid}-prunetest`);
  const deadTmp = join(h.stateDir, 'layers', `.tmp-${deadPid}-prunetest`);
  for (const d of [liveTmp, deadTmp]) {
    await mkdir(d);
    await utimes(d, new Date(0), new Date(0));
  }
  const pruned = await conductor(['images', 'prune']);
  expect(existsSync(liveTmp)).toBe(true);
  expect(existsSync(deadTmp)).toBe(false);
  await rm(liveTmp, { recursive: true });
  await h.start({ images: { buildIdPrefix: `${NS}-build` } });
  expect(pruned.code).toBe(0);
  expect(pruned.stdout).toMatch(/^deleted: sha256:[a-f0-9]{64} {2}\(run touch \/derived\)\n/m);
  expect(pruned.stdout).toMatch(/Total reclaimed space: /);
  const layersAfter = readdirSync(join(h.stateDir, 'layers')).filter((n) =>
    /^[a-f0-9]{64}$/.test(n),
  );
  expect(layersAfter.length).toBeLessThan(layersBefore.length);
  // Everything the remaining Images use is still there: they stay Ready and run.
  for (const name of ['app', 'base', 'broken']) {
    const o = await h.object<Image>('Image', name);
    for (const l of o?.status?.layers ?? [])
      expect(layersAfter).toContain(l.digest.replace(/^sha256:/, ''));
  }
  await h.waitFor<Container>('Container', 'app', (o) => o?.status?.phase === 'Running');
}, 60_000);

it('a stopping controller stops a build in progress; the next one builds the image again', async () => {
  const rt = new ContainerRuntime({ stateDir: h.stateDir });
  const builds = async (): Promise<string[]> =>
    (await rt.list()).map((c) => c.id).filter((id) => id.startsWith(`${NS}-build`));
  await h.write(
    'slow.json',
    image('slow', {
      from,
      registry: { tlsVerify: false },
      steps: [{ run: 'sleep 5; touch /done' }],
    }),
  );
  for (let i = 0; (await builds()).length === 0; i++) {
    if (i > 400) throw new Error('no build container appeared');
    await new Promise((r) => setTimeout(r, 25));
  }
  await h.stop();
  expect(await builds()).toEqual([]);
  expect((await h.object<Image>('Image', 'slow'))?.status?.phase).toBe('Building');
  expect(readdirSync(join(h.stateDir, 'layers')).filter((n) => n.startsWith('.tmp-'))).toEqual([]);

  // A build container whose controller died (SIGKILL) is removed by the next one.
  const orphan = `${NS}-build-orphan`;
  const layers = [
    join(
      h.stateDir,
      'layers',
      (await h.object<Image>('Image', 'app'))?.status?.layers?.[0]?.digest.slice(7) ?? '',
    ),
  ];
  const deadPid = await new Promise<number>((resolve) => {
    const p = spawn('true');
    p.on('exit', () => resolve(p.pid ?? 0));
  });
  await rt.create(
    {
      id: orphan,
      args: ['/bin/sleep', '1000'],
      annotations: {
        'conductor.dev/owner': `Build/${NS}/slow`,
        'conductor.dev/builder-pid': String(deadPid),
      },
    },
    { layers },
  );
  // One of a live builder (a `conductor build` running beside the controller) is its own.
  const live = `${NS}-build-live`;
  await rt.create(
    {
      id: live,
      args: ['/bin/sleep', '1000'],
      annotations: {
        'conductor.dev/owner': `Build/${NS}/other`,
        'conductor.dev/builder-pid': String(process.pid),
      },
    },
    { layers },
  );
  // A copy step's mounted image and a half-made layer of the dead builder.
  const mounted = join(h.stateDir, 'layers', `.tmp-${deadPid}-mnt`);
  const upper = join(h.stateDir, 'layers', `.tmp-${deadPid}-upper`);
  const work = join(h.stateDir, 'layers', `.tmp-${deadPid}-work`);
  for (const d of [mounted, upper, work]) await mkdir(d);
  await mountOverlay({ lower: layers, upper, work, target: mounted });

  await h.start({ images: { buildIdPrefix: `${NS}-build` } });
  const ids = (await rt.list()).map((c) => c.id);
  expect(ids).not.toContain(orphan);
  expect(ids).toContain(live);
  await rt.remove(live, { force: true });
  expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(mounted);
  // (The new controller's own build of `slow` may have a .tmp- directory by now.)
  expect(
    readdirSync(join(h.stateDir, 'layers')).filter((n) => n.startsWith(`.tmp-${deadPid}-`)),
  ).toEqual([]);
  const slow = await h.waitFor<Image>('Image', 'slow', ready);
  expect(slow?.status?.stepsRun).toBe(1);
}, 60_000);

it('delete -f refuses an Image whose Containers stay, and deletes it with them', async () => {
  const only = join(h.base, 'only-image');
  const both = join(h.base, 'both');
  await mkdir(only);
  await mkdir(both);
  await copyFile(join(h.watchDir, 'app.json'), join(only, 'app.json'));
  for (const f of ['app.json', 'app-ctr.json']) await copyFile(join(h.watchDir, f), join(both, f));

  const refused = await conductor(['delete', '-f', only]);
  expect(refused).toMatchObject({
    code: 1,
    stderr: 'error: image.conductor.dev/app is used by container(s) app: delete them first\n',
  });
  expect(existsSync(join(h.watchDir, 'app.json'))).toBe(true);

  const deleted = await conductor(['delete', '-f', both]);
  expect(deleted).toMatchObject({
    code: 0,
    stdout: 'container.conductor.dev/app deleted\nimage.conductor.dev/app deleted\n',
  });
  await h.waitFor('Container', 'app', (o) => o === undefined);
  await h.waitFor('Image', 'app', (o) => o === undefined);
}, 60_000);
