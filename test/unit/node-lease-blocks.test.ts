import { describe, expect, it } from '@jest/globals';

import { freeBlock, isBlockOf } from '../../controller/source/node-lease.js';
import { parseCidr } from '../../runtime-core/src/index.js';

describe("a node's part of the container range", () => {
  const range = parseCidr('10.77.0.0/16', 'range');

  it('is the lowest aligned block no other node holds', () => {
    expect(freeBlock(range, 24, new Set())).toBe('10.77.0.0/24');
    expect(freeBlock(range, 24, new Set(['10.77.0.0/24', '10.77.2.0/24']))).toBe('10.77.1.0/24');
    const small = parseCidr('10.79.90.0/24', 'range');
    expect(freeBlock(small, 26, new Set(['10.79.90.0/26']))).toBe('10.79.90.64/26');
    const all = new Set(['0', '64', '128', '192'].map((b) => `10.79.90.${b}/26`));
    expect(freeBlock(small, 26, all)).toBeUndefined();
  });

  it('held from before is kept only while it is such a block of the current range', () => {
    expect(isBlockOf(range, 24, '10.77.5.0/24')).toBe(true);
    expect(isBlockOf(range, 24, '10.77.255.0/24')).toBe(true);
    // Another range (--container-cidr changed), another size, unaligned, malformed.
    expect(isBlockOf(range, 24, '10.79.90.0/24')).toBe(false);
    expect(isBlockOf(range, 24, '10.77.5.0/26')).toBe(false);
    expect(isBlockOf(range, 24, '10.77.5.64/24')).toBe(false);
    expect(isBlockOf(range, 24, '10.77.5/24')).toBe(false);
    expect(isBlockOf(range, 24, 'nonsense')).toBe(false);
    expect(isBlockOf(parseCidr('10.79.91.0/24', 'range'), 26, '10.79.90.0/26')).toBe(false);
  });
});
