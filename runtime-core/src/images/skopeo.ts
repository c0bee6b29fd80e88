/**
 * Registry pulls and archive imports through skopeo, into OCI layouts under `<state>/oci/`:
 * one small layout per source (`refs/<hash>/index.json`) and one blob directory shared by all of
 * them (`blobs/sha256/…`, skopeo's --dest-shared-blob-dir), so a blob is downloaded once and a
 * second pull of the same image only fetches its manifest. From a multi-platform index skopeo
 * picks the host's platform (linux/<arch>), named explicitly here.
 */
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { readJson, writeJsonAtomic } from '../files.js';
import { runCommand } from './command.js';
import type { OciImageConfig } from './config.js';

export interface RegistryOptions {
  /** false: plain HTTP or an unverified certificate is accepted. */
  tlsVerify?: boolean;
  certDir?: string;
  authFile?: string;
}

export interface OciDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { architecture: string; os: string; variant?: string };
  annotations?: Record<string, string>;
}

export interface OciManifest {
  schemaVersion: number;
  mediaType?: string;
  config: OciDescriptor;
  layers: OciDescriptor[];
}

export interface PulledImage {
  /** Digest of the manifest that was copied (for a multi-platform index: the host's entry). */
  manifestDigest: string;
  manifest: OciManifest;
  config: OciImageConfig;
  /** Path of a blob by digest. */
  blobPath(digest: string): string;
}

export class PullError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PullError';
  }
}

const GOARCH: Partial<Record<NodeJS.Architecture, string>> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
};

export function hostArchitecture(): string {
  return GOARCH[process.arch] ?? process.arch;
}

const DIGEST = /^sha256:[a-f0-9]{64}$/;

export class OciCache {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'oci');
  }

  get blobsDir(): string {
    return join(this.dir, 'blobs');
  }

  blobPath(digest: string): string {
    if (!DIGEST.test(digest)) throw new PullError(`unsupported digest "${digest}"`);
    return join(this.blobsDir, 'sha256', digest.slice('sha256:'.length));
  }

  /**
   * Copies `source` (a skopeo transport reference: docker://…, oci-archive:…, docker-archive:…,
   * oci:…) into the cache and reads what arrived. `onLine` gets skopeo's progress lines.
   */
  async copy(
    source: string,
    opts: RegistryOptions & {
      onLine?: (line: string) => void;
      skopeo?: string;
      /**
       * Reuse an earlier copy of `source` made with the same fingerprint instead of running
       * skopeo (a pinned reference, or a local archive whose size and mtime are unchanged).
       */
      reuse?: { fingerprint: string };
      /** skopeo draws its per-blob progress bars (bytes) on our stdout, a terminal. */
      terminal?: boolean;
    } = {},
  ): Promise<PulledImage> {
    const refDir = join(this.dir, 'refs', createHash('sha256').update(source).digest('hex'));
    const stamp = join(refDir, 'conductor-source.json');
    if (opts.reuse) {
      const seen = await readJson<{ source: string; fingerprint: string }>(stamp).catch(
        () => undefined,
      );
      if (seen?.source === source && seen.fingerprint === opts.reuse.fingerprint) {
        const reused = await this.read(source, refDir).catch(() => undefined);
        if (reused) return reused;
      }
    }
    await rm(stamp, { force: true });
    await mkdir(refDir, { recursive: true, mode: 0o700 });
    await mkdir(this.blobsDir, { recursive: true, mode: 0o700 });
    const args = [
      'copy',
      '--override-os',
      'linux',
      '--override-arch',
      hostArchitecture(),
      '--dest-shared-blob-dir',
      this.blobsDir,
    ];
    if (source.startsWith('docker://')) {
      if (opts.tlsVerify === false) args.push('--src-tls-verify=false');
      if (opts.certDir) args.push('--src-cert-dir', opts.certDir);
      if (opts.authFile) args.push('--authfile', opts.authFile);
    }
    args.push(source, `oci:${refDir}:image`);
    await runCommand(opts.skopeo ?? 'skopeo', args, {
      ...(opts.onLine ? { onLine: opts.onLine } : {}),
      tailLines: 3,
      ...(opts.terminal ? { stdoutToTerminal: true } : {}),
      // logrus lines: keep the message.
      describe: (l) => l.replace(/^time="[^"]*" level=\w+ msg=/, ''),
    }).catch((err: unknown) => {
      throw new PullError((err as Error).message);
    });
    const pulled = await this.read(source, refDir);
    if (opts.reuse) await writeJsonAtomic(stamp, { source, fingerprint: opts.reuse.fingerprint });
    return pulled;
  }

  /** What a copy left in `refDir`: the manifest, its config, checked for what unpacking needs. */
  private async read(source: string, refDir: string): Promise<PulledImage> {
    const index = JSON.parse(await readFile(join(refDir, 'index.json'), 'utf8')) as {
      manifests?: OciDescriptor[];
    };
    const desc = (index.manifests ?? []).find(
      (m) => m.annotations?.['org.opencontainers.image.ref.name'] === 'image',
    );
    if (!desc) throw new PullError(`${source}: skopeo wrote no manifest`);
    const manifest = JSON.parse(await readFile(this.blobPath(desc.digest), 'utf8')) as OciManifest;
    if (!Array.isArray(manifest.layers) || !manifest.config?.digest) {
      throw new PullError(`${source}: manifest ${desc.digest} is not an image manifest`);
    }
    const config = JSON.parse(
      await readFile(this.blobPath(manifest.config.digest), 'utf8'),
    ) as OciImageConfig;
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== manifest.layers.length || diffIds.some((d) => !DIGEST.test(d))) {
      throw new PullError(
        `${source}: the image config lists ${diffIds.length} diff_ids for ${manifest.layers.length} layers`,
      );
    }
    if (config.os && config.os !== 'linux') {
      throw new PullError(`${source}: the image is for ${config.os}, not linux`);
    }
    return {
      manifestDigest: desc.digest,
      manifest,
      config,
      blobPath: (d) => this.blobPath(d),
    };
  }
}

/**
 * Empties the download cache (pulled manifests and compressed blobs: the layers are unpacked
 * in the layer store), sparing what was written less than `graceMs` ago (a pull in progress).
 */
export async function pruneOciCache(
  cache: OciCache,
  graceMs: number,
  now = Date.now(),
): Promise<number> {
  let reclaimed = 0;
  for (const dir of [join(cache.dir, 'refs'), join(cache.blobsDir, 'sha256')]) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      const path = join(dir, name);
      const st = await lstat(path).catch(() => undefined);
      if (!st || now - st.mtimeMs < graceMs) continue;
      if (st.isFile()) reclaimed += st.size;
      await rm(path, { recursive: true, force: true });
    }
  }
  return reclaimed;
}
