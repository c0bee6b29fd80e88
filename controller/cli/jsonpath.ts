/**
 * The simple JSONPaths of additionalPrinterColumns (`.status.phase`,
 * `.spec.ports[*].containerPort`, `.metadata.labels['app.kubernetes.io/name']`): field steps,
 * quoted field steps, indexes and `[*]`. The API server accepts only simple paths for printer
 * columns, so filters and recursive descent are not needed.
 */

type Step = { field: string } | { index: number } | { wildcard: true };

/** Parses a printer-column path; throws naming the path when it is not a simple one. */
export function parseJsonPath(path: string): Step[] {
  const body = path
    .trim()
    .replace(/^\{(.*)\}$/, '$1')
    .replace(/^\$/, '');
  const steps: Step[] = [];
  const re = /\.([^.[\]]+)|\[\*\]|\[(-?\d+)\]|\[(['"])(.*?)\3\]/gy;
  let m: RegExpExecArray | null;
  while (re.lastIndex < body.length && (m = re.exec(body)) !== null) {
    if (m[1] !== undefined) steps.push({ field: m[1] });
    else if (m[2] !== undefined) steps.push({ index: Number(m[2]) });
    else if (m[4] !== undefined) steps.push({ field: m[4] });
    else steps.push({ wildcard: true });
  }
  if (re.lastIndex !== body.length || body === '') {
    throw new Error(`unsupported JSONPath ${JSON.stringify(path)}: only simple paths are`);
  }
  return steps;
}

/** Every value the path selects, in document order; none when a step finds nothing. */
export function evaluateJsonPath(value: unknown, path: string | Step[]): unknown[] {
  const steps = typeof path === 'string' ? parseJsonPath(path) : path;
  let current: unknown[] = [value];
  for (const step of steps) {
    const next: unknown[] = [];
    for (const v of current) {
      if ('field' in step) {
        if (
          typeof v === 'object' &&
          v !== null &&
          !Array.isArray(v) &&
          Object.hasOwn(v, step.field)
        ) {
          next.push((v as Record<string, unknown>)[step.field]);
        }
      } else if (!Array.isArray(v)) {
        continue;
      } else if ('index' in step) {
        const i = step.index < 0 ? v.length + step.index : step.index;
        if (i >= 0 && i < v.length) next.push(v[i]);
      } else {
        next.push(...(v as unknown[]));
      }
    }
    current = next;
  }
  return current.filter((v) => v !== undefined && v !== null);
}
