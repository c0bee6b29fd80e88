/**
 * `conductor get`: objects from <state>/objects (or, with --kubeconfig, from the API server) as
 * a table or as JSON/YAML, and the errors of files that failed to load (from sources.json) on
 * stderr, so a typo in a manifest is visible where the user looks for the object it should
 * have created.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import type { Kind } from '../api/kinds.js';
import { formatManifestError } from '../source/manifests.js';
import { COMMON_OPTIONS, NAMESPACE_OPTION, parseCommand } from './flags.js';
import { formatTable, listOf, objectTable, pluralResourceName, toJSON, toYAML } from './format.js';
import { ClusterReader } from './cluster.js';
import { getEvents, isEventsResource, parseFor } from './events.js';
import { CliError, UsageError, type CliIO } from './io.js';
import { printerColumns, resolveResources } from './resources.js';
import { checkController, StateDir, type SourcesState, type StoredObject } from './state.js';

export const GET_USAGE = `Display one or many resources, or events.

Usage:
  conductor get images|containers|services|all [NAME] [-n NS | -A] [-o wide|json|yaml]
                [--state-dir DIR | --kubeconfig PATH]
  conductor get events [--for KIND/NAME] [-w] [-n NS | -A] [-o wide|json|yaml]
                [--state-dir DIR | --kubeconfig PATH]

Resources may be given as plural, singular, kind or short name (cimg, cctr, csvc), or as a
comma-separated list. Files in the watch dir that failed to load are listed on stderr.

Events (also \`get ev\`) are listed as kubectl get events lists them, oldest first: LAST SEEN
(\`45s (x4 over 2m)\` for a repeat), TYPE, REASON, OBJECT, MESSAGE; a deleted object's are kept
for an hour.

Options:
  -n, --namespace NS      namespace (default "default")
  -A, --all-namespaces    list objects in every namespace
  -o, --output FORMAT     wide, json or yaml (events: events.k8s.io/v1 Events)
      --for KIND/NAME     events: only those of one object (e.g. container/web)
  -w, --watch             events: after the listing, print each event recorded or repeated,
                          until Ctrl-C
      --state-dir DIR     state directory (default /var/lib/conductor)
      --kubeconfig PATH   Kubernetes mode: the objects from the API server of PATH's current
                          context, as the agents wrote them (events from events.k8s.io)
`;

/** How often `get events -w` reads the events again: the state dir's, an API server's. */
const EVENTS_POLL_MS = { state: 500, cluster: 1000 };

const OUTPUTS = ['', 'wide', 'json', 'yaml'] as const;
type Output = (typeof OUTPUTS)[number];

export async function get(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommand('get', () =>
    parseArgs({
      args: argv,
      options: {
        ...COMMON_OPTIONS,
        ...NAMESPACE_OPTION,
        'all-namespaces': { type: 'boolean', short: 'A', default: false },
        output: { type: 'string', short: 'o', default: '' },
        kubeconfig: { type: 'string' },
        watch: { type: 'boolean', short: 'w', default: false },
        for: { type: 'string' },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) {
    io.stdout(GET_USAGE);
    return 0;
  }
  const [resource, name, ...extra] = positionals;
  if (resource === undefined) {
    throw new UsageError('you must specify the type of resource to get', 'get');
  }
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`, 'get');
  const output = values.output as Output;
  if (!OUTPUTS.includes(output)) {
    throw new UsageError(
      `unable to match a printer suitable for the output format ${JSON.stringify(values.output)}, allowed formats are: json,wide,yaml`,
      'get',
    );
  }
  const events = isEventsResource(resource);
  if (events && name !== undefined)
    throw new UsageError(
      'get events takes no NAME: use --for KIND/NAME for the events of one object',
      'get',
    );
  if (!events && (values.watch || values.for !== undefined))
    throw new UsageError(`--${values.watch ? 'watch' : 'for'} is for events only`, 'get');
  const forObject = values.for === undefined ? undefined : parseFor(values.for);
  const kinds = events ? [] : resolveResources(resource);
  const allNamespaces = values['all-namespaces'] && name === undefined;
  const namespace = allNamespaces ? undefined : values.namespace;
  // From a cluster's API server (--kubeconfig), or from the state dir: files failing to load
  // exist only in the latter.
  const kubeconfig = values.kubeconfig;
  const state = kubeconfig === undefined ? new StateDir(values['state-dir']) : undefined;
  const reader = state ?? (await ClusterReader.open(resolve(io.cwd, kubeconfig ?? '')));
  if (state) await checkController(state, io);
  if (events)
    return getEvents(
      reader,
      {
        namespace,
        output,
        ...(forObject ? { for: forObject } : {}),
        watch: values.watch,
        pollMs: state ? EVENTS_POLL_MS.state : EVENTS_POLL_MS.cluster,
      },
      io,
    );
  const fileErrors = async (): Promise<void> => {
    if (state) writeFileErrors(await state.readSources(), io);
  };

  const found: { kind: Kind; objects: StoredObject[] }[] = [];
  for (const kind of kinds) {
    const objects =
      name === undefined
        ? await reader.listObjects(kind, namespace)
        : [await reader.getObject(kind, values.namespace, name)].filter(
            (o): o is StoredObject => o !== undefined,
          );
    found.push({ kind, objects });
  }
  const all = found.flatMap((f) => f.objects);

  if (name !== undefined && all.length === 0) {
    const kind = kinds[0] as Kind;
    await fileErrors();
    throw new CliError(`${pluralResourceName(kind)} ${JSON.stringify(name)} not found`);
  }

  if (output === 'json' || output === 'yaml') {
    const value = name !== undefined && all.length === 1 ? all[0] : listOf(all);
    io.stdout(output === 'json' ? toJSON(value) : toYAML(value));
  } else if (all.length === 0) {
    io.stderr(
      namespace === undefined
        ? 'No resources found\n'
        : `No resources found in ${namespace} namespace.\n`,
    );
  } else {
    const nonEmpty = found.filter((f) => f.objects.length > 0);
    const tables = nonEmpty.map(({ kind, objects }) =>
      formatTable(
        objectTable(kind, objects, {
          columns: printerColumns(kind),
          wide: output === 'wide',
          allNamespaces: namespace === undefined,
          qualifiedNames: kinds.length > 1,
          now: io.now(),
        }),
      ),
    );
    io.stdout(tables.join('\n'));
  }
  await fileErrors();
  return 0;
}

/** `error: web.yaml:12:3: spec.image: Required value` for every file that failed to load. */
export function writeFileErrors(sources: SourcesState | undefined, io: CliIO): void {
  for (const [file, entry] of Object.entries(sources?.files ?? {})) {
    for (const e of entry.errors ?? []) {
      io.stderr(`error: ${formatManifestError({ ...e, file })}\n`);
    }
  }
}
