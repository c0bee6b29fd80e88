/**
 * The agent's image end to end, as README's kind route makes it: `hack/agent-image.sh` stages
 * the built tree and this host's node beside manifests/deploy/agent-image/agent-image.yaml,
 * builds it with `conductor build -f` (Debian bookworm from the shared debootstrap base cache
 * of the image suites, then apt-get of the agent's packages: about half a minute here) and
 * exports it with `conductor image export` as a docker-archive; skopeo reads it (the tag, the
 * layers, `conductor` as the entrypoint); imported back into a controller with `from:
 * docker-archive:` it runs `conductor version` as a Conductor Container.
 *
 * It runs in a state dir of its own (every layer made again but the base), so it costs about a
 * minute on this 2-core machine: the build, about 340 MB of layers packed, written by skopeo,
 * and unpacked again by the import.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from '@jest/globals';

import type { Container, Image } from '../../controller/api/types.generated.js';
import { ControllerHarness, REPO_ROOT, buildDist } from '../fixtures/controller.js';
import {
  FIXTURE_ROOT,
  assertNoLeaks,
  hostSnapshot,
  runTool,
  uniqueId,
  type HostSnapshot,
} from '../fixtures/index.js';

const NS = uniqueId('agentimg');
/** The debootstrap bases the image suites share (images-debian.test.ts). */
const BASES = join(FIXTURE_ROOT, 'bases');
const VERSION = (
  JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
    version: string;
  }
).version;

let h: ControllerHarness;
let before: HostSnapshot;
let archive: string;
const timings: Record<string, number> = {};

beforeAll(async () => {
  before = hostSnapshot();
  await buildDist();
  h = await ControllerHarness.create(NS);
  archive = join(h.watchDir, 'conductor-agent.tar');
  await h.start({ images: { buildIdPrefix: `${NS}-build` } });
}, 120_000);

afterAll(async () => {
  await h?.cleanup();
  assertNoLeaks(before, { idPrefix: NS });
  // How long each part took, for the CI budget (README, Tests).
  console.log(`agent image: ${JSON.stringify(timings)}`);
}, 120_000);

/** Runs a hack/ script to its end; its output is kept for the failure message. */
function script(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(join(REPO_ROOT, 'hack', 'agent-image.sh'), args, {
      cwd: h.base,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code, out }));
  });
}

it('hack/agent-image.sh builds the agent image and exports conductor-agent:latest as a docker-archive', async () => {
  const started = Date.now();
  const run = await script(
    [
      '--state-dir',
      join(h.base, 'agent-state'),
      '--base-cache',
      BASES,
      'watch/conductor-agent.tar',
    ],
    // The staging directory goes there too: the test checks it is removed.
    { TMPDIR: h.base },
  );
  timings.script = (Date.now() - started) / 1000;
  expect({ code: run.code, tail: run.code === 0 ? '' : run.out.slice(-4000) }).toEqual({
    code: 0,
    tail: '',
  });
  // The build's progress, then where the archive is and how to load it. A relative FILE is the
  // caller's.
  expect(run.out).toContain('[conductor-agent] step 1/4: run printf');
  expect(run.out).toContain(`  | Client Version: v${VERSION}`);
  expect(run.out).toContain('  | conductor-runtime version');
  expect(run.out).toContain(`== ${archive} holds conductor-agent:latest (docker-archive`);
  expect(run.out).toContain(`kind load image-archive ${archive}`);
  expect(readdirSync(h.base).filter((n) => n.startsWith('conductor-agent-image.'))).toEqual([]);

  const inspect = JSON.parse(await runTool('skopeo', ['inspect', `docker-archive:${archive}`])) as {
    Layers: string[];
    Env: string[];
    Os: string;
  };
  // The base, the packages, node, the tree, the link.
  expect(inspect.Layers).toHaveLength(5);
  expect(inspect.Os).toBe('linux');
  expect(inspect.Env).toEqual([
    'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  ]);
  await runTool('skopeo', [
    'inspect',
    `docker-archive:${archive}:docker.io/library/conductor-agent:latest`,
  ]);
  const config = JSON.parse(
    await runTool('skopeo', ['inspect', '--config', `docker-archive:${archive}`]),
  ) as { config: { Entrypoint?: string[]; Cmd?: string[] } };
  expect(config.config).toMatchObject({ Entrypoint: ['conductor'], Cmd: ['--help'] });
}, 600_000);

it('imported back with from: docker-archive:, it runs `conductor version` as a Conductor Container', async () => {
  const started = Date.now();
  await h.write(
    'agent.json',
    JSON.stringify({
      apiVersion: 'conductor.dev/v1alpha1',
      kind: 'Image',
      metadata: { name: 'agent', namespace: NS },
      spec: { from: 'docker-archive:conductor-agent.tar' },
    }),
  );
  const image = await h.waitFor<Image>(
    'Image',
    'agent',
    (o) => o?.status?.phase === 'Ready' || o?.status?.phase === 'Failed',
    180_000,
  );
  expect(image?.status?.message).toBeUndefined();
  timings.import = (Date.now() - started) / 1000;
  timings.imageBytes = image?.status?.size ?? 0;
  expect(image?.status?.config).toMatchObject({ entrypoint: ['conductor'], cmd: ['--help'] });
  // The image is not small, but it has no package lists, docs or debug symbols.
  expect(image?.status?.size).toBeLessThan(400_000_000);

  await h.write(
    'version.json',
    JSON.stringify({
      apiVersion: 'conductor.dev/v1alpha1',
      kind: 'Container',
      metadata: { name: 'version', namespace: NS },
      spec: { image: 'agent', args: ['version'], restartPolicy: 'Never', network: 'none' },
    }),
  );
  const done = await h.waitFor<Container>(
    'Container',
    'version',
    (o) => o?.status?.phase === 'Succeeded' || o?.status?.phase === 'Failed',
    60_000,
  );
  const logs = await h.cli(['logs', 'version', '-n', NS]);
  expect({ phase: done?.status?.phase, logs: logs.stdout }).toEqual({
    phase: 'Succeeded',
    logs: `Client Version: v${VERSION}\nController Version: not running (state dir /var/lib/conductor)\n`,
  });
  await h.remove('version.json');
  await h.waitFor<Container>('Container', 'version', (o) => o === undefined);
}, 300_000);
