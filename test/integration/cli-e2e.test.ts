/**
 * The `conductor` command end to end against a running controller: apply, get, logs, exec
 * (with a terminal, as `docker exec -it`), delete.
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from '@jest/globals';

import type { Container, Image } from '../../controller/api/types.generated.js';
import {
  ControllerHarness,
  REPO_ROOT,
  buildDist,
  busyboxImage,
  containerManifest,
  type CliRun,
} from '../fixtures/controller.js';
import { assertNoLeaks, hostSnapshot, uniqueId, type HostSnapshot } from '../fixtures/index.js';

const NS = uniqueId('cl');
let h: ControllerHarness;
let before: HostSnapshot;

beforeAll(async () => {
  before = hostSnapshot();
  await buildDist();
  h = await ControllerHarness.create(NS);
  await h.write('image.yaml', busyboxImage(NS));
  await h.start();
  await h.waitFor<Image>('Image', 'busybox', (o) => o?.status?.phase === 'Ready');
}, 120_000);

afterAll(async () => {
  await h.cleanup();
  assertNoLeaks(before, { idPrefix: NS });
});

const conductor = (args: string[], input?: string): Promise<CliRun> => h.cli(args, input);

it('applies a manifest and shows the container with get and logs', async () => {
  const file = join(h.base, 'web.yaml');
  await writeFile(
    file,
    containerManifest(NS, 'web', {
      command: ['/bin/sh', '-c', 'echo started; echo oops >&2; sleep 1000'],
    }),
  );
  const applied = await conductor(['apply', '-f', file]);
  expect(applied.stdout).toBe('container.conductor.dev/web created\n');
  await h.waitFor<Container>('Container', 'web', (o) => o?.status?.phase === 'Running');
  expect((await conductor(['apply', '-f', file])).stdout).toBe(
    'container.conductor.dev/web unchanged\n',
  );

  const get = await conductor(['get', 'containers', '-n', NS]);
  expect(get.stdout).toMatch(/^NAME\s+PHASE\s+IMAGE/);
  expect(get.stdout).toMatch(/\nweb\s+Running\s+busybox/);
  const json = JSON.parse(
    (await conductor(['get', 'cctr', 'web', '-n', NS, '-o', 'json'])).stdout,
  ) as Container;
  expect(json.status?.containerID).toBe(`${NS}_web`);

  const logs = await conductor(['logs', 'web', '-n', NS]);
  expect(logs).toMatchObject({ code: 0, stdout: 'started\n', stderr: 'oops\n' });
});

it('exec -it gives an interactive shell on a terminal inside the container', async () => {
  // util-linux `script` stands in for a person's terminal.
  const cmd = [
    process.execPath,
    'bin/conductor.js',
    'exec',
    '-it',
    'web',
    '-n',
    NS,
    '--state-dir',
    h.stateDir,
    '--',
    'sh',
  ]
    .map((a) => `'${a}'`)
    .join(' ');
  const out = await new Promise<CliRun>((resolve) => {
    const p = spawn('script', ['-qfec', cmd, '/dev/null'], { cwd: REPO_ROOT });
    let stdout = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr: '' }));
    p.stdin.end('tty; echo sum=$((40+2)); exit 4\n');
  });
  expect(out.stdout).toContain('/dev/pts/0');
  expect(out.stdout).toContain('sum=42');
  expect(out.code).toBe(4);
  const plain = await conductor(['exec', 'web', '-n', NS, '--', 'sh', '-c', 'tty; exit 3']);
  expect(plain).toMatchObject({ code: 3, stdout: 'not a tty\n' });
});

it('deletes by kind and name', async () => {
  const del = await conductor(['delete', 'container', 'web', '-n', NS]);
  expect(del.stdout).toBe('container.conductor.dev/web deleted\n');
  await h.waitFor('Container', 'web', (o) => o === undefined);
});
