/**
 * The native layer packer (packLayer) against the real kernel, as root: a layer directory
 * written as a tar and unpacked again with unpackLayer gives the same tree (modes, owners,
 * mtimes to the nanosecond, symlinks, hardlinks, fifos, long and non-ASCII names, xattrs),
 * overlayfs whiteouts become OCI whiteouts (also ones the kernel made in a real overlay's upper
 * directory), and what a layer cannot carry is refused by name. Nothing outside the layer is
 * read: symlinks are written as symlinks, a mount point inside is refused.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
  lchownSync,
  chownSync,
  chmodSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import {
  mountOverlay,
  packLayer,
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

const PREFIX = uniqueId('pack');
let tmp: string;
let before: HostSnapshot;
let counter = 0;
const mounts: string[] = [];

function freshDir(label: string): string {
  counter += 1;
  const dir = join(tmp, `${label}-${counter}`);
  mkdirSync(dir);
  return dir;
}

function freshPath(label: string): string {
  counter += 1;
  return join(tmp, `${label}-${counter}`);
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Node has no xattr API; python3 has. Values as hex. */
function setXattr(path: string, name: string, value: Buffer | string): void {
  run('/usr/bin/python3', [
    '-c',
    'import os,sys\nos.setxattr(sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), follow_symlinks=False)',
    path,
    name,
    Buffer.from(value).toString('hex'),
  ]);
}

/** Every xattr of every path below `dir` (symlinks not followed): {relpath: {name: hex}}. */
function treeXattrs(dir: string): Record<string, Record<string, string>> {
  const out = run('/usr/bin/python3', [
    '-c',
    `import os,sys,json
root=sys.argv[1]; out={}
for d,dirs,files in os.walk(root):
  for n in dirs+files:
    p=os.path.join(d,n); r=os.path.relpath(p,root)
    try: names=os.listxattr(p, follow_symlinks=False)
    except OSError: names=[]
    x={k: os.getxattr(p,k,follow_symlinks=False).hex() for k in names}
    if x: out[r]=x
print(json.dumps(out))`,
    dir,
  ]);
  return JSON.parse(out) as Record<string, Record<string, string>>;
}

/** A v2 file-capability value (VFS_CAP_REVISION_2, effective): cap_net_raw (13) permitted. */
function capNetRaw(): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32LE(0x02000001, 0);
  b.writeUInt32LE(1 << 13, 4);
  return b;
}

interface Node {
  type: string;
  mode: string;
  owner: string;
  mtimeNs: string;
  content?: string;
  target?: string;
  inode?: string;
}

/**
 * Every path below `dir` with what a layer keeps: type, mode, owner, mtime in nanoseconds,
 * content digest, link target, and which paths share an inode (by the first path of it); of a
 * whiteout only that it is one.
 */
function tree(dir: string, opts: { skipRootTimes?: boolean } = {}): Record<string, Node> {
  const out: Record<string, Node> = {};
  const firstOf = new Map<bigint, string>();
  const walk = (rel: string): void => {
    const p = join(dir, rel);
    const st = lstatSync(p, { bigint: true });
    const type = st.isDirectory()
      ? 'dir'
      : st.isSymbolicLink()
        ? 'symlink'
        : st.isFIFO()
          ? 'fifo'
          : st.isCharacterDevice()
            ? `char ${st.rdev}`
            : st.isFile()
              ? 'file'
              : 'other';
    const node: Node = {
      type,
      mode: (st.mode & 0o7777n).toString(8),
      owner: `${st.uid}:${st.gid}`,
      mtimeNs: st.mtimeNs.toString(),
    };
    if (st.isFile()) node.content = sha256(readFileSync(p));
    if (st.isSymbolicLink()) node.target = readlinkSync(p);
    if (!st.isDirectory() && st.nlink > 1n) {
      const first = firstOf.get(st.ino) ?? rel;
      firstOf.set(st.ino, first);
      node.inode = first;
    }
    // A whiteout is a name, nothing more: its mode and times are not part of a layer.
    if (st.isCharacterDevice() && st.rdev === 0n) out[rel] = { type } as Node;
    else if (rel !== '' || !opts.skipRootTimes) out[rel || '.'] = node;
    if (st.isDirectory()) for (const n of readdirSync(p).sort()) walk(rel ? `${rel}/${n}` : n);
  };
  walk('');
  return out;
}

/** `tar -tv` of a layer: GNU tar reads what we write. */
function gnuList(archive: string): string[] {
  return run('tar', ['--numeric-owner', '-tvf', archive]).split('\n').filter(Boolean);
}

async function packError(source: string): Promise<NativeError> {
  try {
    await packLayer({ source, target: freshPath('refused.tar') });
  } catch (e) {
    return e as NativeError;
  }
  throw new Error(`packLayer of ${source} succeeded`);
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

describe('packLayer', () => {
  let layer: string;
  const longName = `long/${'d'.repeat(120)}/${'f'.repeat(150)}`;

  beforeAll(() => {
    layer = freshDir('layer');
    const at = (p: string): string => join(layer, p);
    mkdirSync(at('bin'), { mode: 0o755 });
    writeFileSync(at('bin/su'), 'su!');
    chmodSync(at('bin/su'), 0o4755);
    writeFileSync(at('bin/sg'), 'sg');
    chownSync(at('bin/sg'), 1000, 2000);
    chmodSync(at('bin/sg'), 0o2711);
    linkSync(at('bin/su'), at('bin/su-again'));
    symlinkSync('/bin/busybox', at('bin/sh'));
    lchownSync(at('bin/sh'), 7, 8);
    symlinkSync('su', at('bin/rel'));
    symlinkSync('/nonexistent', at('bin/dangling'));
    mkdirSync(at('tmp'));
    chmodSync(at('tmp'), 0o1777);
    mkdirSync(at('secret'));
    writeFileSync(at('secret/key'), 'k', { mode: 0o600 });
    chownSync(at('secret/key'), 1234, 5678);
    chownSync(at('secret'), 1234, 5678);
    chmodSync(at('secret'), 0o700);
    writeFileSync(at('empty'), '');
    writeFileSync(at('random'), randomBytes(3 << 20));
    mkdirSync(at(longName.slice(0, longName.lastIndexOf('/'))), { recursive: true });
    writeFileSync(at(longName), 'long');
    symlinkSync(`/${'t'.repeat(130)}`, at(`bin/${'l'.repeat(110)}`));
    writeFileSync(at('naïve ☃'), 'unicode');
    writeFileSync(at('bigid'), 'b');
    chownSync(at('bigid'), 3_000_000, 4_000_000);
    run('mkfifo', ['-m', '620', at('fifo')]);
    lchownSync(at('fifo'), 3, 4);
    writeFileSync(at('ping'), 'ping');
    setXattr(at('ping'), 'security.capability', capNetRaw());
    setXattr(at('ping'), 'user.origin', 'layer');
    setXattr(at('secret'), 'user.dir', 'd');
    // Whiteouts as overlayfs makes them, and an opaque directory with overlayfs bookkeeping.
    mkdirSync(at('data'));
    run('mknod', [at('data/gone'), 'c', '0', '0']);
    mkdirSync(at('opq'));
    writeFileSync(at('opq/new'), 'new');
    setXattr(at('opq'), 'trusted.overlay.opaque', 'y');
    setXattr(at('opq'), 'trusted.overlay.impure', 'y');
    setXattr(at('bin/su'), 'trusted.overlay.origin', Buffer.from([0, 1, 2]));
    // Times last: nanoseconds, one before 1970.
    utimesSync(at('random'), 1_500_000_000.123456, 1_500_000_000.123456);
    run('touch', ['-h', '-d', '@1400000000.987654321', at('bin/sh')]);
    run('touch', ['-d', '1969-07-20 20:17:40.5 UTC', at('empty')]);
  });

  it('writes a tar GNU tar reads, with the digests of what it wrote', async () => {
    const target = freshPath('layer.tar.gz');
    const r = await packLayer({ source: layer, target });
    const file = readFileSync(target);
    const tar = gunzipSync(file);
    expect(r).toEqual({
      entries: expect.any(Number),
      bytes: 3 + 2 + 1 + (3 << 20) + 4 + 7 + 1 + 4 + 3,
      diffId: sha256(tar),
      digest: sha256(file),
      size: file.length,
    });
    const listing = gnuList(target);
    expect(listing).toHaveLength(r.entries);
    const line = (name: string): string | undefined => listing.find((l) => l.endsWith(name));
    expect(line(' data/.wh.gone')).toMatch(/^-{10} 0\/0 +0 /);
    expect(line(' opq/.wh..wh..opq')).toMatch(/^-rwxr-xr-x 0\/0 +0 /);
    expect(line(' bin/su-again link to bin/su')).toBeDefined();
    expect(line(' bin/sh -> /bin/busybox')).toMatch(/^lrwxrwxrwx 7\/8 /);
    expect(line(' bigid')).toMatch(/ 3000000\/4000000 /);
    expect(line(' fifo')).toMatch(/^prw--w---- 3\/4 /);
    // Directories before what is in them; names in byte order; no entry for the root.
    const names = listing.map((l) =>
      l.replace(/^.* \d\d:\d\d /, '').replace(/ (->|link to) .*/, ''),
    );
    expect(names.indexOf('opq/')).toBeLessThan(names.indexOf('opq/.wh..wh..opq'));
    expect(names.indexOf('opq/.wh..wh..opq')).toBeLessThan(names.indexOf('opq/new'));
    expect(names).not.toContain('./');
    // The same directory gives the same bytes.
    const again = await packLayer({ source: layer, target: freshPath('again.tar.gz') });
    expect(again.digest).toBe(r.digest);
  });

  it('round-trips through unpackLayer: the same tree, xattrs and whiteouts', async () => {
    const target = freshPath('layer.tar.gz');
    const packed = await packLayer({ source: layer, target });
    const out = freshDir('unpacked');
    const unpacked = await unpackLayer({ archive: target, target: out });
    expect(unpacked.diffId).toBe(packed.diffId);
    expect(tree(out, { skipRootTimes: true })).toEqual(tree(layer, { skipRootTimes: true }));
    const x = treeXattrs(out);
    expect(x['ping']).toEqual({
      'security.capability': capNetRaw().toString('hex'),
      'user.origin': Buffer.from('layer').toString('hex'),
    });
    expect(x['secret']).toEqual({ 'user.dir': Buffer.from('d').toString('hex') });
    // The opaque directory is opaque again; overlayfs's bookkeeping did not travel.
    expect(x['opq']).toEqual({ 'trusted.overlay.opaque': Buffer.from('y').toString('hex') });
    expect(x['bin/su']).toBeUndefined();
    expect(tree(out)['data/gone']?.type).toBe('char 0');
  });

  it('writes an uncompressed tar whose digest is its diff_id', async () => {
    const target = freshPath('layer.tar');
    const r = await packLayer({ source: layer, target, compression: 'none' });
    expect(r.digest).toBe(r.diffId);
    expect(r.diffId).toBe(sha256(readFileSync(target)));
    const fast = await packLayer({ source: layer, target: freshPath('fast.tar.gz'), level: 1 });
    expect(fast.diffId).toBe(r.diffId);
  });

  it('reads nothing outside the layer: symlinks stay symlinks, even to directories', async () => {
    const dir = freshDir('escape');
    symlinkSync('/etc', join(dir, 'etc'));
    symlinkSync('/etc/shadow', join(dir, 'shadow'));
    symlinkSync('../../../../../../etc', join(dir, 'up'));
    const target = freshPath('escape.tar');
    const r = await packLayer({ source: dir, target, compression: 'none' });
    expect(r).toMatchObject({ entries: 3, bytes: 0 });
    expect(gnuList(target).map((l) => l.replace(/^.* \d\d:\d\d /, ''))).toEqual([
      'etc -> /etc',
      'shadow -> /etc/shadow',
      'up -> ../../../../../../etc',
    ]);
  });

  it('refuses a mount point inside the layer (another file system)', async () => {
    const dir = freshDir('mounted');
    mkdirSync(join(dir, 'mnt'));
    run('mount', ['-t', 'tmpfs', '-o', 'size=1m', PREFIX, join(dir, 'mnt')]);
    mounts.push(join(dir, 'mnt'));
    writeFileSync(join(dir, 'mnt', 'host-file'), 'host');
    const err = await packError(dir);
    expect(err.message).toMatch(/layer entry "mnt": is on another file system/);
    expect(err.code).toBe('EXDEV');
    await unmount(join(dir, 'mnt'));
  });

  it('refuses what a layer cannot carry, naming the entry', async () => {
    const cases: [string, (dir: string) => void, RegExp][] = [
      [
        'device',
        (d) => run('mknod', [join(d, 'null'), 'c', '1', '3']),
        /"null": a device node \(c 1:3\)/,
      ],
      [
        'block',
        (d) => run('mknod', [join(d, 'sda'), 'b', '8', '0']),
        /"sda": a device node \(b 8:0\)/,
      ],
      [
        'socket',
        (d) =>
          run('/usr/bin/python3', [
            '-c',
            'import socket,sys\nsocket.socket(socket.AF_UNIX).bind(sys.argv[1])',
            join(d, 'sock'),
          ]),
        /"sock": a socket/,
      ],
      [
        '.wh. name',
        (d) => writeFileSync(join(d, '.wh.evil'), ''),
        /"\.wh\.evil": a name starting with \.wh\./,
      ],
      [
        'redirect',
        (d) => {
          mkdirSync(join(d, 'moved'));
          setXattr(join(d, 'moved'), 'trusted.overlay.redirect', '/elsewhere');
        },
        /"moved": xattr trusted\.overlay\.redirect: overlayfs keeps this entry's content/,
      ],
      [
        'metacopy',
        (d) => {
          writeFileSync(join(d, 'meta'), '');
          setXattr(join(d, 'meta'), 'trusted.overlay.metacopy', '');
        },
        /"meta": xattr trusted\.overlay\.metacopy/,
      ],
      [
        'other xattr',
        (d) => {
          writeFileSync(join(d, 'f'), '');
          setXattr(join(d, 'f'), 'trusted.other', 'x');
        },
        /"f": xattr trusted\.other cannot be exported/,
      ],
      [
        'deep',
        (d) => {
          mkdirSync(join(d, 'a/b'), { recursive: true });
          run('mknod', [join(d, 'a/b/zero'), 'c', '1', '5']);
        },
        /layer entry "a\/b\/zero": a device node/,
      ],
    ];
    for (const [label, make, message] of cases) {
      const dir = freshDir(label.replace(/\W/g, '-'));
      make(dir);
      const err = await packError(dir);
      expect({ label, message: err.message }).toEqual({
        label,
        message: expect.stringMatching(message),
      });
    }
    // The target must not exist: an existing file is never overwritten or followed.
    const existing = freshPath('exists.tar');
    writeFileSync(existing, 'keep');
    await expect(packLayer({ source: layer, target: existing })).rejects.toMatchObject({
      code: 'EEXIST',
    });
    expect(readFileSync(existing, 'utf8')).toBe('keep');
    await expect(
      packLayer({ source: layer, target: freshPath('x.tar'), compression: 'zstd' as 'gzip' }),
    ).rejects.toThrow(/compression must be gzip or none/);
  });

  it("turns the whiteouts the kernel makes in an overlay's upper directory into OCI whiteouts", async () => {
    // A lower layer, an overlay over it; delete a file, replace a directory, add a file.
    const lower = freshDir('lower');
    mkdirSync(join(lower, 'etc/conf.d'), { recursive: true });
    writeFileSync(join(lower, 'etc/keep'), 'keep');
    writeFileSync(join(lower, 'etc/gone'), 'gone');
    writeFileSync(join(lower, 'etc/conf.d/old-a'), 'a');
    writeFileSync(join(lower, 'etc/conf.d/old-b'), 'b');
    const upper = freshDir('upper');
    const work = freshDir('work');
    const merged = freshDir('merged');
    await mountOverlay({ lower: [lower], upper, work, target: merged });
    mounts.push(merged);
    unlinkSync(join(merged, 'etc/gone'));
    rmSync(join(merged, 'etc/conf.d'), { recursive: true });
    mkdirSync(join(merged, 'etc/conf.d'));
    writeFileSync(join(merged, 'etc/conf.d/new'), 'new');
    writeFileSync(join(merged, 'etc/keep'), 'changed');
    const view = tree(merged, { skipRootTimes: true });
    await unmount(merged);

    const target = freshPath('upper.tar.gz');
    await packLayer({ source: upper, target });
    const names = gnuList(target).map((l) => l.replace(/^.* \d\d:\d\d /, ''));
    expect(names).toEqual(
      expect.arrayContaining(['etc/.wh.gone', 'etc/conf.d/.wh..wh..opq', 'etc/conf.d/new']),
    );
    // Unpacked and mounted over the same lower layer: the same view as before.
    const again = freshDir('upper-again');
    await unpackLayer({ archive: target, target: again });
    const merged2 = freshDir('merged2');
    const work2 = freshDir('work2');
    const upper2 = freshDir('upper2');
    await mountOverlay({ lower: [again, lower], upper: upper2, work: work2, target: merged2 });
    mounts.push(merged2);
    try {
      expect(tree(merged2, { skipRootTimes: true })).toEqual(view);
      expect(existsSync(join(merged2, 'etc/conf.d/old-a'))).toBe(false);
    } finally {
      await unmount(merged2);
    }
  });
});
