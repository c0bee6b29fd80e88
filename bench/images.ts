/**
 * Images: a cached rebuild and a registry pull, Conductor against podman in the same run,
 * compared as ratios of medians.
 *
 * Cached rebuild of an unchanged two-step image: `from:` the busybox fixture image as an
 * oci-archive next to the manifest, a copy step of a small directory, a run step. Conductor is
 * timed the way it builds — the Image manifest landing in a running controller's watch dir
 * (removed, then renamed back in) until the persisted Image is Ready again — and as a user runs
 * the CLI (`node bin/conductor.js build -f FILE --state-dir DIR`: the wall time
 * of the process, node start-up included; it runs the CLI compiled into dist/) and in-process
 * (ImageBuilder.build() in this already loaded process: what the controller pays per
 * reconcile, no node start-up). podman: `podman build --pull=never` of the equivalent
 * Containerfile (FROM the same archive pulled into podman's private store, COPY, RUN). Each
 * contender first builds once uncached (printed as a reference) and once more untimed (warm-up);
 * then each round times each contender once, the order rotating per round, so drift on the
 * machine hits all alike. Every timed build must report both steps cached (Conductor
 * "0 step(s) run, 2 cached", podman two "Using cache"), or the bench fails rather than report a
 * build that did something else.
 *
 * Where the CLI's time goes, measured in the same run: node's own start-up (`node -e 0`),
 * `conductor version` (node plus loading the whole CLI), and a probe process that times, in
 * order: loading the parse and validation modules, the first (cold) validation of the manifest,
 * loading the rest of the CLI, and the build command itself (the process's wall time minus
 * these is its start-up and exit).
 *
 * Pull: an image of busybox plus --layers layers of --layer-mb MiB of random data each (random,
 * so gzip cannot shrink it and the bytes really travel; added with `umoci raw add-layer`),
 * pushed once to a local docker-registry on 127.0.0.1. Each round pulls it three ways, each
 * into fresh storage: `conductor build -f` of an Image `from: 127.0.0.1:PORT/bench/big:v1` with
 * `registry: {tlsVerify: false}` (skopeo copy, then our native unpack), the same through
 * ImageBuilder in-process (split by the builder's progress events into skopeo's copy and
 * unpack + commit), and `podman pull --tls-verify=false` into a new private store.
 *
 * podman runs with runc, a private store (--root/--runroot/--tmpdir), the cgroupfs manager,
 * ulimits this host allows (containers.conf), and `--network host` for RUN (Conductor's build
 * containers share the host's network too; podman would otherwise set up a bridge).
 *
 * Everything made (temp dirs, state dirs, podman stores and their mounts, the registry) is
 * removed at the end, also on failure; Ctrl-C stops after the current round.
 *
 *   node build/bench/bench/images.js [--rounds N] [--pull-rounds N] [--layers N]
 *     [--layer-mb N] [--skip-podman]
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import type { Image } from '../controller/api/types.generated.js';
import { runController } from '../controller/manager.js';
import { parseFile } from '../controller/cli/watchdir.js';
import { validateManifest } from '../controller/validation/index.js';
import { ContainerRuntime } from '../runtime-core/src/containers.js';
import { unpackLayer } from '../runtime-core/src/native.js';
import {
  ImageBuilder,
  type BuildProgress,
  type BuildRequest,
  type BuiltImage,
} from '../runtime-core/src/images/builder.js';
import {
  appendTarLayer,
  busyboxImage,
  pushImage,
  readLayoutImage,
  runTool,
  saveArchive,
} from '../test/fixtures/images.js';
import { findLeaks, hostSnapshot, listMounts } from '../test/fixtures/leaks.js';
import { startRegistry, type Registry } from '../test/fixtures/registry.js';
import { uniqueId } from '../test/fixtures/rootfs.js';
import { median, parseFlags, positiveFlag, repoRoot, table, which } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const positive = (name: string, fallback: number): number => positiveFlag(flags, name, fallback);
const rounds = positive('rounds', 15);
const pullRounds = positive('pull-rounds', 7);
const bigLayers = positive('layers', 4);
const layerMiB = positive('layer-mb', 4);
const skipPodman = flags.get('skip-podman') === 'true';
/** The issue's targets: rebuild at least 10x faster than podman; pull no slower (1x). */
const REBUILD_TARGET = 10;
const PULL_TARGET = 1;

const REPO = repoRoot();
const CLI = join(REPO, 'bin', 'conductor.js');
const DIST = join(REPO, 'dist');
const PREFIX = uniqueId('ibench');
/** Short: podman refuses a runroot path longer than 50 characters. */
const WORK = `/tmp/${PREFIX}`;
const RUN_STEP = '/bin/ls -lR /app > /app/listing';

/** Every podman store made, destroyed at the end whatever happened. */
const pmStores: PodmanStore[] = [];
/** The rebuild's in-process controller, stopped at the end. */
let stopController: (() => Promise<void>) | undefined;
let stop = false;
process.once('SIGINT', () => {
  stop = true;
  console.error('bench: stopping after this round, then cleaning up');
});

// ---------------------------------------------------------------------------------------------
// processes

interface Run {
  ms: number;
  stdout: string;
  stderr: string;
}

function lastLines(text: string, n = 3): string {
  return text.trim().split('\n').slice(-n).join(' | ');
}

/** Runs a command to completion and times it (wall clock, spawn included); throws on failure. */
function timed(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Run {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 << 20,
    ...(env ? { env } : {}),
  });
  const ms = performance.now() - t0;
  if (r.status !== 0) {
    const why = r.error ? String(r.error) : `exit ${r.status ?? r.signal}`;
    throw new Error(`${cmd} ${args.join(' ')}: ${why}: ${lastLines(`${r.stdout}\n${r.stderr}`)}`);
  }
  return { ms, stdout: r.stdout, stderr: r.stderr };
}

/** Unmounts everything mounted at or below `dir`, deepest first; failures go to `errors`. */
function unmountBelow(dir: string, errors: string[]): void {
  for (const m of listMounts()
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .reverse()) {
    const r = spawnSync('umount', [m], { encoding: 'utf8' });
    if (r.status !== 0) errors.push(`umount ${m}: ${lastLines(r.stderr, 1)}`);
  }
}

/** Removes a directory tree, after unmounting anything below it. */
async function removeTree(dir: string, errors: string[]): Promise<void> {
  unmountBelow(dir, errors);
  await rm(dir, { recursive: true, force: true }).catch((err: unknown) =>
    errors.push(`rm ${dir}: ${String(err)}`),
  );
}

// ---------------------------------------------------------------------------------------------
// podman

/** One private podman store (its own --root, --runroot and --tmpdir below `dir`). */
class PodmanStore {
  private readonly env: NodeJS.ProcessEnv;
  private readonly base: string[];

  constructor(
    readonly binary: string,
    readonly dir: string,
    containersConf: string,
  ) {
    this.env = { ...process.env, CONTAINERS_CONF: containersConf };
    this.base = [
      ...['--root', join(dir, 'root'), '--runroot', join(dir, 'run')],
      ...['--tmpdir', join(dir, 'tmp'), '--storage-driver', 'overlay'],
      ...['--cgroup-manager', 'cgroupfs', '--events-backend', 'file', '--runtime', 'runc'],
    ];
  }

  run(args: string[]): Run {
    return timed(this.binary, [...this.base, ...args], this.env);
  }

  /** Its images, any mount below it, the directory. Idempotent. */
  async destroy(errors: string[]): Promise<void> {
    if (!existsSync(this.dir)) return;
    try {
      this.run(['rmi', '--all', '--force']);
    } catch (err) {
      errors.push(String(err));
    }
    await removeTree(this.dir, errors);
  }
}

/** The host's hard nofile limit is 20000: podman's root defaults exceed it. */
async function writeContainersConf(path: string): Promise<void> {
  await writeFile(
    path,
    '[containers]\ndefault_ulimits = ["nofile=20000:20000","nproc=32768:32768"]\n',
  );
}

// ---------------------------------------------------------------------------------------------
// Conductor

function conductorCli(args: string[]): Run {
  return timed(process.execPath, [CLI, ...args]);
}

interface CliSummary {
  digest: string;
  run: number;
  cached: number;
  /** The build's own duration as the CLI prints it (`in 0.03s`: 10 ms resolution), in ms. */
  buildMs: number;
}

/** `conductor build`'s summary line: `… built DIGEST (SIZE; N step(s) run, M cached) in S.SSs`. */
function cliSummary(out: string): CliSummary {
  const m = / built (sha256:[0-9a-f]{64}) .*?(\d+) step\(s\) run, (\d+) cached\) in ([\d.]+)s/.exec(
    out,
  );
  if (!m?.[1]) throw new Error(`conductor build printed no summary line:\n${out}`);
  return { digest: m[1], run: Number(m[2]), cached: Number(m[3]), buildMs: Number(m[4]) * 1000 };
}

/** The Image a manifest file defines, validated and defaulted as `conductor build` does. */
function readImage(file: string): Image {
  const parsed = parseFile(readFileSync(file, 'utf8'), file, validateManifest);
  if (parsed.errors.length > 0) throw new Error(`${file}: ${JSON.stringify(parsed.errors)}`);
  const image = parsed.objects.map((o) => o.object).find((o): o is Image => o.kind === 'Image');
  if (!image) throw new Error(`${file}: no Image`);
  return image;
}

/** The BuildRequest `conductor build` makes of an Image (controller/cli/build.ts). */
function requestOf(image: Image, contextDir: string): BuildRequest {
  return {
    name: `${image.metadata.namespace ?? 'default'}/${image.metadata.name}`,
    from: image.spec.from,
    ...(image.spec.steps ? { steps: image.spec.steps } : {}),
    ...(image.spec.config ? { config: image.spec.config } : {}),
    ...(image.spec.registry ? { registry: image.spec.registry } : {}),
    contextDir,
  };
}

function builderFor(stateDir: string): ImageBuilder {
  return new ImageBuilder({ stateDir, runtime: new ContainerRuntime({ stateDir }) });
}

/**
 * Source files of the CLI newer than their dist/ output: the CLI rows would time old code.
 * (`npm run build` compiles them; the in-process rows use this bench's own swc build.)
 */
function staleDist(): string[] {
  const stale: string[] = [];
  for (const dir of ['controller', 'runtime-core/src']) {
    for (const f of readdirSync(join(REPO, dir), { recursive: true, encoding: 'utf8' })) {
      if (!f.endsWith('.ts') || f.endsWith('.d.ts')) continue;
      const src = join(REPO, dir, f);
      const out = join(DIST, dir, f.replace(/\.ts$/, '.js'));
      if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs)
        stale.push(`${dir}/${f}`);
    }
  }
  return stale;
}

/**
 * A process that runs `conductor build` as bin/conductor.js does, loading the CLI's modules in
 * steps to time each (performance.now() counts from the process's start). It prints one JSON
 * line on stderr: `{code, marks: [[phase, ms], …], inside}`, phases in PROBE_PHASES order.
 */
const PROBE = `
let last = performance.now();
const marks = [['boot', last]];
const mark = (name) => { const now = performance.now(); marks.push([name, now - last]); last = now; };
const { readFileSync } = await import('node:fs');
const dist = process.env.BENCH_DIST, file = process.env.BENCH_FILE;
await import(dist + '/controller/api/crd.js');
mark('loadYaml');
const { parseFile } = await import(dist + '/controller/cli/watchdir.js');
const validation = await import(dist + '/controller/validation/index.js');
mark('loadValidation');
validation.defaultValidatorInstance();
mark('readCrds');
const parsed = parseFile(readFileSync(file, 'utf8'), file, validation.validateManifest);
if (parsed.errors.length > 0) throw new Error(JSON.stringify(parsed.errors));
mark('firstValidation');
const { main } = await import(dist + '/controller/cli/main.js');
mark('loadRest');
const code = await main(['build', '-f', file, '--state-dir', process.env.BENCH_STATE]);
mark('command');
process.stderr.write(JSON.stringify({ code, marks, inside: last }) + '\\n');
process.exit(code);
`;

/** The probe's phases, in order, with what each one is. */
const PROBE_PHASES: [string, string][] = [
  ['boot', 'node bootstrap, to the first line of code'],
  ['loadYaml', 'load yaml and the CRD reader (controller/api/crd.js)'],
  ['loadValidation', 'load parsing and validation (ajv only if not precompiled)'],
  ['readCrds', 'new Validator() (CRDs are read per kind, on first use)'],
  ['firstValidation', 'first validation: the Image CRD and its precompiled validators'],
  ['loadRest', 'load the rest of the CLI (every command, the controller)'],
  ['command', 'build command (warm validation, ImageBuilder.build, output)'],
  ['outside', 'spawn and exit (wall minus the above)'],
];

/** Milliseconds per phase (PROBE_PHASES), plus `wall`, the probe process's wall time. */
type ProbeSample = Record<string, number>;

function probe(file: string, stateDir: string): ProbeSample {
  const r = timed(process.execPath, ['--input-type=module', '-e', PROBE], {
    ...process.env,
    BENCH_DIST: DIST,
    BENCH_FILE: file,
    BENCH_STATE: stateDir,
  });
  const steps = cliSummary(r.stdout);
  if (steps.run !== 0) throw new Error(`probe: ${steps.run} step(s) ran in a cached rebuild`);
  const line = r.stderr.trim().split('\n').at(-1) ?? '';
  const p = JSON.parse(line) as { marks: [string, number][]; inside: number };
  return { ...Object.fromEntries(p.marks), outside: r.ms - p.inside, wall: r.ms };
}

// ---------------------------------------------------------------------------------------------
// rebuild

interface Contender {
  name: string;
  /** One timed run; throws if it did not do what the row claims. */
  run: () => Promise<number>;
  samples: number[];
  failed?: string;
}

/** Each round runs every contender once, starting one later each round. */
async function rotate(contenders: Contender[], count: number, label: string): Promise<void> {
  for (let r = 0; r < count && !stop; r++) {
    const line: string[] = [];
    for (let k = 0; k < contenders.length; k++) {
      const c = contenders[(r + k) % contenders.length];
      if (!c || c.failed) continue;
      try {
        const ms = await c.run();
        c.samples.push(ms);
        line.push(`${c.name} ${ms.toFixed(1)}`);
      } catch (err) {
        c.failed = String(err);
        line.push(`${c.name} failed`);
        console.log(`  ${c.name}: ${c.failed}`);
      }
    }
    if (line.length > 0) console.log(`  ${label} round ${r}: ${line.join(', ')} (ms)`);
  }
}

interface RebuildSetup {
  conductorDir: string;
  manifest: string;
  stateDir: string;
  podmanCtx?: string;
}

async function makeRebuildContexts(withPodman: boolean): Promise<RebuildSetup> {
  const conductorDir = join(WORK, 'rebuild');
  const files = join(conductorDir, 'files');
  await mkdir(join(files, 'sub'), { recursive: true });
  // A small directory: 16 files of 4 KiB and a subdirectory.
  for (let i = 0; i < 16; i++) {
    await writeFile(
      join(files, i % 4 === 0 ? 'sub' : '', `f${i}.txt`),
      randomBytes(2048).toString('hex'),
    );
  }
  await saveArchive(await busyboxImage(), 'oci-archive', join(conductorDir, 'busybox.tar'));
  const manifest = join(conductorDir, 'image.yaml');
  await writeFile(
    manifest,
    [
      'apiVersion: conductor.dev/v1alpha1',
      'kind: Image',
      `metadata: {name: ${PREFIX}}`,
      'spec:',
      '  from: oci-archive:busybox.tar',
      '  steps:',
      '    - copy: {src: files, dest: /app}',
      `    - run: ${JSON.stringify(RUN_STEP)}`,
      '',
    ].join('\n'),
  );
  const setup: RebuildSetup = { conductorDir, manifest, stateDir: join(WORK, 'state') };
  if (withPodman) {
    // Its own context holding only what the Containerfile uses (not the archive).
    const ctx = join(WORK, 'podman-ctx');
    await mkdir(ctx, { recursive: true });
    await runTool('cp', ['-a', '--', files, join(ctx, 'files')]);
    setup.podmanCtx = ctx;
  }
  return setup;
}

interface RebuildResult {
  cli: Contender;
  inProcess: Contender;
  /** The Image manifest landing in a running controller's watch dir → the Image Ready again. */
  controller: Contender;
  podman?: Contender;
  firstCli?: number;
  firstPodman?: number;
  skopeoRan: number;
  /** The CLI's own `built … in S.SSs` of each timed rebuild: the build inside the process. */
  cliBuildMs: number[];
  probes: ProbeSample[];
  nodeFloor: number[];
  version: number[];
  probeFailed?: string;
}

async function rebuild(podmanBinary: string | undefined, conf: string): Promise<RebuildResult> {
  const setup = await makeRebuildContexts(podmanBinary !== undefined);
  const cliArgs = ['build', '-f', setup.manifest, '--state-dir', setup.stateDir];
  let skopeoRan = 0;
  const out: RebuildResult = {
    cli: { name: 'conductor build -f', samples: [], run: () => Promise.resolve(0) },
    inProcess: { name: 'in-process', samples: [], run: () => Promise.resolve(0) },
    controller: { name: 'controller', samples: [], run: () => Promise.resolve(0) },
    skopeoRan: 0,
    cliBuildMs: [],
    probes: [],
    nodeFloor: [],
    version: [],
  };

  // The CLI builds first (uncached), then the in-process builder must find the same layers.
  const first = conductorCli(cliArgs);
  const firstSteps = cliSummary(first.stdout);
  if (firstSteps.run !== 2) throw new Error(`first build ran ${firstSteps.run} step(s), not 2`);
  out.firstCli = first.ms;
  const cliDigest = firstSteps.digest;
  out.cli.run = () => {
    const r = conductorCli(cliArgs);
    const s = cliSummary(r.stdout);
    if (s.run !== 0 || s.cached !== 2 || s.digest !== cliDigest) {
      throw new Error(`not a cached rebuild: ${s.run} run, ${s.cached} cached, ${s.digest}`);
    }
    if (r.stdout.includes('Copying blob')) skopeoRan++;
    out.cliBuildMs.push(s.buildMs);
    return Promise.resolve(r.ms);
  };
  await out.cli.run(); // warm-up
  out.cliBuildMs.length = 0;

  const builder = builderFor(setup.stateDir);
  const request = requestOf(readImage(setup.manifest), setup.conductorDir);
  const check = (b: BuiltImage): void => {
    if (b.stepsRun !== 0 || b.stepsCached !== 2 || b.digest !== cliDigest) {
      throw new Error(
        `in-process: ${b.stepsRun} run, ${b.stepsCached} cached, ${b.digest} (CLI: ${cliDigest})`,
      );
    }
  };
  out.inProcess.run = async () => {
    const t0 = performance.now();
    const b = await builder.build(request);
    const ms = performance.now() - t0;
    check(b);
    return ms;
  };
  await out.inProcess.run(); // warm-up

  // Conductor's own way to build: the manifest lands in a running controller's watch dir.
  // Each round removes it (the Image is deleted, its layers stay) and puts it back by rename;
  // the time is until the persisted Image says Ready with the same digest.
  const watchDir = join(WORK, 'watch');
  await runTool('cp', ['-a', '--', setup.conductorDir, watchDir]);
  await rm(join(watchDir, 'image.yaml'));
  const ctl = await runController({
    watchDir,
    stateDir: join(WORK, 'ctl-state'),
    metricsAddr: '127.0.0.1:0',
  });
  stopController = () => ctl.stop();
  const objectFile = join(WORK, 'ctl-state', 'objects', 'images', 'default', `${PREFIX}.json`);
  const readyDigest = (): string | undefined => {
    try {
      const o = JSON.parse(readFileSync(objectFile, 'utf8')) as Image;
      return o.status?.phase === 'Ready' ? o.status.digest : undefined;
    } catch {
      return undefined;
    }
  };
  const until = async (ok: () => boolean, what: string): Promise<void> => {
    for (let i = 0; !ok(); i++) {
      if (i > 30_000) throw new Error(`controller: gave up waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 1));
    }
  };
  const land = async (): Promise<number> => {
    await rm(join(watchDir, 'image.yaml'), { force: true });
    await until(() => !existsSync(objectFile), 'the Image to be deleted');
    const tmp = join(watchDir, '.image.yaml.tmp');
    await writeFile(tmp, readFileSync(setup.manifest));
    const t0 = performance.now();
    await rename(tmp, join(watchDir, 'image.yaml'));
    await until(() => readyDigest() !== undefined, 'the Image to be Ready');
    const ms = performance.now() - t0;
    if (readyDigest() !== cliDigest) throw new Error(`controller: digest ${readyDigest()}`);
    return ms;
  };
  await land(); // the first build in this state dir (uncached), then a cached warm-up
  await land();
  out.controller.run = land;

  const contenders = [out.cli, out.inProcess, out.controller];
  if (podmanBinary && setup.podmanCtx) {
    const ctx = setup.podmanCtx;
    const store = new PodmanStore(podmanBinary, join(WORK, 'pb'), conf);
    pmStores.push(store);
    const podman: Contender = { name: 'podman build', samples: [], run: () => Promise.resolve(0) };
    out.podman = podman;
    try {
      const base = `localhost/${PREFIX}-busybox:latest`;
      const id = store
        .run(['pull', '-q', `oci-archive:${join(setup.conductorDir, 'busybox.tar')}`])
        .stdout.trim()
        .split('\n')
        .at(-1);
      if (!id) throw new Error('podman pull oci-archive: printed no image id');
      store.run(['tag', id, base]);
      await writeFile(
        join(ctx, 'Containerfile'),
        `FROM ${base}\nCOPY files /app\nRUN ${RUN_STEP}\n`,
      );
      const args = ['build', '--pull=never', '--network', 'host', '-t'];
      args.push(`localhost/${PREFIX}:latest`, '-f', join(ctx, 'Containerfile'), ctx);
      out.firstPodman = store.run(args).ms;
      podman.run = () => {
        const r = store.run(args);
        const cached = `${r.stdout}${r.stderr}`.split('Using cache').length - 1;
        if (cached !== 2) throw new Error(`podman build: ${cached} step(s) from cache, not 2`);
        return Promise.resolve(r.ms);
      };
      await podman.run(); // warm-up
      contenders.push(podman);
    } catch (err) {
      podman.failed = String(err);
    }
  }

  skopeoRan = 0;
  await rotate(contenders, rounds, 'rebuild');
  out.skopeoRan = skopeoRan;

  // Where the CLI's time goes.
  try {
    for (let r = 0; r < rounds && !stop; r++) {
      out.nodeFloor.push(timed(process.execPath, ['-e', '0']).ms);
      out.version.push(conductorCli(['version']).ms);
      out.probes.push(probe(setup.manifest, setup.stateDir));
    }
  } catch (err) {
    out.probeFailed = String(err);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// pull

interface PullResult {
  cli: Contender;
  inProcess: Contender;
  podman?: Contender;
  /** In-process split: skopeo copy, then unpack + commit of every layer. */
  skopeo: number[];
  unpack: number[];
  /** The CLI's own `built … in S.SSs`: the pull inside the process. */
  cliBuildMs: number[];
  /** Every layer of the image unpacked alone: our native unpacker, and GNU tar for reference. */
  nativeUnpack: number[];
  tarUnpack: number[];
  /** The two unpackers above, for their failures. */
  unpackers: Contender[];
  imageBytes: number;
}

/** busybox plus `layers` layers of `mib` MiB of random data each; returns the layout dir. */
async function bigImage(layers: number, mib: number): Promise<string> {
  const dir = join(WORK, 'big-layout');
  // The fixture layout is shared and read-only: add layers to a copy.
  await runTool('cp', ['-a', '--', (await busyboxImage()).dir, dir]);
  for (let i = 0; i < layers; i++) {
    const stage = join(WORK, `big-layer-${i}`);
    await mkdir(join(stage, 'data'), { recursive: true });
    await writeFile(join(stage, 'data', `random-${i}.bin`), randomBytes(mib << 20));
    await appendTarLayer(dir, stage, ['data'], `bench: ${mib} MiB of random data`);
    await rm(stage, { recursive: true, force: true });
  }
  await runTool('umoci', ['gc', '--layout', dir]);
  return dir;
}

/** Bytes of a layout's blobs: what a pull transfers. */
function blobBytes(layout: string): number {
  const blobs = join(layout, 'blobs', 'sha256');
  return readdirSync(blobs).reduce((n, f) => n + statSync(join(blobs, f)).size, 0);
}

async function pull(
  registry: Registry,
  podmanBinary: string | undefined,
  conf: string,
): Promise<PullResult> {
  const layout = await bigImage(bigLayers, layerMiB);
  const repoTag = 'bench/big:v1';
  await pushImage(`oci:${layout}:latest`, registry, repoTag);
  const ref = `${registry.host}/${repoTag}`;
  const ctx = join(WORK, 'pull');
  await mkdir(ctx, { recursive: true });
  const manifest = join(ctx, 'image.yaml');
  await writeFile(
    manifest,
    [
      'apiVersion: conductor.dev/v1alpha1',
      'kind: Image',
      `metadata: {name: ${PREFIX}-big}`,
      'spec:',
      `  from: ${ref}`,
      '  registry: {tlsVerify: false}',
      '',
    ].join('\n'),
  );
  const request = requestOf(readImage(manifest), ctx);
  const wantLayers = bigLayers + 1;
  const out: PullResult = {
    cli: { name: 'conductor build -f', samples: [], run: () => Promise.resolve(0) },
    inProcess: { name: 'in-process', samples: [], run: () => Promise.resolve(0) },
    skopeo: [],
    unpack: [],
    cliBuildMs: [],
    nativeUnpack: [],
    tarUnpack: [],
    unpackers: [],
    imageBytes: blobBytes(layout),
  };
  let n = 0;
  /** Runs `fn` on a new directory and removes it after (untimed); a failed removal fails the run. */
  const fresh = async (what: string, fn: (dir: string) => Promise<number>): Promise<number> => {
    const dir = join(WORK, `${what}${n++}`);
    const errors: string[] = [];
    let result: number;
    try {
      result = await fn(dir);
    } finally {
      await removeTree(dir, errors);
    }
    if (errors.length > 0) throw new Error(errors.join('; '));
    return result;
  };
  out.cli.run = () =>
    fresh('sc', (stateDir) => {
      const r = conductorCli(['build', '-f', manifest, '--state-dir', stateDir]);
      const unpacked = r.stdout.split(': unpacking').length - 1;
      if (unpacked !== wantLayers) throw new Error(`CLI unpacked ${unpacked} layers`);
      out.cliBuildMs.push(cliSummary(r.stdout).buildMs);
      return Promise.resolve(r.ms);
    });
  out.inProcess.run = () =>
    fresh('si', async (stateDir) => {
      const builder = builderFor(stateDir);
      let copyStart = 0;
      let unpackStart = 0;
      const onProgress = (e: BuildProgress): void => {
        if (e.type === 'base') copyStart = performance.now();
        if (e.type === 'layer' && e.state === 'unpacking' && unpackStart === 0)
          unpackStart = performance.now();
      };
      const t0 = performance.now();
      const b = await builder.build({ ...request, onProgress });
      const end = performance.now();
      if (b.layers.length !== wantLayers) throw new Error(`in-process: ${b.layers.length} layers`);
      out.skopeo.push(unpackStart - copyStart);
      out.unpack.push(end - unpackStart);
      return end - t0;
    });
  const contenders = [out.cli, out.inProcess];
  if (podmanBinary) {
    const podman: Contender = {
      name: 'podman pull',
      samples: [],
      run: () =>
        fresh('pp', async (dir) => {
          const store = new PodmanStore(podmanBinary, dir, conf);
          const errors: string[] = [];
          try {
            const r = store.run(['pull', '--tls-verify=false', '-q', ref]);
            if (!/^[0-9a-f]{64}$/m.test(r.stdout)) throw new Error(`podman pull: ${r.stdout}`);
            return r.ms;
          } finally {
            await store.destroy(errors);
            if (errors.length > 0) console.error(`bench: podman cleanup: ${errors.join('; ')}`);
          }
        }),
    };
    out.podman = podman;
    contenders.push(podman);
  }
  // One untimed round first: skopeo, podman and the registry read their binaries and data once.
  await rotate(contenders, 1, 'pull warm-up');
  for (const c of contenders) c.samples.length = 0;
  out.skopeo.length = 0;
  out.unpack.length = 0;
  out.cliBuildMs.length = 0;
  await rotate(contenders, pullRounds, 'pull');

  // The unpack alone, without skopeo or the store: each layer blob into an empty directory.
  const { layerPaths } = await readLayoutImage(layout);
  const native = async (dir: string): Promise<number> => {
    const t0 = performance.now();
    for (const [i, archive] of layerPaths.entries()) {
      const target = join(dir, String(i));
      await mkdir(target, { recursive: true });
      await unpackLayer({ archive, target });
    }
    return performance.now() - t0;
  };
  const tar = (dir: string): Promise<number> => {
    let total = 0;
    for (const [i, archive] of layerPaths.entries()) {
      const target = join(dir, String(i));
      mkdirSync(target, { recursive: true });
      total += timed('tar', ['-xzf', archive, '-C', target]).ms;
    }
    return Promise.resolve(total);
  };
  const unpackers: Contender[] = [
    { name: 'native unpackLayer', samples: out.nativeUnpack, run: () => fresh('un', native) },
    { name: 'tar -xzf', samples: out.tarUnpack, run: () => fresh('ut', tar) },
  ];
  await rotate(unpackers, pullRounds, 'unpack only');
  out.unpackers = unpackers;
  return out;
}

// ---------------------------------------------------------------------------------------------

const ms = (samples: number[]): string => (samples.length > 0 ? median(samples).toFixed(1) : '-');

function ratioRow(c: Contender, podman: Contender | undefined, target?: number): string[] {
  const own = median(c.samples);
  if (c.failed) return [c.name, 'failed', '-', '-'];
  if (!podman || podman.failed || podman.samples.length === 0)
    return [c.name, own.toFixed(1), '-', '-'];
  const ratio = median(podman.samples) / own;
  return [
    c.name,
    own.toFixed(1),
    `${ratio.toFixed(2)}x`,
    target === undefined ? 'reference' : `${target}x ${ratio >= target ? 'met' : 'NOT met'}`,
  ];
}

/** podman's own row: its median, or why it has none. */
function podmanRow(podman: Contender | undefined, name: string): string[] {
  if (!podman) return [name, 'not run', '', ''];
  return [podman.name, podman.failed ? 'failed' : ms(podman.samples), '', ''];
}

async function main(): Promise<void> {
  const before = hostSnapshot();
  const podmanBinary = skipPodman ? undefined : which('podman');
  const notes: string[] = [];
  if (skipPodman) notes.push('podman: skipped (--skip-podman)');
  else if (!podmanBinary) notes.push('podman: not found');
  let registry: Registry | undefined;
  try {
    await mkdir(WORK, { recursive: true, mode: 0o700 });
    const conf = join(WORK, 'containers.conf');
    await writeContainersConf(conf);
    const stale = staleDist();
    console.log(
      `images: Conductor vs podman; load average ${loadavg()[0]?.toFixed(2)} on ` +
        `${cpus().length} cores`,
    );
    if (stale.length > 0) {
      console.log(
        `WARNING: dist/ is older than ${stale.length} source file(s) (${stale.slice(0, 3).join(', ')}` +
          `${stale.length > 3 ? ', …' : ''}): the CLI rows time old code; run \`npm run build\`.`,
      );
    }

    console.log(
      `cached rebuild of an unchanged two-step image (oci-archive busybox, copy + run), ` +
        `${rounds} rounds after an uncached build and a warm-up:`,
    );
    const rb = await rebuild(podmanBinary, conf);

    registry = await startRegistry({ prefix: PREFIX });
    console.log(
      `pull from docker-registry on ${registry.host}: busybox + ${bigLayers} layer(s) of ` +
        `${layerMiB} MiB random data, fresh storage each time, ${pullRounds} rounds + 1 warm-up:`,
    );
    const pl = await pull(registry, podmanBinary, conf);

    const head = ['', 'median ms', 'podman / this', 'target'];
    console.log('\ncached rebuild (2 steps, both cached):');
    console.log(
      table([
        head,
        ratioRow(rb.controller, rb.podman, REBUILD_TARGET),
        ratioRow(rb.cli, rb.podman, REBUILD_TARGET),
        ratioRow(rb.inProcess, rb.podman),
        podmanRow(rb.podman, 'podman build'),
      ]),
    );
    console.log(
      `first (uncached) build: conductor build -f ${rb.firstCli?.toFixed(0) ?? '-'} ms, ` +
        `podman build ${rb.firstPodman?.toFixed(0) ?? '-'} ms`,
    );
    if (rb.probeFailed) notes.push(`time split of the CLI: ${rb.probeFailed}`);
    if (rb.skopeoRan > 0) notes.push(`the CLI re-ran skopeo in ${rb.skopeoRan} cached rebuild(s)`);
    if (rb.podman && !rb.podman.failed && rb.nodeFloor.length > 0) {
      console.log(
        `ceiling for any Node CLI process: podman build / (node -e 0) = ` +
          `${(median(rb.podman.samples) / median(rb.nodeFloor)).toFixed(1)}x`,
      );
    }

    const p = (f: (s: ProbeSample) => number): string => ms(rb.probes.map(f));
    console.log('\nwhere `conductor build -f` spends a cached rebuild (medians, ms):');
    console.log(
      table([
        ['node -e 0 (node start-up and exit, nothing loaded)', ms(rb.nodeFloor)],
        ['conductor version (node + loading the whole CLI)', ms(rb.version)],
        ['probe process, wall', p((s) => s.wall ?? NaN)],
        ...PROBE_PHASES.map(([key, label]) => [`  ${label}`, p((s) => s[key] ?? NaN)]),
        ['the CLI\'s own "built … in S.SSs" (10 ms steps), timed rounds', ms(rb.cliBuildMs)],
        ['ImageBuilder.build() in-process (for comparison)', ms(rb.inProcess.samples)],
      ]),
    );

    console.log(
      `\npull (${(pl.imageBytes / (1 << 20)).toFixed(1)} MiB of blobs, ${bigLayers + 1} layers):`,
    );
    console.log(
      table([
        head,
        ratioRow(pl.cli, pl.podman, PULL_TARGET),
        ratioRow(pl.inProcess, pl.podman),
        podmanRow(pl.podman, 'podman pull'),
      ]),
    );
    console.log(
      `unpacking the ${bigLayers + 1} layer blobs alone into empty directories (medians): ` +
        `native unpackLayer ${ms(pl.nativeUnpack)} ms, GNU tar -xzf ${ms(pl.tarUnpack)} ms ` +
        `(reference, one process per layer)`,
    );
    console.log(
      `in-process split (medians): skopeo copy ${ms(pl.skopeo)} ms, ` +
        `unpack + commit ${ms(pl.unpack)} ms; the CLI's own "built … in S.SSs": ` +
        `${ms(pl.cliBuildMs)} ms (the rest of its wall time is node start-up, loading, validation)`,
    );
    notes.unshift(
      'podman / this: how many times faster Conductor is (higher is better for Conductor).',
      'in-process: ImageBuilder.build() in this process, modules loaded: no node start-up.',
      "controller: the unchanged Image manifest removed from a running controller's watch dir " +
        'and renamed back in, until its persisted status says Ready with the same digest ' +
        '(polled every 1 ms): the way Conductor builds.',
    );
    for (const c of [
      rb.controller,
      rb.cli,
      rb.inProcess,
      rb.podman,
      pl.cli,
      pl.inProcess,
      pl.podman,
      ...pl.unpackers,
    ])
      if (c?.failed) notes.push(`${c.name}: ${c.failed}`);
    notes.push(`load average after: ${loadavg()[0]?.toFixed(2)}.`);
    console.log(notes.join('\n'));
  } finally {
    const errors: string[] = [];
    await stopController?.().catch((err: unknown) => errors.push(`controller: ${String(err)}`));
    for (const s of pmStores) await s.destroy(errors);
    await registry?.stop().catch((err: unknown) => errors.push(`registry: ${String(err)}`));
    await removeTree(WORK, errors);
    if (errors.length > 0) console.error(`bench: cleanup:\n  ${errors.join('\n  ')}`);
    const leaks = findLeaks(before, { idPrefix: PREFIX, runtimeRoots: [], tempDirs: [WORK] });
    const left = [...leaks.mounts, ...leaks.cgroups, ...leaks.processes, ...leaks.stateDirs];
    if (existsSync(WORK)) left.push(WORK);
    if (left.length > 0) console.error(`bench: left behind:\n  ${left.join('\n  ')}`);
  }
}

await main();
