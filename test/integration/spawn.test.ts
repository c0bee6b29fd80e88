/**
 * runtime-core/src/spawn.ts: programs started by the addon's posix_spawn, reaped by its pidfd
 * exit watcher. What Node's child_process guaranteed must still hold: output, exit codes,
 * signals, stdin, environment, working directory, timeouts, cancellation — and what it did
 * for us silently: no descriptor of ours and no ignored or blocked signal leaks into the child,
 * and no child is left a zombie.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { describe, expect, it } from '@jest/globals';

import { runProcess, spawnChild } from '../../runtime-core/src/spawn.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Fields of /proc/PID/status, or undefined once it is gone. */
function procStatus(pid: number): Map<string, string> | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    return new Map(
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]),
    );
  } catch {
    return undefined;
  }
}

/** Our children that are zombies (exited, never reaped). */
function zombieChildren(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => {
      const s = procStatus(pid);
      return s?.get('PPid') === String(process.pid) && s.get('State')?.startsWith('Z');
    });
}

describe('runProcess', () => {
  it('collects stdout and stderr and reports the exit code', async () => {
    const r = await runProcess('/bin/sh', ['-c', 'echo out; echo err >&2; exit 3']);
    expect(r).toEqual({
      code: 3,
      signal: null,
      stdout: 'out\n',
      stderr: 'err\n',
      timedOut: false,
      aborted: false,
    });
  });

  it('writes `input` to stdin and closes it; without input stdin is /dev/null', async () => {
    expect((await runProcess('cat', [], { input: 'to stdin\n' })).stdout).toBe('to stdin\n');
    expect(await runProcess('cat', [])).toMatchObject({ code: 0, stdout: '' });
    // A program that exits without reading its input is fine too.
    expect((await runProcess('true', [], { input: 'x'.repeat(1 << 20) })).code).toBe(0);
  });

  it('gives the child exactly the environment and working directory asked for', async () => {
    const r = await runProcess('/bin/sh', ['-c', 'env; pwd'], {
      env: { ONLY: 'this', GONE: undefined },
      cwd: '/proc',
    });
    const lines = r.stdout.trim().split('\n');
    expect(lines).toContain('ONLY=this');
    expect(lines.some((l) => l.startsWith('GONE='))).toBe(false);
    expect(lines.some((l) => l.startsWith('HOME='))).toBe(false);
    expect(lines.at(-1)).toBe('/proc');
    // Without env, ours.
    process.env.CONDUCTOR_SPAWN_TEST = 'inherited';
    try {
      expect((await runProcess('/bin/sh', ['-c', 'echo $CONDUCTOR_SPAWN_TEST'])).stdout).toBe(
        'inherited\n',
      );
    } finally {
      delete process.env.CONDUCTOR_SPAWN_TEST;
    }
  });

  it('finds a bare name in PATH and rejects a program that cannot run, naming it', async () => {
    expect((await runProcess('echo', ['found'])).stdout).toBe('found\n');
    await expect(runProcess('/no/such/program', [])).rejects.toMatchObject({
      code: 'ENOENT',
      message: expect.stringContaining('/no/such/program'),
    });
    const notExecutable = join(mkdtempSync(join(tmpdir(), 'conductor-spawn-')), 'data');
    writeFileSync(notExecutable, 'not a program\n', { mode: 0o644 });
    try {
      await expect(runProcess(notExecutable, [])).rejects.toMatchObject({ code: 'EACCES' });
    } finally {
      rmSync(dirname(notExecutable), { recursive: true });
    }
  });

  it('reports death by a signal by its name', async () => {
    const r = await runProcess('/bin/sh', ['-c', 'kill -TERM $$']);
    expect(r).toMatchObject({ code: null, signal: 'SIGTERM' });
  });

  it('kills the program at its timeout and on abort', async () => {
    const t = await runProcess('sleep', ['30'], { timeoutMs: 100 });
    expect(t).toMatchObject({ code: null, signal: 'SIGKILL', timedOut: true, aborted: false });

    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const a = await runProcess('sleep', ['30'], { signal: ac.signal });
    expect(a).toMatchObject({ signal: 'SIGKILL', aborted: true, timedOut: false });
    // Aborted before it started: never run.
    expect(await runProcess('sleep', ['30'], { signal: ac.signal })).toMatchObject({
      aborted: true,
      code: null,
    });
  });

  it('leaves no zombie behind, however its children end', async () => {
    await Promise.all([
      ...Array.from({ length: 20 }, () => runProcess('true', [])),
      ...Array.from({ length: 5 }, () => runProcess('sleep', ['30'], { timeoutMs: 50 })),
      runProcess('/bin/sh', ['-c', 'kill -KILL $$']),
    ]);
    expect(zombieChildren()).toEqual([]);
  });
});

describe('spawnChild', () => {
  it('passes on no descriptor of ours and no ignored or blocked signal', async () => {
    // Node itself ignores SIGPIPE; an ignored signal survives exec.
    const child = await spawnChild('sleep', ['30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      await sleep(50); // exec'd (posix_spawn returned), and past sleep's own start-up
      expect(readdirSync(`/proc/${child.pid}/fd`).sort()).toEqual(['0', '1', '2']);
      const status = procStatus(child.pid);
      // Signals 1-31, as libuv resets them. glibc's posix_spawn leaves its two internal
      // real-time signals (32, 33) ignored in every child it makes; programs that use them (glibc
      // programs, the shim, which resets every signal) install their own handlers.
      const standard = (mask: string | undefined): bigint =>
        BigInt(`0x${mask ?? ''}`) & 0x7fffffffn;
      expect(standard(status?.get('SigIgn'))).toBe(0n);
      expect(standard(status?.get('SigBlk'))).toBe(0n);
    } finally {
      expect(child.kill('SIGKILL')).toBe(true);
    }
    expect(await child.exited).toEqual({ code: null, signal: 'SIGKILL' });
  });

  it('detached: a session of its own; kill() after the exit signals nobody', async () => {
    const child = await spawnChild('sleep', ['30'], { detached: true });
    const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
    const session = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
    expect(session).toBe(child.pid);
    expect(child.kill()).toBe(true);
    expect(await child.exited).toEqual({ code: null, signal: 'SIGTERM' });
    // Reaped: its pid may belong to anyone now, and kill() must not reach it.
    expect(child.kill('SIGKILL')).toBe(false);
  });

  it('streams stdin to stdout, and `closed` waits for the output to end', async () => {
    const child = await spawnChild('cat', [], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stdin?.write('one ');
    child.stdin?.end('two');
    expect(await child.closed).toEqual({ code: 0, signal: null });
    expect(out).toBe('one two');
  });
});
