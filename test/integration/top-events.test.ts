/**
 * Observability end to end against a real controller: `conductor top` reads the running
 * Containers' counters (a busy loop held to half a core by its CPU limit, and an idle one),
 * `conductor get events` lists what the controller recorded, `get events -w` prints an event
 * as it is recorded, and /metrics counts them in conductor_events_total.
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { totalmem } from 'node:os';

import { afterAll, beforeAll, expect, it } from '@jest/globals';

import type { Container, Image } from '../../controller/api/types.generated.js';
import { main } from '../../controller/cli/main.js';
import type { TopRow } from '../../controller/cli/top.js';
import {
  ControllerHarness,
  REPO_ROOT,
  buildDist,
  busyboxImage,
  containerManifest,
  type CliRun,
} from '../fixtures/controller.js';
import { assertNoLeaks, hostSnapshot, uniqueId, type HostSnapshot } from '../fixtures/index.js';

const NS = uniqueId('top');
const MiB = 1024 * 1024;
let h: ControllerHarness;
let before: HostSnapshot;

const running = (o: Container | undefined): boolean =>
  o?.status?.phase === 'Running' && typeof o.status.pid === 'number';

beforeAll(async () => {
  before = hostSnapshot();
  await buildDist();
  h = await ControllerHarness.create(NS);
  await h.write('image.yaml', busyboxImage(NS));
  await h.write(
    'busy.json',
    containerManifest(NS, 'busy', {
      command: ['sh', '-c', 'while :; do :; done'],
      resources: { limits: { cpu: '500m', memory: '32Mi', pids: 16 } },
    }),
  );
  await h.write('idle.json', containerManifest(NS, 'idle', { command: ['sleep', '1000'] }));
  await h.start();
  await h.waitFor<Image>('Image', 'busybox', (o) => o?.status?.phase === 'Ready');
  await h.waitFor<Container>('Container', 'busy', running);
  await h.waitFor<Container>('Container', 'idle', running);
}, 120_000);

afterAll(async () => {
  await h.cleanup();
  assertNoLeaks(before, { idPrefix: NS });
});

const conductor = (args: string[], input?: string): Promise<CliRun> => h.cli(args, input);

it('top --no-stream -o json: the busy container near its half core, the idle one near 0', async () => {
  const out = await conductor(['top', '--no-stream', '-o', 'json', '-n', NS]);
  expect(out).toMatchObject({ code: 0, stderr: '' });
  const samples = out.stdout.trim().split('\n');
  expect(samples).toHaveLength(1); // one array
  const rows = JSON.parse(samples[0] ?? '') as TopRow[];
  expect(rows.map((r) => r.name)).toEqual(['busy', 'idle']);
  const [busy, idle] = rows as [TopRow, TopRow];
  // 0.5 CPU of a noisy 2-core machine: roughly 50 %.
  expect(busy.cpuPercent).toBeGreaterThan(20);
  expect(busy.cpuPercent).toBeLessThan(70);
  expect(idle.cpuPercent).toBeGreaterThanOrEqual(0);
  expect(idle.cpuPercent).toBeLessThan(5);
  expect(busy).toMatchObject({
    containerID: `${NS}_busy`,
    memoryLimitBytes: 32 * MiB,
    pidsLimit: 16,
  });
  // Unlimited: the host's memory, as docker stats shows.
  expect(idle).toMatchObject({
    containerID: `${NS}_idle`,
    memoryLimitBytes: totalmem(),
    pidsLimit: null,
  });
  for (const r of rows) {
    expect(r.memoryUsageBytes).toBeGreaterThan(0);
    expect(r.memoryUsageBytes).toBeLessThan(32 * MiB);
    expect(r.memoryPercent).toBeCloseTo((r.memoryUsageBytes / r.memoryLimitBytes) * 100, 5);
    expect(r.pids).toBeGreaterThanOrEqual(1);
    expect(r.pids).toBeLessThan(5);
    expect(r.networkRxBytes).toBeGreaterThanOrEqual(0);
    expect(r.networkTxBytes).toBeGreaterThanOrEqual(0);
  }
  // On the bridge, eth0 of their own namespaces has carried the link's first packets (IPv6
  // neighbour discovery, ARP): the interfaces were read.
  expect(rows.some((r) => r.networkRxBytes + r.networkTxBytes > 0)).toBe(true);
  // A name filters; the alias is the same command.
  const one = await conductor(['stats', 'idle', '--no-stream', '-o', 'json', '-n', NS]);
  expect((JSON.parse(one.stdout) as TopRow[]).map((r) => r.name)).toEqual(['idle']);
  const missing = await conductor(['top', 'nope', '--no-stream', '-n', NS]);
  expect(missing).toMatchObject({
    code: 1,
    stderr: 'error: containers.conductor.dev "nope" not found\n',
  });
}, 30_000);

it('top --no-stream prints the docker stats table', async () => {
  const out = await conductor(['top', '--no-stream', '-n', NS]);
  expect(out.code).toBe(0);
  const lines = out.stdout.split('\n');
  expect(lines[0]).toMatch(/^NAME\s+CPU %\s+MEM USAGE \/ LIMIT\s+MEM %\s+NET I\/O\s+PIDS$/);
  expect(lines[1]).toMatch(
    /^busy\s+\d+\.\d\d%\s+[\d.]+(B|KiB|MiB) \/ 32MiB\s+\d+\.\d\d%\s+[\d.]+k?B \/ [\d.]+k?B\s+\d+ \/ 16$/,
  );
  expect(lines[2]).toMatch(/^idle\s+\d+\.\d\d%\s+[\d.]+(B|KiB|MiB) \/ [\d.]+GiB\s+/);
  const all = await conductor(['top', '--no-stream', '-A']);
  expect(all.stdout).toMatch(new RegExp(`^NAMESPACE\\s+NAME\\s+CPU %`));
  expect(all.stdout).toMatch(new RegExp(`\\n${NS}\\s+busy\\s+`));
}, 30_000);

it('top at a terminal redraws in place every second until Ctrl-C', async () => {
  let stdout = '';
  const signals = new EventEmitter();
  const done = main(['top', '-n', NS, '--state-dir', h.stateDir], {
    stdout: (t) => void (stdout += t),
    stderr: () => undefined,
    cwd: REPO_ROOT,
    now: () => new Date(),
    signals,
    isTTY: true,
  });
  const frames = (): number => stdout.split('\x1b[2J\x1b[H').length - 1;
  for (let i = 0; i < 100 && frames() < 2; i++) await new Promise((r) => setTimeout(r, 50));
  signals.emit('SIGINT');
  expect(await done).toBe(130);
  expect(frames()).toBeGreaterThanOrEqual(2);
  expect(stdout.split('\x1b[2J\x1b[H').at(-1)).toMatch(/^NAME\s+CPU %[^\n]*\nbusy\s/);
}, 30_000);

it('get events lists Created and Started of each container; /metrics counts them', async () => {
  const out = await conductor(['get', 'events', '-n', NS]);
  expect(out.code).toBe(0);
  expect(out.stdout).toMatch(/^LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE\n/);
  for (const name of ['busy', 'idle']) {
    expect(out.stdout).toMatch(
      new RegExp(
        `\\n\\S+\\s+Normal\\s+Created\\s+container/${name}\\s+Created container: ${name}\\n`,
      ),
    );
    expect(out.stdout).toMatch(
      new RegExp(
        `\\n\\S+\\s+Normal\\s+Started\\s+container/${name}\\s+Started container ${name}\\n`,
      ),
    );
  }
  expect(out.stdout).toMatch(/\s+Normal\s+Built\s+image\/busybox\s+image busybox built: sha256:/);
  const forIdle = await conductor(['get', 'ev', '-n', NS, '--for', 'container/idle']);
  expect(forIdle.stdout).not.toContain('container/busy');

  const addr = h.ctl?.metricsAddress;
  const metrics = await (await fetch(`http://${addr?.host}:${addr?.port}/metrics`)).text();
  const started =
    /conductor_events_total\{kind="Container",type="Normal",reason="Started"\} (\d+)/.exec(metrics);
  expect(Number(started?.[1])).toBeGreaterThanOrEqual(2);
}, 30_000);

it('get events -w prints the Killing of a container deleted while it watches', async () => {
  const child = spawn(
    process.execPath,
    ['bin/conductor.js', 'get', 'events', '-w', '-n', NS, '--state-dir', h.stateDir],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const until = async (pattern: RegExp, ms: number): Promise<void> => {
    const end = Date.now() + ms;
    while (!pattern.test(stdout) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    expect(stdout).toMatch(pattern);
  };
  try {
    await until(/Started container idle\n/, 10_000);
    const listed = stdout;
    await h.remove('idle.json');
    await until(/Normal\s+Killing\s+container\/idle\s+Stopping container idle\n/, 15_000);
    // Only what is new was printed after the listing.
    expect(stdout.slice(listed.length)).not.toContain('Started container');
  } finally {
    child.kill('SIGINT');
  }
  expect(await exited).toBe(130);
  await h.waitFor('Container', 'idle', (o) => o === undefined);
}, 40_000);
