/**
 * Programming one endpoint change into the service table (runtime-core/src/network/
 * service-proxy.ts): the time from ServiceProxy.upsert() to its transaction applied, and the
 * transaction's size, with 100 and with 1,000 services of 10 endpoints each synced — it should
 * not grow with the table. The peer, measured in the same run on the same table: rewriting the
 * whole table in one `nft -f` (flush table + every rule and element), what a proxy that renders
 * everything on each change would do. Changes and rewrites alternate, so drift hits both. A
 * third figure, the floor, is a transaction nft needs no cache for (`add table`) sent the same
 * way: what every change pays whatever the table holds.
 *
 * Everything runs in a private network namespace made for the run (no links: rules only).
 *
 *   node build/bench/bench/service-rules.js [--services 100,1000] [--endpoints 10]
 *                                           [--changes 40] [--rewrites 5]
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

import {
  baseRules,
  renderService,
  resolveOptions,
  ServiceProxy,
  type ServiceProxyOptions,
  type ServiceRule,
} from '../runtime-core/src/network/service-proxy.js';
import { firstLine, median, parseFlags, quantile, table, which } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const counts = (flags.get('services') ?? '100,1000').split(',').map(Number);
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

/** Service i: 10.96.x.y:80 → `endpoints` container addresses on 8080. */
function service(i: number, generation = 0): ServiceRule {
  const at = (n: number): string => `10.${64 + (n >>> 16)}.${(n >>> 8) & 255}.${n & 255}`;
  return {
    key: `bench/svc-${i}`,
    clusterIP: `10.96.${i >>> 8}.${i & 255}`,
    ports: [
      {
        protocol: 'TCP',
        port: 80,
        endpoints: Array.from({ length: endpoints }, (_, j) => ({
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

/** The whole table as one transaction: flush it, then every rule and element again. */
function fullRewrite(services: ServiceRule[]): string {
  const t = OPTS.table;
  const lines = [`flush table ip ${t}`];
  for (const [chain, rules] of baseRules(resolveOptions(OPTS)))
    for (const r of rules) lines.push(`add rule ip ${t} ${chain} ${r}`);
  for (const s of services) {
    const r = renderService(s);
    for (const c of r.chains) {
      lines.push(`add chain ip ${t} ${c.name}`);
      for (const rule of c.rules) lines.push(`add rule ip ${t} ${c.name} ${rule}`);
    }
    for (const e of r.elements)
      lines.push(
        `add element ip ${t} ${e.map} { ${e.key} comment "${e.comment ?? ''}" : ${e.value} }`,
      );
  }
  return `${lines.join('\n')}\n`;
}

interface Result {
  services: number;
  syncMs: number;
  change: number[];
  changeBytes: number;
  rewrite: number[];
  rewriteBytes: number;
  /** A transaction that needs no cache (`add table`), the same way: the fixed cost of nft. */
  floor: number[];
}

async function measure(n: number): Promise<Result> {
  const proxy = new ServiceProxy(OPTS);
  const all = Array.from({ length: n }, (_, i) => service(i));
  const t0 = performance.now();
  await proxy.sync(all);
  const syncMs = performance.now() - t0;
  const generation = new Map<number, number>();
  const change: number[] = [];
  const rewrite: number[] = [];
  const floor: number[] = [];
  let changeBytes = 0;
  let rewriteBytes = 0;
  for (let k = 0; k < changes; k++) {
    const i = (k * 7919) % n; // spread over the table
    const g = (generation.get(i) ?? 0) + 1;
    generation.set(i, g);
    all[i] = service(i, g);
    const started = performance.now();
    await proxy.upsert(service(i, g));
    change.push(performance.now() - started);
    changeBytes = Math.max(changeBytes, proxy.lastTransaction?.length ?? 0);
    floor.push(nft(`add table ip ${OPTS.table}\n`));
    // Every few changes, the peer: the whole table rewritten with the same change in it.
    if (k % Math.max(1, Math.floor(changes / rewrites)) === 0 && rewrite.length < rewrites) {
      const text = fullRewrite(all);
      rewriteBytes = text.length;
      rewrite.push(nft(text));
    }
  }
  await proxy.destroy();
  return { services: n, syncMs, change, changeBytes, rewrite, rewriteBytes, floor };
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
          'change median ms',
          'p95 ms',
          'bytes',
          'nft floor ms',
          'rewrite median ms',
          'bytes',
          'rewrite / change',
        ],
      ];
      for (const r of results)
        rows.push([
          String(r.services),
          ms(r.syncMs),
          ms(median(r.change)),
          ms(quantile(r.change, 0.95)),
          String(r.changeBytes),
          ms(median(r.floor)),
          ms(median(r.rewrite)),
          String(r.rewriteBytes),
          `${(median(r.rewrite) / median(r.change)).toFixed(1)}x`,
        ]);
      console.log(table(rows));
      const worst = Math.max(...results.map((r) => quantile(r.change, 0.95)));
      console.log(
        `target: ≤ ${TARGET_MS} ms per change: ${worst <= TARGET_MS ? 'met' : 'NOT met'} ` +
          `(worst p95 ${ms(worst)} ms). A change includes spawning nsenter and nft; the floor ` +
          `is an \`add table\` through the same path, so change - floor is what the table's ` +
          `size costs (nft 1.0.6 dumps every chain of the table before an \`add rule\`, and the ` +
          `kernel re-validates the jump graph on commit).`,
      );
    },
    (err: unknown) => {
      console.error(`service-rules: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = 1;
    },
  );
}

main();
