/**
 * execWithInput (test/fixtures/exec.ts), which kubectl, promtool and the conductor CLI run
 * through in the suites: a program that exits without reading its stdin is an exit status, not
 * an uncaught EPIPE failing whichever test happened to be running (kubernetes-demo failed so in
 * CI: `kubectl get` exits before its empty stdin is closed).
 */
import { expect, test } from '@jest/globals';

import { execWithInput, exitCode } from '../fixtures/exec.js';

// More than a pipe holds (64 KiB), so the write is still pending when the program has exited.
const BIG = 'x'.repeat(4 << 20);

test('a program that exits without reading its input: its status, no EPIPE', async () => {
  for (let i = 0; i < 20; i++) {
    const ok = await execWithInput('/bin/sh', ['-c', 'exit 0'], {}, BIG);
    expect(exitCode(ok.err)).toBe(0);
    const failed = await execWithInput('/bin/sh', ['-c', 'echo no >&2; exit 3'], {}, BIG);
    expect([exitCode(failed.err), failed.stderr]).toEqual([3, 'no\n']);
  }
});

test('the input reaches a program that reads it; no input is an empty stdin', async () => {
  const read = await execWithInput('/bin/sh', ['-c', 'wc -c'], {}, BIG);
  expect([exitCode(read.err), read.stdout.trim()]).toEqual([0, String(BIG.length)]);
  const none = await execWithInput('/bin/sh', ['-c', 'wc -c'], {});
  expect(none.stdout.trim()).toBe('0');
});

test('a program that cannot be started, or is killed, is status 1 with the reason', async () => {
  const missing = await execWithInput('/nonexistent/program', [], {});
  expect([exitCode(missing.err), missing.err?.code]).toEqual([1, 'ENOENT']);
  const killed = await execWithInput('/bin/sh', ['-c', 'kill -9 $$'], {});
  expect([exitCode(killed.err), killed.err?.signal]).toEqual([1, 'SIGKILL']);
});
