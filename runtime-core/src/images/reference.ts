/**
 * Where an image's root filesystem comes from: the `from` of an Image, parsed. Pure.
 *
 * Registry references follow docker's normalisation: no registry → docker.io, a one-part name on
 * Docker Hub → library/NAME, no tag and no digest → :latest. `debian:SUITE` and `ubuntu:SUITE`
 * are distribution bases built with debootstrap (the Docker Hub images are
 * docker.io/library/debian:SUITE).
 */

export type ImageSource =
  | { kind: 'scratch' }
  | { kind: 'debootstrap'; distro: 'debian' | 'ubuntu'; suite: string }
  | { kind: 'oci-archive'; path: string; tag?: string }
  | { kind: 'docker-archive'; path: string }
  | { kind: 'oci'; path: string; tag?: string }
  | { kind: 'image'; name: string }
  | RegistryReference;

export interface RegistryReference {
  kind: 'registry';
  /** Host[:port], e.g. docker.io or 127.0.0.1:5000. */
  registry: string;
  /** e.g. library/busybox. */
  repository: string;
  tag?: string;
  /** sha256:<64 hex>. */
  digest?: string;
}

export class SourceError extends Error {
  constructor(detail: string) {
    super(`spec.from: ${detail}`);
    this.name = 'SourceError';
  }
}

export const DEFAULT_REGISTRY = 'docker.io';

const SUITE = /^[a-z][a-z0-9.-]{0,63}$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
// distribution/reference: path components of lower-case alphanumerics with . _ __ - separators.
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\.?)+(?::\d{1,5})?$|^\[[0-9a-fA-F:.]+\](?::\d{1,5})?$/;
const K8S_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** `PATH[:TAG]`: the tag is what follows the last ':' when it looks like a tag, as skopeo reads it. */
function pathAndTag(rest: string, what: string): { path: string; tag?: string } {
  const colon = rest.lastIndexOf(':');
  const candidate = colon >= 0 ? rest.slice(colon + 1) : '';
  const parsed =
    colon > 0 && TAG.test(candidate) && !candidate.includes('/')
      ? { path: rest.slice(0, colon), tag: candidate }
      : { path: rest };
  if (parsed.path === '') throw new SourceError(`"${what}:" needs a path`);
  if (parsed.path.includes('\0')) throw new SourceError(`the path contains a NUL byte`);
  return parsed;
}

/**
 * Whether every build asks the registry for this source again: a `latest` tag (the kubelet's
 * Always); a digest or another tag is pulled once (IfNotPresent).
 */
export function alwaysPulled(source: ImageSource): boolean {
  return source.kind === 'registry' && source.digest === undefined && source.tag === 'latest';
}

export function parseSource(from: string): ImageSource {
  const value = from.trim();
  if (value === 'scratch') return { kind: 'scratch' };
  const colon = value.indexOf(':');
  const prefix = colon > 0 ? value.slice(0, colon) : '';
  const rest = colon > 0 ? value.slice(colon + 1) : '';
  switch (prefix) {
    case 'debian':
    case 'ubuntu':
      if (!SUITE.test(rest)) {
        throw new SourceError(
          `"${value}": ${prefix}:SUITE is a debootstrap base and "${rest}" is not a suite name ` +
            `(for the registry image write docker.io/library/${prefix}:${rest})`,
        );
      }
      return { kind: 'debootstrap', distro: prefix, suite: rest };
    case 'oci-archive':
      return { kind: 'oci-archive', ...pathAndTag(rest, prefix) };
    case 'oci':
      return { kind: 'oci', ...pathAndTag(rest, prefix) };
    case 'docker-archive':
      if (rest === '') throw new SourceError(`"docker-archive:" needs a path`);
      return { kind: 'docker-archive', path: rest };
    case 'image':
      if (!K8S_NAME.test(rest))
        throw new SourceError(`"${value}": "${rest}" is not a valid Image name`);
      return { kind: 'image', name: rest };
    default:
      return parseRegistryReference(value);
  }
}

export function parseRegistryReference(value: string): RegistryReference {
  let rest = value;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest))
      throw new SourceError(`"${value}": digest "${digest}" is not sha256:<64 hex digits>`);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const tagColon = rest.indexOf(':', lastSlash + 1);
  if (tagColon >= 0) {
    tag = rest.slice(tagColon + 1);
    rest = rest.slice(0, tagColon);
    if (!TAG.test(tag)) throw new SourceError(`"${value}": "${tag}" is not a valid tag`);
  }
  const parts = rest.split('/');
  let registry = DEFAULT_REGISTRY;
  const first = parts[0] ?? '';
  if (
    parts.length > 1 &&
    (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('['))
  ) {
    registry = first;
    parts.shift();
    if (!DOMAIN.test(registry))
      throw new SourceError(`"${value}": "${registry}" is not a registry host`);
  }
  if (registry === 'index.docker.io') registry = DEFAULT_REGISTRY;
  if (parts.length === 0 || parts.some((p) => !COMPONENT.test(p))) {
    throw new SourceError(
      `"${value}" is not scratch, debian:SUITE, ubuntu:SUITE, oci-archive:PATH, ` +
        `docker-archive:PATH, oci:DIR, image:NAME or a registry reference ` +
        `([REGISTRY/]REPOSITORY[:TAG][@DIGEST], lower-case)`,
    );
  }
  if (registry === DEFAULT_REGISTRY && parts.length === 1) parts.unshift('library');
  if (!tag && !digest) tag = 'latest';
  return {
    kind: 'registry',
    registry,
    repository: parts.join('/'),
    ...(tag !== undefined ? { tag } : {}),
    ...(digest !== undefined ? { digest } : {}),
  };
}

/** The reference written out in full, as `docker pull` would name it. */
export function formatReference(ref: RegistryReference): string {
  return (
    `${ref.registry}/${ref.repository}` +
    (ref.tag !== undefined ? `:${ref.tag}` : '') +
    (ref.digest !== undefined ? `@${ref.digest}` : '')
  );
}

/** The Image a `from: image:NAME` builds on; undefined for any other (or an invalid) source. */
export function baseImageName(from: string): string | undefined {
  try {
    const source = parseSource(from);
    return source.kind === 'image' ? source.name : undefined;
  } catch {
    return undefined;
  }
}
