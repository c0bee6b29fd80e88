/**
 * `conductor image export NAME -o FILE`: a built Image of the state dir — the controller's, Ready
 * in its status, or the last `conductor build` of it (built-images.ts) — written as an archive:
 * docker-archive (docker load, kind load image-archive) or oci-archive. The layers come from the
 * layer store and the configuration from the status; runtime-core/src/images/export.ts writes it.
 *
 * At a terminal each layer is shown as it is packed, and skopeo's progress while it writes the
 * archive; otherwise only the result line. Ctrl-C stops it, leaving nothing behind.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import {
  ARCHIVE_FORMATS,
  archiveReference,
  exportImage,
  ExportError,
  LayerStore,
  type ArchiveFormat,
  type ExportProgress,
} from '../../runtime-core/src/index.js';
import { builtFromStatus } from '../controllers/image.js';
import { builtImage } from './built-images.js';
import { COMMON_OPTIONS, NAMESPACE_OPTION, parseCommand } from './flags.js';
import { humanSize, resourceName } from './format.js';
import { CliError, UsageError, untilInterrupted, type CliIO } from './io.js';
import { StateDir } from './state.js';

export const IMAGE_EXPORT_USAGE = `Write a built Image as an archive.

Usage:
  conductor image export NAME -o FILE [-n NS] [--format docker-archive|oci-archive] [--tag REF] [-q]

The Image is the newest built of that name in the state dir: Ready in the controller's status,
or built by conductor build -f. Its layers are written from the layer store (overlayfs
whiteouts become OCI whiteouts) with its configuration (entrypoint, cmd, env, workingDir,
user, exposed ports), for linux on this machine's architecture.

  docker-archive (default)   docker load -i FILE, kind load image-archive FILE, skopeo,
                             from: docker-archive:FILE
  oci-archive                skopeo, containerd (ctr images import), from: oci-archive:FILE

Options:
  -o, --output FILE       the archive to write (an existing file is replaced once it is whole)
  -n, --namespace NS      namespace (default "default")
      --format FORMAT     docker-archive or oci-archive
      --tag REF           the name in the archive, [REGISTRY/]REPOSITORY[:TAG], normalised as
                          docker does (default NAME:latest, i.e. docker.io/library/NAME:latest)
  -q, --quiet             print nothing but errors
      --state-dir DIR     state directory (default /var/lib/conductor)
`;

function progressPrinter(io: CliIO, name: string): (e: ExportProgress) => void {
  return (e) => {
    if (e.type === 'layer') {
      const which = `[${name}] layer ${e.index + 1}/${e.total} sha256:${e.key.slice(0, 12)}`;
      io.stdout(
        e.state === 'packing'
          ? `${which} ${humanSize(e.size)}: packing\n`
          : `${which}: ${humanSize(e.blobSize)} in ${e.seconds.toFixed(1)}s\n`,
      );
    } else if (e.type === 'archive') {
      io.stdout(`[${name}] writing ${e.format} ${e.output}\n`);
    }
  };
}

export async function imageExport(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommand('image export', () =>
    parseArgs({
      args: argv,
      options: {
        ...COMMON_OPTIONS,
        ...NAMESPACE_OPTION,
        output: { type: 'string', short: 'o' },
        format: { type: 'string', default: 'docker-archive' },
        tag: { type: 'string' },
        quiet: { type: 'boolean', short: 'q', default: false },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) {
    io.stdout(IMAGE_EXPORT_USAGE);
    return 0;
  }
  const [name, ...extra] = positionals;
  if (name === undefined || extra.length > 0) {
    throw new UsageError('expected one Image NAME', 'image export');
  }
  if (!values.output) throw new UsageError('expected -o FILE', 'image export');
  if (!ARCHIVE_FORMATS.includes(values.format as ArchiveFormat)) {
    throw new UsageError(
      `--format must be ${ARCHIVE_FORMATS.join(' or ')}, got ${JSON.stringify(values.format)}`,
      'image export',
    );
  }
  const format = values.format as ArchiveFormat;
  const tag = values.tag ?? `${name}:latest`;
  try {
    archiveReference(tag);
  } catch (err) {
    if (err instanceof ExportError) throw new UsageError(`--tag ${err.message}`, 'image export');
    throw err;
  }
  const namespace = values.namespace;
  const state = new StateDir(resolve(io.cwd, values['state-dir']));
  const output = resolve(io.cwd, values.output);

  const found = await builtImage(state, namespace, name);
  if (!found) {
    const obj = await state.getObject('Image', namespace, name);
    const phase = (obj?.status as { phase?: string; message?: string } | undefined) ?? {};
    if (obj) {
      throw new CliError(
        `${resourceName('Image')}/${name} in namespace ${namespace} is not Ready ` +
          `(${phase.phase ?? 'Pending'}${phase.message ? `: ${phase.message}` : ''}): ` +
          `export it once \`conductor get image ${name}\` says Ready`,
      );
    }
    throw new CliError(
      `${resourceName('Image')} "${name}" is not built in namespace ${namespace} of state dir ` +
        `${state.dir}: build it first (conductor build -f FILE, or apply it to the controller)`,
    );
  }
  const image = builtFromStatus(found.status);
  if (!image) throw new CliError(`${resourceName('Image')}/${name}: its status names no image`);

  const started = Date.now();
  const showProgress = !values.quiet && io.isTTY === true;
  let result: Awaited<ReturnType<typeof exportImage>> | undefined;
  const status = await untilInterrupted(io, async (signal) => {
    try {
      result = await exportImage(new LayerStore(state.dir), {
        name: `${namespace}/${name}`,
        layers: image.layers,
        config: image.config,
        reference: tag,
        format,
        output,
        signal,
        ...(showProgress ? { onProgress: progressPrinter(io, name), terminal: true } : {}),
      });
    } catch (err) {
      if (err instanceof ExportError) throw new CliError(err.message);
      throw err;
    }
  });
  if (status !== 0 || !result) return status;
  if (!values.quiet) {
    io.stdout(
      `${resourceName('Image')}/${name} exported to ${output} (${format}, ${result.reference}: ` +
        `${result.layers.length} layer(s), ${humanSize(result.size)}; built by ${found.builtBy}) ` +
        `in ${((Date.now() - started) / 1000).toFixed(2)}s\n`,
    );
  }
  return 0;
}
