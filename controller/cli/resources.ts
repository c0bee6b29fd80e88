/** What users type for resources (kubectl's words) → Conductor's kinds and their CRDs' columns. */
import { loadCrd, type PrinterColumn } from '../api/crd.js';
import { KIND_NAMES, VERSION, kindFor, type Kind } from '../api/kinds.js';
import { CliError } from './io.js';

/**
 * `containers`, `container`, `Container`, `cctr`, `containers.conductor.dev`, comma lists of
 * those, and `all` (every kind: Conductor's kinds are all in the `conductor` category).
 */
export function resolveResources(arg: string): Kind[] {
  const kinds: Kind[] = [];
  for (const part of arg.split(',')) {
    const wanted = part.trim();
    const resolved = wanted === 'all' || wanted === 'conductor' ? KIND_NAMES : [kindFor(wanted)];
    for (const kind of resolved) {
      if (kind === undefined) {
        throw new CliError(`the server doesn't have a resource type ${JSON.stringify(wanted)}`);
      }
      if (!kinds.includes(kind)) kinds.push(kind);
    }
  }
  return kinds;
}

/** One kind only: `describe`, `delete KIND NAME`. */
export function resolveKind(arg: string): Kind {
  const kind = kindFor(arg);
  if (kind === undefined) {
    throw new CliError(`the server doesn't have a resource type ${JSON.stringify(arg)}`);
  }
  return kind;
}

const columnsCache = new Map<Kind, PrinterColumn[]>();

/** The kind's additionalPrinterColumns, read from its CRD in crds/. */
export function printerColumns(kind: Kind): PrinterColumn[] {
  let columns = columnsCache.get(kind);
  if (columns === undefined) {
    const version = loadCrd(kind).spec.versions.find((v) => v.name === VERSION);
    columns = version?.additionalPrinterColumns ?? [];
    columnsCache.set(kind, columns);
  }
  return columns;
}
