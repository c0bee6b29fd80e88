/**
 * Service virtual IPs in an nftables table of Conductor's own, built the way kube-proxy's
 * nftables mode builds its `kube-proxy` table (kubernetes pkg/proxy/nftables/proxier.go):
 *
 * - `service-ips`, a verdict map keyed `ipv4_addr . inet_proto . inet_service`, sends a
 *   ClusterIP's traffic (`goto`) to one chain per service port; `service-hostports`, keyed
 *   `inet_proto . inet_service`, does the same for a Service's hostPort on every local address
 *   (`fib daddr type local`), from outside (prerouting) and from the host itself, 127.0.0.1
 *   included (output).
 * - The service-port chain picks an endpoint with `numgen random mod N vmap { 0 : goto ep-A,
 *   ... }`; each endpoint chain marks a backend's traffic to itself (hairpin) for masquerading and
 *   DNATs to the endpoint.
 * - A service port with no ready endpoints is in `no-endpoint-services` (or
 *   `no-endpoint-hostports`) instead, consulted by the filter chains for new connections: the
 *   client gets a TCP reset or ICMP port unreachable at once, not a black hole.
 *
 * Every change is one `nft -f -` transaction, atomic in the kernel, that touches only the
 * changed service's chains and map elements, so its size does not grow with the number of
 * services. Chain names come from the service key, protocol and port (and the endpoint), with a
 * hash in front as kube-proxy does, so they are unique and stable across restarts; the last rule
 * of each service chain carries a comment with a hash of the chain's rules, which is how sync()
 * tells from the live table (`nft -j list table`) which chains a previous process left as they
 * should be, which to rewrite and which are stale.
 *
 * The base chains also hold what the node needs around the service addresses: outbound
 * masquerading of the container range (the CNI bridge plugin's ipMasq stays off, so the host's
 * iptables nat table is never touched), masquerading of host 127.0.0.1 → container traffic
 * (with route_localnet on the bridge, which the proxy sets when a hostPort exists), and the
 * CVE-2020-8558 guard that route_localnet calls for: packets to 127.0.0.0/8 that did not come
 * from the host itself are dropped unless conntrack already knows them, as kube-proxy's fix does.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';

import { silentLogger, type Logger } from '../logger.js';
import { cidrContains, cidrsOverlap, parseCidr, parseIPv4, type Cidr } from './ipv4.js';

/** One ready endpoint of a service port. */
export interface ServiceEndpointRule {
  ip: string;
  port: number;
}

export interface ServicePortRule {
  name?: string;
  protocol: 'TCP' | 'UDP';
  /** The port on the clusterIP. */
  port: number;
  /** Published on the node's addresses (0.0.0.0 and 127.0.0.1). */
  hostPort?: number;
  /** Ready endpoints only; empty: connections are rejected. */
  endpoints: ServiceEndpointRule[];
}

export interface ServiceRule {
  /** `<namespace>/<name>`. */
  key: string;
  clusterIP: string;
  ports: ServicePortRule[];
}

/** What running one command gave; `code` null when it was killed. */
export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `argv` with `stdin`; the default spawns it. Tests inject a fake. */
export type CommandRunner = (argv: string[], stdin?: string) => Promise<CommandResult>;

export interface ServiceProxyOptions {
  /** The nft table's name, e.g. "conductor". */
  table: string;
  /** The containers' range, e.g. "10.77.0.0/16". */
  containerCidr: string;
  /** The range clusterIPs come from, e.g. "10.78.0.0/16". */
  serviceCidr: string;
  /** The containers' bridge, e.g. "conductor0" (route_localnet is set on it). */
  bridge: string;
  /** Masquerade container traffic leaving the container range (default true). */
  masqueradeOutbound?: boolean;
  /**
   * Masquerade every DNAT'ed connection from the container range to the container range, not
   * only a backend reaching itself. Needed when bridged traffic does not pass netfilter
   * (br_netfilter absent or bridge-nf-call-iptables=0): a backend would otherwise answer a
   * neighbour on the bridge directly, past the conntrack entry that undoes the DNAT. Default:
   * detected at sync() from /proc/sys/net/bridge/bridge-nf-call-iptables.
   */
  masqueradeIntraSubnet?: boolean;
  /** The packet-mark bit meaning "masquerade this" (default 0x4000, kube-proxy's). */
  masqueradeMark?: number;
  /** A named netns (/run/netns/NAME): every nft and sysctl runs in it (tests, benchmarks). */
  netns?: string;
  /** The nft binary (default "nft"). */
  nft?: string;
  logger?: Logger;
  /** How commands are run (default: spawned); for tests. */
  runner?: CommandRunner;
}

/** A failed validation or nft transaction; names the service, and carries nft's stderr. */
export class ServiceProxyError extends Error {
  constructor(
    msg: string,
    /** The service key the error is about, when there is one. */
    readonly service?: string,
    /** nft's stderr, when nft failed. */
    readonly stderr?: string,
  ) {
    super(msg);
    this.name = 'ServiceProxyError';
  }
}

// ---------------------------------------------------------------------------------------------
// Names

/** Verdict maps and chains of the table (kube-proxy's names where it has one). */
export const MAP = {
  serviceIPs: 'service-ips',
  serviceHostPorts: 'service-hostports',
  noEndpointServices: 'no-endpoint-services',
  noEndpointHostPorts: 'no-endpoint-hostports',
} as const;

const ADDR_KEY = 'ipv4_addr . inet_proto . inet_service';
const PORT_KEY = 'inet_proto . inet_service';

interface MapSpec {
  name: string;
  key: string;
  comment: string;
}

const MAPS: readonly MapSpec[] = [
  { name: MAP.serviceIPs, key: ADDR_KEY, comment: 'ClusterIP traffic' },
  { name: MAP.serviceHostPorts, key: PORT_KEY, comment: 'Service hostPort traffic' },
  {
    name: MAP.noEndpointServices,
    key: ADDR_KEY,
    comment: 'ClusterIP ports with no endpoints: rejected',
  },
  {
    name: MAP.noEndpointHostPorts,
    key: PORT_KEY,
    comment: 'Service hostPorts with no endpoints: rejected',
  },
];

interface BaseChainSpec {
  name: string;
  type: 'filter' | 'nat';
  hook: 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';
  /** Numeric: nft 1.0.6 refuses `priority dstnat` on an output nat chain. */
  prio: number;
}

/**
 * The base chains. Rejecting happens in prerouting and output, before routing: kube-proxy does
 * it in input/forward/output, but a packet from a container to a service address is forwarded
 * out of the bridge it came in on, and ip_forward sends the container an ICMP redirect before
 * the forward hook runs, which spends the kernel's per-host ICMP allowance: the port-unreachable
 * that follows is then suppressed and a UDP client waits instead of being refused. The
 * `*-check` chains run before DNAT (-110, as kube-proxy's) and see the address the client asked
 * for; the `*-post-dnat` ones after it (-90), to refuse what is still addressed to the service
 * range (a port no Service has) rather than let it leave by the default route.
 */
const BASE_CHAINS: readonly BaseChainSpec[] = [
  { name: 'filter-prerouting', type: 'filter', hook: 'prerouting', prio: -110 },
  { name: 'filter-input', type: 'filter', hook: 'input', prio: -110 },
  { name: 'filter-output', type: 'filter', hook: 'output', prio: -110 },
  { name: 'filter-prerouting-post-dnat', type: 'filter', hook: 'prerouting', prio: -90 },
  { name: 'filter-output-post-dnat', type: 'filter', hook: 'output', prio: -90 },
  { name: 'nat-prerouting', type: 'nat', hook: 'prerouting', prio: -100 },
  { name: 'nat-output', type: 'nat', hook: 'output', prio: -100 },
  { name: 'nat-postrouting', type: 'nat', hook: 'postrouting', prio: 100 },
];

/** Regular chains the base chains jump to; never service-specific. */
const HELPER_CHAINS = [
  'endpoints-check',
  'reject-chain',
  'services',
  'mark-for-masquerade',
  'masquerading',
] as const;

const SERVICE_CHAIN_PREFIX = 'svc-';
const ENDPOINT_CHAIN_PREFIX = 'ep-';
/** The kernel's NFT_CHAIN_MAXNAMELEN is 256 with the NUL; stay well inside it. */
const CHAIN_NAME_MAX = 200;

function hash8(text: string): string {
  // base32 of sha256 like kube-proxy's hashAndTruncate: [A-Z2-7], fine in an nft identifier.
  const bytes = createHash('sha256').update(text).digest();
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5 && out.length < 8) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (out.length === 8) break;
  }
  return out;
}

function hashedName(prefix: string, readable: string): string {
  const name = `${prefix}${hash8(readable)}-${readable}`;
  return name.length > CHAIN_NAME_MAX ? `${name.slice(0, CHAIN_NAME_MAX - 3)}...` : name;
}

/** `svc-HASH-<namespace>/<name>/<protocol>/<port>`: the chain choosing an endpoint. */
export function serviceChainName(key: string, protocol: 'TCP' | 'UDP', port: number): string {
  return hashedName(SERVICE_CHAIN_PREFIX, `${key}/${protocol.toLowerCase()}/${port}`);
}

/** `ep-HASH-<namespace>/<name>/<protocol>/<port>__<ip>/<port>`: one endpoint's DNAT. */
export function endpointChainName(
  key: string,
  protocol: 'TCP' | 'UDP',
  port: number,
  ep: ServiceEndpointRule,
): string {
  return hashedName(
    ENDPOINT_CHAIN_PREFIX,
    `${key}/${protocol.toLowerCase()}/${port}__${ep.ip}/${ep.port}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Validation

const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const TABLE_NAME = /^[a-zA-Z][a-zA-Z0-9_-]{0,31}$/;
const IFNAME = /^[a-zA-Z0-9_.-]{1,15}$/;
const NETNS_NAME = /^[a-zA-Z0-9_][a-zA-Z0-9_.-]*$/;

const isPort = (n: unknown): n is number =>
  typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;

/** Options checked and defaulted. */
export interface ResolvedOptions {
  table: string;
  containerCidr: Cidr;
  serviceCidr: Cidr;
  bridge: string;
  masqueradeOutbound: boolean;
  masqueradeIntraSubnet: boolean;
  mark: string;
}

/** Checks the options; errors name the field. */
export function resolveOptions(
  opts: ServiceProxyOptions,
  masqueradeIntraSubnet = opts.masqueradeIntraSubnet ?? false,
): ResolvedOptions {
  if (!TABLE_NAME.test(opts.table))
    throw new ServiceProxyError(
      `ServiceProxy: table: ${JSON.stringify(opts.table)} must be a letter then letters, digits, _ or - (at most 32)`,
    );
  const containerCidr = parseCidr(opts.containerCidr, 'ServiceProxy: containerCidr');
  const serviceCidr = parseCidr(opts.serviceCidr, 'ServiceProxy: serviceCidr');
  if (cidrsOverlap(containerCidr, serviceCidr))
    throw new ServiceProxyError(
      `ServiceProxy: serviceCidr ${serviceCidr.text} overlaps containerCidr ${containerCidr.text}`,
    );
  if (!IFNAME.test(opts.bridge) || opts.bridge === '.' || opts.bridge === '..')
    throw new ServiceProxyError(
      `ServiceProxy: bridge: ${JSON.stringify(opts.bridge)} is not an interface name`,
    );
  if (opts.netns !== undefined && !NETNS_NAME.test(opts.netns))
    throw new ServiceProxyError(
      `ServiceProxy: netns: ${JSON.stringify(opts.netns)} is not a netns name`,
    );
  const markBit = opts.masqueradeMark ?? 0x4000;
  if (
    !Number.isInteger(markBit) ||
    markBit <= 0 ||
    markBit > 0xffffffff ||
    (markBit & (markBit - 1)) !== 0
  )
    throw new ServiceProxyError(`ServiceProxy: masqueradeMark: must be a single bit, like 0x4000`);
  return {
    table: opts.table,
    containerCidr,
    serviceCidr,
    bridge: opts.bridge,
    masqueradeOutbound: opts.masqueradeOutbound ?? true,
    masqueradeIntraSubnet,
    mark: `0x${markBit.toString(16).padStart(8, '0')}`,
  };
}

/**
 * Checks one service: the key, an IPv4 clusterIP inside the service range, ports and hostPorts
 * 1-65535 and unique per protocol, IPv4 endpoints. Errors name the service and the field.
 */
export function validateService(rule: ServiceRule, serviceCidr: Cidr): void {
  const key = typeof rule.key === 'string' ? rule.key : JSON.stringify(rule.key);
  const fail = (field: string, msg: string): never => {
    throw new ServiceProxyError(`service ${key}: ${field}: ${msg}`, key);
  };
  const parts = typeof rule.key === 'string' ? rule.key.split('/') : [];
  if (parts.length !== 2 || !parts.every((p) => LABEL.test(p)))
    fail('key', 'must be <namespace>/<name>, each a DNS label (a-z, 0-9, -; at most 63)');
  const ip = parseIPv4(String(rule.clusterIP));
  if (ip === undefined)
    fail('clusterIP', `${JSON.stringify(rule.clusterIP)} is not an IPv4 address`);
  else if (!cidrContains(serviceCidr, ip))
    fail('clusterIP', `${rule.clusterIP} is outside the service range ${serviceCidr.text}`);
  if (!Array.isArray(rule.ports)) fail('ports', 'must be a list');
  const seenPorts = new Map<string, number>();
  const seenHostPorts = new Map<string, number>();
  rule.ports.forEach((p, i) => {
    const at = `ports[${i}]`;
    if (p.name !== undefined && p.name !== '' && !LABEL.test(p.name))
      fail(`${at}.name`, `${JSON.stringify(p.name)} must be a DNS label (a-z, 0-9, -)`);
    if (p.protocol !== 'TCP' && p.protocol !== 'UDP')
      fail(`${at}.protocol`, `${JSON.stringify(p.protocol)} must be TCP or UDP`);
    if (!isPort(p.port)) fail(`${at}.port`, `${JSON.stringify(p.port)} must be 1-65535`);
    const pk = `${p.protocol}/${p.port}`;
    const dup = seenPorts.get(pk);
    if (dup !== undefined) fail(`${at}.port`, `${pk} is already ports[${dup}]`);
    seenPorts.set(pk, i);
    if (p.hostPort !== undefined) {
      if (!isPort(p.hostPort))
        fail(`${at}.hostPort`, `${JSON.stringify(p.hostPort)} must be 1-65535`);
      const hk = `${p.protocol}/${p.hostPort}`;
      const hdup = seenHostPorts.get(hk);
      if (hdup !== undefined) fail(`${at}.hostPort`, `${hk} is already ports[${hdup}].hostPort`);
      seenHostPorts.set(hk, i);
    }
    if (!Array.isArray(p.endpoints)) fail(`${at}.endpoints`, 'must be a list');
    const seenEps = new Set<string>();
    p.endpoints.forEach((ep, j) => {
      const eat = `${at}.endpoints[${j}]`;
      if (parseIPv4(String(ep.ip)) === undefined)
        fail(`${eat}.ip`, `${JSON.stringify(ep.ip)} is not an IPv4 address`);
      if (!isPort(ep.port)) fail(`${eat}.port`, `${JSON.stringify(ep.port)} must be 1-65535`);
      const ek = `${ep.ip}:${ep.port}`;
      if (seenEps.has(ek)) fail(eat, `${ek} is listed twice`);
      seenEps.add(ek);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Rendering: what the table holds for one service

/** One verdict-map element: `map { key comment "..." : value }`. */
export interface MapElement {
  map: string;
  /** nft text of the key, e.g. `10.78.0.10 . tcp . 80` or `tcp . 8080`. */
  key: string;
  /** nft text of the verdict, e.g. `goto svc-...`. */
  value: string;
  comment?: string;
}

/** One regular chain: its rules, and the hash of them that its last rule's comment carries. */
export interface RenderedChain {
  name: string;
  rules: string[];
  hash: string;
}

/** Everything the table holds for one service. */
export interface RenderedService {
  key: string;
  /** Endpoint chains first: service chains refer to them. */
  chains: RenderedChain[];
  elements: MapElement[];
}

const elementId = (e: MapElement): string => `${e.map} ${e.key}`;
const sameElement = (a: MapElement, b: MapElement): boolean =>
  a.value === b.value && (a.comment ?? '') === (b.comment ?? '');

function chain(key: string, name: string, body: string[]): RenderedChain {
  const hash = createHash('sha256').update(body.join('\n')).digest('hex').slice(0, 16);
  const rules = body.map((r, i) => (i === body.length - 1 ? `${r} comment "${key} h=${hash}"` : r));
  return { name, rules, hash };
}

/** The chains and elements of one (validated) service. */
export function renderService(rule: ServiceRule): RenderedService {
  const chains: RenderedChain[] = [];
  const svcChains: RenderedChain[] = [];
  const elements: MapElement[] = [];
  for (const p of rule.ports) {
    const proto = p.protocol.toLowerCase();
    const addrKey = `${rule.clusterIP} . ${proto} . ${p.port}`;
    const hostKey = p.hostPort !== undefined ? `${proto} . ${p.hostPort}` : undefined;
    const comment = p.name ? `${rule.key}:${p.name}` : rule.key;
    if (p.endpoints.length === 0) {
      elements.push({
        map: MAP.noEndpointServices,
        key: addrKey,
        value: 'goto reject-chain',
        comment,
      });
      if (hostKey)
        elements.push({
          map: MAP.noEndpointHostPorts,
          key: hostKey,
          value: 'goto reject-chain',
          comment,
        });
      continue;
    }
    // Sorted, so the same endpoints in another order are the same chain.
    const eps = [...p.endpoints].sort((a, b) =>
      a.ip === b.ip ? a.port - b.port : (parseIPv4(a.ip) ?? 0) - (parseIPv4(b.ip) ?? 0),
    );
    const epNames = eps.map((ep) => {
      const name = endpointChainName(rule.key, p.protocol, p.port, ep);
      chains.push(
        chain(rule.key, name, [
          // A backend reaching itself through the service: without SNAT it would answer itself
          // directly and the client would not recognise the reply.
          `ip saddr ${ep.ip} jump mark-for-masquerade`,
          `meta l4proto ${proto} dnat to ${ep.ip}:${ep.port}`,
        ]),
      );
      return name;
    });
    const svcName = serviceChainName(rule.key, p.protocol, p.port);
    const vmap = epNames.map((n, i) => `${i} : goto ${n}`).join(', ');
    svcChains.push(chain(rule.key, svcName, [`numgen random mod ${eps.length} vmap { ${vmap} }`]));
    elements.push({ map: MAP.serviceIPs, key: addrKey, value: `goto ${svcName}`, comment });
    if (hostKey)
      elements.push({ map: MAP.serviceHostPorts, key: hostKey, value: `goto ${svcName}`, comment });
  }
  return { key: rule.key, chains: [...chains, ...svcChains], elements };
}

// ---------------------------------------------------------------------------------------------
// Transactions

function elementLine(verb: 'add' | 'delete', table: string, e: MapElement): string {
  if (verb === 'delete') return `delete element ip ${table} ${e.map} { ${e.key} }`;
  const comment = e.comment ? ` comment "${e.comment}"` : '';
  return `add element ip ${table} ${e.map} { ${e.key}${comment} : ${e.value} }`;
}

/**
 * The commands taking one service from `old` to `next` (either may be undefined: added or
 * removed), touching nothing else. Unchanged chains and elements are left alone; an empty list
 * means nothing changed. Order matters to the kernel's reference counting: stale elements go
 * first, chains are written endpoint chains before service chains, new elements after the
 * chains they point to, stale chains last (service chains before the endpoint chains they use).
 */
export function serviceTransaction(
  table: string,
  old: RenderedService | undefined,
  next: RenderedService | undefined,
): string[] {
  const out: string[] = [];
  const oldEls = new Map((old?.elements ?? []).map((e) => [elementId(e), e]));
  const newEls = new Map((next?.elements ?? []).map((e) => [elementId(e), e]));
  for (const [id, e] of oldEls) {
    const n = newEls.get(id);
    if (!n || !sameElement(e, n)) out.push(elementLine('delete', table, e));
  }
  const oldChains = new Map((old?.chains ?? []).map((c) => [c.name, c]));
  for (const c of next?.chains ?? []) {
    const was = oldChains.get(c.name);
    if (was?.hash === c.hash) continue;
    out.push(was ? `flush chain ip ${table} ${c.name}` : `add chain ip ${table} ${c.name}`);
    for (const r of c.rules) out.push(`add rule ip ${table} ${c.name} ${r}`);
  }
  for (const [id, e] of newEls) {
    const o = oldEls.get(id);
    if (!o || !sameElement(o, e)) out.push(elementLine('add', table, e));
  }
  const keep = new Set((next?.chains ?? []).map((c) => c.name));
  const stale = (old?.chains ?? []).filter((c) => !keep.has(c.name));
  // Service chains were listed after endpoint chains: delete in reverse.
  for (const c of [...stale].reverse()) out.push(`delete chain ip ${table} ${c.name}`);
  return out;
}

/** The rules of the base and helper chains, by chain. */
export function baseRules(o: ResolvedOptions): Map<string, string[]> {
  const svc = o.serviceCidr.text;
  const ctr = o.containerCidr.text;
  const rules = new Map<string, string[]>([
    ['filter-prerouting', ['ct state new jump endpoints-check']],
    [
      'filter-input',
      [
        // CVE-2020-8558: route_localnet (set on the bridge for host 127.0.0.1:hostPort) would
        // let containers and neighbours reach services bound to the host's loopback. Drop what
        // is addressed to 127.0.0.0/8 and did not come from the host, unless conntrack already
        // knows it (the replies of host 127.0.0.1 → container connections arrive here so) or it
        // was DNAT'ed here, as kube-proxy's KUBE-FIREWALL rule does.
        'iifname != "lo" ip daddr 127.0.0.0/8 ct state != { established, related } ct status & dnat == 0 drop comment "CVE-2020-8558: no outside access to host loopback"',
      ],
    ],
    ['filter-output', ['ct state new jump endpoints-check']],
    [
      'filter-prerouting-post-dnat',
      [`ct state new ip daddr ${svc} jump reject-chain comment "no Service on this port"`],
    ],
    [
      'filter-output-post-dnat',
      [`ct state new ip daddr ${svc} jump reject-chain comment "no Service on this port"`],
    ],
    [
      'nat-prerouting',
      [
        'jump services',
        // Not 127.0.0.0/8 from outside: that is the host's own, see filter-input.
        `fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @${MAP.serviceHostPorts}`,
      ],
    ],
    [
      'nat-output',
      [
        'jump services',
        `fib daddr type local meta l4proto . th dport vmap @${MAP.serviceHostPorts}`,
      ],
    ],
    ['nat-postrouting', ['jump masquerading']],
    [
      'endpoints-check',
      [
        `ip daddr . meta l4proto . th dport vmap @${MAP.noEndpointServices}`,
        `fib daddr type local meta l4proto . th dport vmap @${MAP.noEndpointHostPorts}`,
      ],
    ],
    ['reject-chain', ['meta l4proto tcp reject with tcp reset', 'reject']],
    ['services', [`ip daddr . meta l4proto . th dport vmap @${MAP.serviceIPs}`]],
    ['mark-for-masquerade', [`meta mark set meta mark or ${o.mark}`]],
  ]);
  const masq = [
    `meta mark & ${o.mark} == ${o.mark} meta mark set meta mark xor ${o.mark} masquerade fully-random`,
    // Host 127.0.0.1 → container (a hostPort): the container cannot answer 127.0.0.1.
    `ip saddr 127.0.0.0/8 ip daddr ${ctr} ct status dnat masquerade fully-random`,
  ];
  if (o.masqueradeIntraSubnet)
    masq.push(`ip saddr ${ctr} ip daddr ${ctr} ct status dnat masquerade fully-random`);
  if (o.masqueradeOutbound) masq.push(`ip saddr ${ctr} ip daddr != ${ctr} masquerade`);
  rules.set('masquerading', masq);
  return rules;
}

/** What sync() needs to know of the live table. */
export interface LiveTable {
  exists: boolean;
  /** Every chain: base chains with their hook. */
  chains: Map<string, { type?: string; hook?: string; prio?: number; policy?: string }>;
  /** Per chain, the last rule's comment (service chains: `<key> h=<hash>`). */
  lastComment: Map<string, string>;
  maps: Map<string, { key: string; value: string }>;
  sets: string[];
  elements: MapElement[];
}

type Json = Record<string, unknown>;
const asObj = (v: unknown): Json | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined;

function exprText(v: unknown): string {
  const o = asObj(v);
  if (o && Array.isArray(o.concat)) return o.concat.map(exprText).join(' . ');
  if (typeof v === 'string' || typeof v === 'number') return String(v);
  return JSON.stringify(v);
}

function verdictText(v: unknown): string {
  const o = asObj(v);
  if (typeof v === 'string') return v;
  if (o) {
    for (const verb of ['goto', 'jump']) {
      const t = asObj(o[verb]);
      if (t && typeof t.target === 'string') return `${verb} ${t.target}`;
    }
    const keys = Object.keys(o);
    if (keys.length === 1 && keys[0] !== undefined) return keys[0];
  }
  return JSON.stringify(v);
}

/** Reads `nft -j list table ip T` output. */
export function parseLiveTable(json: string): LiveTable {
  const live: LiveTable = {
    exists: true,
    chains: new Map(),
    lastComment: new Map(),
    maps: new Map(),
    sets: [],
    elements: [],
  };
  const doc = asObj(JSON.parse(json) as unknown);
  const items = Array.isArray(doc?.nftables) ? doc.nftables : [];
  for (const item of items) {
    const o = asObj(item);
    const c = asObj(o?.chain);
    if (c && typeof c.name === 'string') {
      live.chains.set(c.name, {
        type: typeof c.type === 'string' ? c.type : undefined,
        hook: typeof c.hook === 'string' ? c.hook : undefined,
        prio: typeof c.prio === 'number' ? c.prio : undefined,
        policy: typeof c.policy === 'string' ? c.policy : undefined,
      });
    }
    const r = asObj(o?.rule);
    if (r && typeof r.chain === 'string') {
      // Rules are listed in order: the last one seen is the chain's last rule.
      live.lastComment.set(r.chain, typeof r.comment === 'string' ? r.comment : '');
    }
    const s = asObj(o?.set);
    if (s && typeof s.name === 'string') live.sets.push(s.name);
    const m = asObj(o?.map);
    if (m && typeof m.name === 'string') {
      const type = Array.isArray(m.type) ? m.type.map(String).join(' . ') : String(m.type);
      live.maps.set(m.name, { key: type, value: String(m.map) });
      for (const pair of Array.isArray(m.elem) ? m.elem : []) {
        if (!Array.isArray(pair) || pair.length !== 2) continue;
        const k = asObj(pair[0]);
        const inner = asObj(k?.elem);
        const keyExpr = inner ? inner.val : pair[0];
        const comment = inner && typeof inner.comment === 'string' ? inner.comment : undefined;
        live.elements.push({
          map: m.name,
          key: exprText(keyExpr),
          value: verdictText(pair[1]),
          ...(comment !== undefined ? { comment } : {}),
        });
      }
    }
  }
  return live;
}

export const emptyLiveTable = (): LiveTable => ({
  exists: false,
  chains: new Map(),
  lastComment: new Map(),
  maps: new Map(),
  sets: [],
  elements: [],
});

/**
 * The transaction bringing the live table to exactly `desired`: base chains re-created and
 * refilled (a base chain with another hook or priority is replaced), maps made, service chains
 * whose hash differs rewritten, missing ones added, stale ones and stale elements removed, and
 * anything else in the table that is not ours removed. Chains already as they should be are left
 * alone, so a resync of an unchanged table rewrites only the base chains.
 */
export function syncTransaction(
  o: ResolvedOptions,
  live: LiveTable,
  desired: readonly RenderedService[],
): string[] {
  const t = o.table;
  const out: string[] = [
    `add table ip ${t} { comment "Conductor: Service addresses, hostPorts, masquerading"; }`,
  ];
  const base = baseRules(o);
  const ours = new Set<string>([...BASE_CHAINS.map((b) => b.name), ...HELPER_CHAINS]);
  const wantChains = new Map<string, RenderedChain>();
  for (const s of desired) for (const c of s.chains) wantChains.set(c.name, c);

  // 1. Empty every live chain that will be refilled or deleted, so no rule still refers to a
  //    map or chain this transaction replaces or removes.
  const stale: string[] = [];
  for (const name of live.chains.keys()) {
    const want = wantChains.get(name);
    if (ours.has(name)) out.push(`flush chain ip ${t} ${name}`);
    else if (!want) {
      out.push(`flush chain ip ${t} ${name}`);
      stale.push(name);
    }
  }
  // 2. Maps of another type go (with their elements); elements not wanted go.
  const wantMaps = new Map(MAPS.map((m) => [m.name, m]));
  const recreate = new Set<string>();
  for (const [name, m] of live.maps) {
    const spec = wantMaps.get(name);
    if (spec && (m.key !== spec.key || m.value !== 'verdict')) recreate.add(name);
  }
  const wantEls = new Map<string, MapElement>();
  for (const s of desired) for (const e of s.elements) wantEls.set(elementId(e), e);
  const liveEls = new Map<string, MapElement>();
  for (const e of live.elements) {
    if (recreate.has(e.map) || !wantMaps.has(e.map)) continue;
    liveEls.set(elementId(e), e);
    const w = wantEls.get(elementId(e));
    if (!w || !sameElement(e, w)) out.push(elementLine('delete', t, e));
  }
  for (const name of recreate) out.push(`delete map ip ${t} ${name}`);
  for (const b of BASE_CHAINS) {
    const l = live.chains.get(b.name);
    if (l && (l.type !== b.type || l.hook !== b.hook || l.prio !== b.prio || l.policy !== 'accept'))
      out.push(`delete chain ip ${t} ${b.name}`);
  }
  // 3. Maps and chains, then the base rules.
  for (const m of MAPS)
    out.push(`add map ip ${t} ${m.name} { type ${m.key} : verdict; comment "${m.comment}"; }`);
  for (const name of HELPER_CHAINS) out.push(`add chain ip ${t} ${name}`);
  for (const b of BASE_CHAINS)
    out.push(
      `add chain ip ${t} ${b.name} { type ${b.type} hook ${b.hook} priority ${b.prio}; policy accept; }`,
    );
  for (const [name, rules] of base)
    for (const r of rules) out.push(`add rule ip ${t} ${name} ${r}`);
  // 4. Service chains that are missing or differ (endpoint chains come first in each service).
  for (const c of wantChains.values()) {
    const had = live.chains.has(c.name);
    if (had && live.lastComment.get(c.name)?.endsWith(` h=${c.hash}`)) continue;
    out.push(had ? `flush chain ip ${t} ${c.name}` : `add chain ip ${t} ${c.name}`);
    for (const r of c.rules) out.push(`add rule ip ${t} ${c.name} ${r}`);
  }
  // 5. Elements, then what is stale.
  for (const [id, e] of wantEls) {
    const l = liveEls.get(id);
    if (!l || !sameElement(l, e)) out.push(elementLine('add', t, e));
  }
  for (const name of live.maps.keys())
    if (!wantMaps.has(name)) out.push(`delete map ip ${t} ${name}`);
  for (const name of live.sets) out.push(`delete set ip ${t} ${name}`);
  // Service chains before the endpoint chains they use (flushed above already, but in order).
  stale.sort(
    (a, b) =>
      Number(b.startsWith(SERVICE_CHAIN_PREFIX)) - Number(a.startsWith(SERVICE_CHAIN_PREFIX)),
  );
  for (const name of stale) out.push(`delete chain ip ${t} ${name}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The proxy

const defaultRunner: CommandRunner = (argv, stdin) =>
  new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    if (cmd === undefined) throw new Error('no command');
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin ?? '');
  });

/**
 * Keeps the table at the services it is given. Calls are serialised: one transaction at a
 * time, in call order.
 */
export class ServiceProxy {
  private readonly log: Logger;
  private readonly run: CommandRunner;
  private readonly nft: string;
  private readonly netns: string | undefined;
  private resolved: ResolvedOptions;
  /** What the table holds per service, as rendered; undefined until the first sync(). */
  private state: Map<string, { rule: ServiceRule; rendered: RenderedService }> | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private routeLocalnetSet = false;
  private intraSubnetDetected: boolean | undefined;
  private last: string | undefined;
  private count = 0;

  constructor(private readonly opts: ServiceProxyOptions) {
    this.resolved = resolveOptions(opts);
    this.log = opts.logger ?? silentLogger;
    this.run = opts.runner ?? defaultRunner;
    this.nft = opts.nft ?? 'nft';
    this.netns = opts.netns;
  }

  /** The text of the last transaction applied. */
  get lastTransaction(): string | undefined {
    return this.last;
  }

  /** How many transactions this instance has applied. */
  get transactionCount(): number {
    return this.count;
  }

  /**
   * Creates the table and base chains if missing and brings it to exactly `services`: stale
   * chains and elements (left by an earlier process) removed, missing ones added. Reads the live
   * table, not only memory: at start and for periodic resyncs.
   */
  sync(services: readonly ServiceRule[]): Promise<void> {
    return this.serial(async () => {
      const rendered = this.renderAll(services);
      if (this.opts.masqueradeIntraSubnet === undefined) {
        this.intraSubnetDetected ??= await this.detectIntraSubnet();
        this.resolved = resolveOptions(this.opts, this.intraSubnetDetected);
      }
      const live = await this.readLive();
      const lines = syncTransaction(
        this.resolved,
        live,
        [...rendered.values()].map((r) => r.rendered),
      );
      await this.apply(lines, undefined);
      this.state = rendered;
      this.routeLocalnetSet = false;
      await this.ensureRouteLocalnet();
      this.log.info('service table synced', {
        table: this.resolved.table,
        services: rendered.size,
        bytes: this.last?.length ?? 0,
      });
    });
  }

  /** One service set to `rule` in one transaction touching only its own chains and elements. */
  upsert(rule: ServiceRule): Promise<void> {
    return this.serial(async () => {
      const state = this.requireSynced(rule.key);
      validateService(rule, this.resolved.serviceCidr);
      this.checkConflicts(rule, state);
      const rendered = renderService(rule);
      const lines = serviceTransaction(
        this.resolved.table,
        state.get(rule.key)?.rendered,
        rendered,
      );
      if (lines.length > 0) await this.apply(lines, rule.key);
      state.set(rule.key, { rule, rendered });
      await this.ensureRouteLocalnet();
    });
  }

  /** Removes one service's chains and elements; nothing if it is not there. */
  remove(key: string): Promise<void> {
    return this.serial(async () => {
      const state = this.requireSynced(key);
      const old = state.get(key);
      if (!old) return;
      await this.apply(serviceTransaction(this.resolved.table, old.rendered, undefined), key);
      state.delete(key);
    });
  }

  /** Deletes the table (the last user gone, or an operator's clean-up); fine if it is gone. */
  destroy(): Promise<void> {
    return this.serial(async () => {
      const t = this.resolved.table;
      await this.apply([`add table ip ${t}`, `delete table ip ${t}`], undefined);
      this.state = undefined;
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.tail.then(fn);
    this.tail = p.catch(() => undefined);
    return p;
  }

  private requireSynced(
    key: string,
  ): Map<string, { rule: ServiceRule; rendered: RenderedService }> {
    if (!this.state)
      throw new ServiceProxyError(
        `service ${key}: the table ${this.resolved.table} has not been synced: call sync() first`,
        key,
      );
    return this.state;
  }

  private renderAll(
    services: readonly ServiceRule[],
  ): Map<string, { rule: ServiceRule; rendered: RenderedService }> {
    const out = new Map<string, { rule: ServiceRule; rendered: RenderedService }>();
    for (const s of services) {
      validateService(s, this.resolved.serviceCidr);
      if (out.has(s.key)) throw new ServiceProxyError(`service ${s.key}: listed twice`, s.key);
      this.checkConflicts(s, out);
      out.set(s.key, { rule: s, rendered: renderService(s) });
    }
    return out;
  }

  /** Another service holding the same clusterIP port or hostPort is an error naming both. */
  private checkConflicts(rule: ServiceRule, others: Map<string, { rule: ServiceRule }>): void {
    for (const [key, { rule: o }] of others) {
      if (key === rule.key) continue;
      for (const p of rule.ports)
        for (const q of o.ports) {
          if (p.protocol !== q.protocol) continue;
          if (o.clusterIP === rule.clusterIP && p.port === q.port)
            throw new ServiceProxyError(
              `service ${rule.key}: clusterIP ${rule.clusterIP} port ${p.port}/${p.protocol} is already service ${key}'s`,
              rule.key,
            );
          if (p.hostPort !== undefined && p.hostPort === q.hostPort)
            throw new ServiceProxyError(
              `service ${rule.key}: hostPort ${p.hostPort}/${p.protocol} is already service ${key}'s`,
              rule.key,
            );
        }
    }
  }

  private inNetns(argv: string[]): string[] {
    return this.netns === undefined ? argv : ['nsenter', `--net=/run/netns/${this.netns}`, ...argv];
  }

  private async readLive(): Promise<LiveTable> {
    const r = await this.run(
      this.inNetns([this.nft, '-j', 'list', 'table', 'ip', this.resolved.table]),
    );
    if (r.code !== 0) {
      if (/No such file or directory/.test(r.stderr)) return emptyLiveTable();
      throw new ServiceProxyError(
        `table ${this.resolved.table}: nft list: ${r.stderr.trim() || `exit ${String(r.code)}`}`,
        undefined,
        r.stderr,
      );
    }
    return parseLiveTable(r.stdout);
  }

  private async apply(lines: string[], service: string | undefined): Promise<void> {
    const text = `${lines.join('\n')}\n`;
    const started = performance.now();
    const r = await this.run(this.inNetns([this.nft, '-f', '-']), text);
    if (r.code !== 0) {
      const who = service ? `service ${service}` : `table ${this.resolved.table}`;
      throw new ServiceProxyError(
        `${who}: nft -f: ${r.stderr.trim() || `exit ${String(r.code)}`}`,
        service,
        r.stderr,
      );
    }
    this.last = text;
    this.count++;
    this.log.debug('nft transaction applied', {
      service,
      commands: lines.length,
      bytes: text.length,
      ms: Math.round(performance.now() - started),
    });
  }

  private async readSysctl(path: string): Promise<string | undefined> {
    if (this.netns === undefined) return readFile(path, 'utf8').catch(() => undefined);
    const r = await this.run(this.inNetns(['cat', path]));
    return r.code === 0 ? r.stdout : undefined;
  }

  /** Bridged traffic that skips netfilter needs every intra-subnet DNAT masqueraded. */
  private async detectIntraSubnet(): Promise<boolean> {
    const v = await this.readSysctl('/proc/sys/net/bridge/bridge-nf-call-iptables');
    const intra = v?.trim() !== '1';
    if (intra)
      this.log.info(
        'bridged traffic does not pass netfilter: masquerading DNAT within the container range',
        {
          bridgeNfCallIptables: v?.trim() ?? 'absent',
        },
      );
    return intra;
  }

  /** route_localnet=1 on the bridge when a hostPort exists (host 127.0.0.1:hostPort). */
  private async ensureRouteLocalnet(): Promise<void> {
    if (this.routeLocalnetSet || !this.state) return;
    const needed = [...this.state.values()].some(({ rule }) =>
      rule.ports.some((p) => p.hostPort !== undefined),
    );
    if (!needed) return;
    const path = `/proc/sys/net/ipv4/conf/${this.resolved.bridge}/route_localnet`;
    let ok: boolean;
    if (this.netns === undefined) {
      ok = await writeFile(path, '1\n').then(
        () => true,
        () => false,
      );
    } else {
      const r = await this.run(this.inNetns(['tee', path]), '1\n');
      ok = r.code === 0;
    }
    if (ok) this.routeLocalnetSet = true;
    else
      this.log.warn(
        'cannot set route_localnet on the bridge yet: 127.0.0.1 hostPorts wait for it',
        {
          bridge: this.resolved.bridge,
        },
      );
  }
}
