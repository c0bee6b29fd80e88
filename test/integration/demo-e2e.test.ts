/**
 * The demo end to end, as README tells a newcomer to run it: `hack/demo.sh` builds the two
 * Images (debootstrap and apt-get inside the build: about a minute cold), starts the
 * controller, and prints two visits of web on localhost:3000 whose counts go up through the
 * counter Service; the page keeps counting; `hack/demo.sh down` leaves nothing — no process,
 * no directory, and the host's links, routes, nftables tables and forwarding as they were.
 *
 * The demo's directory is a temporary one (CONDUCTOR_DEMO_DIR), so a demo a person runs on the
 * same machine is not touched; its installation name (`demo`) and port 3000 are the demo's
 * own, so the test says so if they are taken.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from '@jest/globals';

import { REPO_ROOT } from '../fixtures/controller.js';
import { httpGet, networkSnapshot, tcpOutcome, type NetworkSnapshot } from '../fixtures/network.js';
import { FIXTURE_ROOT } from '../fixtures/rootfs.js';

const DIR = join(FIXTURE_ROOT, `demo-e2e-${process.pid}`);
let netBefore: NetworkSnapshot;

function demo(...args: string[]): { code: number | null; out: string } {
  const r = spawnSync(join(REPO_ROOT, 'hack', 'demo.sh'), args, {
    cwd: REPO_ROOT,
    env: { ...process.env, CONDUCTOR_DEMO_DIR: DIR },
    encoding: 'utf8',
    timeout: 600_000,
  });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

beforeAll(async () => {
  netBefore = networkSnapshot();
  // The demo's port and installation: a clear failure rather than a confusing one.
  expect(await tcpOutcome('127.0.0.1', 3000, 1000)).not.toBe('connected');
  expect(existsSync('/run/conductor/installations/demo.json')).toBe(false);
});

afterAll(() => {
  // Whatever happened above: the demo's own clean-up, then the host as it was.
  if (existsSync(DIR)) demo('down');
  expect(existsSync(DIR)).toBe(false);
  expect(networkSnapshot()).toEqual(netBefore);
}, 120_000);

it('hack/demo.sh serves an increasing count on localhost:3000; hack/demo.sh down removes it all', async () => {
  const up = demo();
  expect({ code: up.code, tail: up.code === 0 ? '' : up.out.slice(-3000) }).toEqual({
    code: 0,
    tail: '',
  });
  // Build progress on the terminal, then the two visits it printed.
  expect(up.out).toContain('[counter] step 1/3: run apt-get update');
  const counts = [...up.out.matchAll(/\{"count":\s*(\d+)\}/g)].map((m) => Number(m[1]));
  expect(counts).toHaveLength(2);
  expect(counts[1]).toBe((counts[0] ?? 0) + 1);
  // It is left running, and the page keeps counting.
  const page = await httpGet('127.0.0.1', 3000, '/');
  expect(page.status).toBe(200);
  expect(page.body).toContain(`<strong id="count">${(counts[1] ?? 0) + 1}</strong>`);
  expect(up.out).toContain('hack/demo.sh down');

  // A second run finds every image cached and the controller running.
  const again = demo();
  expect(again.code).toBe(0);
  expect(again.out).toContain("the demo's controller is running");
  expect(again.out).toMatch(/counter built sha256:[0-9a-f]+ .*0 step\(s\) run, 3 cached/);
  expect(again.out).toMatch(/web built sha256:[0-9a-f]+ .*0 step\(s\) run, 2 cached/);

  const down = demo('down');
  expect(down.code).toBe(0);
  expect(existsSync(DIR)).toBe(false);
  expect(await tcpOutcome('127.0.0.1', 3000, 1000)).not.toBe('connected');
}, 600_000);
