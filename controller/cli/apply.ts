/**
 * `conductor apply -f FILE|DIR`: puts manifests into the running controller's watch dir.
 *
 * Every file is parsed and validated here first, with the controller's own parser and the
 * CRDs' schemas, so errors are reported before anything is copied and nothing is copied if any
 * file is invalid. Each file becomes one file of the same name in the watch dir, written
 * atomically; a file whose content is already there is not rewritten (no event, no reconcile).
 * The verdict per object compares with what the controller has stored: `created` (not stored),
 * `configured` (spec, labels or annotations differ) or `unchanged`.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { isKind } from '../api/kinds.js';
import type { ConductorObject } from '../api/types.generated.js';
import {
  describeIdentity,
  formatManifestError,
  identityKey,
  type ParsedObject,
} from '../source/manifests.js';
import { validateManifest } from '../validation/index.js';
import { COMMON_OPTIONS, parseCommand } from './flags.js';
import { resourceName, sortKeys } from './format.js';
import { CliError, UsageError, type CliIO } from './io.js';
import { existsUnder, relativePaths } from './paths.js';
import { fileDefining, StateDir, type StoredObject } from './state.js';
import { parseFile, readIfExists, readInputFiles, watchDirOf, writeAtomic } from './watchdir.js';

export const APPLY_USAGE = `Apply manifests: copy them into the running controller's watch dir.

Usage:
  conductor apply -f FILE|DIR [-f ...]

Each file is validated first; if any is invalid, nothing is copied. A directory means its
.yaml, .yml and .json files (not recursive).

Options:
  -f, --filename PATH     a manifest file or a directory of them (repeatable)
      --state-dir DIR     state directory (default /var/lib/conductor)
`;

export type ApplyVerdict = 'created' | 'configured' | 'unchanged';

/** What the controller would make of an object compared with what it has stored. */
export function applyVerdict(
  desired: ConductorObject,
  stored: StoredObject | undefined,
): ApplyVerdict {
  if (!stored) return 'created';
  // Compared as canonical JSON: what both would be on disk, whatever realm or key order the
  // values come from.
  const canonical = (spec: unknown, labels: unknown, annotations: unknown): string =>
    JSON.stringify(
      sortKeys({ spec: spec ?? {}, labels: labels ?? {}, annotations: annotations ?? {} }),
    );
  const same =
    canonical(desired.spec, desired.metadata.labels, desired.metadata.annotations) ===
    canonical(stored.spec, stored.metadata.labels, stored.metadata.annotations);
  return same ? 'unchanged' : 'configured';
}

export async function apply(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommand('apply', () =>
    parseArgs({
      args: argv,
      options: { ...COMMON_OPTIONS, filename: { type: 'string', short: 'f', multiple: true } },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) {
    io.stdout(APPLY_USAGE);
    return 0;
  }
  if (positionals.length > 0) {
    throw new UsageError(`unexpected arguments: ${positionals.join(' ')}`, 'apply');
  }
  const filenames = values.filename ?? [];
  if (filenames.length === 0) throw new UsageError('must specify one of -f', 'apply');

  const state = new StateDir(values['state-dir']);
  const watchDir = await watchDirOf(state, true);
  const inputs = await readInputFiles(filenames, io.cwd);
  if (inputs.length === 0) throw new CliError('no objects passed to apply');

  // Everything is checked before anything is written.
  const problems: string[] = [];
  const parsed: { name: string; text: string; objects: ParsedObject<ConductorObject>[] }[] = [];
  const byName = new Map<string, string>();
  const definedIn = new Map<string, string>();
  for (const input of inputs) {
    const other = byName.get(input.name);
    if (other !== undefined) {
      problems.push(
        `${input.path}: has the same name as ${other}; the watch dir keeps one file per name`,
      );
      continue;
    }
    byName.set(input.name, input.path);
    const result = parseFile(input.text, input.path, validateManifest);
    problems.push(...result.errors.map((e) => formatManifestError(e)));
    for (const o of result.objects) {
      const key = identityKey(o.identity);
      const first = definedIn.get(key);
      if (first !== undefined) {
        problems.push(
          `${input.path}:${o.line}: ${describeIdentity(o.identity)} is also defined in ${first}`,
        );
      }
      definedIn.set(key, input.path);
    }
    parsed.push({ name: input.name, text: input.text, objects: result.objects });
  }

  // An object another watch-dir file already defines would be a conflict in the controller
  // (the first file keeps it): refuse rather than copy a file that cannot take effect.
  const sources = await state.readSources();
  for (const file of parsed) {
    for (const o of file.objects) {
      const owner = fileDefining(sources, o.identity);
      if (owner !== undefined && owner !== file.name) {
        problems.push(
          `${describeIdentity(o.identity)} is already defined by ${join(watchDir, owner)}; ` +
            `delete it there first (conductor delete ${o.identity.kind.toLowerCase()} ${o.identity.name} -n ${o.identity.namespace})`,
        );
      }
    }
  }
  if (problems.length > 0) {
    for (const p of problems) io.stderr(`error: ${p}\n`);
    return 1;
  }

  // An Image's relative paths are resolved next to the watch-dir copy (paths.ts): say so when
  // what they name is not there, rather than let the build fail later out of sight.
  for (const file of parsed) {
    for (const o of file.objects) {
      for (const rel of relativePaths(o.object)) {
        if (existsUnder(watchDir, rel.path)) continue;
        io.stderr(
          `warning: ${describeIdentity(o.identity)}: ${rel.field} ${JSON.stringify(rel.path)} is ` +
            `relative to the manifest's directory, which is now ${watchDir}, and it is not there\n`,
        );
      }
    }
  }

  for (const file of parsed) {
    const verdicts: string[] = [];
    for (const o of file.objects) {
      const { kind, namespace, name } = o.identity;
      const stored = isKind(kind) ? await state.getObject(kind, namespace, name) : undefined;
      const resource = isKind(kind) ? resourceName(kind) : kind.toLowerCase();
      verdicts.push(`${resource}/${name} ${applyVerdict(o.object, stored)}\n`);
    }
    const target = join(watchDir, file.name);
    if ((await readIfExists(target)) !== file.text)
      await writeAtomic(watchDir, file.name, file.text);
    for (const line of verdicts) io.stdout(line);
  }
  return 0;
}
