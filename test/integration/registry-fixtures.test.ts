/**
 * The registry and image fixtures against the real tools: docker-registry on 127.0.0.1, images
 * made with umoci, pushed and pulled back with skopeo, and checked by listing their layer tars.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import {
  BUSYBOX_IMAGE_CONFIG,
  FIXTURE_LABEL,
  FIXTURE_ROOT,
  MEDIA_TYPES,
  MULTI_ARCH_PLATFORMS,
  WHITEOUT_LAYERS,
  assertNoLeaks,
  busyboxImage,
  fetchManifest,
  hostArchitecture,
  hostSnapshot,
  listLayer,
  multiArchIndex,
  processInfo,
  pushImage,
  readLayerFile,
  readLayoutImage,
  resolveTag,
  runTool,
  saveArchive,
  sha256Digest,
  startRegistry,
  uniqueId,
  type HostSnapshot,
  type ImageIndex,
  type Registry,
  whiteoutImage,
} from '../fixtures/index.js';

const PREFIX = uniqueId('rf');

let before: HostSnapshot;
let registry: Registry;
let work: string;

beforeAll(async () => {
  before = hostSnapshot();
  work = await mkdtemp(join(FIXTURE_ROOT, `${PREFIX}-`));
  registry = await startRegistry({ prefix: PREFIX });
});

afterAll(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
  assertNoLeaks(before, { idPrefix: PREFIX });
});

let pullCounter = 0;

/** skopeo copy from the registry into a fresh layout under `work`; returns its dir (tag `x`). */
async function pull(name: string, extra: string[] = []): Promise<string> {
  const dir = join(work, `pulled-${++pullCounter}`);
  await runTool('skopeo', [
    'copy',
    '--quiet',
    '--src-tls-verify=false',
    ...extra,
    registry.ref(name),
    `oci:${dir}:x`,
  ]);
  return dir;
}

async function inspectRaw(ref: string): Promise<string> {
  return runTool('skopeo', ['inspect', '--raw', '--tls-verify=false', ref]);
}

describe('startRegistry', () => {
  it('serves the distribution API on 127.0.0.1 from its own dir', async () => {
    expect(registry.host).toMatch(/^127\.0\.0\.1:\d+$/);
    const res = await fetch(`${registry.url}/v2/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
    expect(registry.dir.startsWith(join(FIXTURE_ROOT, 'registries', `${PREFIX}-`))).toBe(true);
    expect(processInfo(registry.pid)?.cmdline).toEqual([
      expect.stringMatching(/docker-registry$/),
      'serve',
      join(registry.dir, 'config.yml'),
    ]);
  });

  it('stop() ends the process it started and removes its dir, once', async () => {
    const other = await startRegistry({ prefix: PREFIX });
    expect(other.host).not.toBe(registry.host);
    const info = processInfo(other.pid);
    expect(info).toBeDefined();
    await other.stop();
    await other.stop();
    const after = processInfo(other.pid);
    // Gone, or the pid reused by an unrelated process.
    expect(after === undefined || after.startTime !== info?.startTime).toBe(true);
    expect(existsSync(other.dir)).toBe(false);
  });
});

describe('busyboxImage', () => {
  it('is one busybox layer with the fixture config', async () => {
    const image = await busyboxImage();
    expect(await busyboxImage()).toBe(image);
    expect(image.ref).toBe(`oci:${image.dir}:latest`);
    const { manifest, config, layerPaths } = await readLayoutImage(image.dir);
    expect(manifest.layers).toHaveLength(1);
    expect(manifest.layers[0]?.mediaType).toBe(MEDIA_TYPES.layerGzip);
    expect(config.config).toMatchObject({
      Env: [...BUSYBOX_IMAGE_CONFIG.Env],
      Cmd: [...BUSYBOX_IMAGE_CONFIG.Cmd],
      WorkingDir: BUSYBOX_IMAGE_CONFIG.WorkingDir,
      Labels: { [FIXTURE_LABEL]: 'busybox' },
    });
    expect(config.architecture).toBe(hostArchitecture());
    const entries = await listLayer(layerPaths[0] ?? '');
    expect(entries).toEqual(expect.arrayContaining(['bin/busybox', 'bin/sh', 'etc/passwd']));
    // Relative names only: the layer must pass a strict unpacker.
    expect(entries.filter((e) => e.startsWith('/') || e.split('/').includes('..'))).toEqual([]);
  });

  it('pushes, and pulls back by tag and by digest with the same manifest', async () => {
    const image = await busyboxImage();
    const local = await resolveTag(image.dir);
    const digest = await pushImage(image, registry, 'fixtures/busybox:latest');
    expect(digest).toBe(local.digest);

    const fetched = await fetchManifest(registry, 'fixtures/busybox', 'latest');
    expect(fetched).toMatchObject({ digest, mediaType: MEDIA_TYPES.manifest });

    const byTag = await pull('fixtures/busybox:latest');
    const byDigest = await pull(`fixtures/busybox@${digest}`);
    for (const dir of [byTag, byDigest]) {
      const pulled = await readLayoutImage(dir, 'x');
      expect(pulled.descriptor.digest).toBe(digest);
      expect(pulled.config.config?.Cmd).toEqual([...BUSYBOX_IMAGE_CONFIG.Cmd]);
      expect(await listLayer(pulled.layerPaths[0] ?? '')).toContain('bin/busybox');
    }
  });
});

describe('whiteoutImage', () => {
  it('has a layer of files and a layer with a whiteout and an opaque marker', async () => {
    const image = await whiteoutImage();
    const { manifest, config, layerPaths } = await readLayoutImage(image.dir);
    expect(manifest.layers).toHaveLength(3);
    expect(config.rootfs.diff_ids).toHaveLength(3);
    expect(config.config?.Labels).toEqual({ [FIXTURE_LABEL]: 'whiteout' });
    const [, lower, upper] = layerPaths;
    expect(await listLayer(lower ?? '')).toEqual(
      expect.arrayContaining(Object.keys(WHITEOUT_LAYERS.lower)),
    );
    expect(await listLayer(upper ?? '')).toEqual([...WHITEOUT_LAYERS.upper]);
    expect(await readLayerFile(upper ?? '', 'opq/upper-c')).toBe('upper-c\n');
    expect(await readLayerFile(lower ?? '', 'data/gone')).toBe('gone\n');
  });

  it('unpacks (umoci, independently of Conductor) to exactly the visible files', async () => {
    const image = await whiteoutImage();
    const bundle = join(work, 'whiteout-bundle');
    await runTool('umoci', ['unpack', '--image', `${image.dir}:latest`, bundle]);
    const rootfs = join(bundle, 'rootfs');
    expect((await readdir(join(rootfs, 'data'))).sort()).toEqual([...WHITEOUT_LAYERS.visible.data]);
    expect((await readdir(join(rootfs, 'opq'))).sort()).toEqual([...WHITEOUT_LAYERS.visible.opq]);
  });

  it('survives a push and a pull by digest layer for layer', async () => {
    const image = await whiteoutImage();
    const local = await readLayoutImage(image.dir);
    const digest = await pushImage(image, registry, 'fixtures/whiteout:v1');
    const pulled = await readLayoutImage(await pull(`fixtures/whiteout@${digest}`), 'x');
    expect(pulled.manifest.layers.map((l) => l.digest)).toEqual(
      local.manifest.layers.map((l) => l.digest),
    );
    expect(await listLayer(pulled.layerPaths[2] ?? '')).toContain('opq/.wh..wh..opq');
  });
});

describe('multiArchIndex', () => {
  it('is an index with one manifest per platform, sharing the busybox layer', async () => {
    const image = await multiArchIndex();
    const top = await resolveTag(image.dir);
    expect(top.mediaType).toBe(MEDIA_TYPES.index);
    const [amd64, arm64] = await Promise.all(
      MULTI_ARCH_PLATFORMS.map((p) => readLayoutImage(image.dir, 'latest', p.architecture)),
    );
    expect(amd64?.config.architecture).toBe('amd64');
    expect(arm64?.config.architecture).toBe('arm64');
    expect(amd64?.manifest.layers[0]?.digest).toBe(arm64?.manifest.layers[0]?.digest);
    expect(await readLayerFile(amd64?.layerPaths[1] ?? '', 'arch')).toBe('amd64\n');
    expect(await readLayerFile(arm64?.layerPaths[1] ?? '', 'arch')).toBe('arm64\n');
  });

  it('pushes with --all; the registry holds the index with both platforms', async () => {
    const image = await multiArchIndex();
    const digest = await pushImage(image, registry, 'fixtures/multiarch:latest', { all: true });
    expect(digest).toBe((await resolveTag(image.dir)).digest);
    const raw = await inspectRaw(registry.ref('fixtures/multiarch:latest'));
    expect(sha256Digest(raw)).toBe(digest);
    const index = JSON.parse(raw) as ImageIndex;
    expect(index.mediaType).toBe(MEDIA_TYPES.index);
    expect(index.manifests.map((m) => m.platform)).toEqual([...MULTI_ARCH_PLATFORMS]);
    const fetched = await fetchManifest(registry, 'fixtures/multiarch', digest);
    expect(fetched.mediaType).toBe(MEDIA_TYPES.index);
  });

  it("pulls the host's platform from the index without --all", async () => {
    const image = await multiArchIndex();
    await pushImage(image, registry, 'fixtures/multiarch:pick', { all: true });
    const arch = hostArchitecture();
    const expected = await readLayoutImage(image.dir, 'latest', arch);
    const pulled = await readLayoutImage(await pull('fixtures/multiarch:pick'), 'x');
    expect(pulled.descriptor.digest).toBe(expected.descriptor.digest);
    expect(pulled.config.architecture).toBe(arch);
    expect(await readLayerFile(pulled.layerPaths[1] ?? '', 'arch')).toBe(`${arch}\n`);
  });
});

describe('saveArchive', () => {
  it('writes an oci-archive and a docker-archive that skopeo reads back', async () => {
    const image = await busyboxImage();
    const ociPath = join(work, 'busybox.oci.tar');
    const dockerPath = join(work, 'busybox.docker.tar');
    const ociRef = await saveArchive(image, 'oci-archive', ociPath);
    const dockerRef = await saveArchive(image, 'docker-archive', dockerPath, {
      reference: 'fixtures/busybox:latest',
    });
    expect(ociRef).toBe(`oci-archive:${ociPath}:latest`);
    expect(dockerRef).toBe(`docker-archive:${dockerPath}`);
    expect(existsSync(ociPath) && existsSync(dockerPath)).toBe(true);
    await expect(saveArchive(image, 'oci-archive', ociPath)).rejects.toThrow(/exists/);

    for (const ref of [ociRef, dockerRef]) {
      const inspected = JSON.parse(await runTool('skopeo', ['inspect', ref])) as {
        Architecture: string;
        Layers: string[];
        Labels: Record<string, string>;
      };
      expect(inspected.Architecture).toBe(hostArchitecture());
      expect(inspected.Layers).toHaveLength(1);
      expect(inspected.Labels).toEqual({ [FIXTURE_LABEL]: 'busybox' });
    }
    const ociManifest = JSON.parse(await runTool('skopeo', ['inspect', '--raw', ociRef])) as {
      mediaType?: string;
    };
    expect(ociManifest.mediaType ?? MEDIA_TYPES.manifest).toBe(MEDIA_TYPES.manifest);
    const dockerManifest = JSON.parse(await runTool('skopeo', ['inspect', '--raw', dockerRef])) as {
      mediaType?: string;
    };
    expect(dockerManifest.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
  });
});
