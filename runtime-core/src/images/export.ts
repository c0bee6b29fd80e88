/**
 * Exporting a built image as an archive other tools load: `docker load`, `kind load
 * image-archive` (containerd's import), `skopeo`, and Conductor's own `from: docker-archive:` /
 * `oci-archive:`. The reverse of a pull: the image's layers in the layer store (plain
 * directories with overlayfs whiteouts) are packed by the native packer into layer tars (OCI
 * whiteouts again), beside an image config with the image's configuration, its layers' diff_ids
 * and history, for linux on this host's architecture; that is an OCI image layout, which
 * becomes
 *
 * - docker-archive: through `skopeo copy oci:LAYOUT:TAG docker-archive:FILE:REF` (docker's
 *   `docker save` format, which stores layers uncompressed: so are they in the layout, rather
 *   than compressed for skopeo to decompress again);
 * - oci-archive: the layout itself as a tar, its layers gzip-compressed (the OCI distribution
 *   format), tagged as skopeo and buildkit tag one: `org.opencontainers.image.ref.name` the tag,
 *   `io.containerd.image.name` the full reference (what containerd's import names it).
 *
 * The layout is made in the layer store's temporary space (`layers/.tmp-<pid>-*`: removed after,
 * or by the next prune if the process died), the archive beside its destination and renamed
 * over it once whole: an interrupted export leaves no half archive under the name.
 */
import { createHash, randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { lstat, mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { packLayer } from '../native.js';
import type { BuiltLayer } from './builder.js';
import { runCommand } from './command.js';
import { toOciConfig, type ImageConfig, type OciImageConfig } from './config.js';
import { formatReference, parseRegistryReference, SourceError } from './reference.js';
import { hostArchitecture, type OciDescriptor, type OciManifest } from './skopeo.js';
import type { LayerMeta, LayerStore } from './store.js';

export type ArchiveFormat = 'docker-archive' | 'oci-archive';
export const ARCHIVE_FORMATS: readonly ArchiveFormat[] = ['docker-archive', 'oci-archive'];

export const MEDIA_TYPES = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

const REF_NAME = 'org.opencontainers.image.ref.name';
const CONTAINERD_NAME = 'io.containerd.image.name';

export interface ExportRequest {
  /** For messages: namespace/name. */
  name: string;
  /** Bottom first, as BuiltImage has them: keys of the layer store. */
  layers: readonly BuiltLayer[];
  config: ImageConfig;
  /** The name in the archive, as docker tags: `[REGISTRY/]REPOSITORY[:TAG]` (tag default latest). */
  reference: string;
  format: ArchiveFormat;
  /** The archive to write (absolute); an existing file is replaced once the new one is whole. */
  output: string;
  onProgress?: (event: ExportProgress) => void;
  /** Our stdout is a person's terminal: skopeo draws its progress there. */
  terminal?: boolean;
  /** Aborting it stops the export (ExportInterruptedError); nothing it made is left. */
  signal?: AbortSignal;
  skopeo?: string;
  /** gzip level of oci-archive layers (1..9, default 6). */
  gzipLevel?: number;
}

export type ExportProgress =
  | { type: 'layer'; index: number; total: number; key: string; size: number; state: 'packing' }
  | {
      type: 'layer';
      index: number;
      total: number;
      key: string;
      size: number;
      state: 'packed';
      /** Bytes of the blob written (compressed for oci-archive). */
      blobSize: number;
      seconds: number;
    }
  | { type: 'archive'; format: ArchiveFormat; output: string }
  | { type: 'output'; line: string };

export interface ExportedImage {
  /** The full reference in the archive (`docker.io/library/conductor-agent:latest`). */
  reference: string;
  manifestDigest: string;
  configDigest: string;
  /** Bottom first. */
  layers: { diffId: string; digest: string; size: number }[];
  /** Bytes of the archive. */
  size: number;
}

export class ExportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExportError';
  }
}

export class ExportInterruptedError extends Error {
  constructor() {
    super('the export was interrupted');
    this.name = 'ExportInterruptedError';
  }
}

/**
 * A docker reference to name the archive's image by: `[REGISTRY/]REPOSITORY[:TAG]`, no digest
 * (an archive's content is its own). `full` is normalised as docker does
 * (`docker.io/library/conductor-agent:latest`); `tag` is its tag.
 */
export function archiveReference(value: string): { full: string; tag: string } {
  let ref;
  try {
    ref = parseRegistryReference(value);
  } catch (err) {
    if (!(err instanceof SourceError)) throw err;
    ref = undefined;
  }
  if (!ref || ref.digest !== undefined) {
    throw new ExportError(
      `"${value}" is not an image name to tag an archive with: ` +
        `[REGISTRY/]REPOSITORY[:TAG], lower-case, no digest`,
    );
  }
  return { full: formatReference(ref), tag: ref.tag ?? 'latest' };
}

/** The image config an export writes: the image's configuration for linux/<host arch>. */
export interface ExportedConfig extends OciImageConfig {
  created?: string;
  history?: { created?: string; created_by?: string; comment?: string; empty_layer?: boolean }[];
}

export function exportedConfig(
  config: ImageConfig,
  layers: readonly { diffId: string; createdBy: string; createdAt?: string }[],
): ExportedConfig {
  const times = layers.map((l) => l.createdAt).filter((t): t is string => !!t);
  // The newest layer's time: exporting the same image again gives the same config.
  const created = times.sort().at(-1) ?? new Date(0).toISOString();
  return {
    created,
    architecture: hostArchitecture(),
    os: 'linux',
    config: toOciConfig(config),
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((l) => ({
      ...(l.createdAt ? { created: l.createdAt } : {}),
      created_by: l.createdBy,
      comment: 'conductor',
    })),
  };
}

async function writeBlob(blobs: string, text: string, mediaType: string): Promise<OciDescriptor> {
  const bytes = Buffer.from(text);
  const hex = createHash('sha256').update(bytes).digest('hex');
  await writeFile(join(blobs, hex), bytes, { mode: 0o644 });
  return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
}

/**
 * Runs `work` over `items`, `limit` at a time, in order of start. After a failure no item is
 * started, and the ones running are waited for before the first error is thrown: nothing is
 * still writing when the caller cleans up.
 */
async function eachLimited<T>(
  items: readonly T[],
  limit: number,
  work: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        await work(items[i] as T, i);
      } catch (err) {
        failed ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed) throw failed.err;
}

export async function exportImage(store: LayerStore, req: ExportRequest): Promise<ExportedImage> {
  const progress = req.onProgress ?? ((): void => undefined);
  const { full, tag } = archiveReference(req.reference);
  if (req.output.includes(':') && req.format === 'docker-archive') {
    // skopeo reads docker-archive:PATH:REF up to the first colon.
    throw new ExportError(`${req.output}: skopeo cannot write a docker-archive at a path with ':'`);
  }
  const metas: (LayerMeta | undefined)[] = [];
  for (const layer of req.layers) {
    if (!(await store.exists(layer.key))) {
      throw new ExportError(
        `layer sha256:${layer.key} (${layer.createdBy || 'no description'}) of image ${req.name} ` +
          `is not in the layer store ${store.dir} (conductor images prune removes layers no ` +
          `Image of the controller uses): build the image again`,
      );
    }
    metas.push(await store.meta(layer.key));
  }
  const outDir = dirname(req.output);
  if (!(await stat(outDir).catch(() => undefined))?.isDirectory())
    throw new ExportError(`${outDir} is not a directory to write ${basename(req.output)} in`);
  if ((await lstat(req.output).catch(() => undefined))?.isDirectory())
    throw new ExportError(`${req.output} is a directory`);
  const interrupted = (): void => {
    if (req.signal?.aborted) throw new ExportInterruptedError();
  };
  interrupted();

  const gzip = req.format === 'oci-archive';
  const work = await store.tempPath();
  const layout = join(work, 'layout');
  const blobs = join(layout, 'blobs', 'sha256');
  const partial = join(
    dirname(req.output),
    `.${basename(req.output)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`,
  );
  try {
    await mkdir(blobs, { recursive: true, mode: 0o755 });
    const packed: ExportedImage['layers'] = [];
    // Two at a time: packing is CPU (gzip) and disk; more would only compete for both.
    await eachLimited(req.layers, Math.min(2, availableParallelism()), async (layer, index) => {
      interrupted();
      const total = req.layers.length;
      const size = metas[index]?.size ?? layer.size;
      progress({ type: 'layer', index, total, key: layer.key, size, state: 'packing' });
      const started = Date.now();
      const target = join(work, `layer-${index}`);
      const r = await packLayer({
        source: store.path(layer.key),
        target,
        compression: gzip ? 'gzip' : 'none',
        ...(req.gzipLevel !== undefined ? { level: req.gzipLevel } : {}),
      }).catch((err: unknown) => {
        throw new ExportError(`image ${req.name}: ${(err as Error).message}`);
      });
      await rename(target, join(blobs, r.digest.slice('sha256:'.length)));
      packed[index] = { diffId: r.diffId, digest: r.digest, size: r.size };
      progress({
        type: 'layer',
        index,
        total,
        key: layer.key,
        size,
        state: 'packed',
        blobSize: r.size,
        seconds: (Date.now() - started) / 1000,
      });
    });
    interrupted();

    const config = exportedConfig(
      req.config,
      req.layers.map((l, i) => ({
        diffId: packed[i]?.diffId ?? '',
        createdBy: l.createdBy,
        ...(metas[i]?.createdAt ? { createdAt: metas[i].createdAt } : {}),
      })),
    );
    const configDesc = await writeBlob(blobs, JSON.stringify(config), MEDIA_TYPES.config);
    const manifest: OciManifest = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.manifest,
      config: configDesc,
      layers: packed.map((l) => ({
        mediaType: gzip ? MEDIA_TYPES.layerGzip : MEDIA_TYPES.layer,
        digest: l.digest,
        size: l.size,
      })),
    };
    const manifestDesc = await writeBlob(blobs, JSON.stringify(manifest), MEDIA_TYPES.manifest);
    const index = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.index,
      manifests: [{ ...manifestDesc, annotations: { [REF_NAME]: tag, [CONTAINERD_NAME]: full } }],
    };
    await writeFile(join(layout, 'index.json'), JSON.stringify(index), { mode: 0o644 });
    await writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }), {
      mode: 0o644,
    });

    progress({ type: 'archive', format: req.format, output: req.output });
    if (req.format === 'docker-archive') {
      await runCommand(
        req.skopeo ?? 'skopeo',
        [
          'copy',
          ...(req.terminal ? [] : ['--quiet']),
          `oci:${layout}:${tag}`,
          `docker-archive:${partial}:${full}`,
        ],
        {
          onLine: (line) => progress({ type: 'output', line }),
          tailLines: 3,
          ...(req.terminal ? { stdoutToTerminal: true } : {}),
          ...(req.signal ? { signal: req.signal } : {}),
          describe: (l) => l.replace(/^time="[^"]*" level=\w+ msg=/, ''),
        },
      ).catch((err: unknown) => {
        interrupted();
        throw new ExportError(`image ${req.name}: ${(err as Error).message}`);
      });
    } else {
      // An oci-archive is the layout as a tar; the packer writes it (plain files only).
      await packLayer({ source: layout, target: partial, compression: 'none' });
    }
    interrupted();
    await rename(partial, req.output);
    return {
      reference: full,
      manifestDigest: manifestDesc.digest,
      configDigest: configDesc.digest,
      layers: packed,
      size: (await stat(req.output)).size,
    };
  } finally {
    await rm(partial, { force: true });
    await rm(work, { recursive: true, force: true });
  }
}
