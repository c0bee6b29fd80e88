/**
 * Converts a Docker/podman seccomp profile (the format of /usr/share/containers/seccomp.json
 * and moby's profiles/seccomp/default.json) into OCI `linux.seccomp`, resolving each rule's
 * `includes`/`excludes` against the container's bounding capabilities, the host architecture
 * and the kernel version exactly as moby's profiles/seccomp/seccomp_linux.go (setupSeccomp) does.
 */
import { readFileSync } from 'node:fs';
import { release } from 'node:os';

import type { OciSeccomp, OciSeccompArg, OciSyscall, SeccompAction } from './oci-spec.js';

export const DEFAULT_SECCOMP_PROFILE = '/usr/share/containers/seccomp.json';

interface ProfileFilter {
  caps?: string[] | null;
  arches?: string[] | null;
  minKernel?: string | null;
}

interface ProfileSyscall {
  name?: string;
  names?: string[] | null;
  action: SeccompAction;
  errnoRet?: number | null;
  args?: OciSeccompArg[] | null;
  includes?: ProfileFilter | null;
  excludes?: ProfileFilter | null;
}

export interface SeccompProfile {
  defaultAction: SeccompAction;
  defaultErrnoRet?: number | null;
  architectures?: string[] | null;
  archMap?: Array<{ architecture: string; subArchitectures?: string[] | null }> | null;
  syscalls?: ProfileSyscall[] | null;
}

export interface SeccompHost {
  /** Go's GOARCH spelling, as profiles use it in includes/excludes: amd64, arm64, s390x, ... */
  arch: string;
  /** "major.minor[...]" as in uname -r. */
  kernel: string;
}

const NODE_TO_GOARCH: Record<string, string> = {
  x64: 'amd64',
  ia32: '386',
  arm64: 'arm64',
  arm: 'arm',
  s390x: 's390x',
  ppc64: 'ppc64le',
  riscv64: 'riscv64',
  mips: 'mips',
  mipsel: 'mipsle',
  mips64el: 'mips64le',
};

const GOARCH_TO_SECCOMP: Record<string, string> = {
  amd64: 'SCMP_ARCH_X86_64',
  '386': 'SCMP_ARCH_X86',
  arm64: 'SCMP_ARCH_AARCH64',
  arm: 'SCMP_ARCH_ARM',
  s390x: 'SCMP_ARCH_S390X',
  ppc64le: 'SCMP_ARCH_PPC64LE',
  riscv64: 'SCMP_ARCH_RISCV64',
  mips: 'SCMP_ARCH_MIPS',
  mipsle: 'SCMP_ARCH_MIPSEL',
  mips64le: 'SCMP_ARCH_MIPSEL64',
};

export function currentSeccompHost(): SeccompHost {
  return { arch: NODE_TO_GOARCH[process.arch] ?? process.arch, kernel: release() };
}

function parseKernel(version: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(version);
  if (!m) throw new Error(`seccomp: cannot parse kernel version "${version}"`);
  return [Number(m[1]), Number(m[2])];
}

function kernelAtLeast(host: string, min: string): boolean {
  const [hMaj, hMin] = parseKernel(host);
  const [mMaj, mMin] = parseKernel(min);
  return hMaj > mMaj || (hMaj === mMaj && hMin >= mMin);
}

function applies(call: ProfileSyscall, caps: ReadonlySet<string>, host: SeccompHost): boolean {
  const ex = call.excludes ?? {};
  if (ex.arches?.includes(host.arch)) return false;
  if (ex.caps?.some((c) => caps.has(c))) return false;
  if (ex.minKernel && kernelAtLeast(host.kernel, ex.minKernel)) return false;
  const inc = call.includes ?? {};
  if (inc.arches?.length && !inc.arches.includes(host.arch)) return false;
  if (inc.caps?.some((c) => !caps.has(c))) return false;
  if (inc.minKernel && !kernelAtLeast(host.kernel, inc.minKernel)) return false;
  return true;
}

/** `boundingCaps` are CAP_-prefixed names, as in the OCI process.capabilities.bounding. */
export function convertSeccompProfile(
  profile: SeccompProfile,
  boundingCaps: readonly string[],
  host: SeccompHost = currentSeccompHost(),
): OciSeccomp {
  if (profile.architectures?.length && profile.archMap?.length) {
    throw new Error('seccomp profile: use either "architectures" or "archMap", not both');
  }
  const caps = new Set(boundingCaps);
  const out: OciSeccomp = { defaultAction: profile.defaultAction, syscalls: [] };
  if (profile.defaultErrnoRet != null) out.defaultErrnoRet = profile.defaultErrnoRet;

  if (profile.architectures?.length) {
    out.architectures = [...profile.architectures];
  } else if (profile.archMap?.length) {
    const native = GOARCH_TO_SECCOMP[host.arch];
    out.architectures = profile.archMap
      .filter((a) => a.architecture === native)
      .flatMap((a) => [a.architecture, ...(a.subArchitectures ?? [])]);
  }

  for (const call of profile.syscalls ?? []) {
    if (call.name)
      throw new Error(`seccomp profile: rule uses deprecated "name" (${call.name}); use "names"`);
    if (!applies(call, caps, host)) continue;
    const rule: OciSyscall = { names: [...(call.names ?? [])], action: call.action };
    if (call.errnoRet != null) rule.errnoRet = call.errnoRet;
    if (call.args?.length) rule.args = call.args.map((a) => ({ ...a }));
    out.syscalls.push(rule);
  }
  return out;
}

const profileCache = new Map<string, SeccompProfile>();
const convertedCache = new Map<string, OciSeccomp>();

/** Loads and converts a profile file; both steps are cached (per path, and per capability set). */
export function seccompForCapabilities(
  boundingCaps: readonly string[],
  profilePath: string = DEFAULT_SECCOMP_PROFILE,
  host: SeccompHost = currentSeccompHost(),
): OciSeccomp {
  const key = JSON.stringify([profilePath, host, [...boundingCaps].sort()]);
  let converted = convertedCache.get(key);
  if (!converted) {
    let profile = profileCache.get(profilePath);
    if (!profile) {
      try {
        profile = JSON.parse(readFileSync(profilePath, 'utf8')) as SeccompProfile;
      } catch (err) {
        throw new Error(`seccomp profile ${profilePath}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      profileCache.set(profilePath, profile);
    }
    converted = convertSeccompProfile(profile, boundingCaps, host);
    convertedCache.set(key, converted);
  }
  // Callers embed the result in a config they may mutate: hand out a copy.
  return structuredClone(converted);
}
