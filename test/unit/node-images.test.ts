import { describe, expect, it } from '@jest/globals';

import type { Image, ImageStatus } from '../../controller/api/types.generated.js';
import { NodeImages } from '../../controller/controllers/node-images.js';

const image = (generation: number, status?: ImageStatus): Image => ({
  apiVersion: 'conductor.dev/v1alpha1',
  kind: 'Image',
  metadata: { name: 'web', namespace: 'default', generation },
  spec: { from: 'scratch' },
  ...(status ? { status } : {}),
});
const ready = (generation: number, digest = 'sha256:aa'): ImageStatus => ({
  phase: 'Ready',
  observedGeneration: generation,
  digest,
  layers: [{ digest: 'sha256:l1' }],
});
const here = (yes: boolean) => () => Promise.resolve(yes);

describe('NodeImages', () => {
  it("uses this node's own build of the current generation over the shared status", async () => {
    const images = new NodeImages();
    const own: ImageStatus = { phase: 'Failed', observedGeneration: 2, message: 'step 1 failed' };
    images.record('default/web', own);
    expect(await images.view('default/web', image(2, ready(2)), here(true))).toBe(own);
    // An older generation's build is not this one's.
    const shared = ready(3);
    expect(await images.view('default/web', image(3, shared), here(true))).toBe(shared);
  });

  it('uses the shared status only when its layers are on this node', async () => {
    const images = new NodeImages();
    const shared = ready(1);
    expect(await images.view('default/web', image(1, shared), here(true))).toBe(shared);
    expect(await images.view('default/web', image(1, shared), here(false))).toEqual({
      phase: 'Pending',
      observedGeneration: 1,
      message: 'Ready on another node, being built on this one',
    });
    // Not Ready: as it is, nothing looked up.
    const building: ImageStatus = { phase: 'Building', observedGeneration: 1 };
    const never = () => Promise.reject(new Error('not asked'));
    expect(await images.view('default/web', image(1, building), never)).toBe(building);
    expect(await images.view('default/web', image(1), never)).toBeUndefined();
  });

  it('tells the dependents when this node’s build changes, not when it is recorded again', () => {
    const changed: string[] = [];
    const images = new NodeImages((k) => changed.push(k));
    images.record('default/web', ready(1));
    images.record('default/web', ready(1));
    images.record('default/web', ready(1, 'sha256:bb'));
    images.record('default/web', ready(2, 'sha256:bb'));
    expect(changed).toEqual(['default/web', 'default/web', 'default/web']);
    images.forget('default/web');
    images.record('default/web', ready(2, 'sha256:bb'));
    expect(changed).toHaveLength(4);
  });
});
