/**
 * Waits for every promise, then throws the first failure in the given order, else returns the
 * values: Promise.all without leaving work running behind a failure, so an undo that follows
 * sees everything that was made.
 */
export async function allSettled<T extends readonly unknown[]>(
  promises: readonly [...{ [K in keyof T]: Promise<T[K]> }],
): Promise<T> {
  const results = await Promise.allSettled(promises);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
