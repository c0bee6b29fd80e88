/**
 * IPv4 addresses and CIDR blocks as numbers: parsing (strict: four decimal octets, no leading
 * zeros, a prefix 0-32 and no host bits set), containment, overlap and the n-th address of a
 * block. The container and service ranges, a Service's clusterIP and a hostIP are all checked
 * with these before anything reaches a plugin, nft or ip.
 */

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** The address as an unsigned 32-bit number, or undefined when it is not a dotted quad. */
export function parseIPv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) return undefined;
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

export function formatIPv4(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

export function isIPv4(text: string): boolean {
  return parseIPv4(text) !== undefined;
}

export interface Cidr {
  /** The network address. */
  base: number;
  prefix: number;
  /** Number of addresses in the block. */
  size: number;
  text: string;
}

/** A CIDR block; `field` names it in the error. Host bits must be zero (10.77.0.0/16). */
export function parseCidr(text: string, field: string): Cidr {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(text);
  const addr = m?.[1] !== undefined ? parseIPv4(m[1]) : undefined;
  const prefix = m?.[2] !== undefined ? Number(m[2]) : NaN;
  if (addr === undefined || !(prefix >= 0 && prefix <= 32)) {
    throw new Error(
      `${field}: ${JSON.stringify(text)} is not an IPv4 CIDR block like 10.77.0.0/16`,
    );
  }
  const size = 2 ** (32 - prefix);
  if (addr % size !== 0) {
    const base = addr - (addr % size);
    throw new Error(
      `${field}: ${text} has host bits set: the block is ${formatIPv4(base)}/${prefix}`,
    );
  }
  return { base: addr, prefix, size, text };
}

export function cidrContains(c: Cidr, addr: number): boolean {
  return addr >= c.base && addr < c.base + c.size;
}

/** Whether every address of `inner` is in `outer`. */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return inner.base >= outer.base && inner.base + inner.size <= outer.base + outer.size;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.base < b.base + b.size && b.base < a.base + a.size;
}

/** The n-th address of the block (0: the network address). */
export function cidrAddress(c: Cidr, n: number): string {
  if (n < 0 || n >= c.size) throw new Error(`${c.text} has no address number ${n}`);
  return formatIPv4(c.base + n);
}
