/**
 * USER[:GROUP] of an image (names or numeric ids) resolved against the image's own /etc/passwd
 * and /etc/group, as runc's libcontainer/user does. Reading those files is the caller's (from a
 * mounted rootfs or from the layers); this part is pure.
 */

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
}

export class UserError extends Error {}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

function parseTable(text: string | undefined): string[][] {
  return (text ?? '')
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

const NUMERIC = /^\d{1,10}$/;

export function resolveUser(
  spec: string,
  passwd: string | undefined,
  group: string | undefined,
): ResolvedUser {
  const [userPart = '', groupPart] = spec.split(':', 2);
  const users: PasswdEntry[] = parseTable(passwd)
    .filter((f) => f.length >= 4)
    .map((f) => ({ name: f[0] ?? '', uid: Number(f[2]), gid: Number(f[3]) }));
  const groups = parseTable(group).filter((f) => f.length >= 3);

  let uid: number;
  let gid: number;
  let name: string | undefined;
  if (NUMERIC.test(userPart)) {
    uid = Number(userPart);
    const entry = users.find((u) => u.uid === uid);
    gid = entry?.gid ?? 0;
    name = entry?.name;
  } else {
    const entry = users.find((u) => u.name === userPart);
    if (!entry) throw new UserError(`user "${userPart}" is not in the image's /etc/passwd`);
    ({ uid, gid, name } = entry);
  }
  if (groupPart !== undefined) {
    if (NUMERIC.test(groupPart)) gid = Number(groupPart);
    else {
      const g = groups.find((f) => f[0] === groupPart);
      if (!g) throw new UserError(`group "${groupPart}" is not in the image's /etc/group`);
      gid = Number(g[2]);
    }
  }
  if (
    !Number.isSafeInteger(uid) ||
    uid > 0xfffffffe ||
    !Number.isSafeInteger(gid) ||
    gid > 0xfffffffe
  )
    throw new UserError(`user "${spec}": ids out of range`);
  // Supplementary groups: those listing the user by name, as login(1) and runc do.
  const additional = name
    ? groups
        .filter((f) => (f[3] ?? '').split(',').includes(name) && Number(f[2]) !== gid)
        .map((f) => Number(f[2]))
    : [];
  return additional.length ? { uid, gid, additionalGids: additional } : { uid, gid };
}
