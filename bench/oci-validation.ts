/**
 * The OCI runtime validation suite (opencontainers/runtime-tools, hack/oci-validation.sh) against
 * conductor-runtime, crun and runc in one invocation: files passed, assertions ok / not ok, and
 * the files where the three disagree. Two pins of the suite (hack/oci-validation.sh): `current`
 * (runtime-spec 1.3.0, what CI runs) and `spec-1.0` (1.0.2-dev), because crun 1.8.1 reads only
 * 1.0.x configs and refuses every one of the current suite. A file passes when it exits 0 with no
 * `not ok` and without failing itself through a diagnostic (the suite's lifecycle checks do that).
 *
 *   hack/bench.sh oci-validation [--suite current|spec-1.0|both] [--only conductor-runtime,crun,runc]
 *
 * About 80 s per runtime and suite here (the programs wait on their containers).
 */
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';

import {
  removeSuiteCgroups,
  suiteCgroups,
  suiteDir,
  suiteTests,
  ValidationRun,
  type Suite,
  type ValidationResult,
} from '../test/fixtures/oci-validation.js';
import { parseFlags, repoRoot, table, which } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const suites: Suite[] =
  (flags.get('suite') ?? 'both') === 'both'
    ? ['current', 'spec-1.0']
    : [flags.get('suite') as Suite];
const only = flags.get('only')?.split(',');
const repo = repoRoot();

const runtimes = [
  { name: 'conductor-runtime', binary: join(repo, 'build/Release/conductor-runtime') },
  { name: 'crun', binary: which('crun') },
  { name: 'runc', binary: which('runc') },
].filter((r) => !only || only.includes(r.name));

interface Column {
  name: string;
  results: Map<string, ValidationResult>;
  missing?: string;
}

async function runSuite(suite: Suite): Promise<void> {
  const dir = suiteDir(repo, suite);
  const tests = suiteTests(dir);
  const cgroupsBefore = suiteCgroups();
  const columns: Column[] = [];
  for (const rt of runtimes) {
    const col: Column = { name: rt.name, results: new Map() };
    columns.push(col);
    if (!rt.binary) {
      col.missing = 'not installed';
      continue;
    }
    const run = new ValidationRun(
      dir,
      { name: rt.name, binary: rt.binary },
      mkdtempSync(`/tmp/conductor-oci-bench-${rt.name}.`),
    );
    try {
      for (const t of tests) {
        if (process.stderr.isTTY) process.stderr.write(`\r${suite}: ${rt.name}: ${t}`.padEnd(70));
        col.results.set(t, await run.run(t));
      }
    } finally {
      const left = await run.cleanup();
      if (left.length > 0) console.error(`${rt.name} left ${left.join(', ')} (removed)`);
    }
  }
  if (process.stderr.isTTY) process.stderr.write('\r'.padEnd(71) + '\r');
  const removed = removeSuiteCgroups(cgroupsBefore);
  if (removed.length > 0) console.error(`removed ${removed.length} cgroups the runtimes left`);

  const count = (c: Column, f: (r: ValidationResult) => number): number =>
    [...c.results.values()].reduce((n, r) => n + f(r), 0);
  const passed = (c: Column): number => count(c, (r) => (r.passed ? 1 : 0));
  const crun = columns.find((c) => c.name === 'crun');
  const runc = columns.find((c) => c.name === 'runc');
  // Files passed over the peer's; n/a where the peer could not run (or read) the suite.
  const ratio = (c: Column, peer: Column | undefined): string =>
    peer && !peer.missing && passed(peer) > 0 ? `${(passed(c) / passed(peer)).toFixed(2)}x` : 'n/a';
  console.log(`OCI validation suite (${suite}, ${tests.length} programs): ${dir}`);
  console.log(
    table([
      ['runtime', 'files passed', 'assertions ok', 'not ok', 'aborted', 'vs crun', 'vs runc'],
      ...columns.map((c) =>
        c.missing
          ? [c.name, c.missing, '', '', '', '', '']
          : [
              c.name,
              `${passed(c)} / ${tests.length}`,
              String(count(c, (r) => r.tap.assertions.filter((a) => a.ok).length)),
              String(count(c, (r) => r.tap.assertions.filter((a) => !a.ok).length)),
              String(count(c, (r) => (r.aborted ? 1 : 0))),
              ratio(c, crun),
              ratio(c, runc),
            ],
      ),
    ]),
  );
  const ran = columns.filter((c) => !c.missing);
  const differ = tests.filter((t) => new Set(ran.map((c) => c.results.get(t)?.passed)).size > 1);
  if (differ.length > 0) {
    console.log('\nwhere they differ (pass / FAIL):');
    console.log(
      table([
        ['program', ...ran.map((c) => c.name)],
        ...differ.map((t) => [t, ...ran.map((c) => (c.results.get(t)?.passed ? 'pass' : 'FAIL'))]),
      ]),
    );
  }
  const allFail = tests.filter((t) => ran.every((c) => c.results.get(t)?.passed === false));
  console.log(`\nfailed by all: ${allFail.join(', ') || 'none'}`);
}

for (const [i, s] of suites.entries()) {
  if (i > 0) console.log();
  await runSuite(s);
}
