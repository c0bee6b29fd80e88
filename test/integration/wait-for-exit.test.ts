/**
 * waitForExit(pid, signal) (runtime-core/src/native.ts): an aborted wait rejects with an
 * AbortError and gives back everything it held — its pidfd, its place in the watcher's epoll
 * set, and the reference that keeps the process alive.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { readdirSync, readlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import { afterEach, describe, expect, it } from '@jest/globals';

import { waitForExit } from '../../runtime-core/src/native.js';

let children: ChildProcess[] = [];

afterEach(async () => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGKILL');
      await new Promise((r) => c.once('exit', r));
    }
  }
  children = [];
});

function sleeper(): ChildProcess & { pid: number } {
  const c = spawn('sleep', ['30'], { stdio: 'ignore' });
  children.push(c);
  if (c.pid === undefined) throw new Error('spawn sleep failed');
  return c as ChildProcess & { pid: number };
}

/** The pidfds this process holds. */
function pidfds(): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[pidfd]';
    } catch {
      return false; // the directory's own fd, closed by now
    }
  }).length;
}

/** What keeps the event loop alive, as a sorted list of kinds. */
function resources(): string[] {
  return process.getActiveResourcesInfo().sort();
}

/** Every entry of `after` is in `before` (as a multiset). */
function noNewResources(before: string[], after: string[]): void {
  const left = [...before];
  const extra = after.filter((r) => {
    const i = left.indexOf(r);
    if (i < 0) return true;
    left.splice(i, 1);
    return false;
  });
  expect({ before, after, extra }).toEqual({ before, after, extra: [] });
}

const abortError = {
  name: 'AbortError',
  code: 'ABORT_ERR',
  message: expect.stringMatching(/^waitForExit\(\d+\): aborted$/),
};

describe('waitForExit with an AbortSignal', () => {
  it('rejects with AbortError on abort and holds nothing afterwards', async () => {
    const c = sleeper();
    await sleep(20);
    const before = resources();
    const fds = pidfds();
    const ac = new AbortController();
    const waited = waitForExit(c.pid, ac.signal);
    expect(pidfds()).toBe(fds + 1);
    const reason = new Error('shutting down');
    ac.abort(reason);
    await expect(waited).rejects.toMatchObject({ ...abortError, cause: reason });
    await sleep(50);
    expect(pidfds()).toBe(fds);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    noNewResources(before, resources());
    // Cancelling the wait did nothing to the process.
    expect(c.exitCode).toBeNull();
    expect(c.signalCode).toBeNull();
  });

  it('still resolves on a normal exit, and removes its abort listener', async () => {
    const c = sleeper();
    const ac = new AbortController();
    const fds = pidfds();
    const waited = waitForExit(c.pid, ac.signal);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    c.kill('SIGKILL');
    await expect(waited).resolves.toBeUndefined();
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    expect(pidfds()).toBe(fds);
    ac.abort(); // too late: nothing happens
  });

  it('rejects at once for an already-aborted signal, without opening a pidfd', async () => {
    const c = sleeper();
    const fds = pidfds();
    const waited = waitForExit(c.pid, AbortSignal.abort('no'));
    expect(pidfds()).toBe(fds);
    await expect(waited).rejects.toMatchObject({ ...abortError, cause: 'no' });
    // Not even looked up: a pid that does not exist is refused as aborted, not ESRCH.
    await expect(waitForExit(2 ** 22 + 1, AbortSignal.abort())).rejects.toMatchObject(abortError);
  });

  it('keeps concurrent waits apart: aborted ones reject, the others resolve on exit', async () => {
    const cs = Array.from({ length: 16 }, () => sleeper());
    const fds = pidfds();
    const acs = cs.map(() => new AbortController());
    const outcomes = cs.map((c, i) =>
      waitForExit(c.pid, acs[i]?.signal).then(
        () => 'exited',
        (err: Error) => err.name,
      ),
    );
    expect(pidfds()).toBe(fds + cs.length);
    // Abort the even ones, kill the odd ones, interleaved.
    for (const [i, c] of cs.entries()) {
      if (i % 2 === 0) acs[i]?.abort();
      else c.kill('SIGKILL');
    }
    const got = await Promise.all(outcomes);
    expect(got).toEqual(cs.map((_, i) => (i % 2 === 0 ? 'AbortError' : 'exited')));
    expect(pidfds()).toBe(fds);
    // The aborted ones' processes are still there, and can be waited for again.
    const again = cs.filter((_, i) => i % 2 === 0).map((c) => waitForExit(c.pid));
    for (const [i, c] of cs.entries()) if (i % 2 === 0) c.kill('SIGKILL');
    await Promise.all(again);
    expect(pidfds()).toBe(fds);
  });
});
