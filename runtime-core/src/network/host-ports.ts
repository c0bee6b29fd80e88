/**
 * Host ports: who holds a port on the node. A published port (a Container's hostPort through
 * portmap, a Service's hostPort through the service table) is DNAT'ed before the host's own
 * sockets see the traffic, so publishing a port a host process listens on would silently steal
 * it: both are conflicts, reported with the holder named, as the kubelet's hostPort check and
 * `docker run -p` ("port is already allocated") do.
 *
 * The host's side is read from /proc/net/{tcp,udp,tcp6,udp6} (sockets in LISTEN, or bound UDP
 * sockets) and the owning process found through /proc/PID/fd's socket inodes.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

import { formatIPv4 } from './ipv4.js';

export type Protocol = 'tcp' | 'udp';

/** One published port, as portmap's `portMappings` capability takes it. */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: Protocol;
  /** The host address it is published on; unset (or 0.0.0.0): all of them. */
  hostIP?: string;
}

export class HostPortConflictError extends Error {
  constructor(
    readonly port: number,
    readonly protocol: Protocol,
    /** Who holds it: `Container default/web`, `Service default/web`, `pid 812 (nginx) on the host`. */
    readonly holder: string,
  ) {
    super(`host port ${port}/${protocol.toUpperCase()} is already in use by ${holder}`);
    this.name = 'HostPortConflictError';
  }
}

const ALL = '0.0.0.0';

/** Whether two publications of the same port and protocol collide (an unset hostIP is all). */
export function hostIPsOverlap(a: string | undefined, b: string | undefined): boolean {
  const x = a ?? ALL;
  const y = b ?? ALL;
  return x === ALL || y === ALL || x === y;
}

export interface HostSocket {
  protocol: Protocol;
  /** Dotted IPv4, or `::`-style for IPv6 (`::` and `::ffff:0.0.0.0` listen on every address). */
  address: string;
  port: number;
  inode: number;
}

/** Parses one /proc/net/{tcp,udp}[6] table: the listening (TCP) or bound (UDP) sockets. */
export function parseProcNet(text: string, protocol: Protocol, v6: boolean): HostSocket[] {
  const out: HostSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    const [local, , state] = [f[1], f[2], f[3]];
    const inode = Number(f[9]);
    if (!local || !state) continue;
    // TCP: 0A is LISTEN. UDP: 07 (TCP_CLOSE) is an unconnected bound socket.
    if ((protocol === 'tcp' && state !== '0A') || (protocol === 'udp' && state !== '07')) continue;
    const [hexAddr, hexPort] = local.split(':');
    if (!hexAddr || !hexPort) continue;
    out.push({ protocol, address: decodeAddress(hexAddr, v6), port: parseInt(hexPort, 16), inode });
  }
  return out;
}

function decodeAddress(hex: string, v6: boolean): string {
  // The kernel prints each 32-bit word in host (little-endian) order.
  const words = hex.match(/.{8}/g) ?? [];
  const bytes = words.flatMap((w) => (w.match(/../g) ?? []).reverse().map((b) => parseInt(b, 16)));
  if (!v6)
    return formatIPv4(
      (((bytes[0] ?? 0) << 24) +
        ((bytes[1] ?? 0) << 16) +
        ((bytes[2] ?? 0) << 8) +
        (bytes[3] ?? 0)) >>>
        0,
    );
  if (bytes.every((b) => b === 0)) return '::';
  const mapped = bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 255 && bytes[11] === 255;
  if (mapped) return `::ffff:${bytes.slice(12).join('.')}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2)
    groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return groups.join(':');
}

/** Whether a host socket bound to `address` takes traffic for an IPv4 publication on `hostIP`. */
function socketCovers(address: string, hostIP: string | undefined): boolean {
  if (address === '::' || address === '::ffff:0.0.0.0') return true; // dual-stack wildcard
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (v4.includes(':')) return false; // a specific IPv6 address
  return hostIPsOverlap(v4, hostIP);
}

/** The host sockets holding `port`/`protocol` for `hostIP`, from the live /proc tables. */
export function hostSocketsOn(port: number, protocol: Protocol, hostIP?: string): HostSocket[] {
  const tables: [string, boolean][] = [
    [`/proc/net/${protocol}`, false],
    [`/proc/net/${protocol}6`, true],
  ];
  const found: HostSocket[] = [];
  for (const [file, v6] of tables) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue; // no IPv6 on this host
    }
    for (const s of parseProcNet(text, protocol, v6))
      if (s.port === port && socketCovers(s.address, hostIP)) found.push(s);
  }
  return found;
}

/** `pid 812 (nginx)` for the process holding a socket inode, if one can be found. */
export function socketOwner(inode: number): string | undefined {
  const target = `socket:[${inode}]`;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (link !== target) continue;
      let comm = '';
      try {
        comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      } catch {
        // gone meanwhile
      }
      return `pid ${pid}${comm ? ` (${comm})` : ''}`;
    }
  }
  return undefined;
}

/** Throws HostPortConflictError when a host process holds the port (naming it). */
export function checkHostSockets(m: Pick<PortMapping, 'hostPort' | 'protocol' | 'hostIP'>): void {
  const socket = hostSocketsOn(m.hostPort, m.protocol, m.hostIP)[0];
  if (!socket) return;
  const owner = socketOwner(socket.inode);
  throw new HostPortConflictError(
    m.hostPort,
    m.protocol,
    `${owner ?? 'a process'} listening on ${socket.address}:${socket.port} on the host`,
  );
}
