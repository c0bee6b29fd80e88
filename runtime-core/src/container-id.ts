/**
 * The container-id rule, in one place for TypeScript: the native core (common/container_id.h)
 * validates, this module derives ids that pass, and test/integration/container-id.test.ts checks
 * both agree. An id names the container's state directory, its runtime state and its cgroup, so
 * it is one safe path component.
 */
import { createHash } from 'node:crypto';

/** 1..64 characters: a letter or digit, then letters, digits, `_`, `.` or `-`. */
export const CONTAINER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const CONTAINER_ID_MAX_LENGTH = 64;

export function isValidContainerId(id: unknown): id is string {
  return typeof id === 'string' && CONTAINER_ID_PATTERN.test(id);
}

/**
 * A Container's id, `<namespace>_<name>`: unambiguous (neither may contain `_`) and valid as a
 * runtime id. Longer than 64 characters, it keeps the first 51 and adds 12 hex of the whole
 * id's sha256, so two long names never share an id.
 */
export function containerIdFor(namespace: string, name: string): string {
  const id = `${namespace}_${name}`;
  if (id.length <= CONTAINER_ID_MAX_LENGTH) return id;
  const hash = createHash('sha256').update(id).digest('hex').slice(0, 12);
  return `${id.slice(0, CONTAINER_ID_MAX_LENGTH - 13)}_${hash}`;
}
