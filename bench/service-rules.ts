/**
 * Programming one endpoint change into the service table (runtime-core/src/network/
 * service-proxy.ts): the time from ServiceProxy.upsert() to its transaction applied (nft has
 * exited), and the transaction's size, with 100, 1,000 and 3,000 services of 10 endpoints each
 * synced — neither should grow with the table. Two kinds of change alternate: an endpoint moved
 * (a pod replaced elsewhere: same count) and the endpoint count changed (one added, then removed
 * again), which also re-points the service's dispatch element to another pick chain. The peer,
 * measured in the same run on the same table: rewriting the whole table in one `nft -f` (flush
 * table + every rule and element), what a proxy that renders everything on each change would
 * do. Changes and rewrites alternate, so drift hits both. Two floors, sent the same way: a
 * transaction nft needs no cache for and the kernel has nothing to do (`add table`), and one
 * that adds and deletes one element of a tiny table of its own (what any change that deletes
 * something pays: nft waits on closing its netlink socket for the kernel to free the deleted
 * objects after an RCU grace period; the change is live before that).
 *
 * Everything runs in a private network namespace made for the run (no links: rules only).
 *
 *   node build/bench/bench/service-rules.js [--services 100,1000,3000] [--endpoints 10]
 *                                           [--changes 40] [--rewrites 5]
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

import {
  emptyLiveTable,
  HAIRPIN_SET,
  MAP,
  renderService,
  resolveOptions,
  ServiceProxy,
  syncTransaction,
  type ServiceProxyOptions,
  type ServiceRule,
} from '../runtime-core/src/network/service-proxy.js';
import { firstLine, median, parseFlags, quantile, table, which } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const counts = (flags.get('services') ?? '100,1000,3000').split(',').map(Number);
const endpoints = Number(flags.get('endpoints') ?? '10');
const changes = Number(flags.get('changes') ?? '40');
const rewrites = Number(flags.get('rewrites') ?? '5');
for (const [name, v] of [
  ['endpoints', endpoints],
  ['changes', changes],
  ['rewrites', rewrites],
  ...counts.map((c) => ['services', c] as const),
] as const)
  if (!Number.isInteger(v) || v < 1 || v > 60000)
    throw new Error(`--${name} must be a positive integer`);

const TARGET_MS = 50;
const NETNS = `cndsvcb-${randomBytes(4).toString('hex')}`;
const OPTS: ServiceProxyOptions = {
  table: 'conductor',
  containerCidr: '10.64.0.0/12',
  serviceCidr: '10.96.0.0/12',
  bridge: 'conductor0',
  netns: NETNS,
  masqueradeIntraSubnet: false,
};

/**
 * Service i: 10.96.x.y:80 → `endpoints` container addresses on 8080 (one more with `extra`).
 */
function service(i: number, generation = 0, extra = false): ServiceRule {
  const at = (n: number): string => `10.${64 + (n >>> 16)}.${(n >>> 8) & 255}.${n & 255}`;
  return {
    key: `bench/svc-${i}`,
    clusterIP: `10.96.${i >>> 8}.${i & 255}`,
    ports: [
      {
        protocol: 'TCP',
        port: 80,
        endpoints: Array.from({ length: endpoints + (extra ? 1 : 0) }, (_, j) => ({
          // One endpoint moves with each generation, as a pod replaced elsewhere would.
          ip: at(i * 16 + j + 1 + (j === 0 ? generation * 65536 * 2 : 0)),
          port: 8080,
        })),
      },
    ],
  };
}

function nft(stdin: string): number {
  const started = performance.now();
  const r = spawnSync('nsenter', [`--net=/run/netns/${NETNS}`, 'nft', '-f', '-'], {
    input: stdin,
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  if (r.status !== 0)
    throw new Error(`nft -f: ${firstLine(`${r.stderr}${String(r.error ?? '')}`)}`);
  return performance.now() - started;
}

/** The whole table as one transaction: flush it and its maps, then every rule and element. */
function fullRewrite(services: ServiceRule[]): string {
  const lines = [
    `flush table ip ${OPTS.table}`, // rules only: the maps' elements too
    ...Object.values(MAP).map((m) => `flush map ip ${OPTS.table} ${m}`),
    `flush set ip ${OPTS.table} ${HAIRPIN_SET}`,
    ...syncTransaction(
      resolveOptions(OPTS),
      emptyLiveTable(),
      services.map((s) => renderService(s)),
    ),
  ];
  return `${lines.join('\n')}\n`;
}

interface Result {
  services: number;
  syncMs: number;
  /** An endpoint replaced by another. */
  move: number[];
  moveBytes: number;
  /** An endpoint added or removed. */
  scale: number[];
  scaleBytes: number;
  rewrite: number[];
  rewriteBytes: number;
  /** A transaction that needs no cache (`add table`), the same way: the fixed cost of nft. */
  floor: number[];
  /** An element deleted and added again in a table of its own: what a deletion costs. */
  floorDelete: number[];
}

async function measure(n: number): Promise<Result> {
  const proxy = new ServiceProxy(OPTS);
  const all = Array.from({ length: n }, (_, i) => service(i));
  const t0 = performance.now();
  await proxy.sync(all);
  const syncMs = performance.now() - t0;
  const generation = new Map<number, number>();
  const extra = new Set<number>();
  const r: Result = {
    services: n,
    syncMs,
    move: [],
    moveBytes: 0,
    scale: [],
    scaleBytes: 0,
    rewrite: [],
    rewriteBytes: 0,
    floor: [],
    floorDelete: [],
  };
  const side = `floor${randomBytes(3).toString('hex')}`;
  nft(`add table ip ${side}\nadd set ip ${side} s { type ipv4_addr; }\n`);
  for (let k = 0; k < changes; k++) {
    const i = (k * 7919) % n; // spread over the table
    const scaling = k % 2 === 1;
    const g = (generation.get(i) ?? 0) + (scaling ? 0 : 1);
    generation.set(i, g);
    if (scaling && !extra.delete(i)) extra.add(i);
    all[i] = service(i, g, extra.has(i));
    const started = performance.now();
    await proxy.upsert(all[i]);
    const ms = performance.now() - started;
    const bytes = proxy.lastTransaction?.length ?? 0;
    if (scaling) {
      r.scale.push(ms);
      r.scaleBytes = Math.max(r.scaleBytes, bytes);
    } else {
      r.move.push(ms);
      r.moveBytes = Math.max(r.moveBytes, bytes);
    }
    r.floor.push(nft(`add table ip ${OPTS.table}\n`));
    nft(`add element ip ${side} s { 10.0.0.1 }\n`);
    r.floorDelete.push(nft(`delete element ip ${side} s { 10.0.0.1 }\n`));
    // Every few changes, the peer: the whole table rewritten with the same change in it.
    if (k % Math.max(1, Math.floor(changes / rewrites)) === 0 && r.rewrite.length < rewrites) {
      const text = fullRewrite(all);
      r.rewriteBytes = text.length;
      r.rewrite.push(nft(text));
    }
  }
  nft(`delete table ip ${side}\n`);
  await proxy.destroy();
  return r;
}

function main(): void {
  if (process.getuid?.() !== 0) throw new Error('service-rules: run as root (network namespaces)');
  for (const cmd of ['nft', 'nsenter', 'ip'])
    if (!which(cmd)) throw new Error(`service-rules: ${cmd} is not installed`);
  const made = spawnSync('ip', ['netns', 'add', NETNS], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`ip netns add: ${firstLine(made.stderr)}`);
  const results: Result[] = [];
  const done = (async () => {
    try {
      for (const n of counts) results.push(await measure(n));
    } finally {
      spawnSync('ip', ['netns', 'del', NETNS]);
    }
  })();
  done.then(
    () => {
      const ms = (v: number): string => v.toFixed(1);
      console.log(
        `service table: one endpoint change (upsert → applied) vs rewriting the whole table in ` +
          `one nft -f; ${endpoints} endpoints per service, ${changes} changes, ${rewrites} rewrites`,
      );
      const rows = [
        [
          'services',
          'sync ms',
          'move median ms',
          'p95',
          'bytes',
          'scale median ms',
          'p95',
          'bytes',
          'floor ms',
          'floor+delete ms',
          'rewrite median ms',
          'bytes',
          'rewrite / change',
        ],
      ];
      for (const r of results)
        rows.push([
          String(r.services),
          ms(r.syncMs),
          ms(median(r.move)),
          ms(quantile(r.move, 0.95)),
          String(r.moveBytes),
          ms(median(r.scale)),
          ms(quantile(r.scale, 0.95)),
          String(r.scaleBytes),
          ms(median(r.floor)),
          ms(median(r.floorDelete)),
          ms(median(r.rewrite)),
          String(r.rewriteBytes),
          `${(median(r.rewrite) / median([...r.move, ...r.scale])).toFixed(1)}x`,
        ]);
      console.log(table(rows));
      const worst = Math.max(
        ...results.flatMap((r) => [quantile(r.move, 0.95), quantile(r.scale, 0.95)]),
      );
      const first = results[0];
      const lastR = results[results.length - 1];
      const growth =
        first && lastR && first !== lastR
          ? ` From ${first.services} to ${lastR.services} services the move median goes ` +
            `${ms(median(first.move))} → ${ms(median(lastR.move))} ms, the scale median ` +
            `${ms(median(first.scale))} → ${ms(median(lastR.scale))} ms.`
          : '';
      console.log(
        `target: ≤ ${TARGET_MS} ms per change, flat in the number of services: ` +
          `${worst <= TARGET_MS ? 'met' : 'NOT met'} (worst p95 ${ms(worst)} ms).${growth} ` +
          `A change includes spawning nsenter and nft; "floor" is an \`add table\` through the ` +
          `same path, "floor+delete" one element deleted from a table of its own (nft waits ` +
          `for an RCU grace period on exit after any deletion): change - floor+delete is what ` +
          `the table costs.`,
      );
    },
    (err: unknown) => {
      console.error(`service-rules: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = 1;
    },
  );
}

main();
