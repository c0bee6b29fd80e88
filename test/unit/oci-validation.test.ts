/** Reading the validation suite's TAP, and comparing a result with its expectation. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from '@jest/globals';

import { compare, loadExpectations, parseTap, summarise } from '../fixtures/oci-validation.js';

const ok = { code: 0, signal: null };

describe('parseTap', () => {
  it('reads assertions, directives, diagnostics and the plan', () => {
    const tap = parseTap(
      [
        'TAP version 13',
        'ok 1 - has expected hostname',
        'Refer to: https://example/spec',
        '  ---',
        '  {',
        '    "actual": "a"',
        '  }',
        '  ...',
        'not ok 2 - pids limit is set correctly',
        '# expect: 1, actual: 2',
        'ok 3 # SKIP linux.sysctl not set',
        'not ok 4 - later # TODO not yet',
        '1..4',
      ].join('\n'),
    );
    expect(tap.plan).toBe(4);
    expect(tap.assertions.map((a) => [a.n, a.ok, a.description, a.skip, a.todo])).toEqual([
      [1, true, 'has expected hostname', false, false],
      [2, false, 'pids limit is set correctly', false, false],
      [3, true, '', true, false],
      [4, false, 'later', false, true],
    ]);
    expect(tap.diagnostics).toEqual(['{\n    "actual": "a"\n  }']);
  });
});

describe('summarise', () => {
  it('fails a file that has only a diagnostic (the suite failing a lifecycle check)', () => {
    const r = summarise(
      'hooks',
      ok,
      'TAP version 13\n  ---\n  {"error": "x"}\n  ...\n1..0\n',
      '',
      1,
    );
    expect(r).toMatchObject({ passed: false, aborted: true, failures: [] });
  });

  it('passes a file that skips everything or prints nothing and exits 0', () => {
    expect(summarise('poststop', ok, 'TAP version 13\n1..0\n', '', 1).passed).toBe(true);
    expect(summarise('process_capabilities_fail', ok, '', '', 1).passed).toBe(true);
  });

  it('fails on a non-zero exit and lists each failing description once', () => {
    const r = summarise(
      'x',
      { code: 1, signal: null },
      'not ok 1 - a\nnot ok 2 - a\nnot ok 3 - b # TODO\n',
      'boom',
      1,
    );
    expect(r).toMatchObject({ passed: false, aborted: true, failures: ['a'] });
  });
});

describe('compare', () => {
  const failing = summarise('m', ok, 'ok 1 - x\nnot ok 2 - kernel\n1..2\n', '', 1);

  it('accepts exactly the failures expected', () => {
    expect(compare(failing, { why: 'w', fails: ['kernel'] })).toEqual([]);
  });

  it('names an unexpected failure and an expected one that passed', () => {
    expect(compare(failing, undefined)).toEqual(['not ok: kernel']);
    expect(compare(failing, { why: 'w', fails: ['kernel', 'swap'] })).toEqual([
      'expected to fail, but it passed: swap',
    ]);
    const passing = summarise('m', ok, 'ok 1 - x\n1..1\n', '', 1);
    expect(compare(passing, { why: 'w', aborts: true })).toEqual([
      'expected to abort, but it did not',
    ]);
  });

  it('says why a file aborted', () => {
    const r = summarise('b', { code: 1, signal: null }, '', 'a\nconductor-runtime: no blkio\n', 1);
    expect(compare(r, undefined)).toEqual(['aborted (exit 1: a | conductor-runtime: no blkio)']);
  });

  it('accepts either outcome of a flaky one', () => {
    expect(compare(failing, { why: 'race', aborts: true, flaky: true })).toEqual([]);
  });
});

describe('loadExpectations', () => {
  it('refuses an entry without a reason or without what fails', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ov-'));
    try {
      const file = join(dir, 'e.yaml');
      writeFileSync(file, 'hooks:\n  aborts: true\n');
      expect(() => loadExpectations(file)).toThrow('hooks.why: say why it fails here');
      writeFileSync(file, 'hooks:\n  why: suite bug\n');
      expect(() => loadExpectations(file)).toThrow('hooks: needs aborts: true or a list of fails');
      writeFileSync(file, 'hooks:\n  why: suite bug\n  aborts: true\n');
      expect(loadExpectations(file)).toEqual({
        hooks: { why: 'suite bug', aborts: true, fails: [], flaky: false },
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
