/**
 * Argument handling of the commands whose behaviour needs real containers (logs, exec) or the
 * controller (up); those run end to end in the controller's suites. Here: parsing, usage
 * errors, exit codes, and `up`'s signal handling against a stand-in manager.
 */
import { describe, expect, it } from '@jest/globals';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { exitStatus, parseExecArgs } from '../../controller/cli/exec.js';
import type { CliIO } from '../../controller/cli/io.js';
import { formatLogLine, streamLogger } from '../../controller/cli/logger.js';
import { parseLogsArgs } from '../../controller/cli/logs.js';
import { main } from '../../controller/cli/main.js';
import { parseUpArgs, up, type RunControllerOptions } from '../../controller/cli/up.js';

function captureIO(signals = new EventEmitter()): CliIO & { out: () => string; err: () => string } {
  let stdout = '';
  let stderr = '';
  return {
    stdout: (t) => void (stdout += t),
    stderr: (t) => void (stderr += t),
    cwd: '/work',
    now: () => new Date('2026-11-28T12:00:00Z'),
    signals,
    out: () => stdout,
    err: () => stderr,
  };
}

describe('logs arguments', () => {
  it('parses -f, --tail, -n and --state-dir', () => {
    expect(parseLogsArgs(['-f', '--tail', '20', 'web', '-n', 'prod', '--state-dir', '/s'])).toEqual(
      {
        help: false,
        stateDir: '/s',
        namespace: 'prod',
        name: 'web',
        follow: true,
        tail: 20,
      },
    );
    expect(parseLogsArgs(['web'])).toMatchObject({
      stateDir: '/var/lib/conductor',
      namespace: 'default',
      follow: false,
      tail: undefined,
    });
  });

  it('accepts kubectl-style container/NAME and container NAME', () => {
    expect(parseLogsArgs(['containers/web']).name).toBe('web');
    expect(parseLogsArgs(['cctr', 'web']).name).toBe('web');
  });

  it('rejects a bad --tail, no name, or two names', () => {
    expect(() => parseLogsArgs(['--tail', 'ten', 'web'])).toThrow(
      '--tail must be a non-negative integer',
    );
    expect(() => parseLogsArgs([])).toThrow('expected the name of one Container');
    expect(() => parseLogsArgs(['web', 'db'])).toThrow('expected the name of one Container');
    expect(() => parseLogsArgs(['--since', '5m', 'web'])).toThrow(/Unknown option '--since'/);
  });

  it('says NotFound for a Container the state dir does not have', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'conductor-cli-args-'));
    try {
      const io = captureIO();
      expect(await main(['logs', 'web', '--state-dir', stateDir], io)).toBe(1);
      expect(io.err()).toBe('error: containers.conductor.dev "web" not found\n');
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});

describe('exec arguments', () => {
  it('splits at -- : options and NAME before, the command after, untouched', () => {
    expect(
      parseExecArgs(['-i', 'web', '-n', 'prod', '--', 'sh', '-c', 'echo -n hi; exit 3']),
    ).toEqual({
      help: false,
      stateDir: '/var/lib/conductor',
      namespace: 'prod',
      name: 'web',
      stdin: true,
      tty: false,
      command: ['sh', '-c', 'echo -n hi; exit 3'],
    });
    expect(parseExecArgs(['web', '--', 'ls', '--', '-la']).command).toEqual(['ls', '--', '-la']);
    expect(parseExecArgs(['web', 'ls']).command).toEqual(['ls']);
    expect(parseExecArgs(['-it', 'container/web', '--', 'sh'])).toMatchObject({
      stdin: true,
      tty: true,
      name: 'web',
    });
  });

  it('needs a name and a command', () => {
    expect(() => parseExecArgs(['--', 'sh'])).toThrow('expected the name of one Container');
    expect(() => parseExecArgs(['web'])).toThrow('you must specify a command to run after --');
    expect(() => parseExecArgs(['web', '--'])).toThrow(
      'you must specify a command to run after --',
    );
  });

  it('passes -t and -i through', () => {
    expect(parseExecArgs(['-it', 'web', '--', 'sh'])).toMatchObject({ stdin: true, tty: true });
  });

  it("exits with the process's code, or 128 + the signal number", () => {
    expect(exitStatus(0, null)).toBe(0);
    expect(exitStatus(3, null)).toBe(3);
    expect(exitStatus(null, 'SIGKILL')).toBe(137);
    expect(exitStatus(null, 'SIGTERM')).toBe(143);
  });
});

describe('up', () => {
  it('parses its flags, with the documented defaults', () => {
    expect(parseUpArgs([], '/work')).toEqual({
      help: false,
      watchDir: '/etc/conductor/manifests',
      stateDir: '/var/lib/conductor',
      metricsAddr: '127.0.0.1:9090',
      logLevel: 'info',
      concurrency: { Container: 4 },
    });
    expect(
      parseUpArgs(
        [
          '--watch',
          'm',
          '--state-dir',
          's',
          '--metrics-addr',
          '[::1]:9100',
          '-v',
          '--concurrency',
          '8',
        ],
        '/work',
      ),
    ).toEqual({
      help: false,
      watchDir: '/work/m',
      stateDir: '/work/s',
      metricsAddr: '[::1]:9100',
      logLevel: 'debug',
      concurrency: { Container: 8 },
    });
    expect(() => parseUpArgs(['--concurrency', '0'], '/')).toThrow('--concurrency must be');
    expect(() => parseUpArgs(['--metrics-addr', '9090'], '/')).toThrow(
      '--metrics-addr must be HOST:PORT',
    );
    expect(() => parseUpArgs(['extra'], '/')).toThrow('unexpected arguments: extra');
  });

  it('parses the network flags, checking the ranges and the domain', () => {
    expect(
      parseUpArgs(
        [
          '--container-cidr',
          '10.90.0.0/16',
          '--service-cidr',
          '10.91.0.0/24',
          '--cni-conf-dir',
          'net.d',
          '--cluster-domain',
          'example.test',
        ],
        '/etc/cni',
      ).network,
    ).toEqual({
      containerCidr: '10.90.0.0/16',
      serviceCidr: '10.91.0.0/24',
      cniConfDir: '/etc/cni/net.d',
      clusterDomain: 'example.test',
    });
    expect(parseUpArgs([], '/').network).toBeUndefined();
    expect(() => parseUpArgs(['--service-cidr', '10.78.0.0'], '/')).toThrow(
      '--service-cidr: "10.78.0.0" is not an IPv4 CIDR block',
    );
    expect(() => parseUpArgs(['--container-cidr', '10.77.1.0/16'], '/')).toThrow(
      'has host bits set',
    );
    expect(() => parseUpArgs(['--cluster-domain', 'Bad_Domain'], '/')).toThrow(
      '--cluster-domain must be a DNS name',
    );
  });

  it('takes --stuck-after in whole seconds', () => {
    expect(parseUpArgs(['--stuck-after', '90'], '/').stuckAfterMs).toBe(90_000);
    expect(parseUpArgs([], '/').stuckAfterMs).toBeUndefined();
    for (const bad of ['0', '1.5', '5m', ''])
      expect(() => parseUpArgs(['--stuck-after', bad], '/')).toThrow(
        `--stuck-after must be a whole number of seconds, at least 1, got "${bad}"`,
      );
  });

  it('runs the controller until SIGTERM, then stops it', async () => {
    const signals = new EventEmitter();
    const io = captureIO(signals);
    const calls: string[] = [];
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const done = up(['--watch', '/w', '--state-dir', '/s'], io, async () => ({
      runController: async (opts: RunControllerOptions) => {
        calls.push(`run ${opts.watchDir} ${opts.stateDir} ${opts.metricsAddr} ${opts.logLevel}`);
        started();
        return { stop: async () => void calls.push('stop') };
      },
    }));
    await running;
    expect(calls).toEqual(['run /w /s 127.0.0.1:9090 info']);
    signals.emit('SIGTERM');
    expect(await done).toBe(0);
    expect(calls).toEqual(['run /w /s 127.0.0.1:9090 info', 'stop']);
    expect(io.err()).toContain('SIGTERM: stopping the controller');
    // Nothing of up is left listening.
    expect(signals.listenerCount('SIGINT') + signals.listenerCount('SIGTERM')).toBe(0);
  });

  it('a signal during startup stops the controller once it is up', async () => {
    const signals = new EventEmitter();
    const calls: string[] = [];
    const code = await up([], captureIO(signals), async () => ({
      runController: async () => {
        signals.emit('SIGINT');
        calls.push('started');
        return { stop: async () => void calls.push('stop') };
      },
    }));
    expect(code).toBe(0);
    expect(calls).toEqual(['started', 'stop']);
  });

  it('reports a controller that fails to start', async () => {
    const io = captureIO();
    await expect(
      up([], io, async () => ({
        runController: async () => {
          throw new Error('listen EADDRINUSE 127.0.0.1:9090');
        },
      })),
    ).rejects.toThrow('controller failed to start: listen EADDRINUSE 127.0.0.1:9090');
  });
});

describe('up log lines', () => {
  const t = new Date('2026-11-28T12:00:00Z');

  it('are time, level, message and key=value fields, quoted when needed', () => {
    expect(formatLogLine(t, 'info', 'container started', { id: 'default_web', pid: 42 })).toBe(
      '2026-11-28T12:00:00.000Z INFO  container started id=default_web pid=42\n',
    );
    expect(
      formatLogLine(t, 'error', 'failed', { error: new Error('no such file'), addr: { port: 1 } }),
    ).toBe('2026-11-28T12:00:00.000Z ERROR failed error="no such file" addr="{\\"port\\":1}"\n');
  });

  it('debug lines only with -v', () => {
    const lines: string[] = [];
    const quiet = streamLogger((l) => lines.push(l), { debug: false, now: () => t });
    quiet.debug('hidden');
    quiet.warn('shown');
    streamLogger((l) => lines.push(l), { debug: true, now: () => t }).debug('also shown');
    expect(lines).toEqual([
      '2026-11-28T12:00:00.000Z WARN  shown\n',
      '2026-11-28T12:00:00.000Z DEBUG also shown\n',
    ]);
  });
});

describe('main', () => {
  it('prints --help for conductor and every command', async () => {
    for (const command of ['up', 'apply', 'get', 'describe', 'delete', 'logs', 'exec', 'version']) {
      const io = captureIO();
      expect(await main([command, '--help'], io)).toBe(0);
      expect(io.out()).toContain(`conductor ${command}`);
    }
    const io = captureIO();
    expect(await main([], io)).toBe(0);
    expect(io.out()).toContain('Commands:');
  });

  it('exits 2 with a usage hint for unknown commands and flags', async () => {
    const io = captureIO();
    expect(await main(['frobnicate'], io)).toBe(2);
    expect(io.err()).toContain('error: unknown command "frobnicate" for "conductor"');
    const flags = captureIO();
    expect(await main(['get', 'cctr', '--bogus'], flags)).toBe(2);
    expect(flags.err()).toMatch(
      /^error: Unknown option '--bogus'.*\nSee 'conductor get --help' for usage\.\n$/s,
    );
  });
});
