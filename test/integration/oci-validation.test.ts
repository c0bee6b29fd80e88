/**
 * conductor-runtime against the OCI runtime validation suite (opencontainers/runtime-tools,
 * built from the Go module proxy by hack/oci-validation.sh): every program of the suite runs
 * and its TAP is read. A failure passes only when oci-validation.expected.yaml lists it with
 * the reason it fails here (this host's missing controllers, no SELinux/AppArmor, a suite bug
 * that fails crun and runc too); anything else fails, and so does a listed failure that no
 * longer happens, so the list stays true.
 *
 * bench/oci-validation.ts runs the same programs against crun and runc for the table in
 * README.md.
 */
import { mkdtempSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { REPO_ROOT } from '../fixtures/controller.js';
import {
  assertNoLeaks,
  hostSnapshot,
  listCgroups,
  listProcesses,
  type HostSnapshot,
} from '../fixtures/leaks.js';
import {
  compare,
  loadExpectations,
  suiteCgroups,
  suiteDir,
  suiteTests,
  ValidationRun,
  type ValidationResult,
} from '../fixtures/oci-validation.js';
import { RUNTIME } from '../fixtures/runtime.js';

const EXPECTED = join(REPO_ROOT, 'test/integration/oci-validation.expected.yaml');
const expectations = loadExpectations(EXPECTED);
// Built before the tests are declared: one test per program of the suite.
const suite = suiteDir(REPO_ROOT, 'current');
const tests = suiteTests(suite);

let run: ValidationRun;
let before: HostSnapshot;
let cgroupsBefore: string[];
const results: ValidationResult[] = [];

beforeAll(() => {
  before = hostSnapshot();
  cgroupsBefore = suiteCgroups();
  run = new ValidationRun(
    suite,
    { name: 'conductor-runtime', binary: RUNTIME },
    mkdtempSync('/tmp/conductor-oci-validation.'),
  );
});

/** Processes whose root is inside the run's bundles: containers nobody deleted. */
function containersLeft(workDir: string): string[] {
  return listProcesses()
    .filter((p) => {
      try {
        return readlinkSync(`/proc/${p.pid}/root`).startsWith(workDir + '/');
      } catch {
        return false; // gone, or a kernel thread
      }
    })
    .map((p) => `${p.pid}: ${p.cmdline.join(' ')}`);
}

// The suite's containers have uuids for ids: conductor-runtime's default cgroupsPath is
// /conductor/<id>.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

afterAll(async () => {
  const left = await run.cleanup();
  const processes = containersLeft(run.workDir);
  const passed = results.filter((r) => r.passed).length;
  const ok = results.reduce((n, r) => n + r.tap.assertions.filter((a) => a.ok).length, 0);
  const notOk = results.reduce((n, r) => n + r.tap.assertions.filter((a) => !a.ok).length, 0);
  console.log(
    `oci-validation: ${passed}/${results.length} files passed, ${ok} ok / ${notOk} not ok`,
  );
  // The suite's programs remove their containers and cgroups when they pass; a left one is a
  // runtime that failed to clean up (delete) what create made.
  expect(left).toEqual([]);
  expect(processes).toEqual([]);
  expect(suiteCgroups().filter((c) => !cgroupsBefore.includes(c))).toEqual([]);
  const had = new Set(before.cgroups);
  expect(
    listCgroups().filter((c) => !had.has(c) && UUID.test(c.slice(c.lastIndexOf('/') + 1))),
  ).toEqual([]);
  assertNoLeaks(before, { idPrefix: 'conductor-oci-validation.', tempDirs: [run.workDir] });
});

describe('the OCI runtime validation suite', () => {
  it('lists only programs the suite has', () => {
    expect(Object.keys(expectations).filter((t) => !tests.includes(t))).toEqual([]);
  });

  it.each(tests)(
    '%s',
    async (test) => {
      const result = await run.run(test);
      results.push(result);
      // The differences name the assertion and, for an abort, the runtime's own error.
      expect(compare(result, expectations[test])).toEqual([]);
    },
    200_000,
  );
});
