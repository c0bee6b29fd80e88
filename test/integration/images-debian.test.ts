/**
 * A distribution base: Debian bookworm minbase built with debootstrap from the Debian mirror
 * (deb.debian.org, as apt uses it on this machine), once per machine in a shared base cache
 * (FIXTURE_ROOT/bases, like the busybox rootfs), then an image with copy + run steps on it: the
 * run step installs a package with apt-get over the network, the container runs as a user named
 * in the image. The cache: unchanged → no step runs; one changed step → only it and later ones.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, expect, it } from '@jest/globals';

import {
  type BuildProgress,
  type BuildRequest,
  type BuiltImage,
} from '../../runtime-core/src/images/builder.js';
import { builderSuite } from '../fixtures/build.js';
import { FIXTURE_ROOT } from '../fixtures/index.js';

const PREFIX = 'imgdeb';
const BASES = join(FIXTURE_ROOT, 'bases');

const suite = builderSuite(PREFIX, { baseCacheDir: BASES });

beforeAll(() => {
  mkdirSync(join(suite.work, 'ctx', 'files'), { recursive: true });
  writeFileSync(
    join(suite.work, 'ctx', 'files', 'greet'),
    '#!/bin/sh\necho "greetings from debian $(cat /etc/debian_version | cut -d. -f1)"\n',
    { mode: 0o755 },
  );
});

function request(marker: string, events: BuildProgress[]): BuildRequest {
  return {
    name: `${PREFIX}/app`,
    from: 'debian:bookworm',
    contextDir: join(suite.work, 'ctx'),
    steps: [
      { copy: { src: 'files/greet', dest: '/usr/local/bin/' } },
      {
        run: 'apt-get update -q && apt-get install -y -q --no-install-recommends hello && rm -rf /var/lib/apt/lists/*',
      },
      { run: `echo ${marker} > /etc/marker` },
      { user: 'nobody' },
    ],
    onProgress: (e) => events.push(e),
  };
}

let first: BuiltImage;

it('builds bookworm minbase with debootstrap, then copy and apt-get run steps on it', async () => {
  const events: BuildProgress[] = [];
  first = await suite.builder.build(request('one', events));
  expect(first).toMatchObject({ stepsRun: 3, stepsCached: 0 });
  expect(first.layers[0]?.createdBy).toBe('debootstrap debian bookworm');
  // The base lives in the shared cache; this store links it.
  const meta = JSON.parse(readFileSync(join(BASES, `${first.layers[0]?.key}.json`), 'utf8')) as {
    size: number;
  };
  expect(meta.size).toBeGreaterThan(50_000_000);
  // apt-get's output reached the build log.
  expect(events).toContainEqual(
    expect.objectContaining({
      type: 'output',
      step: 1,
      line: expect.stringMatching(/Setting up hello/),
    }),
  );
  const { out, code } = await suite.runIn(first, 'greet; hello; id -un; cat /etc/marker');
  expect({ out, code }).toEqual({
    out: 'greetings from debian 12\nHello, world!\nnobody\none',
    code: 0,
  });
}, 600_000);

it('rebuilds nothing when nothing changed, and only the changed step and later ones otherwise', async () => {
  const unchangedEvents: BuildProgress[] = [];
  const unchanged = await suite.builder.build(request('one', unchangedEvents));
  expect(unchanged).toMatchObject({ stepsRun: 0, stepsCached: 3, digest: first.digest });
  expect(unchangedEvents.filter((e) => e.type === 'output')).toEqual([]); // no debootstrap, no step

  const changed = await suite.builder.build(request('two', []));
  expect(changed).toMatchObject({ stepsRun: 1, stepsCached: 2 });
  expect(changed.layers.slice(0, 3)).toEqual(first.layers.slice(0, 3));
  expect((await suite.runIn(changed, 'cat /etc/marker')).out).toBe('two');
}, 300_000);
