/**
 * One table of invalid manifests (test/fixtures/invalid-manifests.ts) run both ways, and the
 * field paths compared:
 *
 * - directory mode, as a user meets it: every case is a file in a running controller's watch
 *   directory; the paths are read from `conductor get all -A`'s file errors (`error:
 *   FILE:LINE:COL: PATH: MESSAGE`) and from the controller's log (`manifest rejected: ...`);
 * - a real kube-apiserver with crds/ installed: `kubectl apply --dry-run=server` of the same
 *   object (kubectl's default strict field validation), the paths read from what kubectl prints.
 *
 * Messages are worded differently both ways; the paths must be the table's, or — for the cases
 * whose `api` says why they cannot be aligned — the API server's own, as the table records them.
 *
 * Needs the control-plane binaries (hack/control-plane.sh build): never skipped.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { stringify } from 'yaml';

import type { Logger } from '../../runtime-core/src/index.js';
import { CONTROL_PLANE_BUILD_TIMEOUT, ControlPlane } from '../fixtures/control-plane.js';
import { ControllerHarness, buildDist } from '../fixtures/controller.js';
import {
  INVALID_MANIFESTS,
  apiServerPaths,
  caseFile,
  directoryPaths,
  pathSet,
  type InvalidManifestCase,
} from '../fixtures/invalid-manifests.js';
import {
  FIXTURE_ROOT,
  assertNoLeaks,
  hostSnapshot,
  uniqueId,
  type HostSnapshot,
} from '../fixtures/index.js';

const NS = uniqueId('parity');
let base = '';
let cp: ControlPlane | undefined;
let h: ControllerHarness | undefined;
let before: HostSnapshot;
/** The controller's log lines, as `conductor up` prints them (message, then the file). */
const log: string[] = [];
/** `conductor get all -A`'s stderr once every case's file has its errors there. */
let getErrors = '';

const logger: Logger = {
  debug: () => {},
  info: () => {},
  warn: (msg, fields) => log.push(`${msg} ${JSON.stringify(fields ?? {})}`),
  error: (msg, fields) => log.push(`${msg} ${JSON.stringify(fields ?? {})}`),
};

/** Every case in the namespace of the dry run (the table's objects name none). */
const inNamespace = (c: InvalidManifestCase, namespace: string): Record<string, unknown> => ({
  ...c.manifest,
  metadata: { ...(c.manifest.metadata as Record<string, unknown>), namespace },
});

beforeAll(async () => {
  before = hostSnapshot();
  base = mkdtempSync(join(FIXTURE_ROOT, `${NS}-`));
  const [plane] = await Promise.all([ControlPlane.up(join(base, 'control-plane')), buildDist()]);
  cp = plane;
  await cp.applyCrds();
  await cp.kubectl(['create', 'namespace', NS]);

  h = await ControllerHarness.create(NS);
  await h.start({ logger });
  for (const c of INVALID_MANIFESTS) await h.write(caseFile(c), stringify(inNamespace(c, NS)));
  const until = Date.now() + 60_000;
  for (;;) {
    const r = await h.cli(['get', 'all', '-A']);
    const missing = INVALID_MANIFESTS.filter(
      (c) => directoryPaths(r.stderr, caseFile(c)).length === 0,
    );
    if (missing.length === 0) {
      getErrors = r.stderr;
      break;
    }
    if (Date.now() > until)
      throw new Error(
        `conductor get reports no errors for ${missing.map(caseFile).join(', ')}:\n${r.stderr}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}, CONTROL_PLANE_BUILD_TIMEOUT);

afterAll(async () => {
  await h?.cleanup();
  await cp?.down();
  if (base) rmSync(base, { recursive: true, force: true });
  assertNoLeaks(before, { idPrefix: NS });
}, 120_000);

describe('invalid manifests: the same field paths in directory mode and from the API server', () => {
  it.each(INVALID_MANIFESTS.map((c) => [c.name, c.what, c] as const))(
    '%s (%s)',
    async (_name, _what, c) => {
      if (!cp) throw new Error('no control plane');
      const file = caseFile(c);
      // Directory mode: conductor get's file errors and the log say the same.
      const fromGet = directoryPaths(getErrors, file);
      const fromLog = directoryPaths(
        log.filter((l) => l.startsWith('manifest rejected: ')).join('\n'),
        file,
      );
      expect(fromGet).toEqual(pathSet(c.paths));
      expect(fromLog).toEqual(fromGet);

      // The API server refuses the same object, and stores nothing.
      const r = await cp.kubectlRun(
        ['apply', '--dry-run=server', '-n', NS, '-f', '-'],
        JSON.stringify(inNamespace(c, NS)),
      );
      expect(r.code).not.toBe(0);
      const fromApi = apiServerPaths(r.stderr);
      expect({ paths: fromApi, said: fromApi.length ? '' : r.stderr }).toEqual({
        paths: pathSet(c.api?.paths ?? c.paths),
        said: '',
      });
    },
  );

  it('the API server stored none of them', async () => {
    if (!cp) throw new Error('no control plane');
    for (const plural of ['images', 'containers', 'services.conductor.dev'])
      expect((await cp.kubectl(['get', plural, '-n', NS, '-o', 'name'])).trim()).toBe('');
  });
});
