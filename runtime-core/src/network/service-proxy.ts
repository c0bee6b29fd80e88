/**
 * Service virtual IPs in an nftables table of Conductor's own, in the spirit of kube-proxy's
 * nftables mode (kubernetes pkg/proxy/nftables/proxier.go), but with no chain per service or
 * endpoint: a service lives only in map elements, so changing it never touches a chain.
 *
 * - `service-ips`, a verdict map keyed `ipv4_addr . inet_proto . inet_service`, sends a
 *   ClusterIP port's traffic (`goto`) to `pick-N`, N being how many ready endpoints the port
 *   has; `service-hostports`, keyed `inet_proto . inet_service`, does the same for a Service's
 *   hostPort on every local address (`fib daddr type local`) to `hostport-pick-N`, from outside
 *   (prerouting) and from the host itself, 127.0.0.1 included (output).
 * - The pick chains are shared by every service port with N endpoints, one rule each:
 *   `dnat ip to K . symhash mod N map @service-endpoint-ips : K . symhash mod N map
 *   @service-endpoint-ports` with K = `ip daddr . meta l4proto . th dport`; the two maps hold
 *   `<clusterIP> . <proto> . <port> . <i>` → the endpoint's address, and → its port, for slot i
 *   in 0..N-1 (`hostport-endpoint-*` the same keyed by the hostPort). A flow hash, not
 *   `numgen random`: both lookups must land on the same slot, and two numgen draws would not
 *   (one map of `ip . port` values would need one draw, but nft 1.0.6 refuses every rule added
 *   later that uses such a map, see MAPS). Slots are kept stable: an endpoint replaced takes its
 *   predecessor's slot, so a change rewrites only the slots that changed.
 * - A backend reaching itself through a service (hairpin) is masqueraded in postrouting by
 *   `ct status dnat ip saddr . ip daddr @hairpin`, a set of `<ep> . <ep>` pairs, one per
 *   endpoint address in use (counted across services): without SNAT it would answer itself
 *   directly and the client would not recognise the reply.
 * - A service port with no ready endpoints is in `no-endpoint-services` (or
 *   `no-endpoint-hostports`) instead, consulted by the filter chains for new connections: the
 *   client gets a TCP reset or ICMP port unreachable at once, not a black hole.
 *
 * Every change is one `nft -f -` transaction, atomic in the kernel, of the changed service's
 * elements only (plus a pick chain the first time some port has N endpoints, and hairpin pairs
 * for addresses no other service uses), so its size and its cost do not grow with the number of
 * services. Why no per-service chains: nft 1.0.6 dumps every chain (and set, anonymous ones
 * included) of the table into its cache before any `add rule` or `add element`, and the kernel
 * re-validates the jump graph on commit when a rule or element has a goto; with a chain per
 * service port and per endpoint (kube-proxy's layout) both grow with the table. Measured with
 * bench/service-rules.ts (upsert → nft exited, 10 endpoints per service, 100 / 1,000 / 3,000
 * services, medians, one run at load average 5-6 on 2 cores): a chain per service port and per
 * endpoint 18 / 48 / 157 ms; this layout 16 / 16 / 20 ms. A chain per service port with the
 * endpoints inline (`numgen ... map { 0 : ip . port, ... }`), tried by hand with nft alone:
 * 16 / 24 / 32 ms, still growing (the chain and anonymous-set dumps). What is left is fixed:
 * ~5 ms spawning nsenter and nft and filling nft's (now small) cache, and ~10 ms nft waits on
 * closing its netlink socket after a transaction that deleted anything (the kernel frees the
 * old objects after an RCU grace period); the rule is live before that wait.
 *
 * sync() reads the live table (`nft -j list table`) and brings it to exactly the given
 * services: elements that are right are left alone (slots read back from the live table),
 * wrong or stale ones replaced or deleted, the base, helper and pick chains rewritten, and
 * anything else in the table (chains of an older layout included) removed.
 *
 * The base chains also hold what the node needs around the service addresses: outbound
 * masquerading of the container range (the CNI bridge plugin's ipMasq stays off, so the host's
 * iptables nat table is never touched), masquerading of host 127.0.0.1 → container traffic
 * (with route_localnet on the bridge, which the proxy sets when a hostPort exists), and the
 * CVE-2020-8558 guard that route_localnet calls for: packets to 127.0.0.0/8 that did not come
 * from the host itself are dropped unless conntrack already knows them, as kube-proxy's fix does.
 */
import { readFile, writeFile } from 'node:fs/promises';

import { silentLogger, type Logger } from '../logger.js';
import { runProcess } from '../spawn.js';
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

/** Maps of the table (kube-proxy's names where it has one). */
export const MAP = {
  serviceIPs: 'service-ips',
  serviceHostPorts: 'service-hostports',
  serviceEndpointIPs: 'service-endpoint-ips',
  serviceEndpointPorts: 'service-endpoint-ports',
  hostPortEndpointIPs: 'hostport-endpoint-ips',
  hostPortEndpointPorts: 'hostport-endpoint-ports',
  noEndpointServices: 'no-endpoint-services',
  noEndpointHostPorts: 'no-endpoint-hostports',
} as const;

/** The set of `<endpoint> . <endpoint>` address pairs whose DNAT'ed traffic is masqueraded. */
export const HAIRPIN_SET = 'hairpin';

const ADDR_KEY = 'ipv4_addr . inet_proto . inet_service';
const PORT_KEY = 'inet_proto . inet_service';

interface MapSpec {
  name: string;
  /** What `add map` declares. */
  decl: string;
  /** The key and value types as `nft -j list` reports them (' . '-joined). */
  key: string;
  value: string;
  comment: string;
}

const MAPS: readonly MapSpec[] = [
  {
    name: MAP.serviceIPs,
    decl: `type ${ADDR_KEY} : verdict`,
    key: ADDR_KEY,
    value: 'verdict',
    comment: 'ClusterIP traffic',
  },
  {
    name: MAP.serviceHostPorts,
    decl: `type ${PORT_KEY} : verdict`,
    key: PORT_KEY,
    value: 'verdict',
    comment: 'Service hostPort traffic',
  },
  // typeof: a plain `type` cannot name numgen's integer in a concatenation. Address and port
  // are two maps, not one of `ip daddr . th dport`: nft 1.0.6 fails any rule added later with
  // such a map ("conflicting protocols specified"), once it reads the map back from the kernel.
  ...(
    [
      [
        MAP.serviceEndpointIPs,
        'ip daddr . meta l4proto . th dport',
        'ip daddr',
        'ipv4_addr',
        'address',
      ],
      [
        MAP.serviceEndpointPorts,
        'ip daddr . meta l4proto . th dport',
        'th dport',
        'inet_service',
        'port',
      ],
      [MAP.hostPortEndpointIPs, 'meta l4proto . th dport', 'ip daddr', 'ipv4_addr', 'address'],
      [MAP.hostPortEndpointPorts, 'meta l4proto . th dport', 'th dport', 'inet_service', 'port'],
    ] as const
  ).map(([name, key, data, value, what]) => ({
    name,
    decl: `typeof ${key} . numgen random mod 1 : ${data}`,
    key: `${key.startsWith('ip') ? ADDR_KEY : PORT_KEY} . integer`,
    value,
    comment: `${key.startsWith('ip') ? 'ClusterIP port' : 'Service hostPort'} and slot: endpoint ${what}`,
  })),
  {
    name: MAP.noEndpointServices,
    decl: `type ${ADDR_KEY} : verdict`,
    key: ADDR_KEY,
    value: 'verdict',
    comment: 'ClusterIP ports with no endpoints: rejected',
  },
  {
    name: MAP.noEndpointHostPorts,
    decl: `type ${PORT_KEY} : verdict`,
    key: PORT_KEY,
    value: 'verdict',
    comment: 'Service hostPorts with no endpoints: rejected',
  },
];

const HAIRPIN_TYPE = 'ipv4_addr . ipv4_addr';

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
const HELPER_CHAINS = ['endpoints-check', 'reject-chain', 'services', 'masquerading'] as const;

const PICK_CHAIN = /^(hostport-)?pick-([1-9][0-9]{0,9})$/;

/**
 * `pick-N` (ClusterIP) or `hostport-pick-N`: the chain DNATing to one of N endpoint slots,
 * shared by every service port with N endpoints.
 */
export function pickChainName(endpoints: number, hostPort = false): string {
  return `${hostPort ? 'hostport-' : ''}pick-${endpoints}`;
}

/** The rule of a pick chain (its name from pickChainName), or undefined for any other name. */
export function pickChainRule(name: string): string | undefined {
  const m = PICK_CHAIN.exec(name);
  if (!m) return undefined;
  const [key, ips, ports] = m[1]
    ? ['meta l4proto . th dport', MAP.hostPortEndpointIPs, MAP.hostPortEndpointPorts]
    : ['ip daddr . meta l4proto . th dport', MAP.serviceEndpointIPs, MAP.serviceEndpointPorts];
  // symhash, not numgen random: the address and the port lookups must pick the same slot, and
  // a hash of the packet's flow is the same both times (and spreads connections as evenly).
  // The l4proto match is nft's dependency for mapping to a port.
  const slot = `${key} . symhash mod ${m[2] ?? '1'}`;
  return `meta l4proto { tcp, udp } dnat ip to ${slot} map @${ips} : ${slot} map @${ports}`;
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

/** One map or set element: `map { key comment "..." : value }` (a set's has no value). */
export interface MapElement {
  map: string;
  /** nft text of the key, e.g. `10.78.0.10 . tcp . 80` or `tcp . 8080 . 0`. */
  key: string;
  /** nft text of the value, e.g. `goto pick-2` or `10.77.0.2 . 8080`; '' in a set. */
  value: string;
  comment?: string;
}

/** Everything the table holds for one service. */
export interface RenderedService {
  key: string;
  /** Its elements of the maps: dispatch (or no-endpoint) elements and endpoint slots. */
  elements: MapElement[];
  /** The pick chains its dispatch elements go to. */
  chains: string[];
  /** Its endpoints' addresses: each needs `a . a` in the hairpin set (shared by services). */
  addresses: string[];
}

/**
 * The endpoint slots a table already holds, per `<clusterIP> . <proto> . <port>`: slot index
 * to `<ip> . <port>`. Rendering keeps endpoints that stay in the slots they had.
 */
export type EndpointSlots = ReadonlyMap<string, ReadonlyMap<number, string>>;

/** The slots of `elements` (a rendered service's, or a live table's). */
export function endpointSlots(elements: Iterable<MapElement>): EndpointSlots {
  const parts = new Map<string, Map<number, { ip?: string; port?: string }>>();
  for (const e of elements) {
    const isIP = e.map === MAP.serviceEndpointIPs;
    if (!isIP && e.map !== MAP.serviceEndpointPorts) continue;
    const at = e.key.lastIndexOf(' . ');
    const slot = Number(e.key.slice(at + 3));
    if (at < 0 || !Number.isInteger(slot)) continue;
    const port = e.key.slice(0, at);
    let slots = parts.get(port);
    if (!slots) parts.set(port, (slots = new Map()));
    slots.set(slot, { ...slots.get(slot), ...(isIP ? { ip: e.value } : { port: e.value }) });
  }
  const out = new Map<string, Map<number, string>>();
  for (const [port, slots] of parts) {
    const m = new Map<number, string>();
    for (const [i, s] of slots) if (s.ip && s.port) m.set(i, `${s.ip} . ${s.port}`);
    out.set(port, m);
  }
  return out;
}

/**
 * `wanted` (sorted) in N slots: each endpoint that had a slot below N keeps it, the others fill
 * the free slots in order. Replacing one endpoint so rewrites one slot, removing one at most two.
 */
function assignSlots(
  previous: ReadonlyMap<number, string> | undefined,
  wanted: string[],
): string[] {
  const want = new Set(wanted);
  const out: (string | undefined)[] = wanted.map(() => undefined);
  const placed = new Set<string>();
  for (let i = 0; i < out.length; i++) {
    const had = previous?.get(i);
    if (had !== undefined && want.has(had) && !placed.has(had)) {
      out[i] = had;
      placed.add(had);
    }
  }
  const rest = wanted.filter((e) => !placed.has(e));
  return out.map((e) => e ?? rest.shift() ?? '');
}

const elementId = (e: MapElement): string => `${e.map} ${e.key}`;
const sameElement = (a: MapElement, b: MapElement): boolean =>
  a.value === b.value && (a.comment ?? '') === (b.comment ?? '');

/** The elements of one (validated) service; `previous` slots are kept where they still fit. */
export function renderService(rule: ServiceRule, previous?: EndpointSlots): RenderedService {
  const elements: MapElement[] = [];
  const slotElements: MapElement[] = [];
  const chains = new Set<string>();
  const addresses = new Set<string>();
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
    // Sorted, so the same endpoints in another order are the same slots (with no history).
    const eps = [...p.endpoints]
      .sort((a, b) =>
        a.ip === b.ip ? a.port - b.port : (parseIPv4(a.ip) ?? 0) - (parseIPv4(b.ip) ?? 0),
      )
      .map((ep) => {
        addresses.add(ep.ip);
        return `${ep.ip} . ${ep.port}`;
      });
    const slots = assignSlots(previous?.get(addrKey), eps);
    const pick = pickChainName(eps.length);
    chains.add(pick);
    elements.push({ map: MAP.serviceIPs, key: addrKey, value: `goto ${pick}`, comment });
    const slotsIn = (ipMap: string, portMap: string, key: string): void =>
      slots.forEach((ep, i) => {
        const [ip = '', port = ''] = ep.split(' . ');
        slotElements.push(
          { map: ipMap, key: `${key} . ${i}`, value: ip, comment },
          { map: portMap, key: `${key} . ${i}`, value: port, comment },
        );
      });
    slotsIn(MAP.serviceEndpointIPs, MAP.serviceEndpointPorts, addrKey);
    if (hostKey) {
      const hostPick = pickChainName(eps.length, true);
      chains.add(hostPick);
      elements.push({
        map: MAP.serviceHostPorts,
        key: hostKey,
        value: `goto ${hostPick}`,
        comment,
      });
      slotsIn(MAP.hostPortEndpointIPs, MAP.hostPortEndpointPorts, hostKey);
    }
  }
  // Slots before the dispatch elements that lead to them: a new port is complete when reached.
  return {
    key: rule.key,
    elements: [...slotElements, ...elements],
    chains: [...chains],
    addresses: [...addresses],
  };
}

/**
 * How many services use each pick chain and each endpoint address (for the hairpin set): what
 * a service may remove without another losing it.
 */
export class SharedUse {
  private readonly chains = new Map<string, number>();
  private readonly addresses = new Map<string, number>();

  constructor(services: Iterable<RenderedService> = []) {
    for (const s of services) this.add(s);
  }

  add(s: RenderedService): void {
    for (const c of s.chains) this.chains.set(c, (this.chains.get(c) ?? 0) + 1);
    for (const a of s.addresses) this.addresses.set(a, (this.addresses.get(a) ?? 0) + 1);
  }

  remove(s: RenderedService): void {
    const dec = (m: Map<string, number>, k: string): void => {
      const n = (m.get(k) ?? 0) - 1;
      if (n > 0) m.set(k, n);
      else m.delete(k);
    };
    for (const c of s.chains) dec(this.chains, c);
    for (const a of s.addresses) dec(this.addresses, a);
  }

  chainUsers(name: string): number {
    return this.chains.get(name) ?? 0;
  }

  addressUsers(ip: string): number {
    return this.addresses.get(ip) ?? 0;
  }

  /** The pick chains in use, and the endpoint addresses, of every service counted. */
  allChains(): string[] {
    return [...this.chains.keys()];
  }

  allAddresses(): string[] {
    return [...this.addresses.keys()];
  }
}

// ---------------------------------------------------------------------------------------------
// Transactions

function elementLine(verb: 'add' | 'delete', table: string, e: MapElement): string {
  if (verb === 'delete') return `delete element ip ${table} ${e.map} { ${e.key} }`;
  const comment = e.comment ? ` comment "${e.comment}"` : '';
  const value = e.value ? ` : ${e.value}` : '';
  return `add element ip ${table} ${e.map} { ${e.key}${comment}${value} }`;
}

const hairpinElement = (ip: string): MapElement => ({
  map: HAIRPIN_SET,
  key: `${ip} . ${ip}`,
  value: '',
});

function pickChainLines(table: string, name: string): string[] {
  return [
    `add chain ip ${table} ${name}`,
    `add rule ip ${table} ${name} ${pickChainRule(name) ?? ''}`,
  ];
}

/**
 * The commands taking one service from `old` to `next` (either may be undefined: added or
 * removed), touching nothing else: its elements that changed, the pick chains and hairpin
 * pairs that no other service in `shared` (which counts `old`, not `next`) uses. An empty list
 * means nothing changed. Order matters to the kernel's reference counting: stale elements go
 * first, new pick chains come before the elements that go to them, and stale chains last.
 */
export function serviceTransaction(
  table: string,
  old: RenderedService | undefined,
  next: RenderedService | undefined,
  shared: SharedUse = new SharedUse(old ? [old] : []),
): string[] {
  const out: string[] = [];
  const oldEls = new Map((old?.elements ?? []).map((e) => [elementId(e), e]));
  const newEls = new Map((next?.elements ?? []).map((e) => [elementId(e), e]));
  const oldChains = new Set(old?.chains);
  const newChains = new Set(next?.chains);
  const oldAddrs = new Set(old?.addresses);
  const newAddrs = new Set(next?.addresses);
  // Used by a service other than this one.
  const chainElsewhere = (c: string): boolean =>
    shared.chainUsers(c) - (oldChains.has(c) ? 1 : 0) > 0;
  const addrElsewhere = (a: string): boolean =>
    shared.addressUsers(a) - (oldAddrs.has(a) ? 1 : 0) > 0;

  for (const [id, e] of oldEls) {
    const n = newEls.get(id);
    if (!n || !sameElement(e, n)) out.push(elementLine('delete', table, e));
  }
  for (const a of oldAddrs)
    if (!newAddrs.has(a) && !addrElsewhere(a))
      out.push(elementLine('delete', table, hairpinElement(a)));
  for (const c of newChains)
    if (!oldChains.has(c) && !chainElsewhere(c)) out.push(...pickChainLines(table, c));
  for (const a of newAddrs)
    if (!oldAddrs.has(a) && !addrElsewhere(a))
      out.push(elementLine('add', table, hairpinElement(a)));
  for (const [id, e] of newEls) {
    const o = oldEls.get(id);
    if (!o || !sameElement(o, e)) out.push(elementLine('add', table, e));
  }
  for (const c of oldChains)
    if (!newChains.has(c) && !chainElsewhere(c)) out.push(`delete chain ip ${table} ${c}`);
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
  ]);
  const masq = [
    // Nothing in this table sets the bit any more (hairpin has its set); kept, as kube-proxy's
    // KUBE-MARK-MASQ, for whatever marks packets to be masqueraded.
    `meta mark & ${o.mark} == ${o.mark} meta mark set meta mark xor ${o.mark} masquerade fully-random`,
    // A backend reaching itself through a service (hairpin).
    `ct status dnat ip saddr . ip daddr @${HAIRPIN_SET} masquerade fully-random`,
    // Host 127.0.0.1 → container (a hostPort): the container cannot answer 127.0.0.1.
    `ip saddr 127.0.0.0/8 ip daddr ${ctr} ct status dnat masquerade fully-random`,
  ];
  if (o.masqueradeIntraSubnet)
    masq.push(`ip saddr ${ctr} ip daddr ${ctr} ct status dnat masquerade fully-random`);
  if (o.masqueradeOutbound) masq.push(`ip saddr ${ctr} ip daddr != ${ctr} masquerade`);
  rules.set('masquerading', masq);
  return rules;
}

// ---------------------------------------------------------------------------------------------
// The live table

/** What sync() needs to know of the live table. */
export interface LiveTable {
  exists: boolean;
  /** Every chain: base chains with their hook. */
  chains: Map<string, { type?: string; hook?: string; prio?: number; policy?: string }>;
  /** Maps and sets: key type, and value type (a set's is ''), ' . '-joined. */
  maps: Map<string, { key: string; value: string }>;
  /** Elements of every map and set. */
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

function valueText(v: unknown): string {
  const o = asObj(v);
  if (typeof v === 'string' || typeof v === 'number') return String(v);
  if (o) {
    if (Array.isArray(o.concat)) return exprText(o);
    for (const verb of ['goto', 'jump']) {
      const t = asObj(o[verb]);
      if (t && typeof t.target === 'string') return `${verb} ${t.target}`;
    }
    const keys = Object.keys(o);
    if (keys.length === 1 && keys[0] !== undefined) return keys[0];
  }
  return JSON.stringify(v);
}

const typeText = (t: unknown): string =>
  Array.isArray(t) ? t.map(String).join(' . ') : typeof t === 'string' ? t : '';

/** Reads `nft -j list table ip T` output. */
export function parseLiveTable(json: string): LiveTable {
  const live: LiveTable = { exists: true, chains: new Map(), maps: new Map(), elements: [] };
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
    const m = asObj(o?.map) ?? asObj(o?.set);
    if (m && typeof m.name === 'string') {
      const isMap = o?.map !== undefined;
      live.maps.set(m.name, { key: typeText(m.type), value: isMap ? typeText(m.map) : '' });
      for (const el of Array.isArray(m.elem) ? m.elem : []) {
        // A map's element is [key, value]; a set's is the key. A key with a comment is
        // { elem: { val, comment } }.
        const [k, v] = isMap && Array.isArray(el) && el.length === 2 ? el : [el, undefined];
        const inner = asObj(asObj(k)?.elem);
        const comment = inner && typeof inner.comment === 'string' ? inner.comment : undefined;
        live.elements.push({
          map: m.name,
          key: exprText(inner ? inner.val : k),
          value: isMap ? valueText(v) : '',
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
  maps: new Map(),
  elements: [],
});

/**
 * The transaction bringing the live table to exactly `desired`: base, helper and pick chains
 * re-created and refilled (a base chain with another hook or priority is replaced), maps and
 * the hairpin set made (one of another type replaced), elements that differ or are missing
 * added, stale ones removed, and anything else in the table that is not ours removed. Elements
 * already as they should be are left alone, so a resync of an unchanged table rewrites only
 * the chains.
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
  const use = new SharedUse(desired);
  const picks = use.allChains();
  const ours = new Set<string>([...BASE_CHAINS.map((b) => b.name), ...HELPER_CHAINS, ...picks]);

  // 1. Empty every live chain: ours are refilled below, the rest deleted, and no rule still
  //    refers to a map or chain this transaction replaces or removes.
  const stale: string[] = [];
  for (const name of live.chains.keys()) {
    out.push(`flush chain ip ${t} ${name}`);
    if (!ours.has(name)) stale.push(name);
  }
  // 2. Maps and sets of another type go (with their elements); elements not wanted go.
  const specs = new Map<string, { key: string; value: string }>(MAPS.map((m) => [m.name, m]));
  specs.set(HAIRPIN_SET, { key: HAIRPIN_TYPE, value: '' });
  const recreate = new Set<string>();
  for (const [name, m] of live.maps) {
    const spec = specs.get(name);
    if (spec && (m.key !== spec.key || m.value !== spec.value)) recreate.add(name);
  }
  const wantEls = new Map<string, MapElement>();
  for (const s of desired) for (const e of s.elements) wantEls.set(elementId(e), e);
  for (const a of use.allAddresses()) {
    const e = hairpinElement(a);
    wantEls.set(elementId(e), e);
  }
  const liveEls = new Map<string, MapElement>();
  for (const e of live.elements) {
    if (recreate.has(e.map) || !specs.has(e.map)) continue;
    liveEls.set(elementId(e), e);
    const w = wantEls.get(elementId(e));
    if (!w || !sameElement(e, w)) out.push(elementLine('delete', t, e));
  }
  for (const name of recreate)
    out.push(`delete ${name === HAIRPIN_SET ? 'set' : 'map'} ip ${t} ${name}`);
  for (const b of BASE_CHAINS) {
    const l = live.chains.get(b.name);
    if (l && (l.type !== b.type || l.hook !== b.hook || l.prio !== b.prio || l.policy !== 'accept'))
      out.push(`delete chain ip ${t} ${b.name}`);
  }
  // 3. Maps, the set and chains, then their rules.
  for (const m of MAPS)
    out.push(`add map ip ${t} ${m.name} { ${m.decl}; comment "${m.comment}"; }`);
  out.push(
    `add set ip ${t} ${HAIRPIN_SET} { type ${HAIRPIN_TYPE}; comment "endpoint . itself: hairpin, masqueraded"; }`,
  );
  for (const name of HELPER_CHAINS) out.push(`add chain ip ${t} ${name}`);
  for (const b of BASE_CHAINS)
    out.push(
      `add chain ip ${t} ${b.name} { type ${b.type} hook ${b.hook} priority ${b.prio}; policy accept; }`,
    );
  for (const [name, rules] of base)
    for (const r of rules) out.push(`add rule ip ${t} ${name} ${r}`);
  for (const name of picks) out.push(...pickChainLines(t, name));
  // 4. Elements that are missing or differ (the pick chains they go to exist now).
  for (const [id, e] of wantEls) {
    const l = liveEls.get(id);
    if (!l || !sameElement(l, e)) out.push(elementLine('add', t, e));
  }
  // 5. What is stale: maps first (their elements may go to stale chains), then chains.
  for (const [name, m] of live.maps)
    if (!specs.has(name)) out.push(`delete ${m.value === '' ? 'set' : 'map'} ip ${t} ${name}`);
  for (const name of stale) out.push(`delete chain ip ${t} ${name}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The proxy

const defaultRunner: CommandRunner = async (argv, stdin) => {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error('no command');
  const { code, stdout, stderr } = await runProcess(cmd, args, { input: stdin ?? '' });
  return { code, stdout, stderr };
};

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
  /** Who uses each pick chain and hairpin pair of `state`. */
  private shared = new SharedUse();
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
      this.renderAll(services); // validation, before anything runs
      if (this.opts.masqueradeIntraSubnet === undefined) {
        this.intraSubnetDetected ??= await this.detectIntraSubnet();
        this.resolved = resolveOptions(this.opts, this.intraSubnetDetected);
      }
      const live = await this.readLive();
      // Endpoints keep the slots the live table has them in: those elements stay untouched.
      const rendered = this.renderAll(services, endpointSlots(live.elements));
      const desired = [...rendered.values()].map((r) => r.rendered);
      const lines = syncTransaction(this.resolved, live, desired);
      await this.apply(lines, undefined);
      this.state = rendered;
      this.shared = new SharedUse(desired);
      this.routeLocalnetSet = false;
      await this.ensureRouteLocalnet();
      this.log.info('service table synced', {
        table: this.resolved.table,
        services: rendered.size,
        bytes: this.last?.length ?? 0,
      });
    });
  }

  /**
   * One service set to `rule` in one transaction touching only its own elements (and pick
   * chains or hairpin pairs no other service shares).
   */
  upsert(rule: ServiceRule): Promise<void> {
    return this.serial(async () => {
      const state = this.requireSynced(rule.key);
      validateService(rule, this.resolved.serviceCidr);
      this.checkConflicts(rule, state);
      const old = state.get(rule.key)?.rendered;
      const rendered = renderService(rule, old && endpointSlots(old.elements));
      const lines = serviceTransaction(this.resolved.table, old, rendered, this.shared);
      if (lines.length > 0) await this.apply(lines, rule.key);
      state.set(rule.key, { rule, rendered });
      if (old) this.shared.remove(old);
      this.shared.add(rendered);
      await this.ensureRouteLocalnet();
    });
  }

  /** Removes one service's elements (and what only it used); nothing if it is not there. */
  remove(key: string): Promise<void> {
    return this.serial(async () => {
      const state = this.requireSynced(key);
      const old = state.get(key);
      if (!old) return;
      await this.apply(
        serviceTransaction(this.resolved.table, old.rendered, undefined, this.shared),
        key,
      );
      state.delete(key);
      this.shared.remove(old.rendered);
    });
  }

  /** Deletes the table (the last user gone, or an operator's clean-up); fine if it is gone. */
  destroy(): Promise<void> {
    return this.serial(async () => {
      const t = this.resolved.table;
      await this.apply([`add table ip ${t}`, `delete table ip ${t}`], undefined);
      this.state = undefined;
      this.shared = new SharedUse();
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
    slots?: EndpointSlots,
  ): Map<string, { rule: ServiceRule; rendered: RenderedService }> {
    const out = new Map<string, { rule: ServiceRule; rendered: RenderedService }>();
    for (const s of services) {
      validateService(s, this.resolved.serviceCidr);
      if (out.has(s.key)) throw new ServiceProxyError(`service ${s.key}: listed twice`, s.key);
      this.checkConflicts(s, out);
      out.set(s.key, { rule: s, rendered: renderService(s, slots) });
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
