/**
 * `conductor image export` end to end, with a real controller: an Image with whiteouts (the
 * fixture's whiteout image, then a run step that deletes, replaces a directory, makes a setuid
 * file with another owner, a hardlink, a symlink and a fifo) exported as docker-archive and
 * oci-archive; skopeo reads both (tag, layers, configuration); imported back with Conductor's
 * own `from: docker-archive:` / `oci-archive:`, every layer is the same tree (modes, owners,
 * mtimes, links, whiteouts, opaque directories) and a Container of it sees the same files. An
 * Image built by `conductor build -f` is exported from its build record; what cannot be
 * exported says why; an interrupted export leaves nothing.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from '@jest/globals';

import type { Container, Image } from '../../controller/api/types.generated.js';
import { main } from '../../controller/cli/main.js';
import { exportImage, ExportInterruptedError, LayerStore } from '../../runtime-core/src/index.js';
import { ControllerHarness, buildDist, type CliRun } from '../fixtures/controller.js';
import {
  assertNoLeaks,
  hostSnapshot,
  saveArchive,
  uniqueId,
  whiteoutImage,
  type HostSnapshot,
} from '../fixtures/index.js';

const NS = uniqueId('imgexp');
let h: ControllerHarness;
let before: HostSnapshot;

beforeAll(async () => {
  before = hostSnapshot();
  await buildDist();
  h = await ControllerHarness.create(NS);
  await saveArchive(await whiteoutImage(), 'oci-archive', join(h.watchDir, 'whiteout.tar'));
  await h.start({ images: { buildIdPrefix: `${NS}-build` } });
}, 120_000);

afterAll(async () => {
  await h?.cleanup();
  assertNoLeaks(before, { idPrefix: NS });
});

const conductor = (args: string[]): Promise<CliRun> => h.cli(args);

function manifest(
  kind: 'Image' | 'Container',
  name: string,
  spec: Record<string, unknown>,
): string {
  return JSON.stringify({
    apiVersion: 'conductor.dev/v1alpha1',
    kind,
    metadata: { name, namespace: NS },
    spec: kind === 'Container' ? { terminationGracePeriodSeconds: 1, ...spec } : spec,
  });
}

const ready = (o: Image | undefined): boolean => o?.status?.phase === 'Ready';

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      err
        ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`))
        : resolve(stdout),
    );
  });
}

/** An xattr of a path, or null (Node has no xattr API; python3 has). */
function xattr(path: string, name: string): string | null {
  const r = spawnSync(
    '/usr/bin/python3',
    [
      '-c',
      'import os,sys\ntry: print(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False).decode(), end="")\nexcept OSError: sys.exit(3)',
      path,
      name,
    ],
    { encoding: 'utf8' },
  );
  return r.status === 0 ? r.stdout : null;
}

/**
 * A layer directory as a layer keeps it: per path its type, mode, owner, mtime (ns), content
 * digest, link target, opaque mark, which paths share an inode; of a whiteout only that it is.
 */
function layerTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const firstOf = new Map<bigint, string>();
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const p = join(dir, r);
      const st = lstatSync(p, { bigint: true });
      if (st.isCharacterDevice() && st.rdev === 0n) {
        out[r] = 'whiteout';
        continue;
      }
      const parts = [
        st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : 'file',
        (st.mode & 0o7777n).toString(8),
        `${st.uid}:${st.gid}`,
        st.mtimeNs.toString(),
      ];
      if (st.isFile()) parts.push(createHash('sha256').update(readFileSync(p)).digest('hex'));
      if (st.isSymbolicLink()) parts.push(`-> ${readlinkSync(p)}`);
      if (st.isDirectory() && xattr(p, 'trusted.overlay.opaque') === 'y') parts.push('opaque');
      if (!st.isDirectory() && st.nlink > 1n) {
        parts.push(`inode of ${firstOf.get(st.ino) ?? r}`);
        firstOf.set(st.ino, firstOf.get(st.ino) ?? r);
      }
      out[r] = parts.join(' ');
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

const layerDirs = (img: Image | undefined): string[] =>
  (img?.status?.layers ?? []).map((l) => join(h.stateDir, 'layers', l.digest.slice(7)));

/** Files a container of `image` sees, as its log prints them. */
async function seen(image: string, name: string): Promise<string> {
  await h.write(
    `${name}.json`,
    manifest('Container', name, {
      image,
      command: [
        '/bin/sh',
        '-c',
        'ls -ln /data /opq | sed "s/  */ /g" | cut -d" " -f1,3,4,9-; cat /opq/x; id -u; pwd; echo "A=$A"',
      ],
      restartPolicy: 'Never',
    }),
  );
  await h.waitFor<Container>('Container', name, (o) => o?.status?.phase === 'Succeeded', 60_000);
  const logs = await conductor(['logs', name, '-n', NS]);
  await h.remove(`${name}.json`);
  return logs.stdout;
}

const CONFIG = {
  entrypoint: ['/bin/sh', '-c'],
  cmd: ['echo from the image'],
  env: { A: 'exported' },
  workingDir: '/opq',
  user: '0:0',
};

let original: Image | undefined;

it('exports an Image with whiteouts as docker-archive and oci-archive, which skopeo reads', async () => {
  await h.write(
    'app.json',
    manifest('Image', 'app', {
      from: 'oci-archive:whiteout.tar',
      steps: [
        {
          run: [
            'rm -rf /opq && mkdir /opq && echo new > /opq/x && chown 1000:2000 /opq/x',
            'chmod 4755 /opq/x && ln /opq/x /opq/x-link && ln -s ../data/keep /opq/sym',
            'mkfifo /opq/fifo && rm /etc/hostname /data/keep && touch -d @1000000000 /opq/x',
          ].join(' && '),
        },
      ],
      config: CONFIG,
    }),
  );
  original = await h.waitFor<Image>('Image', 'app', ready, 60_000);
  const layers = original?.status?.layers ?? [];
  expect(layers).toHaveLength(4);

  const docker = join(h.watchDir, 'app-docker.tar');
  const out = await conductor(['image', 'export', 'app', '-n', NS, '-o', docker]);
  expect(out).toMatchObject({ code: 0, stderr: '' });
  // Not at a terminal: one line, the result.
  expect(out.stdout).toMatch(
    new RegExp(
      `^image\\.conductor\\.dev/app exported to ${docker} \\(docker-archive, docker\\.io/library/app:latest: 4 layer\\(s\\), [\\d.]+[kM]B; built by controller\\) in [\\d.]+s\\n$`,
    ),
  );
  const inspect = JSON.parse(await run('skopeo', ['inspect', `docker-archive:${docker}`])) as {
    Layers: string[];
    Env: string[];
    Architecture: string;
    Os: string;
  };
  expect(inspect.Layers).toHaveLength(4);
  expect(inspect.Env).toEqual(['PATH=/bin', 'A=exported']);
  expect(inspect.Os).toBe('linux');
  // The tag is in the archive: skopeo finds the image by it (and not by another).
  await run('skopeo', ['inspect', `docker-archive:${docker}:docker.io/library/app:latest`]);
  await expect(
    run('skopeo', ['inspect', `docker-archive:${docker}:docker.io/library/other:latest`]),
  ).rejects.toThrow();
  const config = JSON.parse(
    await run('skopeo', ['inspect', '--config', `docker-archive:${docker}`]),
  ) as { config: Record<string, unknown>; rootfs: { diff_ids: string[] }; history: unknown[] };
  expect(config.config).toEqual({
    Entrypoint: CONFIG.entrypoint,
    Cmd: CONFIG.cmd,
    Env: ['PATH=/bin', 'A=exported'],
    WorkingDir: '/opq',
    User: '0:0',
  });
  expect(config.rootfs.diff_ids).toEqual(inspect.Layers);
  expect(config.history).toHaveLength(4);
  // What docker load reads: manifest.json with the tag, layers as tars.
  const manifestJson = JSON.parse(await run('tar', ['-xOf', docker, 'manifest.json'])) as {
    RepoTags: string[];
    Layers: string[];
  }[];
  expect(manifestJson[0]?.RepoTags).toEqual(['docker.io/library/app:latest']);
  const top = await run('tar', ['-xOf', docker, manifestJson[0]?.Layers[3] ?? '']);
  expect(top.length).toBeGreaterThan(0);
  const topList = await run('sh', [
    '-c',
    `tar -xOf ${docker} ${manifestJson[0]?.Layers[3]} | tar -tv --numeric-owner`,
  ]);
  expect(topList).toMatch(/^---------- 0\/0 +0 .* etc\/\.wh\.hostname$/m);
  expect(topList).toMatch(/ opq\/\.wh\.\.wh\.\.opq$/m);
  expect(topList).toMatch(/^-rwsr-xr-x 1000\/2000 +4 2001-09-09 .* opq\/x$/m);
  expect(topList).toMatch(/ opq\/x-link link to opq\/x$/m);

  const oci = join(h.watchDir, 'app-oci.tar');
  const tagged = await conductor([
    'image',
    'export',
    'app',
    '-n',
    NS,
    '-o',
    oci,
    '--format',
    'oci-archive',
    '--tag',
    'example.com/team/app:v1',
  ]);
  expect(tagged.code).toBe(0);
  const ociInspect = JSON.parse(await run('skopeo', ['inspect', `oci-archive:${oci}:v1`])) as {
    Layers: string[];
  };
  expect(ociInspect.Layers).toHaveLength(4);
  const ociManifest = JSON.parse(
    await run('skopeo', ['inspect', '--raw', `oci-archive:${oci}:v1`]),
  ) as { layers: { mediaType: string }[] };
  expect(ociManifest.layers.map((l) => l.mediaType)).toEqual(
    Array(4).fill('application/vnd.oci.image.layer.v1.tar+gzip'),
  );
  const index = JSON.parse(await run('tar', ['-xOf', oci, 'index.json'])) as {
    manifests: { annotations: Record<string, string> }[];
  };
  expect(index.manifests[0]?.annotations).toEqual({
    'org.opencontainers.image.ref.name': 'v1',
    'io.containerd.image.name': 'example.com/team/app:v1',
  });
}, 120_000);

it('imports both archives back with from: docker-archive: / oci-archive:, layer for layer the same', async () => {
  await h.write(
    'back.yaml',
    [
      manifest('Image', 'back-docker', { from: 'docker-archive:app-docker.tar' }),
      manifest('Image', 'back-oci', { from: 'oci-archive:app-oci.tar' }),
    ].join('\n---\n'),
  );
  const want = layerDirs(original).map(layerTree);
  // The pulled base and the run step's upper directory: whiteouts, the opaque /opq, all of it.
  expect(Object.values(want[3] ?? {})).toEqual(expect.arrayContaining(['whiteout']));
  expect(want[3]?.['opq']).toMatch(/ opaque$/);
  for (const name of ['back-docker', 'back-oci']) {
    const back = await h.waitFor<Image>('Image', name, ready, 60_000);
    expect(back?.status?.config).toEqual({ ...CONFIG, env: { PATH: '/bin', A: 'exported' } });
    expect(layerDirs(back).map(layerTree)).toEqual(want);
  }
  // A container of the imported image sees what one of the original sees.
  const a = await seen('app', 'seen-app');
  expect(a).toContain('new\n0\n/opq\nA=exported');
  expect(a).toMatch(/-rwsr-xr-x 1000 2000 x\n/);
  expect(a).not.toContain('lower-a');
  expect(await seen('back-docker', 'seen-docker')).toBe(a);
}, 180_000);

it('exports an Image conductor build -f built, from its build record', async () => {
  const ctx = join(h.base, 'ctx');
  await mkdir(join(ctx, 'files'), { recursive: true });
  await writeFile(join(ctx, 'files', 'hello'), `hello from ${NS}\n`);
  const file = join(ctx, 'built.json');
  await writeFile(
    file,
    manifest('Image', 'built-only', {
      from: 'scratch',
      steps: [{ copy: { src: 'files', dest: '/srv' } }],
      config: { cmd: ['/srv/hello'] },
    }),
  );
  const built = await conductor(['build', '-f', file, '-q']);
  expect(built.code).toBe(0);
  const digest = built.stdout.trim();
  const record = JSON.parse(
    readFileSync(join(h.stateDir, 'builds', NS, 'built-only.json'), 'utf8'),
  ) as Image;
  expect(record.status).toMatchObject({ phase: 'Ready', digest, config: { cmd: ['/srv/hello'] } });

  const tar = join(h.base, 'built-only.tar');
  const out = await conductor(['image', 'export', 'built-only', '-n', NS, '-o', tar]);
  expect(out.code).toBe(0);
  expect(out.stdout).toContain('built by conductor build');
  const listing = await run('sh', [
    '-c',
    `tar -xOf ${tar} $(tar -tf ${tar} | grep '^[0-9a-f]*\\.tar$') | tar -t`,
  ]);
  expect(listing.split('\n').filter(Boolean).sort()).toEqual(['srv/', 'srv/hello']);

  // Its layers pruned away: the export says which and why.
  await rm(join(h.stateDir, 'layers', (record.status?.layers?.[0]?.digest ?? '').slice(7)), {
    recursive: true,
    force: true,
  });
  const gone = await conductor(['image', 'export', 'built-only', '-n', NS, '-o', tar]);
  expect(gone.code).toBe(1);
  expect(gone.stderr).toMatch(
    /layer sha256:[0-9a-f]{64} \(copy files \/srv\) of image .*built-only is not in the layer store/,
  );
});

it('says why when there is nothing to export or the arguments are wrong', async () => {
  await h.write('broken.json', manifest('Image', 'broken', { from: 'oci-archive:missing.tar' }));
  await h.waitFor<Image>('Image', 'broken', (o) => o?.status?.phase === 'Failed');
  const tar = join(h.base, 'never.tar');
  const cases: [string[], number, RegExp][] = [
    [['nothing'], 1, /image\.conductor\.dev "nothing" is not built in namespace .* build it first/],
    [['broken'], 1, /image\.conductor\.dev\/broken in namespace .* is not Ready \(Failed: /],
    [['app', '--format', 'tar'], 2, /--format must be docker-archive or oci-archive/],
    [
      ['app', '--tag', `app@sha256:${'a'.repeat(64)}`],
      2,
      /--tag "app@sha256:a+" is not an image name/,
    ],
    [['app', '--tag', 'Upper:case'], 2, /is not an image name/],
  ];
  for (const [args, code, message] of cases) {
    const r = await conductor(['image', 'export', ...args, '-n', NS, '-o', tar]);
    expect({ args, code: r.code, stderr: r.stderr }).toEqual({
      args,
      code,
      stderr: expect.stringMatching(message),
    });
  }
  const noDir = await conductor(['image', 'export', 'app', '-n', NS, '-o', '/nonexistent/x.tar']);
  expect(noDir).toMatchObject({
    code: 1,
    stderr: 'error: /nonexistent is not a directory to write x.tar in\n',
  });
  const isDir = await conductor(['image', 'export', 'app', '-n', NS, '-o', h.base]);
  expect(isDir).toMatchObject({ code: 1, stderr: `error: ${h.base} is a directory\n` });
  const noOutput = await conductor(['image', 'export', 'app', '-n', NS]);
  expect(noOutput).toMatchObject({ code: 2, stderr: expect.stringContaining('expected -o FILE') });
  expect(existsSync(tar)).toBe(false);
});

it('shows each layer at a terminal, and leaves nothing behind when interrupted', async () => {
  const lines: string[] = [];
  const io = {
    stdout: (t: string) => void lines.push(t),
    stderr: (t: string) => void lines.push(`stderr: ${t}`),
    cwd: h.base,
    now: () => new Date(),
    signals: process,
    isTTY: true,
  };
  const tar = join(h.base, 'tty.tar');
  const code = await main(
    [
      'image',
      'export',
      'app',
      '-n',
      NS,
      '-o',
      tar,
      '--format',
      'oci-archive',
      '--state-dir',
      h.stateDir,
    ],
    io,
  );
  expect(code).toBe(0);
  const text = lines.join('');
  expect(text).toMatch(/^\[app\] layer 1\/4 sha256:[0-9a-f]{12} [\d.]+[kM]B: packing$/m);
  expect(text).toMatch(/^\[app\] layer 4\/4 sha256:[0-9a-f]{12}: [\d.]+[kM]?B in [\d.]+s$/m);
  expect(text).toContain(`[app] writing oci-archive ${tar}\n`);

  // Stopped after the first layer: no archive, no partial file, no temporary layout.
  const abort = new AbortController();
  const out = join(h.base, 'stopped.tar');
  await expect(
    exportImage(new LayerStore(h.stateDir), {
      name: `${NS}/app`,
      layers: (original?.status?.layers ?? []).map((l) => ({
        key: l.digest.slice(7),
        size: l.size ?? 0,
        createdBy: l.createdBy ?? '',
      })),
      config: {},
      reference: 'app',
      format: 'docker-archive',
      output: out,
      signal: abort.signal,
      onProgress: (e) => {
        if (e.type === 'layer' && e.state === 'packed') abort.abort();
      },
    }),
  ).rejects.toBeInstanceOf(ExportInterruptedError);
  expect(existsSync(out)).toBe(false);
  expect((await readdir(h.base)).filter((n) => n.includes('.tmp-'))).toEqual([]);
  expect((await readdir(join(h.stateDir, 'layers'))).filter((n) => n.startsWith('.tmp-'))).toEqual(
    [],
  );
});
