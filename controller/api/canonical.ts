/**
 * Comparing objects as the JSON they are on disk: key order does not count, nor does the realm
 * (jest's vm context, structuredClone) the values were made in, which node:util's
 * isDeepStrictEqual would see through their prototypes.
 */

/** A deep copy with object keys in sorted order, arrays kept in order. */
export function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    out[key] = sortKeys((value as Record<string, unknown>)[key]);
  }
  return out;
}

/** Whether two JSON values are the same data. */
export function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}
