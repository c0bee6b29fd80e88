/**
 * hack/lib.sh, the rules hack/demo.sh and hack/test.sh share: when a checkout needs `npm ci`
 * (an interrupted one must not pass for installed), and how a non-root caller is told or sudo'd.
 * Run through bash against temporary "checkouts", as the scripts run them.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const LIB = fileURLToPath(new URL('../../hack/lib.sh', import.meta.url));

function bash(script: string, opts: { env?: NodeJS.ProcessEnv; uid?: number } = {}) {
  const r = spawnSync('/bin/bash', ['-c', `. ${JSON.stringify(LIB)}; ${script}`], {
    encoding: 'utf8',
    env: opts.env ?? process.env,
    ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('npm_ci_needed', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'hack-lib-'));
    writeFileSync(join(dir, 'package-lock.json'), '{"lockfileVersion": 3}\n');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const needed = (): boolean => bash(`npm_ci_needed ${JSON.stringify(dir)}`).code === 0;

  it('is needed without node_modules', () => {
    rmSync(join(dir, 'node_modules'), { recursive: true, force: true });
    expect(needed()).toBe(true);
  });

  it('is needed when node_modules exists but npm ci never finished (Ctrl-C)', () => {
    // What an interrupted `npm ci` leaves: some packages, even npm's own hidden lock file.
    mkdirSync(join(dir, 'node_modules', 'yaml'), { recursive: true });
    writeFileSync(join(dir, 'node_modules', '.package-lock.json'), '{}');
    expect(needed()).toBe(true);
  });

  it('is not needed once the stamp of a finished npm ci matches the lock file', () => {
    const stamp = bash(`install_fingerprint ${JSON.stringify(dir)}`);
    expect(stamp.code).toBe(0);
    expect(stamp.stdout).toMatch(/^[0-9a-f]{64} node-abi-\d+\n$/);
    writeFileSync(join(dir, 'node_modules', '.conductor-installed'), stamp.stdout);
    expect(needed()).toBe(false);
  });

  it('is needed again when the lock file changes', () => {
    writeFileSync(join(dir, 'package-lock.json'), '{"lockfileVersion": 3, "x": 1}\n');
    expect(needed()).toBe(true);
  });
});

describe('ensure_node_modules in CI', () => {
  // A checkout with a finished install's stamp, and an npm that only says it was called.
  let dir: string;
  let bin: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'hack-lib-ci-'));
    bin = mkdtempSync(join(tmpdir(), 'hack-lib-npm-'));
    writeFileSync(join(dir, 'package-lock.json'), '{"lockfileVersion": 3}\n');
    mkdirSync(join(dir, 'node_modules'));
    mkdirSync(join(dir, 'dist'));
    writeFileSync(join(bin, 'npm'), '#!/bin/sh\necho "npm $*" >&2\n', { mode: 0o755 });
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(bin, { recursive: true, force: true });
  });
  const run = (env: Record<string, string>, stale = false) => {
    writeFileSync(join(dir, 'package-lock.json'), '{"lockfileVersion": 3}\n');
    const stamp = bash(`install_fingerprint ${JSON.stringify(dir)}`).stdout;
    writeFileSync(join(dir, 'node_modules', '.conductor-installed'), stamp);
    if (stale) writeFileSync(join(dir, 'package-lock.json'), '{"lockfileVersion": 3, "x": 1}\n');
    const r = bash(
      `CONDUCTOR_REPO=${JSON.stringify(dir)}; ensure_node_modules && echo "done=$CONDUCTOR_NPM_CI_DONE"`,
      { env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, ...env } },
    );
    return { ran: r.stderr.includes('npm ci: installing'), stdout: r.stdout, code: r.code };
  };

  it('installs once per CI run, and says so to the scripts the run starts', () => {
    expect(run({ CI: 'true', CONDUCTOR_NPM_CI_DONE: '' })).toEqual({
      ran: true,
      stdout: `done=${dir}\n`,
      code: 0,
    });
    // hack/demo.sh started by a test of that run: node_modules stays as it is.
    expect(run({ CI: 'true', CONDUCTOR_NPM_CI_DONE: dir }).ran).toBe(false);
    // ...unless it needs an install by the usual rule.
    expect(run({ CI: 'true', CONDUCTOR_NPM_CI_DONE: dir }, true).ran).toBe(true);
    // Another checkout's run does not count.
    expect(run({ CI: 'true', CONDUCTOR_NPM_CI_DONE: '/elsewhere' }).ran).toBe(true);
    // Outside CI: only when needed.
    expect(run({ CI: '', CONDUCTOR_NPM_CI_DONE: '' })).toEqual({
      ran: false,
      stdout: 'done=\n',
      code: 0,
    });
  });
});

describe('require_root', () => {
  it('returns at once for root', () => {
    const r = bash('require_root /bin/false; echo still-here');
    expect(r.stdout).toBe('still-here\n');
  });

  it('tells a user without sudo to run it as root, and exits 1', () => {
    // A PATH with what lib.sh uses but no sudo (whether or not this host has one): the
    // message, not a "command not found".
    const bin = mkdtempSync(join(tmpdir(), 'hack-lib-path-'));
    try {
      chmodSync(bin, 0o755);
      for (const tool of ['id', 'dirname', 'basename'])
        symlinkSync(`/usr/bin/${tool}`, join(bin, tool));
      const r = bash('require_root hack/demo.sh; echo not-reached', {
        uid: 65534,
        env: { PATH: bin, HOME: '/' },
      });
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/demo\.sh: needs root .*run it as root/);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });

  it('re-runs the script through sudo, keeping PATH, for a user with sudo', () => {
    // A stand-in sudo that prints what it was asked to run: the real one would ask a password.
    const bin = mkdtempSync(join(tmpdir(), 'hack-lib-sudo-'));
    try {
      chmodSync(bin, 0o755);
      writeFileSync(join(bin, 'sudo'), '#!/bin/sh\necho "sudo $*"\n', { mode: 0o755 });
      const path = `${bin}:/usr/bin:/bin`;
      const r = bash('require_root hack/demo.sh --flag; echo not-reached', {
        uid: 65534,
        env: { PATH: path, HOME: '/' },
      });
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`sudo env PATH=${path} hack/demo.sh --flag\n`);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });
});
