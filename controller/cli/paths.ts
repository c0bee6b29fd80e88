/**
 * Manifest fields whose relative paths mean "relative to the manifest's directory": an Image's
 * spec.steps[].copy.src and the path in spec.from (oci-archive:, docker-archive:, oci:). The
 * Image reconciler resolves them against the directory of the watch-dir file and refuses
 * anything outside it, so after `apply` copies a manifest they are looked up next to the copy.
 * `apply` uses this to warn when what they name is not there.
 */
import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';

const FROM_PATH = /^(?:oci-archive|docker-archive|oci):(.+)$/;

/** A relative path in a manifest, with the field that holds it. */
export interface RelativePath {
  field: string;
  path: string;
}

/** The relative paths an object's fields hold (none for kinds other than Image). */
export function relativePaths(obj: { kind: string; spec?: object }): RelativePath[] {
  if (obj.kind !== 'Image') return [];
  const spec = obj.spec as { from?: unknown; steps?: unknown } | undefined;
  const out: RelativePath[] = [];
  const from = typeof spec?.from === 'string' ? FROM_PATH.exec(spec.from) : null;
  if (from?.[1] !== undefined && !isAbsolute(from[1]))
    out.push({ field: 'spec.from', path: from[1] });
  const steps = Array.isArray(spec?.steps) ? (spec.steps as unknown[]) : [];
  steps.forEach((step, i) => {
    const src = (step as { copy?: { src?: unknown } } | null)?.copy?.src;
    if (typeof src === 'string' && !isAbsolute(src)) {
      out.push({ field: `spec.steps[${i}].copy.src`, path: src });
    }
  });
  return out;
}

/**
 * Whether a relative path exists under `dir`. `from` paths may end in `:TAG`
 * (oci-archive:PATH[:TAG]), so the path without its last `:…` counts too.
 */
export function existsUnder(dir: string, path: string): boolean {
  if (existsSync(resolve(dir, path))) return true;
  const colon = path.lastIndexOf(':');
  return colon > 0 && existsSync(resolve(dir, path.slice(0, colon)));
}
