/**
 * `conductor build -f FILE`: builds the Images a manifest defines, without the controller, into
 * the state dir's layer store (so a controller using that state dir later finds every step
 * cached). Progress — each step, each pulled layer with its size, the output of run steps —
 * goes to stdout as it happens; the last line per image is its digest, as `docker build`
 * ends with the image id. Each image built is recorded in the state dir (`builds/NS/NAME.json`,
 * built-images.ts), where `conductor image export` finds it.
 */
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import type { Image, ImageStatus } from '../api/types.generated.js';
import { formatManifestError } from '../source/manifests.js';
import { validateManifest } from '../validation/index.js';
import {
  baseImageName,
  BuildError,
  RuntimeCore,
  type BuildProgress,
  type BuiltImage,
} from '../../runtime-core/src/index.js';
import { builtFromStatus, builtStatus } from '../controllers/image.js';
import { builtImage, writeBuildRecord } from './built-images.js';
import { COMMON_OPTIONS, parseCommand } from './flags.js';
import { humanSize, resourceName } from './format.js';
import { CliError, UsageError, type CliIO } from './io.js';
import { StateDir } from './state.js';
import { parseFile, readInputFiles } from './watchdir.js';

export const BUILD_USAGE = `Build the Images a manifest defines, without the controller.

Usage:
  conductor build -f FILE|DIR [-q] [--base-cache DIR]

Layers go to the state dir's layer store, where the controller finds them: an Image built here
is Ready at once when the same manifest is applied. from: image:NAME may name an Image of the
same file(s), one the controller built or one built here before. Each Image built is recorded
in the state dir, for conductor image export.

Options:
  -f, --filename PATH     a manifest file or a directory of them (repeatable)
  -q, --quiet             print only each image's digest
      --base-cache DIR    build and share debootstrap bases there (default: the layer store)
      --state-dir DIR     state directory (default /var/lib/conductor)
`;

function progressPrinter(io: CliIO, name: string): (e: BuildProgress) => void {
  return (e) => {
    switch (e.type) {
      case 'base':
        io.stdout(`[${name}] from ${e.description}\n`);
        break;
      case 'layer':
        if (e.state !== 'unpacked')
          io.stdout(
            `[${name}] layer ${e.digest.slice(0, 19)} ${humanSize(e.size)}: ${e.state === 'present' ? 'already present' : 'unpacking'}\n`,
          );
        break;
      case 'step':
        io.stdout(
          `[${name}] step ${e.index + 1}/${e.total}: ${e.description}${e.cached ? ' (cached)' : ''}\n`,
        );
        break;
      case 'output':
        io.stdout(`  | ${e.line}\n`);
        break;
      default:
        break;
    }
  };
}

/** The status the controller would write for `built` (controllers/image.ts). */
async function recordedStatus(
  core: RuntimeCore,
  built: BuiltImage,
  started: number,
  now: Date,
): Promise<ImageStatus> {
  return {
    ...(await builtStatus(core, built, (now.getTime() - started) / 1000)),
    conditions: [
      {
        type: 'Ready',
        status: 'True',
        reason: 'Built',
        message: `built by conductor build: ${built.layers.length} layer(s); ${built.stepsRun} step(s) run, ${built.stepsCached} cached`,
        lastTransitionTime: now.toISOString(),
      },
    ],
  };
}

export async function build(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommand('build', () =>
    parseArgs({
      args: argv,
      options: {
        ...COMMON_OPTIONS,
        filename: { type: 'string', short: 'f', multiple: true },
        quiet: { type: 'boolean', short: 'q', default: false },
        'base-cache': { type: 'string' },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) {
    io.stdout(BUILD_USAGE);
    return 0;
  }
  if (positionals.length > 0 || !values.filename?.length) {
    throw new UsageError('expected -f FILE|DIR', 'build');
  }
  const images: { image: Image; file: string }[] = [];
  for (const input of await readInputFiles(values.filename, io.cwd)) {
    const parsed = parseFile(input.text, input.path, validateManifest);
    if (parsed.errors.length > 0) {
      throw new CliError(parsed.errors.map(formatManifestError).join('\n'));
    }
    for (const o of parsed.objects)
      if (o.object.kind === 'Image') images.push({ image: o.object, file: input.path });
  }
  if (images.length === 0) throw new CliError(`no Image in ${values.filename.join(', ')}`);

  const state = new StateDir(resolve(io.cwd, values['state-dir']));
  const core = new RuntimeCore({
    stateDir: state.dir,
    ...(values['base-cache']
      ? { images: { baseCacheDir: resolve(io.cwd, values['base-cache']) } }
      : {}),
  });
  const built = new Map<string, BuiltImage>();
  // The images a `from: image:NAME` may name outside these files: the newest built of each.
  const stored = new Map<string, ImageStatus | undefined>();
  for (const { image } of images) {
    const other = baseImageName(image.spec.from);
    const ns = image.metadata.namespace;
    if (other !== undefined && !stored.has(`${ns}/${other}`))
      stored.set(`${ns}/${other}`, (await builtImage(state, ns, other))?.status);
  }
  let failed = false;
  let interrupted = false;
  // Ctrl-C: stop the running build container, so no step is left running behind the command.
  const onSignal = (): void => {
    interrupted = true;
    void core.abortBuilds();
  };
  io.signals.on('SIGINT', onSignal);
  io.signals.on('SIGTERM', onSignal);
  try {
    for (const { image, file } of images) {
      if (interrupted) break;
      const { namespace, name } = image.metadata;
      const started = Date.now();
      try {
        const result = await core.buildImage({
          name: `${namespace}/${name}`,
          from: image.spec.from,
          ...(image.spec.steps ? { steps: image.spec.steps } : {}),
          ...(image.spec.config ? { config: image.spec.config } : {}),
          ...(image.spec.registry ? { registry: image.spec.registry } : {}),
          contextDir: dirname(file),
          resolveImage: (other) =>
            built.get(`${namespace}/${other}`) ??
            builtFromStatus(stored.get(`${namespace}/${other}`)),
          ...(values.quiet ? {} : { onProgress: progressPrinter(io, name) }),
          ...(!values.quiet && process.stdout.isTTY ? { terminal: true } : {}),
        });
        built.set(`${namespace}/${name}`, result);
        await writeBuildRecord(state, {
          apiVersion: image.apiVersion,
          kind: 'Image',
          metadata: { name, namespace },
          spec: { ...image.spec },
          status: { ...(await recordedStatus(core, result, started, io.now())) },
        });
        const size = humanSize(result.layers.reduce((n, l) => n + l.size, 0));
        io.stdout(
          values.quiet
            ? `${result.digest}\n`
            : `${resourceName('Image')}/${name} built ${result.digest} (${size}; ${result.stepsRun} step(s) run, ${result.stepsCached} cached) in ${((Date.now() - started) / 1000).toFixed(2)}s\n`,
        );
      } catch (err) {
        failed = true;
        const why = err instanceof BuildError || err instanceof Error ? err.message : String(err);
        io.stderr(`error: ${resourceName('Image')}/${name} (${file}): ${why}\n`);
      }
    }
  } finally {
    io.signals.removeListener('SIGINT', onSignal);
    io.signals.removeListener('SIGTERM', onSignal);
  }
  if (interrupted) return 130;
  return failed ? 1 : 0;
}
