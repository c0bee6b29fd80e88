/**
 * The configuration containers inherit from an image (entrypoint, cmd, env, working directory,
 * user, exposed ports): read from an OCI image config, changed by build steps, overridden by the
 * Image's spec.config — the same rules docker applies to FROM, ENV/WORKDIR/USER and the
 * Dockerfile's ENTRYPOINT/CMD. Pure.
 */

export interface ExposedPort {
  port: number;
  protocol: 'TCP' | 'UDP';
}

export interface ImageConfig {
  entrypoint?: string[];
  cmd?: string[];
  /** In the order the variables were first set. */
  env?: Record<string, string>;
  workingDir?: string;
  /** USER[:GROUP], names or numeric ids, as the image says it. */
  user?: string;
  exposedPorts?: ExposedPort[];
}

/** The `config` object of an OCI image configuration (image-spec config.md). */
export interface OciImageConfigBody {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
  ExposedPorts?: Record<string, object> | null;
}

export interface OciImageConfig {
  architecture?: string;
  os?: string;
  config?: OciImageConfigBody;
  rootfs?: { type: string; diff_ids: string[] };
}

export function fromOciConfig(body: OciImageConfigBody | undefined): ImageConfig {
  const out: ImageConfig = {};
  if (!body) return out;
  if (body.Entrypoint?.length) out.entrypoint = [...body.Entrypoint];
  if (body.Cmd?.length) out.cmd = [...body.Cmd];
  if (body.Env?.length) {
    out.env = {};
    for (const kv of body.Env) {
      const eq = kv.indexOf('=');
      if (eq > 0) out.env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
  }
  if (body.WorkingDir) out.workingDir = body.WorkingDir;
  if (body.User) out.user = body.User;
  const ports: ExposedPort[] = [];
  for (const key of Object.keys(body.ExposedPorts ?? {})) {
    const m = /^(\d{1,5})(?:\/(tcp|udp))?$/i.exec(key);
    const port = Number(m?.[1]);
    if (m && port >= 1 && port <= 65535)
      ports.push({ port, protocol: m[2]?.toLowerCase() === 'udp' ? 'UDP' : 'TCP' });
  }
  // In port order: the image's digest must not depend on how its JSON happened to be ordered.
  ports.sort((a, b) => a.port - b.port || a.protocol.localeCompare(b.protocol));
  if (ports.length) out.exposedPorts = ports;
  return out;
}

/** The OCI image config body of a configuration: the inverse of fromOciConfig. */
export function toOciConfig(config: ImageConfig): OciImageConfigBody {
  const out: OciImageConfigBody = {};
  if (config.entrypoint?.length) out.Entrypoint = [...config.entrypoint];
  if (config.cmd?.length) out.Cmd = [...config.cmd];
  if (config.env && Object.keys(config.env).length > 0)
    out.Env = Object.entries(config.env).map(([k, v]) => `${k}=${v}`);
  if (config.workingDir) out.WorkingDir = config.workingDir;
  if (config.user) out.User = config.user;
  if (config.exposedPorts?.length) {
    out.ExposedPorts = Object.fromEntries(
      config.exposedPorts.map((p) => [`${p.port}/${p.protocol.toLowerCase()}`, {}]),
    );
  }
  return out;
}

/** `over` applied on `base`: env merges, ports add up, the rest replaces; a new entrypoint clears
 * an inherited cmd (docker: "setting ENTRYPOINT resets CMD"). */
export function mergeConfig(base: ImageConfig, over: ImageConfig): ImageConfig {
  const out: ImageConfig = { ...base };
  if (over.entrypoint !== undefined) {
    out.entrypoint = [...over.entrypoint];
    if (over.cmd === undefined) delete out.cmd;
  }
  if (over.cmd !== undefined) out.cmd = [...over.cmd];
  if (over.env) out.env = { ...(base.env ?? {}), ...over.env };
  if (over.workingDir !== undefined) out.workingDir = over.workingDir;
  if (over.user !== undefined) out.user = over.user;
  if (over.exposedPorts?.length) {
    const seen = new Map((base.exposedPorts ?? []).map((p) => [`${p.port}/${p.protocol}`, p]));
    for (const p of over.exposedPorts) seen.set(`${p.port}/${p.protocol}`, p);
    out.exposedPorts = [...seen.values()];
  }
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined)) as ImageConfig;
}

/** The PATH docker gives a build or container whose image sets none. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
