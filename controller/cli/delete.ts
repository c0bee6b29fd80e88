/**
 * `conductor delete`: removes definitions from the watch dir; the controller then deletes the
 * objects (and everything they own) as it does for any file change.
 *
 * - `delete -f FILE|DIR`: removes the watch-dir file of the same name, but only if it defines
 *   exactly the objects the given file defines, so a stale or unrelated file is never removed.
 * - `delete KIND NAME`: rewrites the file that defines the object without that object's
 *   document (or `List` item), atomically; a file left with no objects is removed.
 *
 * The controller need not be running: the watch dir is then the one sources.json recorded,
 * and the deletion takes effect when it starts.
 */
import { rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

import { parseAllDocuments, parseDocument, type Document } from 'yaml';

import { isKind, type Kind } from '../api/kinds.js';
import {
  formatManifestError,
  identityKey,
  identityOf,
  type ObjectIdentity,
} from '../source/manifests.js';
import { COMMON_OPTIONS, NAMESPACE_OPTION, parseCommand } from './flags.js';
import { pluralResourceName, resourceName } from './format.js';
import { CliError, UsageError, type CliIO } from './io.js';
import { resolveKind } from './resources.js';
import { fileDefining, StateDir } from './state.js';
import {
  identityOnly,
  listManifestFiles,
  parseFile,
  readIfExists,
  readInputFiles,
  watchDirOf,
  writeAtomic,
} from './watchdir.js';

export const DELETE_USAGE = `Delete resources by removing their definitions from the watch dir.

Usage:
  conductor delete -f FILE|DIR [-f ...]
  conductor delete KIND NAME [-n NS]

With -f, the watch-dir file of the same name is removed if it defines the same objects.
With KIND NAME, the object's document is removed from the file that defines it (the file
is removed when nothing is left in it).

Options:
  -f, --filename PATH     a manifest file or a directory of them (repeatable)
  -n, --namespace NS      namespace (default "default")
      --state-dir DIR     state directory (default /var/lib/conductor)
`;

export async function del(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommand('delete', () =>
    parseArgs({
      args: argv,
      options: {
        ...COMMON_OPTIONS,
        ...NAMESPACE_OPTION,
        filename: { type: 'string', short: 'f', multiple: true },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) {
    io.stdout(DELETE_USAGE);
    return 0;
  }
  const state = new StateDir(values['state-dir']);
  const filenames = values.filename ?? [];
  if (filenames.length > 0) {
    if (positionals.length > 0) {
      throw new UsageError('give either -f or KIND NAME, not both', 'delete');
    }
    return deleteFiles(filenames, state, io);
  }
  const [resource, name, ...extra] = positionals;
  if (resource === undefined || name === undefined || extra.length > 0) {
    throw new UsageError('expected -f FILE|DIR or KIND NAME', 'delete');
  }
  const kind = resolveKind(resource);
  await deleteObject({ kind, namespace: values.namespace, name }, state, io);
  return 0;
}

function objectName(id: ObjectIdentity): string {
  return isKind(id.kind)
    ? `${resourceName(id.kind)}/${id.name}`
    : `${id.kind.toLowerCase()}/${id.name}`;
}

async function deleteFiles(filenames: string[], state: StateDir, io: CliIO): Promise<number> {
  const watchDir = await watchDirOf(state, false);
  const inputs = await readInputFiles(filenames, io.cwd);
  let failed = false;
  const fail = (message: string): void => {
    io.stderr(`error: ${message}\n`);
    failed = true;
  };
  const parsed = inputs.map((input) => ({
    input,
    given: parseFile(input.text, input.path, identityOnly),
  }));
  // An Image goes with the Containers that use it when all of them are deleted together.
  const leaving = parsed.flatMap(({ given }) => given.objects.map((o) => o.identity));
  for (const { input, given } of parsed) {
    if (given.errors.length > 0) {
      for (const e of given.errors) fail(formatManifestError(e));
      continue;
    }
    const refused = await imagesInUse(
      state,
      given.objects.map((o) => o.identity),
      leaving,
    );
    if (refused.length > 0) {
      for (const r of refused) fail(r);
      continue;
    }
    const target = join(watchDir, input.name);
    const text = await readIfExists(target);
    if (text === undefined) {
      fail(`${input.name}: no file of that name in the watch dir ${watchDir}`);
      continue;
    }
    const current = parseFile(text, target, identityOnly);
    const want = given.objects.map((o) => identityKey(o.identity)).sort();
    const have = current.objects.map((o) => identityKey(o.identity)).sort();
    if (current.errors.length > 0 || want.join('\n') !== have.join('\n')) {
      fail(`${target} does not define the same objects as ${input.path}; not deleted`);
      continue;
    }
    await rm(target, { force: true });
    for (const o of given.objects) io.stdout(`${objectName(o.identity)} deleted\n`);
  }
  return failed ? 1 : 0;
}

type YamlDoc = Document.Parsed;

/** Whether a document is the object, or a `List` holding it; removes it from a List in place. */
function removeFromDocument(doc: YamlDoc, key: string): 'whole' | 'item' | 'none' {
  const value: unknown = doc.toJS();
  const id = identityOf(value);
  if (id !== undefined && identityKey(id) === key) return 'whole';
  if (
    typeof value === 'object' &&
    value !== null &&
    (value as { kind?: unknown }).kind === 'List'
  ) {
    const items = (value as { items?: unknown }).items;
    if (!Array.isArray(items)) return 'none';
    const index = items.findIndex((item) => {
      const itemId = identityOf(item);
      return itemId !== undefined && identityKey(itemId) === key;
    });
    if (index < 0) return 'none';
    doc.deleteIn(['items', index]);
    return 'item';
  }
  return 'none';
}

function hasObjects(doc: YamlDoc): boolean {
  const value: unknown = doc.toJS();
  if (value === null || value === undefined) return false;
  if (typeof value === 'object' && (value as { kind?: unknown }).kind === 'List') {
    const items = (value as { items?: unknown }).items;
    return Array.isArray(items) && items.length > 0;
  }
  return true;
}

/**
 * The file's text without the object, or null when nothing is left; undefined when the file
 * does not define it. Documents other than the object's keep their content and comments.
 */
export function removeObjectFromText(
  text: string,
  file: string,
  id: ObjectIdentity,
): string | null | undefined {
  const key = identityKey(id);
  const json = file.toLowerCase().endsWith('.json');
  const docs = json ? [parseDocument(text)] : parseAllDocuments(text);
  if (!Array.isArray(docs) || docs.some((d) => d.errors.length > 0)) {
    throw new CliError(`${file}: does not parse; fix or remove it by hand`);
  }
  let found = false;
  const kept: YamlDoc[] = [];
  for (const doc of docs) {
    const outcome = found ? 'none' : removeFromDocument(doc, key);
    if (outcome !== 'none') found = true;
    if (outcome !== 'whole') kept.push(doc);
  }
  if (!found) return undefined;
  if (!kept.some(hasObjects)) return null;
  if (json) return JSON.stringify(kept[0]?.toJS(), null, 2) + '\n';
  return kept
    .map((doc, i) => {
      const s = doc.toString();
      return i > 0 && !s.startsWith('---') ? `---\n${s}` : s;
    })
    .join('');
}

async function deleteObject(
  id: ObjectIdentity & { kind: Kind },
  state: StateDir,
  io: CliIO,
): Promise<void> {
  const [refused] = await imagesInUse(state, [id]);
  if (refused) throw new CliError(refused);
  const watchDir = await watchDirOf(state, false);
  const candidates: string[] = [];
  const recorded = fileDefining(await state.readSources(), id);
  if (recorded !== undefined) candidates.push(recorded);
  // sources.json lags a write the controller has not read yet; the files themselves do not.
  for (const rel of await listManifestFiles(watchDir)) if (rel !== recorded) candidates.push(rel);

  for (const rel of candidates) {
    const path = join(watchDir, rel);
    const text = await readIfExists(path);
    if (text === undefined) continue;
    let updated: string | null | undefined;
    try {
      updated = removeObjectFromText(text, path, id);
    } catch (err) {
      // A broken file that sources.json says defines the object is worth reporting; others
      // are skipped while looking.
      if (rel === recorded) throw err;
      continue;
    }
    if (updated === undefined) continue;
    if (updated === null) await rm(path, { force: true });
    else await writeAtomic(dirname(path), basename(path), updated);
    io.stdout(`${resourceName(id.kind)}/${id.name} deleted\n`);
    return;
  }
  throw new CliError(`${pluralResourceName(id.kind)} ${JSON.stringify(id.name)} not found`);
}

/**
 * An Image that Containers still use is not deleted (as `docker rmi` refuses an image a
 * container uses): one message per such Image among `ids`, naming its users. Containers that
 * are deleted together with it (in `ids` or `alsoLeaving`) do not count.
 */
async function imagesInUse(
  state: StateDir,
  ids: readonly ObjectIdentity[],
  alsoLeaving: readonly ObjectIdentity[] = [],
): Promise<string[]> {
  const leaving = new Set([...ids, ...alsoLeaving].map(identityKey));
  const messages: string[] = [];
  for (const id of ids) {
    if (id.kind !== 'Image') continue;
    const users = (await state.listObjects('Container', id.namespace))
      .filter(
        (c) =>
          c.spec?.image === id.name &&
          !leaving.has(
            identityKey({ kind: 'Container', namespace: id.namespace, name: c.metadata.name }),
          ),
      )
      .map((c) => c.metadata.name)
      .sort();
    if (users.length > 0) {
      messages.push(
        `${resourceName('Image')}/${id.name} is used by container(s) ${users.join(', ')}: delete them first`,
      );
    }
  }
  return messages;
}
