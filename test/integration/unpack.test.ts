/**
 * The native layer unpacker (unpackLayer) and resolveInRoot against the real kernel, as root:
 * modes, owners, times, links and long names kept; whiteouts turned into overlayfs whiteouts
 * and checked through a real overlay mount; hostile archives refused with nothing written
 * outside the target; gzip, zstd and truncated streams.
 */
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import {
  mountOverlay,
  resolveInRoot,
  unmount,
  unpackLayer,
  type NativeError,
} from '../../runtime-core/src/native.js';
import {
  assertNoLeaks,
  hostSnapshot,
  listMounts,
  uniqueId,
  type HostSnapshot,
} from '../fixtures/index.js';
import {
  compress,
  tarBuffer,
  writeLayer,
  zstdAvailable,
  type TarEntrySpec,
} from '../fixtures/tar.js';

const PREFIX = uniqueId('unpack');
let tmp: string;
let before: HostSnapshot;
let counter = 0;
const mounts: string[] = [];

/** A fresh directory under the suite's temp dir. */
function freshDir(label: string): string {
  counter += 1;
  const dir = join(tmp, `${label}-${counter}`);
  mkdirSync(dir);
  return dir;
}

const diffIdOf = (tar: Buffer): string =>
  `sha256:${createHash('sha256').update(tar).digest('hex')}`;

function layer(entries: TarEntrySpec[], compression: 'none' | 'gzip' | 'zstd' = 'none'): string {
  counter += 1;
  return writeLayer(join(tmp, `layer-${counter}.tar`), entries, compression);
}

/** An xattr's value, or null when it is not set (Node has no xattr API; python3 does). */
function getXattr(path: string, name: string): string | null {
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
  if (r.status === 3) return null;
  if (r.status !== 0) throw new Error(`getxattr ${path} ${name}: ${r.stderr}`);
  return r.stdout;
}

/** Every path below `dir` with its type, size and mode: a fingerprint to compare before/after. */
function snapshotTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      out.push(`${p} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

async function unpackError(archive: string, target: string): Promise<NativeError> {
  try {
    await unpackLayer({ archive, target });
  } catch (e) {
    return e as NativeError;
  }
  throw new Error(`unpackLayer of ${archive} succeeded`);
}

beforeAll(() => {
  before = hostSnapshot();
  tmp = mkdtempSync(join(tmpdir(), `${PREFIX}-`));
});

afterAll(async () => {
  for (const m of mounts.reverse()) {
    if (listMounts().includes(m)) await unmount(m, { detach: true });
  }
  rmSync(tmp, { recursive: true, force: true });
  assertNoLeaks(before, { idPrefix: PREFIX, tempDirs: [tmp] });
});

describe('unpackLayer', () => {
  it('keeps modes (setuid, setgid, sticky, 0700), owners, mtimes, links, long names and fifos', async () => {
    const longDir = `long/${'d'.repeat(120)}`;
    const longFile = `${longDir}/${'f'.repeat(150)}`;
    const archive = layer([
      { name: './', type: 'dir', mode: 0o755, mtime: 1_100_000_000 },
      { name: 'bin/', type: 'dir', mode: 0o755, mtime: 1_100_000_001 },
      { name: 'bin/su', data: 'su!', mode: 0o4755, mtime: 1_000_000_000 },
      { name: 'bin/sg', data: 'sg', mode: 0o2711, uid: 1000, gid: 2000, mtime: 1_000_000_001 },
      { name: 'tmp/', type: 'dir', mode: 0o1777, mtime: 1_100_000_002 },
      { name: 'secret/', type: 'dir', mode: 0o700, uid: 1234, gid: 5678, mtime: 1_200_000_000 },
      { name: 'secret/key', data: 'k', mode: 0o600, uid: 1234, gid: 5678, mtime: 1_000_000_002 },
      {
        name: 'bin/sh',
        type: 'symlink',
        linkname: '/bin/busybox',
        uid: 7,
        gid: 8,
        mtime: 1_300_000_000,
      },
      { name: './bin/rel', type: 'symlink', linkname: 'su', mtime: 1_300_000_001 },
      { name: 'bin/su-again', type: 'hardlink', linkname: './bin/su' },
      { name: longFile, data: 'long', mode: 0o640, mtime: 1_000_000_003 },
      { name: `bin/${'l'.repeat(110)}`, type: 'symlink', linkname: `/${'t'.repeat(130)}` },
      { name: 'run/fifo', type: 'fifo', mode: 0o620, uid: 3, gid: 4, mtime: 1_000_000_004 },
      { name: 'frac', data: 'f', mtime: 1_400_000_000.25 },
      {
        name: 'xattrs',
        data: 'x',
        pax: {
          'SCHILY.xattr.user.origin': 'layer',
          'SCHILY.xattr.trusted.overlay.opaque': 'y',
        },
      },
    ]);
    const target = freshDir('tree');
    const result = await unpackLayer({ archive, target });
    expect(result).toEqual({
      entries: 15,
      bytes: 3 + 2 + 1 + 4 + 1 + 1,
      diffId: diffIdOf(readFileSync(archive)),
    });

    const mode = (p: string): number => lstatSync(join(target, p)).mode & 0o7777;
    expect(mode('.')).toBe(0o755);
    expect(mode('bin/su')).toBe(0o4755);
    expect(mode('bin/sg')).toBe(0o2711);
    expect(mode('tmp')).toBe(0o1777);
    expect(mode('secret')).toBe(0o700);
    expect(mode('secret/key')).toBe(0o600);
    expect(mode(longFile)).toBe(0o640);
    expect(mode('run/fifo')).toBe(0o620);
    // Parents the archive does not list are made 0755 root:root.
    expect(mode('run')).toBe(0o755);
    expect(mode('long')).toBe(0o755);

    const sg = statSync(join(target, 'bin/sg'));
    expect([sg.uid, sg.gid]).toEqual([1000, 2000]);
    const secret = statSync(join(target, 'secret'));
    expect([secret.uid, secret.gid]).toEqual([1234, 5678]);
    const sh = lstatSync(join(target, 'bin/sh'));
    expect(sh.isSymbolicLink()).toBe(true);
    expect([sh.uid, sh.gid]).toEqual([7, 8]);
    expect(readlinkSync(join(target, 'bin/sh'))).toBe('/bin/busybox');
    expect(readlinkSync(join(target, 'bin/rel'))).toBe('su');
    expect(readlinkSync(join(target, `bin/${'l'.repeat(110)}`))).toBe(`/${'t'.repeat(130)}`);
    const fifo = lstatSync(join(target, 'run/fifo'));
    expect(fifo.isFIFO()).toBe(true);
    expect([fifo.uid, fifo.gid]).toEqual([3, 4]);

    const su = statSync(join(target, 'bin/su'));
    const again = statSync(join(target, 'bin/su-again'));
    expect(again.ino).toBe(su.ino);
    expect(su.nlink).toBe(2);
    expect(readFileSync(join(target, longFile), 'utf8')).toBe('long');

    // Times: files, symlinks (not their targets), and directories after their contents.
    const mtime = (p: string): number => lstatSync(join(target, p)).mtimeMs;
    expect(mtime('bin/su')).toBe(1_000_000_000_000);
    expect(mtime('bin/sh')).toBe(1_300_000_000_000);
    expect(mtime('run/fifo')).toBe(1_000_000_004_000);
    expect(mtime('secret')).toBe(1_200_000_000_000);
    expect(mtime('bin')).toBe(1_100_000_001_000);
    expect(mtime('.')).toBe(1_100_000_000_000);
    const frac = lstatSync(join(target, 'frac'), { bigint: true });
    expect(frac.mtimeNs).toBe(1_400_000_000_250_000_000n);

    // user.* xattrs are applied; trusted.overlay.* from an archive is not.
    expect(getXattr(join(target, 'xattrs'), 'user.origin')).toBe('layer');
    expect(getXattr(join(target, 'xattrs'), 'trusted.overlay.opaque')).toBeNull();
  });

  it('reads GNU long names and long link names', async () => {
    const name = `gnu/${'n'.repeat(140)}`;
    const archive = join(tmp, 'gnu.tar');
    writeFileSync(
      archive,
      tarBuffer(
        [
          { name: 'gnu/', type: 'dir' },
          { name, data: 'gnu' },
          { name: 'gnu/link', type: 'symlink', linkname: `/${'k'.repeat(200)}` },
          { name: 'gnu/hard', type: 'hardlink', linkname: name },
        ],
        { longNames: 'gnu' },
      ),
    );
    const target = freshDir('gnu');
    await unpackLayer({ archive, target, compression: 'none' });
    expect(readFileSync(join(target, name), 'utf8')).toBe('gnu');
    expect(readlinkSync(join(target, 'gnu/link'))).toBe(`/${'k'.repeat(200)}`);
    expect(statSync(join(target, 'gnu/hard')).ino).toBe(statSync(join(target, name)).ino);
  });

  it('lets a later entry with the same path replace the earlier one; directories merge', async () => {
    const archive = layer([
      { name: 'a', data: 'one' },
      { name: 'a', data: 'two', mode: 0o600 },
      { name: 'd/', type: 'dir', mode: 0o755 },
      { name: 'd/x', data: 'x' },
      { name: 'd/', type: 'dir', mode: 0o700, mtime: 1_234_567_890 },
      { name: 'e/', type: 'dir' },
      { name: 'e/y', data: 'y' },
      { name: 'e', data: 'now a file' },
      { name: 'f', data: 'file first' },
      { name: 'f/', type: 'dir', mode: 0o750 },
      { name: 's', type: 'symlink', linkname: '/etc/passwd' },
      { name: 's', data: 'not through the link' },
    ]);
    const target = freshDir('replace');
    await unpackLayer({ archive, target });
    expect(readFileSync(join(target, 'a'), 'utf8')).toBe('two');
    expect(statSync(join(target, 'a')).mode & 0o7777).toBe(0o600);
    expect(readdirSync(join(target, 'd'))).toEqual(['x']);
    expect(statSync(join(target, 'd')).mode & 0o7777).toBe(0o700);
    expect(statSync(join(target, 'd')).mtimeMs).toBe(1_234_567_890_000);
    expect(lstatSync(join(target, 'e')).isFile()).toBe(true);
    expect(readFileSync(join(target, 'e'), 'utf8')).toBe('now a file');
    expect(lstatSync(join(target, 'f')).isDirectory()).toBe(true);
    expect(statSync(join(target, 'f')).mode & 0o7777).toBe(0o750);
    expect(lstatSync(join(target, 's')).isFile()).toBe(true);
    expect(readFileSync(join(target, 's'), 'utf8')).toBe('not through the link');
  });

  it('turns whiteouts into overlayfs whiteouts, as an overlay mount shows', async () => {
    const base = freshDir('base');
    await unpackLayer({
      archive: layer([
        { name: 'etc/', type: 'dir' },
        { name: 'etc/passwd', data: 'root:x:0:0::/root:/bin/sh\n' },
        { name: 'etc/keep', data: 'keep' },
        { name: 'opq/', type: 'dir' },
        { name: 'opq/old', data: 'old' },
        { name: 'opq/sub/', type: 'dir' },
      ]),
      target: base,
    });
    const top = freshDir('top');
    const result = await unpackLayer({
      archive: layer([
        { name: 'etc/', type: 'dir' },
        { name: 'etc/.wh.passwd' },
        { name: 'opq/', type: 'dir' },
        { name: 'opq/.wh..wh..opq' },
        { name: 'opq/new', data: 'new' },
      ]),
      target: top,
    });
    expect(result.entries).toBe(5);

    const wh = lstatSync(join(top, 'etc/passwd'));
    expect(wh.isCharacterDevice()).toBe(true);
    expect(wh.rdev).toBe(0);
    expect(readdirSync(join(top, 'etc'))).toEqual(['passwd']);
    expect(readdirSync(join(top, 'opq'))).toEqual(['new']);
    expect(getXattr(join(top, 'opq'), 'trusted.overlay.opaque')).toBe('y');

    const merged = freshDir('merged');
    const upper = freshDir('upper');
    const work = freshDir('work');
    await mountOverlay({ lower: [top, base], upper, work, target: merged, readonly: true });
    mounts.push(merged);
    try {
      expect(readdirSync(join(merged, 'etc'))).toEqual(['keep']);
      expect(existsSync(join(merged, 'etc/passwd'))).toBe(false);
      expect(readdirSync(join(merged, 'opq'))).toEqual(['new']);
      expect(readFileSync(join(merged, 'opq/new'), 'utf8')).toBe('new');
    } finally {
      await unmount(merged);
      mounts.pop();
    }
  });

  it('unpacks gzip layers (auto and explicit)', async () => {
    const entries: TarEntrySpec[] = [
      { name: 'z/', type: 'dir' },
      { name: 'z/data', data: randomBytes(300_000) },
    ];
    const archive = layer(entries, 'gzip');
    const t1 = freshDir('gzip');
    // diff_id: the digest of the tar, not of its compressed form.
    expect(await unpackLayer({ archive, target: t1 })).toEqual({
      entries: 2,
      bytes: 300_000,
      diffId: diffIdOf(gunzipSync(readFileSync(archive))),
    });
    const t2 = freshDir('gzip');
    await unpackLayer({ archive, target: t2, compression: 'gzip' });
    expect(readFileSync(join(t2, 'z/data'))).toEqual(readFileSync(join(t1, 'z/data')));
    // Named wrong, it is an error, not garbage on disk.
    const err = await unpackLayer({ archive, target: freshDir('gzip'), compression: 'zstd' }).catch(
      (e: unknown) => e as NativeError,
    );
    expect(String(err)).toMatch(/zstd/);
  });

  const zstd = zstdAvailable();
  (zstd ? it : it.skip)(
    zstd ? 'unpacks zstd layers' : 'unpacks zstd layers (SKIPPED: the zstd CLI is not installed)',
    async () => {
      const data = randomBytes(200_000);
      const archive = layer([{ name: 'zst', data, mode: 0o755 }], 'zstd');
      const target = freshDir('zstd');
      expect(await unpackLayer({ archive, target })).toMatchObject({ entries: 1, bytes: 200_000 });
      expect(readFileSync(join(target, 'zst'))).toEqual(data);
      expect(statSync(join(target, 'zst')).mode & 0o7777).toBe(0o755);

      const cut = join(tmp, 'truncated.tar.zst');
      const full = readFileSync(archive);
      writeFileSync(cut, full.subarray(0, full.length - 8));
      expect((await unpackError(cut, freshDir('zstd'))).message).toMatch(/zstd.*truncated/);
    },
  );

  it('rejects truncated archives instead of hanging or stopping early', async () => {
    const tar = tarBuffer([{ name: 'big', data: randomBytes(400_000) }]);
    const gz = join(tmp, 'truncated.tar.gz');
    const full = compress(tar, 'gzip');
    writeFileSync(gz, full.subarray(0, Math.floor(full.length / 2)));
    const e1 = await unpackError(gz, freshDir('trunc'));
    expect(e1.message).toMatch(/layer entry "big".*truncated/);

    // The gzip trailer (CRC, length) is checked too, after the tar's end.
    const gzTail = join(tmp, 'truncated-tail.tar.gz');
    writeFileSync(gzTail, full.subarray(0, full.length - 4));
    expect((await unpackError(gzTail, freshDir('trunc'))).message).toMatch(/truncated/);

    // Uncompressed: the size is checked against what is left before anything is written.
    const plain = join(tmp, 'truncated.tar');
    writeFileSync(plain, tar);
    truncateSync(plain, 200_000);
    const target = freshDir('trunc');
    const e2 = await unpackError(plain, target);
    expect(e2.message).toMatch(/layer entry "big": size 400000 is larger than the rest/);
    expect(readdirSync(target)).toEqual([]);

    // No end-of-archive marker at all.
    const noEnd = join(tmp, 'no-end.tar');
    writeFileSync(noEnd, tar.subarray(0, tar.length - 1024));
    expect((await unpackError(noEnd, freshDir('trunc'))).message).toMatch(
      /without an end-of-archive marker/,
    );
  });

  it('refuses a target that is not empty', async () => {
    const target = freshDir('nonempty');
    writeFileSync(join(target, 'x'), '');
    const err = await unpackError(layer([{ name: 'a', data: 'a' }]), target);
    expect(err.message).toMatch(/is not empty/);
    expect(err.code).toBe('ENOTEMPTY');
  });
});

describe('unpackLayer refuses hostile archives', () => {
  let sentinel: string;
  let sentinelBefore: string[];
  const absName = `/tmp/${PREFIX}-absolute`;

  beforeAll(() => {
    sentinel = freshDir('sentinel');
    writeFileSync(join(sentinel, 'orig'), 'original');
    mkdirSync(join(sentinel, 'sub'));
    sentinelBefore = snapshotTree(sentinel);
  });

  interface HostileCase {
    label: string;
    entries: () => TarEntrySpec[];
    /** The entry the error must name. */
    entry: string;
    why: RegExp;
    code?: string;
  }
  const cases: HostileCase[] = [
    {
      label: '../x',
      entries: () => [{ name: '../x', data: 'x' }],
      entry: '../x',
      why: /leaves the layer/,
    },
    {
      label: 'a/../../x',
      entries: () => [
        { name: 'a/', type: 'dir' },
        { name: 'a/../../x', data: 'x' },
      ],
      entry: 'a/../../x',
      why: /leaves the layer/,
    },
    {
      label: 'an absolute name',
      entries: () => [{ name: absName, data: 'x' }],
      entry: absName,
      why: /absolute path/,
    },
    {
      label: 'a symlink out of the layer, then a file through it',
      entries: () => [
        { name: 'evil', type: 'symlink', linkname: sentinel },
        { name: 'evil/file', data: 'pwned' },
      ],
      entry: 'evil/file',
      why: /parent "evil" is a symlink/,
      code: 'ELOOP',
    },
    {
      label: 'a symlink to .., then a file through it',
      entries: () => [
        { name: 'up', type: 'symlink', linkname: '..' },
        { name: 'up/escaped', data: 'pwned' },
      ],
      entry: 'up/escaped',
      why: /parent "up" is a symlink/,
    },
    {
      label: 'a directory through a symlink',
      entries: () => [
        { name: 'evil', type: 'symlink', linkname: sentinel },
        { name: 'evil/newdir/', type: 'dir' },
      ],
      entry: 'evil/newdir/',
      why: /is a symlink/,
    },
    {
      label: 'a whiteout through a symlink (would delete a host file)',
      entries: () => [
        { name: 'evil', type: 'symlink', linkname: sentinel },
        { name: 'evil/.wh.orig' },
      ],
      entry: 'evil/.wh.orig',
      why: /is a symlink/,
    },
    {
      label: 'an opaque marker through a symlink (would set an xattr on a host dir)',
      entries: () => [
        { name: 'evil', type: 'symlink', linkname: sentinel },
        { name: 'evil/.wh..wh..opq' },
      ],
      entry: 'evil/.wh..wh..opq',
      why: /is a symlink/,
    },
    {
      label: 'a hardlink to /etc/passwd',
      entries: () => [{ name: 'pw', type: 'hardlink', linkname: '/etc/passwd' }],
      entry: 'pw',
      why: /hardlink target "\/etc\/passwd" is an absolute path/,
    },
    {
      label: 'a hardlink to ../../outside',
      entries: () => [{ name: 'out', type: 'hardlink', linkname: '../../outside' }],
      entry: 'out',
      why: /hardlink target "..\/..\/outside" leaves the layer/,
    },
    {
      label: 'a hardlink through a symlink to a host file',
      entries: () => [
        { name: 'evil', type: 'symlink', linkname: sentinel },
        { name: 'h', type: 'hardlink', linkname: 'evil/orig' },
      ],
      entry: 'h',
      why: /parent "evil" is a symlink/,
    },
    {
      label: 'a hardlink to an entry not in the layer',
      entries: () => [{ name: 'h', type: 'hardlink', linkname: 'nothere' }],
      entry: 'h',
      why: /is not in the layer/,
    },
    {
      label: 'a character device',
      entries: () => [{ name: 'null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 }],
      entry: 'null',
      why: /device nodes are refused/,
      code: 'EPERM',
    },
    {
      label: 'a block device',
      entries: () => [{ name: 'sda', type: 'block', devmajor: 8, devminor: 0 }],
      entry: 'sda',
      why: /device nodes are refused/,
    },
    {
      label: 'a whiteout of ..',
      entries: () => [{ name: 'a/.wh...' }],
      entry: 'a/.wh...',
      why: /whiteout of an invalid name/,
    },
  ];

  it.each(cases)('$label', async ({ entries, entry, why, code }) => {
    const target = freshDir('hostile');
    const err = await unpackError(layer(entries()), target);
    expect(err.message).toContain(`layer entry ${JSON.stringify(entry)}: `);
    expect(err.message).toMatch(why);
    if (code !== undefined) expect(err.code).toBe(code);
    // Nothing outside the target changed.
    expect(snapshotTree(sentinel)).toEqual(sentinelBefore);
    expect(readFileSync(join(sentinel, 'orig'), 'utf8')).toBe('original');
    expect(getXattr(sentinel, 'trusted.overlay.opaque')).toBeNull();
    expect(existsSync(absName)).toBe(false);
    expect(existsSync(join(tmp, 'x'))).toBe(false);
    expect(existsSync(join(tmp, 'escaped'))).toBe(false);
    expect(readdirSync(tmp).filter((n) => n === 'outside' || n === 'escaped')).toEqual([]);
  });
});

describe('resolveInRoot', () => {
  let root: string;
  let real: string;

  beforeAll(() => {
    root = freshDir('root');
    real = realpathSync(root);
    mkdirSync(join(root, 'etc'));
    writeFileSync(join(root, 'etc/passwd'), 'inside');
    symlinkSync('/etc', join(root, 'abs'));
    symlinkSync('../../..', join(root, 'up'));
    symlinkSync('/nonexistent', join(root, 'dangling'));
  });

  it('follows an absolute symlink inside the root', () => {
    expect(resolveInRoot(root, '/abs/passwd')).toBe(join(real, 'etc/passwd'));
    expect(resolveInRoot(root, 'abs')).toBe(join(real, 'etc'));
  });

  it('clamps .. at the root', () => {
    expect(resolveInRoot(root, '../../../etc')).toBe(join(real, 'etc'));
    expect(resolveInRoot(root, 'up/etc/passwd')).toBe(join(real, 'etc/passwd'));
    expect(resolveInRoot(root, '/')).toBe(real);
  });

  it('appends missing components to the longest existing prefix', () => {
    expect(resolveInRoot(root, '/abs/new/dir/file')).toBe(join(real, 'etc/new/dir/file'));
    expect(resolveInRoot(root, 'missing')).toBe(join(real, 'missing'));
  });

  it('refuses .. in the missing part and a dangling symlink at its start', () => {
    expect(() => resolveInRoot(root, 'missing/../../x')).toThrow(/`\.\.` below the missing/);
    let err: NativeError | undefined;
    try {
      resolveInRoot(root, 'dangling/x');
    } catch (e) {
      err = e as NativeError;
    }
    expect(err?.message).toMatch(/dangling symlink/);
    expect(err?.code).toBe('ELOOP');
    expect(() => resolveInRoot(root, 'etc/passwd/x')).toThrow(/ENOTDIR/);
  });
});
