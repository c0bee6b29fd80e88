/**
 * `conductor images`: the images of the state dir (what `docker images` shows), and
 * `conductor images prune`: removes layers no Image and no container uses, and the download
 * cache (the seed's `rmcache`).
 */
import { readdir } from 'node:fs/promises';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';

import {
  LayerStore,
  OciCache,
  pruneLayers,
  pruneOciCache,
  readJson,
  StateLayout,
} from '../../runtime-core/src/index.js';
import { COMMON_OPTIONS, parseCommand } from './flags.js';
import { age, formatTable, humanSize } from './format.js';
import { UsageError, type CliIO } from './io.js';
import { checkController, StateDir, type StoredObject } from './state.js';

export const IMAGES_USAGE = `List images, or remove the layers nothing uses.

Usage:
  conductor images [-n NS] [-q]
  conductor images prune

prune removes every layer that no Image (as last built) and no container uses, leftovers of
interrupted builds, and the download cache of pulls. While a controller runs, layers made or
used in the last 10 minutes are kept: a build may be about to use them.

Options:
  -n, --namespace NS      only this namespace (default: all)
  -q, --quiet             only digests
      --state-dir DIR     state directory (default /var/lib/conductor)
`;

const GRACE_MS = 10 * 60 * 1000;

interface ImageStatusView {
  phase?: string;
  digest?: string;
  size?: number;
  layers?: { digest: string }[];
  conditions?: { type: string; lastTransitionTime?: string }[];
}

function statusOf(obj: StoredObject): ImageStatusView {
  return (obj.status ?? {}) as ImageStatusView;
}

export async function images(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommand('images', () =>
    parseArgs({
      args: argv,
      options: {
        ...COMMON_OPTIONS,
        namespace: { type: 'string', short: 'n' },
        quiet: { type: 'boolean', short: 'q', default: false },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) {
    io.stdout(IMAGES_USAGE);
    return 0;
  }
  const state = new StateDir(values['state-dir']);
  const [sub, ...extra] = positionals;
  if (extra.length > 0 || (sub !== undefined && sub !== 'prune')) {
    throw new UsageError(`unexpected arguments: ${positionals.join(' ')}`, 'images');
  }
  if (sub === 'prune') return prune(state, io);
  await checkController(state, io);

  const objects = await state.listObjects('Image', values.namespace);
  if (values.quiet) {
    for (const o of objects) {
      const d = statusOf(o).digest;
      if (d) io.stdout(`${d}\n`);
    }
    return 0;
  }
  const now = io.now();
  const rows = [['NAMESPACE', 'NAME', 'FROM', 'PHASE', 'DIGEST', 'LAYERS', 'SIZE', 'CREATED']];
  for (const o of objects) {
    const s = statusOf(o);
    const built = s.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime;
    rows.push([
      o.metadata.namespace,
      o.metadata.name,
      typeof o.spec?.from === 'string' ? o.spec.from : '',
      s.phase ?? 'Pending',
      s.digest ? s.digest.replace(/^sha256:/, '').slice(0, 12) : '<none>',
      String(s.layers?.length ?? 0),
      s.size !== undefined ? humanSize(s.size) : '',
      s.phase === 'Ready' && built ? `${age(built, now)} ago` : '',
    ]);
  }
  if (rows.length === 1) {
    io.stderr(`No images found${values.namespace ? ` in ${values.namespace} namespace` : ''}.\n`);
    return 0;
  }
  io.stdout(formatTable(rows));
  return 0;
}

async function prune(state: StateDir, io: CliIO): Promise<number> {
  const keep = new Set<string>();
  for (const o of await state.listObjects('Image')) {
    for (const l of statusOf(o).layers ?? []) keep.add(l.digest.replace(/^sha256:/, ''));
  }
  // Containers keep the layers they were created from, even if their Image changed since.
  const layout = new StateLayout(state.dir);
  for (const id of await readdir(layout.containersDir).catch(() => [] as string[])) {
    const record = await readJson<{ layers?: string[] }>(layout.container(id).spec);
    for (const layer of record?.layers ?? []) keep.add(basename(layer));
  }
  const running = await state.runningController();
  const grace = running ? GRACE_MS : 0;
  const store = new LayerStore(state.dir);
  const result = await pruneLayers(store, keep, grace);
  for (const m of result.removed) {
    io.stdout(`deleted: sha256:${m.key}${m.createdBy ? `  (${m.createdBy})` : ''}\n`);
  }
  const cache = await pruneOciCache(new OciCache(state.dir), grace);
  if (result.keptRecent > 0) {
    io.stdout(
      `kept ${result.keptRecent} unused layer(s) made or used in the last 10 minutes (the controller is running)\n`,
    );
  }
  io.stdout(`Total reclaimed space: ${humanSize(result.reclaimed + cache)}\n`);
  return 0;
}
