/**
 * /healthz of a real controller: it fails, naming why, while a reconcile runs past its deadline
 * without progress (an image build step that prints nothing for longer) and when its source
 * stops feeding it (the watch directory removed, or replaced by another), and passes again once
 * the reconcile ends. Needs root (the controller runs a build container).
 */
import { mkdir, rm } from 'node:fs/promises';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { ControllerHarness } from '../fixtures/controller.js';
import { assertNoLeaks, hostSnapshot, uniqueId } from '../fixtures/index.js';
import type { HostSnapshot } from '../fixtures/index.js';
import type { Image } from '../../controller/api/types.generated.js';

const NS = uniqueId('health');
let h: ControllerHarness;
let before: HostSnapshot;

async function healthz(): Promise<{ status: number; body: string }> {
  const { host, port } = h.ctl?.metricsAddress ?? { host: '', port: 0 };
  const res = await fetch(`http://${host}:${port}/healthz`);
  return { status: res.status, body: await res.text() };
}

/** Polls /healthz until `ok` holds (bounded: jest's timeout is the limit). */
async function healthzUntil(
  ok: (r: { status: number; body: string }) => boolean,
): Promise<{ status: number; body: string }> {
  for (;;) {
    const r = await healthz();
    if (ok(r)) return r;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

beforeAll(async () => {
  before = hostSnapshot();
  h = await ControllerHarness.create(NS);
  await h.start({ stuckAfterMs: 1500 });
});

afterAll(async () => {
  await h.cleanup();
  assertNoLeaks(before, { idPrefix: NS });
});

describe('/healthz', () => {
  it('fails while a reconcile runs past the deadline without progress, and passes when it ends', async () => {
    expect(await healthz()).toEqual({ status: 200, body: 'ok\n' });
    // The step says nothing for 4 s: no progress for longer than the 1.5 s deadline.
    await h.write(
      'slow.yaml',
      `apiVersion: conductor.dev/v1alpha1
kind: Image
metadata: {name: slow, namespace: ${NS}}
spec:
  from: scratch
  steps:
    - copy: {src: rootfs, dest: /}
    - run: sleep 4
`,
    );
    const stuck = await healthzUntil((r) => r.status !== 200);
    expect(stuck.status).toBe(500);
    expect(stuck.body).toMatch(
      new RegExp(
        `^\\[-\\]controller-image failed: controller image: reconciling ${NS}/slow for \\d+ s` +
          `( \\(no progress for \\d+ s\\))?, past the 2 s deadline$`,
        'm',
      ),
    );
    expect(stuck.body).toMatch(/^\[\+\]source ok$/m);
    expect(stuck.body).toMatch(/^\[\+\]controller-container ok$/m);
    expect(stuck.body.endsWith('healthz check failed\n')).toBe(true);
    await h.waitFor<Image>('Image', 'slow', (o) => o?.status?.phase === 'Ready', 60_000);
    expect(await healthzUntil((r) => r.status === 200)).toEqual({ status: 200, body: 'ok\n' });
  });

  it('fails when the watch directory is removed, or replaced by one it does not watch', async () => {
    await rm(h.watchDir, { recursive: true });
    const gone = await healthz();
    expect(gone.status).toBe(500);
    expect(gone.body).toContain(
      `[-]source failed: the watch directory ${h.watchDir} is gone (ENOENT): nothing in it can be seen`,
    );
    await mkdir(h.watchDir);
    const replaced = await healthz();
    expect(replaced.status).toBe(500);
    expect(replaced.body).toContain(
      `[-]source failed: the watch directory ${h.watchDir} was replaced: the new one is not watched (restart the controller)`,
    );
  });
});
