/**
 * Kubernetes resource quantities (resource.Quantity): `2`, `0.5`, `500m`, `64Mi`, `1G`, `1e3`.
 * The CRDs accept them as int-or-string with QUANTITY_PATTERN; reconcilers turn them into
 * numbers here (cores for cpu, bytes for memory).
 */

/**
 * The pattern the CRDs give quantity fields: Kubernetes' resource.Quantity pattern without the
 * leading minus, since no Conductor quantity may be negative (crds.test.ts checks the CRDs use it).
 */
export const QUANTITY_PATTERN =
  '^\\+?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$';

const QUANTITY =
  /^\+?((?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))((?:[KMGTPE]i)|[numkMGTPE]|[eE][+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))?$/;

const SUFFIXES: Readonly<Record<string, number>> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** The quantity's value as a number; throws on what is not a quantity. */
export function parseQuantity(quantity: number | string): number {
  if (typeof quantity === 'number') {
    if (!Number.isFinite(quantity) || quantity < 0) throw new Error(`invalid quantity ${quantity}`);
    return quantity;
  }
  const match = QUANTITY.exec(quantity);
  if (!match) throw new Error(`invalid quantity ${JSON.stringify(quantity)}`);
  const [, number = '', suffix = ''] = match;
  const value = Number(number);
  if (suffix === '') return value;
  const multiplier = SUFFIXES[suffix];
  // A bare E is exa; E or e followed by digits is an exponent.
  return multiplier !== undefined ? value * multiplier : value * 10 ** Number(suffix.slice(1));
}
