/**
 * Invoking CNI plugins exactly as the CNI spec (SPEC.md, "Execution Protocol") says and libcni
 * (containernetworking/cni/libcni/api.go) does: one network configuration list, its plugins run
 * in order for ADD with each one's result as the next one's `prevResult`, in reverse for DEL;
 * CNI_COMMAND / CNI_CONTAINERID / CNI_NETNS / CNI_IFNAME / CNI_ARGS / CNI_PATH in the
 * environment, the plugin's config on stdin, a result or an error object on stdout.
 *
 * The result of an ADD is cached on disk with the exact config it was made with (libcni's
 * `results/<network>-<container>-<ifname>` layout), so DEL and CHECK work after a restart and
 * after the config file changed — DEL must succeed on whatever is half-made, as the kubelet
 * learnt: a DEL with no cache still runs the plugins, without a prevResult.
 */
import { constants } from 'node:fs';
import { access, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { runProcess } from '../spawn.js';

export const CNI_VERSION = '1.0.0';

/** One plugin of a list: `type` names its binary; the rest is the plugin's own. */
export interface CniPluginConf {
  type: string;
  /** Which `runtimeConfig` keys it takes (portMappings, bandwidth, ...). */
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

/** A network configuration list (a `.conflist` file). */
export interface CniConfList {
  cniVersion: string;
  name: string;
  disableCheck?: boolean;
  plugins: CniPluginConf[];
}

/** What a plugin returns (the parts Conductor reads; the rest is kept as is). */
export interface CniResult {
  cniVersion: string;
  interfaces?: { name: string; mac?: string; sandbox?: string }[];
  ips?: { address: string; gateway?: string; interface?: number }[];
  routes?: { dst: string; gw?: string }[];
  dns?: { nameservers?: string[]; domain?: string; search?: string[] };
  [key: string]: unknown;
}

/** One container's attachment to the network. */
export interface CniAttachment {
  containerId: string;
  /** The network namespace's path, e.g. /proc/PID/ns/net or /run/netns/NAME. */
  netns: string;
  ifName: string;
  /** CNI_ARGS, e.g. K8S_POD_NAMESPACE. */
  args?: Record<string, string>;
  /** runtimeConfig values, given to the plugins whose capabilities ask for them. */
  capabilityArgs?: Record<string, unknown>;
}

/** A plugin's error: the CNI error object, with which plugin and command said it. */
export class CniError extends Error {
  constructor(
    readonly plugin: string,
    readonly command: string,
    readonly code: number,
    msg: string,
    readonly details?: string,
  ) {
    super(
      `CNI ${command} ${plugin}: ${msg}${details ? ` (${details})` : ''}${code ? ` [code ${code}]` : ''}`,
    );
    this.name = 'CniError';
  }
}

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Checks a parsed conflist; errors name `where` and the field. */
export function parseConfList(text: string, where: string): CniConfList {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`${where}: invalid JSON: ${(err as Error).message}`, { cause: err });
  }
  const o = doc as Partial<CniConfList>;
  if (typeof o !== 'object' || o === null) throw new Error(`${where}: must be a JSON object`);
  if (typeof o.name !== 'string' || !NAME.test(o.name))
    throw new Error(`${where}: name: must be a network name (letters, digits, _ . -)`);
  if (typeof o.cniVersion !== 'string' || !/^\d+\.\d+\.\d+$/.test(o.cniVersion))
    throw new Error(`${where}: cniVersion: must be a version like ${CNI_VERSION}`);
  if (!Array.isArray(o.plugins) || o.plugins.length === 0)
    throw new Error(`${where}: plugins: must list at least one plugin`);
  o.plugins.forEach((p, i) => {
    if (typeof p !== 'object' || p === null || typeof p.type !== 'string' || !NAME.test(p.type))
      throw new Error(`${where}: plugins[${i}].type: must name a plugin binary`);
  });
  return o as CniConfList;
}

export interface CniOptions {
  /** Where plugin binaries are looked up (CNI_PATH), in order. */
  binDirs: string[];
  /** Where ADD results are cached for DEL and CHECK. */
  cacheDir: string;
  /** A plugin that runs longer is killed (default 60 s). */
  timeoutMs?: number;
}

interface CacheEntry {
  kind: 'cniCacheV1';
  containerId: string;
  ifName: string;
  networkName: string;
  config: CniConfList;
  cniArgs: Record<string, string>;
  capabilityArgs: Record<string, unknown>;
  result: CniResult;
}

/** A conflist names a plugin that no CNI_PATH directory has. */
export class CniPluginMissingError extends Error {
  constructor(
    readonly plugin: string,
    network: string,
    binDirs: string[],
  ) {
    super(`CNI plugin \`${plugin}\` of network ${network} not found in ${binDirs.join(':')}`);
    this.name = 'CniPluginMissingError';
  }
}

export class CniNetwork {
  constructor(
    readonly conf: CniConfList,
    private readonly opts: CniOptions,
  ) {}

  static async load(file: string, opts: CniOptions): Promise<CniNetwork> {
    return new CniNetwork(parseConfList(await readFile(file, 'utf8'), file), opts);
  }

  /**
   * ADD: the plugins in order. When one fails, DEL runs for it and those before it, in reverse
   * (the spec's answer to a failed ADD: plugins must clean up what is half-made), and the ADD's
   * error is what is thrown.
   */
  async add(att: CniAttachment): Promise<CniResult> {
    validateAttachment(att);
    let prev: CniResult | undefined;
    const tried: CniPluginConf[] = [];
    try {
      for (const p of this.conf.plugins) {
        tried.push(p);
        prev = (await this.exec('ADD', this.conf, p, att, prev)) as CniResult;
      }
    } catch (err) {
      const partial: CniConfList = { ...this.conf, plugins: tried };
      for (const p of [...tried].reverse())
        await this.exec('DEL', partial, p, att, prev).catch(() => undefined);
      throw err;
    }
    const result = prev ?? { cniVersion: this.conf.cniVersion };
    await this.writeCache(att, result);
    return result;
  }

  /**
   * DEL: the plugins in reverse, with the config and result cached by ADD when there are
   * (after a restart, or after the conflist changed), else with this config and no prevResult.
   * Succeeds on what is half-made or already gone; the cache goes last. Plugins whose binary is
   * missing are skipped and returned.
   */
  async del(att: CniAttachment): Promise<string[]> {
    validateAttachment(att);
    const cached = await this.readCache(att);
    const conf = cached?.config ?? this.conf;
    const use: CniAttachment = cached
      ? { ...att, args: cached.cniArgs, capabilityArgs: cached.capabilityArgs }
      : att;
    const skipped: string[] = [];
    for (const p of [...conf.plugins].reverse()) {
      try {
        await this.exec('DEL', conf, p, use, cached?.result);
      } catch (err) {
        // A plugin that is not there cannot undo anything (nor, while it is missing, can an
        // ADD have run it): the others still run, and the caller is told which were skipped.
        if (!(err instanceof CniPluginMissingError)) throw err;
        skipped.push(err.plugin);
      }
    }
    await rm(this.cachePath(att), { force: true });
    return skipped;
  }

  /** CHECK: the plugins in order with the cached result; throws if one finds a difference. */
  async check(att: CniAttachment): Promise<void> {
    validateAttachment(att);
    if (this.conf.disableCheck) return;
    const cached = await this.readCache(att);
    if (!cached)
      throw new Error(
        `CNI CHECK ${this.conf.name}: no cached result for ${att.containerId}/${att.ifName}`,
      );
    for (const p of cached.config.plugins)
      await this.exec('CHECK', cached.config, p, att, cached.result);
  }

  /** The result ADD cached for `att`, if any. */
  async cachedResult(att: CniAttachment): Promise<CniResult | undefined> {
    return (await this.readCache(att))?.result;
  }

  private cachePath(att: CniAttachment): string {
    return join(
      this.opts.cacheDir,
      'results',
      `${this.conf.name}-${att.containerId}-${att.ifName}`,
    );
  }

  private async readCache(att: CniAttachment): Promise<CacheEntry | undefined> {
    let text: string;
    try {
      text = await readFile(this.cachePath(att), 'utf8');
    } catch {
      return undefined;
    }
    const entry = JSON.parse(text) as CacheEntry;
    return entry.kind === 'cniCacheV1' ? entry : undefined;
  }

  private async writeCache(att: CniAttachment, result: CniResult): Promise<void> {
    const file = this.cachePath(att);
    await mkdir(join(this.opts.cacheDir, 'results'), { recursive: true, mode: 0o700 });
    const entry: CacheEntry = {
      kind: 'cniCacheV1',
      containerId: att.containerId,
      ifName: att.ifName,
      networkName: this.conf.name,
      config: this.conf,
      cniArgs: att.args ?? {},
      capabilityArgs: att.capabilityArgs ?? {},
      result,
    };
    await writeFile(`${file}.tmp`, JSON.stringify(entry), { mode: 0o600 });
    await rename(`${file}.tmp`, file);
  }

  /** The plugin's stdin: its config with the list's name and version, prevResult, runtimeConfig. */
  private pluginConfig(
    conf: CniConfList,
    p: CniPluginConf,
    att: CniAttachment,
    prev: CniResult | undefined,
  ): Record<string, unknown> {
    const out: Record<string, unknown> = { ...p, name: conf.name, cniVersion: conf.cniVersion };
    if (prev) out.prevResult = prev;
    const runtimeConfig: Record<string, unknown> = {};
    for (const [key, wanted] of Object.entries(p.capabilities ?? {}))
      if (wanted && att.capabilityArgs && key in att.capabilityArgs)
        runtimeConfig[key] = att.capabilityArgs[key];
    if (Object.keys(runtimeConfig).length > 0) out.runtimeConfig = runtimeConfig;
    return out;
  }

  private async findPlugin(type: string): Promise<string> {
    for (const dir of this.opts.binDirs) {
      const path = join(dir, type);
      try {
        await access(path, constants.X_OK);
        return path;
      } catch {
        // next directory
      }
    }
    throw new CniPluginMissingError(type, this.conf.name, this.opts.binDirs);
  }

  private async exec(
    command: 'ADD' | 'DEL' | 'CHECK',
    conf: CniConfList,
    p: CniPluginConf,
    att: CniAttachment,
    prev: CniResult | undefined,
  ): Promise<unknown> {
    const bin = await this.findPlugin(p.type);
    const env = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      CNI_COMMAND: command,
      CNI_CONTAINERID: att.containerId,
      CNI_NETNS: att.netns,
      CNI_IFNAME: att.ifName,
      CNI_ARGS: Object.entries(att.args ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(';'),
      CNI_PATH: this.opts.binDirs.join(':'),
    };
    const stdin = JSON.stringify(this.pluginConfig(conf, p, att, prev));
    const timeoutMs = this.opts.timeoutMs ?? 60_000;
    const { code, stdout, stderr, timedOut } = await runProcess(bin, [], {
      env,
      input: stdin,
      timeoutMs,
    });
    if (timedOut) throw new CniError(p.type, command, 0, `killed after ${timeoutMs} ms`);
    if (code === 0) {
      if (command !== 'ADD') return undefined;
      try {
        return JSON.parse(stdout) as unknown;
      } catch {
        throw new CniError(p.type, command, 0, `printed no JSON result: ${stdout.slice(0, 200)}`);
      }
    }
    let e: { code?: number; msg?: string; details?: string } = {};
    try {
      e = JSON.parse(stdout) as typeof e;
    } catch {
      // not an error object: report what it printed
    }
    throw new CniError(
      p.type,
      command,
      e.code ?? 0,
      e.msg ?? (stderr.trim() || stdout.trim() || `exit ${String(code)}`),
      e.details,
    );
  }
}

function validateAttachment(att: CniAttachment): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(att.containerId))
    throw new Error(`CNI: container id ${JSON.stringify(att.containerId)} is not valid`);
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(att.ifName) || att.ifName === '.' || att.ifName === '..')
    throw new Error(`CNI: interface name ${JSON.stringify(att.ifName)} is not valid`);
  if (!att.netns.startsWith('/')) throw new Error(`CNI: netns ${att.netns} must be a path`);
  for (const [k, v] of Object.entries(att.args ?? {}))
    if (/[;=]/.test(k) || v.includes(';'))
      throw new Error(`CNI: argument ${k}=${v} may not contain ';' (or '=' in the key)`);
}
