import { describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { ImageSpec } from '../../controller/api/types.generated.js';
import { InputWatcher, localInputs } from '../../controller/controllers/image-inputs.js';

const copy = (src: string) => ({ copy: { src, dest: '/x' } });

describe('localInputs: the files an Image is built from', () => {
  it('lists copy sources and a local from, inside the manifest directory, once each', () => {
    const spec: ImageSpec = {
      from: 'oci-archive:images/base.tar:v1',
      steps: [copy('site'), { run: 'true' }, copy('./site'), copy('conf/app.conf'), copy('.')],
    };
    expect(localInputs(spec, '/m')).toEqual([
      '/m',
      '/m/conf/app.conf',
      '/m/images/base.tar',
      '/m/site',
    ]);
    expect(localInputs({ from: 'oci:layout' }, '/m')).toEqual(['/m/layout']);
    expect(localInputs({ from: 'docker-archive:d.tar' }, '/m')).toEqual(['/m/d.tar']);
  });

  it('watches nothing the builder would refuse, nor registry or debootstrap bases', () => {
    const spec: ImageSpec = {
      from: 'oci-archive:../elsewhere.tar',
      steps: [copy('../../etc'), copy('/etc/passwd'), copy('a/../../b')],
    };
    expect(localInputs(spec, '/m')).toEqual([]);
    expect(localInputs({ from: 'busybox:1.36', steps: [copy('s')] }, '/m')).toEqual(['/m/s']);
    expect(localInputs({ from: 'debian:bookworm' }, '/m')).toEqual([]);
    expect(localInputs({ from: 'image:base' }, '/m')).toEqual([]);
    // An invalid from fails the build; the copy sources are still watched.
    expect(localInputs({ from: 'Not Valid!', steps: [copy('s')] }, '/m')).toEqual(['/m/s']);
  });
});

describe('InputWatcher', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('calls back once per burst of changes, sees a missing path appear, stops when deleted', async () => {
    const root = mkdtempSync(join(tmpdir(), 'inputs-'));
    const changed: string[] = [];
    const errors: string[] = [];
    const w = new InputWatcher(
      (key) => changed.push(key),
      (key, err) => errors.push(`${key}: ${err.message}`),
      // Generous: the burst below must read as one even on a loaded machine.
      200,
    );
    const until = async (n: number) => {
      for (let i = 0; i < 500 && changed.length < n; i++) await sleep(10);
      expect(changed.length).toBe(n);
    };
    try {
      mkdirSync(join(root, 'site'));
      writeFileSync(join(root, 'site', 'index.html'), 'v1');
      const paths = [join(root, 'site'), join(root, 'late', 'deep', 'app.conf')];
      await w.set('ns/web', paths, root);
      // A burst: three writes and a new file, one call.
      writeFileSync(join(root, 'site', 'index.html'), 'v2');
      writeFileSync(join(root, 'site', 'index.html'), 'v3');
      writeFileSync(join(root, 'site', 'new.css'), 'x');
      await until(1);
      // The missing path's nearest existing parent (the root) sees `late` appear.
      mkdirSync(join(root, 'late'));
      await until(2);
      // The reconcile that follows watches again, closer: `late` now exists.
      await w.set('ns/web', paths, root);
      mkdirSync(join(root, 'late', 'deep'));
      await until(3);
      await w.set('ns/web', paths, root);
      writeFileSync(join(root, 'late', 'deep', 'app.conf'), 'x=1');
      await until(4);
      // The same targets: the watch is kept, not made again (and still reports).
      await w.set('ns/web', paths, root);
      writeFileSync(join(root, 'late', 'deep', 'app.conf'), 'x=2');
      await until(5);
      await w.delete('ns/web');
      writeFileSync(join(root, 'site', 'index.html'), 'v4');
      await sleep(400);
      expect(changed).toEqual(Array(5).fill('ns/web'));
      expect(errors).toEqual([]);
    } finally {
      await w.close();
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('a missing input created and filled in a burst is one change, told after the last write', async () => {
    const root = mkdtempSync(join(tmpdir(), 'inputs-'));
    const changed: number[] = [];
    const w = new InputWatcher(
      () => changed.push(Date.now()),
      (key, err) => {
        throw new Error(`${key}: ${err.message}`);
      },
      150,
    );
    try {
      await w.set('ns/rootfs', [join(root, 'rootfs')], root);
      expect(w.version('ns/rootfs')).toBe(0);
      expect(w.busy('ns/rootfs')).toBe(false);
      // As hack/busybox-rootfs.sh fills a directory: the top first, then files deep inside it,
      // which a watch of the parent alone (one level deep) would never see.
      mkdirSync(join(root, 'rootfs', 'bin'), { recursive: true });
      let last = 0;
      for (let i = 0; i < 12; i++) {
        await sleep(40);
        mkdirSync(join(root, 'rootfs', 'usr', `d${i}`), { recursive: true });
        writeFileSync(join(root, 'rootfs', 'usr', `d${i}`, 'f'), String(i));
        last = Date.now();
        expect(w.busy('ns/rootfs')).toBe(true);
      }
      for (let i = 0; i < 200 && changed.length === 0; i++) await sleep(10);
      await sleep(400);
      expect(changed).toHaveLength(1);
      // Quiet for 150 ms after the last write, not after the first event.
      expect((changed[0] ?? 0) - last).toBeGreaterThanOrEqual(140);
      expect(w.busy('ns/rootfs')).toBe(false);
      const seen = w.version('ns/rootfs');
      expect(seen).toBeGreaterThan(0);
      // Deep inside the tree that appeared: watched now, recursively.
      writeFileSync(join(root, 'rootfs', 'usr', 'd3', 'f'), 'edited');
      for (let i = 0; i < 200 && changed.length === 1; i++) await sleep(10);
      expect(changed).toHaveLength(2);
      expect(w.version('ns/rootfs')).toBeGreaterThan(seen);
    } finally {
      await w.close();
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('does not take what exists when the watch starts for a change (symlinks included)', async () => {
    const root = mkdtempSync(join(tmpdir(), 'inputs-'));
    const changed: string[] = [];
    const w = new InputWatcher(
      (key) => changed.push(key),
      () => undefined,
      50,
    );
    try {
      // A busybox rootfs is mostly symlinks: chokidar's initial scan reports them as `add`.
      mkdirSync(join(root, 'rootfs', 'bin'), { recursive: true });
      writeFileSync(join(root, 'rootfs', 'bin', 'busybox'), 'x');
      for (let i = 0; i < 30; i++)
        symlinkSync('busybox', join(root, 'rootfs', 'bin', `applet${i}`));
      await w.set('ns/b', [join(root, 'rootfs')], root);
      await sleep(300);
      expect(changed).toEqual([]);
      expect(w.version('ns/b')).toBe(0);
      expect(w.busy('ns/b')).toBe(false);
      symlinkSync('busybox', join(root, 'rootfs', 'bin', 'new-applet'));
      for (let i = 0; i < 200 && changed.length === 0; i++) await sleep(10);
      expect(changed).toEqual(['ns/b']);
    } finally {
      await w.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
