/**
 * Image builds and pulls (runtime-core/src/images) against the real things: a docker-registry on
 * 127.0.0.1, skopeo, umoci-made busybox images, the native unpacker, overlayfs and build
 * containers run by the ContainerRuntime. Each image is checked from inside a container run on
 * its layers: it must see exactly the right files.
 */
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { cp, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

import { beforeAll, describe, expect, it } from '@jest/globals';

import {
  BuildError,
  type BuildRequest,
  type BuiltImage,
} from '../../runtime-core/src/images/builder.js';
import {
  busyboxImage,
  multiArchIndex,
  pushImage,
  saveArchive,
  startRegistry,
  whiteoutImage,
  type Registry,
} from '../fixtures/index.js';
import { builderSuite } from '../fixtures/build.js';
import { tarBuffer, type TarEntrySpec } from '../fixtures/tar.js';

const PREFIX = 'imgbld';

let registry: Registry | undefined;
/** A directory outside every store: nothing may ever appear in it. */
let outside: string | undefined;
const suite = builderSuite(PREFIX, {
  teardown: async () => {
    await registry?.stop();
    if (outside) expect(readdirSync(outsideDir())).toEqual(['sentinel']);
  },
});

beforeAll(async () => {
  outside = join(suite.work, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'sentinel'), 'untouched');
  registry = await startRegistry({ prefix: PREFIX });
}, 60_000);

/** A manifest directory of its own, with files for copy steps. */
function context(files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(suite.work, 'ctx-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

const build = (req: Partial<BuildRequest> & { from: string }): Promise<BuiltImage> =>
  suite.build(req);
const runIn = (image: BuiltImage, script: string): Promise<{ out: string; code?: number }> =>
  suite.runIn(image, script);
/** The registry, once beforeAll has started it. */
const reg = (): Registry => {
  if (!registry) throw new Error('no registry');
  return registry;
};
const outsideDir = (): string => outside ?? '';

describe('pulls from a registry', () => {
  it('pulls by tag and by digest; the container sees the image and its config', async () => {
    const digest = await pushImage(await busyboxImage(), reg(), 'test/busybox:1');
    const byTag = await build({
      from: `${reg().host}/test/busybox:1`,
      registry: { tlsVerify: false },
    });
    expect(byTag.baseDigest).toBe(digest);
    expect(byTag.config).toMatchObject({ cmd: ['/bin/sh'], env: { PATH: '/bin' } });
    const byDigest = await build({
      from: `${reg().host}/test/busybox@${digest}`,
      registry: { tlsVerify: false },
    });
    expect(byDigest.layers.map((l) => l.key)).toEqual(byTag.layers.map((l) => l.key));
    expect((await runIn(byDigest, 'echo ok; ls /bin/busybox')).out).toBe('ok\n/bin/busybox');
  });

  it('applies whiteouts: a deleted file and an opaque directory hide the layer below', async () => {
    await pushImage(await whiteoutImage(), reg(), 'test/whiteout:1');
    const image = await build({
      from: `${reg().host}/test/whiteout:1`,
      registry: { tlsVerify: false },
    });
    expect(image.layers).toHaveLength(3);
    const { out } = await runIn(image, 'ls -A /data; echo --; ls -A /opq');
    expect(out).toBe('keep\n--\nupper-c');
  });

  it('picks the host platform (linux/amd64) from a multi-arch index', async () => {
    await pushImage(await multiArchIndex(), reg(), 'test/multi:1', { all: true });
    const image = await build({
      from: `${reg().host}/test/multi:1`,
      registry: { tlsVerify: false },
    });
    expect((await runIn(image, 'cat /arch')).out).toBe('amd64');
  });

  it('fails clearly for a missing tag and for TLS against a plain-HTTP registry', async () => {
    await expect(
      build({ from: `${reg().host}/test/none:1`, registry: { tlsVerify: false } }),
    ).rejects.toThrow(/^spec\.from: skopeo failed .*manifest unknown/);
    // Not pulled before (a pulled tag other than latest is reused, as the kubelet's IfNotPresent).
    await pushImage(await busyboxImage(), reg(), 'test/busybox:tls');
    await expect(build({ from: `${reg().host}/test/busybox:tls` })).rejects.toThrow(
      /^spec\.from: skopeo failed .*https/,
    );
  });
});

describe('archives and layouts', () => {
  it('imports oci-archive, docker-archive and oci: layouts next to the manifest', async () => {
    const dir = context();
    await saveArchive(await busyboxImage(), 'oci-archive', join(dir, 'bb.oci.tar'));
    await saveArchive(await busyboxImage(), 'docker-archive', join(dir, 'bb.docker.tar'), {
      reference: 'busybox:1',
    });
    await cp((await whiteoutImage()).dir, join(dir, 'layout'), { recursive: true });
    const oci = await build({ from: 'oci-archive:bb.oci.tar:latest', contextDir: dir });
    const docker = await build({ from: 'docker-archive:bb.docker.tar', contextDir: dir });
    const layout = await build({ from: 'oci:layout:latest', contextDir: dir });
    // Same content, same layer (keyed by diff_id), stored once.
    expect(docker.layers.map((l) => l.key)).toEqual(oci.layers.map((l) => l.key));
    expect(layout.layers[0]?.key).toBe(oci.layers[0]?.key);
    expect((await runIn(docker, 'ls /bin/sh')).out).toBe('/bin/sh');
    expect((await runIn(layout, 'ls -A /opq')).out).toBe('upper-c');
  });

  it('refuses an archive path outside the manifest directory', async () => {
    const dir = context();
    await expect(build({ from: 'oci-archive:../outside', contextDir: dir })).rejects.toThrow(
      /spec\.from: "\.\.\/outside" (resolves outside|does not exist)/,
    );
  });
});

/** An OCI layout whose only layer is `entries` (hostile ones included), next to a manifest. */
async function layoutWithLayer(
  dir: string,
  entries: TarEntrySpec[],
  /** The diff_id the config claims (default: the layer's own). */
  claimedDiffId?: string,
): Promise<void> {
  const tar = tarBuffer(entries);
  const layer = gzipSync(tar);
  const diffId = claimedDiffId ?? createHash('sha256').update(tar).digest('hex');
  const blobs = join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const put = async (data: Buffer | string): Promise<{ digest: string; size: number }> => {
    const buf = Buffer.from(data);
    const hex = createHash('sha256').update(buf).digest('hex');
    await writeFile(join(blobs, hex), buf);
    return { digest: `sha256:${hex}`, size: buf.length };
  };
  const l = await put(layer);
  const config = await put(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [`sha256:${diffId}`] },
    }),
  );
  const manifest = await put(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...l }],
    }),
  );
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': 'latest' },
        },
      ],
    }),
  );
}

describe('hostile inputs are refused and nothing outside the store is touched', () => {
  const cases: [string, TarEntrySpec[], RegExp][] = [
    [
      'a ../ entry',
      [{ name: '../escape', type: 'file', data: 'x' }],
      /escape.*leaves the layer|\.\./,
    ],
    [
      'an absolute path',
      [{ name: '/etc/escape', type: 'file', data: 'x' }],
      /absolute|leaves the layer/,
    ],
    [
      'a symlink pointing out, then written through',
      [
        { name: 'evil', type: 'symlink', linkname: '/tmp' },
        { name: 'evil/escape', type: 'file', data: 'x' },
      ],
      /evil\/escape/,
    ],
    [
      'a hardlink to a host file',
      [{ name: 'pw', type: 'hardlink', linkname: '/etc/passwd' }],
      /pw/,
    ],
    ['a device node', [{ name: 'null', type: 'char', devmajor: 1, devminor: 3 }], /null/],
  ];
  it.each(cases)('%s', async (_what, entries, message) => {
    const dir = context();
    await layoutWithLayer(join(dir, 'layout'), entries);
    const err = await build({ from: 'oci:layout:latest', contextDir: dir }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BuildError);
    expect((err as Error).message).toMatch(/^spec\.from: layer sha256:[a-f0-9]{64}: /);
    expect((err as Error).message).toMatch(message);
    expect(
      readdirSync(join(suite.stateDir, 'layers')).filter((n) => n.startsWith('.tmp-')),
    ).toEqual([]);
    expect(existsSync('/tmp/escape')).toBe(false);
  });

  it('refuses a layer that is not what the config says it is (no layer cache poisoning)', async () => {
    // The layer claims busybox's diff_id: stored under that key, every busybox image pulled
    // later would run this content instead.
    const dir = context();
    await saveArchive(await busyboxImage(), 'oci-archive', join(dir, 'bb.tar'));
    const real = await build({ from: 'oci-archive:bb.tar', contextDir: dir });
    const claimed = real.layers[0]?.key ?? '';
    rmSync(suite.builder.store.path(claimed), { recursive: true, force: true });
    rmSync(`${suite.builder.store.path(claimed)}.json`, { force: true });
    await layoutWithLayer(
      join(dir, 'impostor'),
      [
        { name: 'bin/', type: 'dir' },
        { name: 'bin/busybox', data: 'not busybox', mode: 0o755 },
      ],
      claimed,
    );
    const err = await build({ from: 'oci:impostor:latest', contextDir: dir }).catch(
      (e: unknown) => e,
    );
    expect((err as Error).message).toMatch(
      new RegExp(
        `^spec\\.from: layer sha256:[a-f0-9]{64}: its content \\(diff_id sha256:[a-f0-9]{64}\\) is not the image config's diff_id sha256:${claimed}$`,
      ),
    );
    expect(existsSync(suite.builder.store.path(claimed))).toBe(false);
    // The real image still gets the real layer.
    const again = await build({ from: 'oci-archive:bb.tar', contextDir: dir });
    expect((await runIn(again, 'busybox true && echo real')).out).toBe('real');
  });

  it('refuses a COPY of ../../etc and a symlink leading out of the manifest directory', async () => {
    const dir = context({ 'ok.txt': 'fine' });
    symlinkSync(outsideDir(), join(dir, 'sneaky'));
    const scratch = { from: 'scratch', contextDir: dir };
    await expect(
      build({ ...scratch, steps: [{ copy: { src: '../../etc', dest: '/' } }] }),
    ).rejects.toThrow(
      /spec\.steps\[0\]\.copy\.src: "\.\.\/\.\.\/etc" resolves outside the manifest's directory/,
    );
    await expect(
      build({ ...scratch, steps: [{ copy: { src: 'sneaky', dest: '/' } }] }),
    ).rejects.toThrow(/spec\.steps\[0\]\.copy\.src: "sneaky" resolves outside/);
  });

  it("copies through the image's own symlinks without ever leaving it", async () => {
    // The image has /app -> <outside> (absolute, a path that exists on the host): the copy must
    // land at <outside> inside the image, never in the host's directory of that name.
    const dir = context({ 'conf/app.conf': 'mine' });
    const parts = outsideDir().split('/').filter(Boolean);
    await layoutWithLayer(join(dir, 'layout'), [
      ...parts.map((_, i) => ({
        name: `${parts.slice(0, i + 1).join('/')}/`,
        type: 'dir' as const,
      })),
      { name: 'app', type: 'symlink', linkname: outsideDir() },
      { name: 'dangling', type: 'symlink', linkname: '/nowhere/in/the/image' },
    ]);
    const image = await build({
      from: 'oci:layout:latest',
      contextDir: dir,
      steps: [{ copy: { src: 'conf', dest: '/app/' } }],
    });
    expect(readdirSync(outsideDir())).toEqual(['sentinel']);
    const top = suite.builder.store.path(image.layers.at(-1)?.key ?? '');
    expect(readFileSync(join(top, outsideDir(), 'app.conf'), 'utf8')).toBe('mine');
    // A symlink whose target is not in the image is refused, not created on the host.
    await expect(
      build({
        from: 'oci:layout:latest',
        contextDir: dir,
        steps: [{ copy: { src: 'conf', dest: '/dangling/' } }],
      }),
    ).rejects.toThrow(/^spec\.steps\[0\]\.copy: .*dangling/);
    expect(existsSync('/nowhere')).toBe(false);
  });
});

describe('build steps and the cache', () => {
  it('runs copy and run steps with the image config; unchanged → nothing runs; a changed step → it and later ones', async () => {
    const dir = context({ 'site/index.html': 'v1', 'site/sub/a.txt': 'a' });
    await saveArchive(await busyboxImage(), 'oci-archive', join(dir, 'bb.tar'));
    const steps = (marker: string) => [
      { copy: { src: 'site', dest: '/srv' } },
      { env: { GREETING: 'hi' } },
      { workdir: '/work' },
      { run: `echo "$GREETING $(pwd) $(cat /srv/index.html)" > out; date +%s%N > stamp` },
      { run: `echo ${marker} > /marker` },
    ];
    const first = await build({ from: 'oci-archive:bb.tar', contextDir: dir, steps: steps('one') });
    expect(first).toMatchObject({ stepsRun: 3, stepsCached: 0 });
    expect(first.config).toMatchObject({
      env: { GREETING: 'hi', PATH: '/bin' },
      workingDir: '/work',
    });
    const { out } = await runIn(first, 'cat /work/out /marker; cat /srv/sub/a.txt');
    expect(out).toBe('hi /work v1\none\na');

    const again = await build({ from: 'oci-archive:bb.tar', contextDir: dir, steps: steps('one') });
    expect(again).toMatchObject({ stepsRun: 0, stepsCached: 3, digest: first.digest });

    const changed = await build({
      from: 'oci-archive:bb.tar',
      contextDir: dir,
      steps: steps('two'),
    });
    expect(changed).toMatchObject({ stepsRun: 1, stepsCached: 2 });
    expect(changed.layers.slice(0, -1)).toEqual(first.layers.slice(0, -1));
    expect((await runIn(changed, 'cat /marker')).out).toBe('two');

    // A copied file's content is part of the key: the copy and everything after it rebuild.
    writeFileSync(join(dir, 'site/index.html'), 'v2');
    const edited = await build({
      from: 'oci-archive:bb.tar',
      contextDir: dir,
      steps: steps('two'),
    });
    expect(edited).toMatchObject({ stepsRun: 3, stepsCached: 0 });
    expect((await runIn(edited, 'cat /work/out')).out).toBe('hi /work v2');
  });

  it('a failing run step names the step and shows the end of its output', async () => {
    const dir = context();
    await saveArchive(await busyboxImage(), 'oci-archive', join(dir, 'bb.tar'));
    const err = await build({
      from: 'oci-archive:bb.tar',
      contextDir: dir,
      steps: [{ run: 'echo first; echo second >&2; exit 3' }],
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect(err).toMatchObject({ step: 0 });
    expect((err as Error).message).toMatch(
      /^spec\.steps\[0\]\.run: .* exited with code 3; last output:\nfirst\nsecond$/,
    );
    expect(
      readdirSync(join(suite.stateDir, 'layers')).filter((n) => n.startsWith('.tmp-')),
    ).toEqual([]);
  });

  it('refuses a copy step without a manifest directory before it fetches the base or runs a step', async () => {
    const events: string[] = [];
    const t0 = Date.now();
    const err = await build({
      // A base that would take debootstrap half a minute, and a step before the copy.
      from: 'debian:bookworm',
      steps: [{ run: 'apt-get update' }, { copy: { src: 'app', dest: '/app' } }],
      onProgress: (e) => events.push(e.type),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect(err).toMatchObject({ step: 1 });
    expect((err as Error).message).toBe(
      "spec.steps[1].copy: copy steps need a build context (the manifest's directory; for an Image from an API server, the agent's --build-context), and this Image has none",
    );
    expect(events).toEqual([]);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('resolves user names from the image and builds on another image', async () => {
    const dir = context({ 'hello.txt': 'hello' });
    await saveArchive(await busyboxImage(), 'oci-archive', join(dir, 'bb.tar'));
    const base = await build({
      from: 'oci-archive:bb.tar',
      contextDir: dir,
      steps: [{ copy: { src: 'hello.txt', dest: '/home/', chown: 'nobody' } }],
    });
    const derived = await build({
      from: 'image:base',
      contextDir: dir,
      resolveImage: (name) => (name === 'base' ? base : undefined),
      steps: [
        { user: 'nobody' },
        { run: 'id -u > /tmp/uid; stat -c %U /home/hello.txt > /tmp/owner' },
      ],
    });
    expect(derived.layers.slice(0, base.layers.length)).toEqual(base.layers);
    expect((await runIn(derived, 'cat /tmp/uid /tmp/owner')).out).toBe('65534\nnobody');
    expect(await suite.builder.resolveUser(derived, 'nobody')).toEqual({ uid: 65534, gid: 65534 });
    await expect(build({ from: 'image:missing', resolveImage: () => undefined })).rejects.toThrow(
      /image missing is not Ready yet/,
    );
  });
});
