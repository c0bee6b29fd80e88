/**
 * DNS for containers, as CoreDNS serves a Kubernetes cluster: a real dnsmasq (Debian's) that
 * Conductor runs and feeds. It listens only on the bridge gateway address (`--listen-address`
 * with `--bind-interfaces`: never on the host's other addresses, and not on loopback), answers
 * the names Conductor records under the cluster domain itself (`--local=/<domain>/`: a name
 * nobody recorded is NXDOMAIN, never forwarded) and forwards every other name to the host's
 * resolvers (`--server=` for each; `--no-resolv`, so it never reads a resolv.conf itself).
 *
 * Records are files in one directory that dnsmasq watches with inotify (`--hostsdir`): one
 * hosts file per group ("svc.default.counter", "ctr.default.web"), replaced atomically by a
 * rename. dnsmasq rereads a new, edited, renamed-over or deleted file at once, with no signal
 * and no restart, and drops only that file's names from its cache: answers it forwarded stay
 * cached (measured: a change is visible to the next query, in a few milliseconds, with
 * --cache-size=1000). Temporary files start with '.', which dnsmasq skips. dnsmasq drops
 * privileges to `nobody`, so the files are world-readable and every directory above them must be
 * traversable — otherwise it only logs "bad dynamic directory" and serves nothing: start()
 * checks it.
 *
 * dnsmasq outlives the controller, as containers do: it runs in its own session with its output
 * in a log file in the state dir, and its pid, start time (/proc/PID/stat field 22) and command
 * line are recorded there. A later start() adopts a live process whose pid, start time and
 * command line match the record and whose arguments are the ones it would use, and otherwise
 * starts a new one — stopping the recorded one first only if it is really ours (a reused pid is
 * someone else's process and is left alone).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, rename, rm, rmdir, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { dirname, isAbsolute, join, resolve } from 'node:path';

import { errCode, procStartTime, procStatFields, readJson, writeJsonAtomic } from '../files.js';
import { silentLogger, type Logger } from '../logger.js';
import { parseIPv4 } from './ipv4.js';

/** One name → address record; `name` is a full name, e.g. "counter.default.svc.cluster.local". */
export interface DnsRecord {
  name: string;
  ip: string;
}

export interface DnsServerOptions {
  /** The bridge gateway, e.g. "10.77.0.1": the only address dnsmasq listens on. */
  listenAddress: string;
  /** Its state: the hosts dir, the process record, dnsmasq's pid file and log. */
  dir: string;
  /** The cluster domain, answered locally only (default "cluster.local"). */
  domain?: string;
  /** Where other names go (default: the nameservers of `resolvConf`, minus listenAddress). */
  upstreams?: string[];
  /** The resolv.conf the default upstreams are read from (default /etc/resolv.conf). */
  resolvConf?: string;
  /** A named network namespace (/run/netns/NAME) to run dnsmasq in (tests). */
  netns?: string;
  /** The dnsmasq binary (default "dnsmasq", looked up in PATH). */
  dnsmasq?: string;
  /** dnsmasq's cache size (default 1000; the hosts dir is reread live whatever it is). */
  cacheSize?: number;
  /** Log every query to the log file (debugging; default false). */
  logQueries?: boolean;
  /** How long start() waits for dnsmasq to answer (default 5000 ms). */
  startTimeoutMs?: number;
  logger?: Logger;
}

/** A bad record, option or a dnsmasq that would not start: the message says which and why. */
export class DnsError extends Error {
  constructor(msg: string, options?: ErrorOptions) {
    super(msg, options);
    this.name = 'DnsError';
  }
}

const DEFAULT_DOMAIN = 'cluster.local';
const DEFAULT_CACHE_SIZE = 1000;
const LABEL = /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/;
/** Group names are file names in the hosts dir: no '/', and not starting with '.' (skipped). */
const GROUP = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,199}$/;
const NETNS_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/;
const RECORD_KIND = 'conductorDnsmasqV1';

/** Why `name` is not a DNS name (labels of letters, digits and '-', ≤ 253 characters). */
function dnsNameProblem(name: string): string | undefined {
  if (typeof name !== 'string' || name === '') return 'must be a DNS name';
  if (name.length > 253) return 'must be at most 253 characters';
  const bad = name.split('.').find((l) => !LABEL.test(l));
  if (bad !== undefined)
    return bad === ''
      ? 'must not have an empty label (no leading, trailing or double dots)'
      : `label "${bad}" must be 1-63 letters, digits or '-', not starting or ending with '-'`;
  return undefined;
}

/** A dotted-quad IPv4 address with no leading zeros ("10.77.0.5"): ipv4.ts's one rule. */
function isIPv4Address(ip: string): boolean {
  return typeof ip === 'string' && parseIPv4(ip) !== undefined;
}

function checkDomain(domain: string): void {
  const problem = dnsNameProblem(domain);
  if (problem) throw new DnsError(`DNS domain "${domain}": ${problem}`);
}

function checkGroup(group: string): void {
  if (typeof group !== 'string' || !GROUP.test(group))
    throw new DnsError(
      `DNS record group "${group}": must be 1-200 letters, digits, '_', '.' or '-', starting with a letter or digit`,
    );
}

/**
 * Checks a group's records: each name a DNS name inside `domain`, each ip an IPv4 address. The
 * error names the group, the record and the field.
 */
export function validateRecords(
  group: string,
  records: readonly DnsRecord[],
  domain = DEFAULT_DOMAIN,
): void {
  checkGroup(group);
  const suffix = `.${domain.toLowerCase()}`;
  records.forEach((r, i) => {
    const where = `DNS record group ${group}: record ${i} (${r?.name} → ${r?.ip})`;
    const problem = dnsNameProblem(r?.name);
    if (problem) throw new DnsError(`${where}: name: ${problem}`);
    if (!r.name.toLowerCase().endsWith(suffix))
      throw new DnsError(`${where}: name: must be a full name in ${domain}`);
    if (!isIPv4Address(r.ip)) throw new DnsError(`${where}: ip: must be an IPv4 address`);
  });
}

/**
 * The hosts file of a group: a comment naming it, then one "<ip>\t<name>" line per record in
 * the given order (exact duplicates once). Validates first.
 */
export function renderHostsFile(
  group: string,
  records: readonly DnsRecord[],
  domain = DEFAULT_DOMAIN,
): string {
  validateRecords(group, records, domain);
  const lines = new Set(records.map((r) => `${r.ip}\t${r.name}`));
  return `# Conductor DNS records of ${group} (dnsmasq --hostsdir reads this live)\n${[...lines].map((l) => `${l}\n`).join('')}`;
}

/** Nameservers of a resolv.conf text, in order: the `nameserver` lines that hold an address. */
export function parseNameservers(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, value] = line.split(/\s+/);
    if (key !== 'nameserver' || value === undefined) continue;
    // A scoped IPv6 address (fe80::1%eth0) is checked without its zone.
    if (isIP(value.replace(/%[^%]+$/, '')) !== 0) out.push(value);
  }
  return out;
}

/** resolv.conf for a container, as the kubelet writes it for a ClusterFirst pod. */
export function containerResolvConf(opts: {
  nameserver: string;
  namespace: string;
  domain?: string;
}): string {
  const domain = opts.domain ?? DEFAULT_DOMAIN;
  checkDomain(domain);
  if (!LABEL.test(opts.namespace))
    throw new DnsError(`resolv.conf: namespace "${opts.namespace}": must be a DNS label`);
  if (isIP(opts.nameserver) === 0)
    throw new DnsError(`resolv.conf: nameserver "${opts.nameserver}": must be an IP address`);
  const search = [`${opts.namespace}.svc.${domain}`, `svc.${domain}`, domain];
  return `search ${search.join(' ')}\nnameserver ${opts.nameserver}\noptions ndots:5\n`;
}

/**
 * /etc/hosts for a container, as the kubelet writes it ("# Kubernetes-managed hosts file." then
 * the localhost lines then "<ip>\t<hostname>"); `aliases` follow the hostname on its line; ip
 * undefined → no own line (network none).
 */
export function containerHosts(opts: {
  hostname: string;
  ip?: string;
  aliases?: string[];
}): string {
  for (const [field, name] of [
    ['hostname', opts.hostname],
    ...(opts.aliases ?? []).map((a, i) => [`aliases[${i}]`, a]),
  ]) {
    const problem = dnsNameProblem(name ?? '');
    if (problem) throw new DnsError(`/etc/hosts: ${field} "${name}": ${problem}`);
  }
  if (opts.ip !== undefined && isIP(opts.ip) === 0)
    throw new DnsError(`/etc/hosts: ip "${opts.ip}": must be an IP address`);
  let text =
    '# Kubernetes-managed hosts file.\n' +
    '127.0.0.1\tlocalhost\n' +
    '::1\tlocalhost ip6-localhost ip6-loopback\n' +
    'fe00::0\tip6-localnet\n' +
    'fe00::0\tip6-mcastprefix\n' +
    'fe00::1\tip6-allnodes\n' +
    'fe00::2\tip6-allrouters\n';
  if (opts.ip !== undefined)
    text += `${[opts.ip, opts.hostname, ...(opts.aliases ?? [])].join('\t')}\n`;
  return text;
}

/** The files of a DnsServer's state dir. */
export function dnsPaths(dir: string): {
  hostsDir: string;
  record: string;
  pidFile: string;
  log: string;
} {
  return {
    hostsDir: join(dir, 'hosts'),
    record: join(dir, 'dnsmasq.json'),
    pidFile: join(dir, 'dnsmasq.pid'),
    log: join(dir, 'dnsmasq.log'),
  };
}

/**
 * dnsmasq's command line (argv[0] first): foreground, no config file, no resolv.conf, no
 * /etc/hosts, only the listen address, the domain answered locally from the hosts dir, the
 * upstreams as `--server=`, its log on stderr (the log file).
 */
export function dnsmasqCommand(opts: {
  dnsmasq: string;
  listenAddress: string;
  domain: string;
  hostsDir: string;
  pidFile: string;
  upstreams: readonly string[];
  cacheSize: number;
  logQueries?: boolean;
}): string[] {
  return [
    opts.dnsmasq,
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    '--no-resolv',
    '--no-hosts',
    '--no-poll',
    `--listen-address=${opts.listenAddress}`,
    '--bind-interfaces',
    `--domain=${opts.domain}`,
    `--local=/${opts.domain}/`,
    '--expand-hosts',
    `--hostsdir=${opts.hostsDir}`,
    `--pid-file=${opts.pidFile}`,
    `--cache-size=${opts.cacheSize}`,
    '--log-facility=-',
    ...(opts.logQueries ? ['--log-queries'] : []),
    ...opts.upstreams.map((u) => `--server=${u}`),
  ];
}

/** What is recorded of the process, to adopt it (or stop it) after a restart. */
interface ProcessRecord {
  kind: typeof RECORD_KIND;
  pid: number;
  startTime: string;
  /** The command line it was started with; /proc/PID/cmdline must still say it. */
  argv: string[];
  netns?: string;
}

function cmdline(pid: number): string[] | undefined {
  try {
    const parts = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (parts.at(-1) === '') parts.pop();
    return parts;
  } catch {
    return undefined;
  }
}

const sameList = (a: readonly string[], b: readonly string[] | undefined): boolean =>
  b !== undefined && a.length === b.length && a.every((x, i) => x === b[i]);

/** Whether the recorded pid still runs (not a zombie) and is the process that was recorded. */
function stillRuns(rec: ProcessRecord): boolean {
  const fields = procStatFields(rec.pid);
  return fields !== undefined && fields[0] !== 'Z' && fields[19] === rec.startTime;
}

/** Whether the recorded process is alive and ours: pid, start time and command line match. */
function isRecordedProcess(rec: ProcessRecord): boolean {
  return stillRuns(rec) && sameList(rec.argv, cmdline(rec.pid));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The readiness probe, run as `node -e` (inside the netns with nsenter when there is one): an A
 * query for argv[2] sent to argv[1]:53 every 20 ms until a response with its id comes back (exit
 * 0) or argv[3] ms passed (exit 1).
 */
const PROBE_JS = `
const dgram = require('node:dgram');
const [server, name, ms] = process.argv.slice(1);
const id = Math.floor(Math.random() * 65536);
const qname = Buffer.concat(name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])));
const query = Buffer.concat([Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), qname, Buffer.from([0, 0, 1, 0, 1])]);
const sock = dgram.createSocket('udp4');
sock.on('error', () => {});
sock.on('message', (m) => { if (m.length >= 12 && m.readUInt16BE(0) === id && (m[2] & 0x80)) process.exit(0); });
const send = () => sock.send(query, 53, server, () => {});
send();
setInterval(send, 20);
setTimeout(() => process.exit(1), Number(ms));
`;

/**
 * Runs and feeds a dnsmasq for the containers of one bridge network. Mutating calls are
 * serialised, so concurrent setRecords of one group land in call order.
 */
export class DnsServer {
  readonly listenAddress: string;
  readonly domain: string;
  private readonly paths: ReturnType<typeof dnsPaths>;
  private readonly log: Logger;
  private current: ProcessRecord | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: DnsServerOptions) {
    if (!isIPv4Address(opts.listenAddress))
      throw new DnsError(
        `DnsServer: listenAddress "${opts.listenAddress}": must be an IPv4 address`,
      );
    if (typeof opts.dir !== 'string' || !isAbsolute(opts.dir))
      throw new DnsError(`DnsServer: dir "${opts.dir}": must be an absolute path`);
    if (opts.netns !== undefined && !NETNS_NAME.test(opts.netns))
      throw new DnsError(`DnsServer: netns "${opts.netns}": must be a name under /run/netns`);
    if (opts.cacheSize !== undefined && !(Number.isInteger(opts.cacheSize) && opts.cacheSize >= 0))
      throw new DnsError(`DnsServer: cacheSize ${opts.cacheSize}: must be an integer ≥ 0`);
    for (const [i, u] of (opts.upstreams ?? []).entries())
      if (isIP(u.replace(/%[^%]+$/, '')) === 0)
        throw new DnsError(`DnsServer: upstreams[${i}] "${u}": must be an IP address`);
    this.listenAddress = opts.listenAddress;
    this.domain = opts.domain ?? DEFAULT_DOMAIN;
    checkDomain(this.domain);
    this.paths = dnsPaths(resolve(opts.dir));
    this.log = opts.logger ?? silentLogger;
  }

  /** The pid of the dnsmasq this instance runs or adopted, if any. */
  get pid(): number | undefined {
    return this.current?.pid;
  }

  /**
   * Starts dnsmasq, or adopts the recorded one when it is alive and runs with the same command
   * line; resolves once it answers a query. Idempotent. The listen address must exist in the
   * namespace (the bridge has its gateway address).
   */
  start(): Promise<void> {
    return this.serial(async () => {
      if (this.current && isRecordedProcess(this.current)) return;
      this.current = undefined;
      await this.prepareDirs();
      const argv = dnsmasqCommand({
        dnsmasq: this.opts.dnsmasq ?? 'dnsmasq',
        listenAddress: this.listenAddress,
        domain: this.domain,
        hostsDir: this.paths.hostsDir,
        pidFile: this.paths.pidFile,
        upstreams: this.upstreams(),
        cacheSize: this.opts.cacheSize ?? DEFAULT_CACHE_SIZE,
        logQueries: this.opts.logQueries,
      });
      const rec = await this.readRecord();
      if (rec && isRecordedProcess(rec)) {
        if (sameList(argv, rec.argv) && rec.netns === this.opts.netns) {
          if (await this.probe(this.opts.startTimeoutMs ?? 5000)) {
            this.current = rec;
            this.log.info('dns: adopted dnsmasq', { pid: rec.pid });
            return;
          }
          this.log.warn('dns: recorded dnsmasq does not answer: replacing it', { pid: rec.pid });
        } else {
          this.log.info('dns: dnsmasq runs with other arguments: replacing it', { pid: rec.pid });
        }
        await killRecorded(rec);
      }
      await this.spawnDnsmasq(argv);
    });
  }

  /**
   * Sets the records of `group` (one hosts file, replaced atomically; the same content is not
   * rewritten). No records → the group's file is removed. A bad record throws and writes nothing.
   */
  async setRecords(group: string, records: DnsRecord[]): Promise<void> {
    const text = records.length > 0 ? renderHostsFile(group, records, this.domain) : undefined;
    checkGroup(group);
    return this.serial(() => this.writeGroup(group, text));
  }

  /** Removes the records of `group` (nothing to do when it has none). */
  async removeRecords(group: string): Promise<void> {
    checkGroup(group);
    return this.serial(() => this.writeGroup(group, undefined));
  }

  /**
   * Makes the hosts dir hold exactly these groups (after a restart: stale files removed,
   * missing or changed ones written). All are validated before anything is written.
   */
  async sync(groups: ReadonlyMap<string, DnsRecord[]>): Promise<void> {
    const texts = new Map<string, string | undefined>();
    for (const [group, records] of groups) {
      checkGroup(group);
      texts.set(
        group,
        records.length > 0 ? renderHostsFile(group, records, this.domain) : undefined,
      );
    }
    return this.serial(async () => {
      await this.prepareDirs();
      for (const name of await readdir(this.paths.hostsDir)) {
        // Leftover temporaries of an interrupted write start with '.'.
        if (name.startsWith('.') || !texts.has(name))
          await rm(join(this.paths.hostsDir, name), { force: true, recursive: true });
      }
      for (const [group, text] of texts) await this.writeGroup(group, text);
    });
  }

  /**
   * Stops the dnsmasq this instance runs or adopted — or, when it has none, the recorded one if
   * it is really ours — by its pid only, and removes the state files (and the dir when empty).
   */
  stop(): Promise<void> {
    return this.serial(async () => {
      const rec = this.current ?? (await this.readRecord());
      this.current = undefined;
      if (rec && isRecordedProcess(rec)) await killRecorded(rec);
      const { hostsDir, record, pidFile, log } = this.paths;
      for (const path of [hostsDir, record, pidFile, log])
        await rm(path, { force: true, recursive: true });
      await rmdir(this.opts.dir).catch((err: unknown) => {
        if (errCode(err) !== 'ENOENT' && errCode(err) !== 'ENOTEMPTY') throw err;
      });
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private upstreams(): string[] {
    let list = this.opts.upstreams;
    if (list === undefined) {
      const file = this.opts.resolvConf ?? '/etc/resolv.conf';
      let text = '';
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        this.log.warn('dns: cannot read the host resolv.conf', { file, error: String(err) });
      }
      list = parseNameservers(text);
    }
    const out = list.filter((u) => u !== this.listenAddress);
    if (out.length === 0)
      this.log.warn('dns: no upstream nameservers: names outside the cluster will not resolve', {
        domain: this.domain,
      });
    return out;
  }

  /** The state dir and hosts dir, 0755, and every directory above traversable by `nobody`. */
  private async prepareDirs(): Promise<void> {
    const { hostsDir } = this.paths;
    await mkdir(hostsDir, { recursive: true, mode: 0o755 });
    await chmod(this.opts.dir, 0o755);
    await chmod(hostsDir, 0o755);
    for (let d = dirname(resolve(this.opts.dir)); ; d = dirname(d)) {
      const mode = (await stat(d)).mode;
      if ((mode & 0o001) === 0)
        throw new DnsError(
          `DNS: ${d} (mode ${(mode & 0o777).toString(8)}) is not traversable by others: dnsmasq runs as nobody and must read ${hostsDir}`,
        );
      if (d === dirname(d)) break;
    }
  }

  /** Writes (or, text undefined, removes) a group's file; the same content is left alone. */
  private async writeGroup(group: string, text: string | undefined): Promise<void> {
    const path = join(this.paths.hostsDir, group);
    if (text === undefined) {
      await rm(path, { force: true });
      return;
    }
    let old: string | undefined;
    try {
      old = await readFile(path, 'utf8');
    } catch (err) {
      if (errCode(err) !== 'ENOENT') throw err;
    }
    if (old === text) return;
    await mkdir(this.paths.hostsDir, { recursive: true, mode: 0o755 });
    // A dot name: dnsmasq skips it, and reads the file once it is renamed into place.
    const tmp = join(this.paths.hostsDir, `.${group}.${process.pid}.tmp`);
    try {
      const fh = await open(tmp, 'w', 0o644);
      try {
        await fh.writeFile(text);
        await fh.chmod(0o644); // whatever the umask: dnsmasq reads it as nobody
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  private async readRecord(): Promise<ProcessRecord | undefined> {
    const rec = await readJson<ProcessRecord>(this.paths.record).catch(() => undefined);
    if (
      rec?.kind !== RECORD_KIND ||
      !Number.isInteger(rec.pid) ||
      typeof rec.startTime !== 'string' ||
      !Array.isArray(rec.argv)
    )
      return undefined;
    return rec;
  }

  /** The command prefixed to run in the netns, if there is one. */
  private inNetns(argv: string[]): string[] {
    return this.opts.netns
      ? ['nsenter', `--net=/run/netns/${this.opts.netns}`, '--', ...argv]
      : argv;
  }

  private async spawnDnsmasq(argv: string[]): Promise<void> {
    const timeoutMs = this.opts.startTimeoutMs ?? 5000;
    const started = Date.now();
    const logFile = await open(this.paths.log, 'a', 0o644);
    let exited: Promise<string>;
    let pid: number;
    try {
      const [cmd = '', ...args] = this.inNetns(argv);
      // Its own session and no pipe to us: it outlives the controller, as containers do.
      const child = spawn(cmd, args, {
        detached: true,
        stdio: ['ignore', logFile.fd, logFile.fd],
      });
      exited = new Promise((res) => {
        child.once('error', (err) => res(err.message));
        child.once('exit', (code, signal) => res(signal ? `killed by ${signal}` : `exit ${code}`));
      });
      await new Promise<void>((res, rej) => {
        child.once('spawn', res);
        child.once('error', rej);
      }).catch((err: unknown) => {
        throw new DnsError(`DNS: cannot run ${cmd}: ${(err as Error).message}`, { cause: err });
      });
      child.unref();
      pid = child.pid ?? 0;
    } finally {
      await logFile.close();
    }
    const startTime = procStartTime(pid);
    if (startTime === undefined) throw new DnsError(`DNS: dnsmasq ${await this.failure(exited)}`);
    const rec: ProcessRecord = { kind: RECORD_KIND, pid, startTime, argv, netns: this.opts.netns };
    // Recorded before it is ready: a controller killed now still finds (and stops) it later.
    await writeJsonAtomic(this.paths.record, rec);
    const stopProbe = new AbortController();
    const ready = await Promise.race([
      this.probe(timeoutMs, stopProbe.signal),
      exited.then(() => false),
    ]);
    stopProbe.abort(); // when dnsmasq exited first, the probe would poll on until its deadline
    if (!ready) {
      const why = isRecordedProcess(rec)
        ? `did not answer on ${this.listenAddress}:53 within ${timeoutMs} ms`
        : await this.failure(exited);
      if (isRecordedProcess(rec)) await killRecorded(rec);
      await rm(this.paths.record, { force: true });
      throw new DnsError(`DNS: dnsmasq ${why}`);
    }
    this.current = rec;
    void exited.then((how) => {
      if (this.current === rec) this.log.error('dns: dnsmasq exited', { pid, how });
    });
    this.log.info('dns: started dnsmasq', {
      pid,
      listenAddress: this.listenAddress,
      ms: Date.now() - started,
    });
  }

  /** How it ended, with the last lines of its log (where dnsmasq says why). */
  private async failure(exited: Promise<string>): Promise<string> {
    const how = await exited;
    const tail = await readFile(this.paths.log, 'utf8').then(
      (t) => t.trim().split('\n').slice(-3).join(' | '),
      () => '',
    );
    return `failed (${how})${tail ? `: ${tail}` : ''} [log ${this.paths.log}]`;
  }

  /** Whether dnsmasq answers a query on the listen address within `timeoutMs`. */
  private probe(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const [cmd = '', ...args] = this.inNetns([
      process.execPath,
      '-e',
      PROBE_JS,
      this.listenAddress,
      this.domain,
      String(timeoutMs),
    ]);
    return new Promise((res) => {
      const child = spawn(cmd, args, { stdio: 'ignore', signal, killSignal: 'SIGKILL' });
      child.once('error', () => res(false));
      child.once('exit', (code) => res(code === 0));
    });
  }
}

/** SIGTERM to the recorded process (pid checked against the record), SIGKILL after 2 s. */
async function killRecorded(rec: ProcessRecord): Promise<void> {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    if (!isRecordedProcess(rec)) return;
    try {
      process.kill(rec.pid, signal);
    } catch (err) {
      if (errCode(err) === 'ESRCH') return;
      throw err;
    }
    // Until it is gone or a zombie: its sockets are closed then (an exiting process's cmdline
    // reads empty before that, so the command line is no test here).
    for (let waited = 0; waited < 2000; waited += 10) {
      if (!stillRuns(rec)) return;
      await sleep(10);
    }
  }
  throw new DnsError(`DNS: dnsmasq (pid ${rec.pid}) did not exit after SIGKILL`);
}
