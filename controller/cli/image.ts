/**
 * `conductor image SUBCOMMAND`: what is done to one image, as `docker image`. `export` writes a
 * built Image as an archive (image-export.ts).
 */
import { imageExport } from './image-export.js';
import { UsageError, type CliIO } from './io.js';

export const IMAGE_USAGE = `Work with one image.

Usage:
  conductor image export NAME -o FILE [-n NS] [--format docker-archive|oci-archive] [--tag REF] [-q]

Commands:
  export      Write a built Image as an archive that docker load, kind load image-archive,
              skopeo and Conductor's from: docker-archive: / oci-archive: read

conductor images lists the images; conductor image export --help says more.
`;

/** Options of the subcommands that take a value: they may come before the subcommand's name. */
const VALUE_OPTIONS = new Set([
  '--state-dir',
  '-n',
  '--namespace',
  '-o',
  '--output',
  '--format',
  '--tag',
]);

export async function image(argv: string[], io: CliIO): Promise<number> {
  // `conductor image --state-dir DIR export NAME` (as the other commands, options may come first).
  const lead: string[] = [];
  let i = 0;
  for (; i < argv.length && (argv[i] ?? '').startsWith('-'); i++) {
    const arg = argv[i] ?? '';
    if (arg === '--help' || arg === '-h') {
      io.stdout(IMAGE_USAGE);
      return 0;
    }
    lead.push(arg);
    if (VALUE_OPTIONS.has(arg) && i + 1 < argv.length) lead.push(argv[++i] ?? '');
  }
  const sub = argv[i];
  const rest = [...lead, ...argv.slice(i + 1)];
  if (sub === undefined) {
    io.stdout(IMAGE_USAGE);
    return 0;
  }
  if (sub === 'export') return imageExport(rest, io);
  throw new UsageError(`unknown command ${JSON.stringify(sub)} for "conductor image"`, 'image');
}
