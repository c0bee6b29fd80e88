/**
 * The pure parts of the image builder: `from` references (docker's normalisation), image
 * configuration merging (docker's rules), USER resolution against passwd/group (runc's), and
 * docker-style sizes.
 */
import { describe, expect, it } from '@jest/globals';

import { humanSize } from '../../controller/cli/format.js';
import { fromOciConfig, mergeConfig, toOciConfig } from '../../runtime-core/src/images/config.js';
import { archiveReference, exportedConfig } from '../../runtime-core/src/images/export.js';
import {
  alwaysPulled,
  formatReference,
  parseSource,
} from '../../runtime-core/src/images/reference.js';
import { resolveUser } from '../../runtime-core/src/images/users.js';

describe('parseSource', () => {
  it.each([
    ['scratch', { kind: 'scratch' }],
    ['debian:bookworm', { kind: 'debootstrap', distro: 'debian', suite: 'bookworm' }],
    ['ubuntu:noble', { kind: 'debootstrap', distro: 'ubuntu', suite: 'noble' }],
    ['oci-archive:img.tar', { kind: 'oci-archive', path: 'img.tar' }],
    ['oci-archive:dir/img.tar:v1', { kind: 'oci-archive', path: 'dir/img.tar', tag: 'v1' }],
    ['oci:layout', { kind: 'oci', path: 'layout' }],
    ['oci:layout:latest', { kind: 'oci', path: 'layout', tag: 'latest' }],
    ['docker-archive:saved.tar', { kind: 'docker-archive', path: 'saved.tar' }],
    ['image:base', { kind: 'image', name: 'base' }],
  ])('%s', (from, want) => {
    expect(parseSource(from)).toEqual(want);
  });

  it.each([
    ['busybox', 'docker.io', 'library/busybox', 'latest', undefined],
    ['library/busybox:1.36', 'docker.io', 'library/busybox', '1.36', undefined],
    ['user/app:v2', 'docker.io', 'user/app', 'v2', undefined],
    ['index.docker.io/user/app', 'docker.io', 'user/app', 'latest', undefined],
    ['127.0.0.1:5000/team/app:1', '127.0.0.1:5000', 'team/app', '1', undefined],
    ['localhost/app', 'localhost', 'app', 'latest', undefined],
    [
      'quay.io/org/app@sha256:' + 'a'.repeat(64),
      'quay.io',
      'org/app',
      undefined,
      'sha256:' + 'a'.repeat(64),
    ],
    ['docker.io/library/debian:bookworm', 'docker.io', 'library/debian', 'bookworm', undefined],
  ])('registry reference %s', (from, registry, repository, tag, digest) => {
    const ref = parseSource(from);
    expect(ref).toEqual({
      kind: 'registry',
      registry,
      repository,
      ...(tag !== undefined ? { tag } : {}),
      ...(digest !== undefined ? { digest } : {}),
    });
  });

  it('asks the registry on every build only for latest (the kubelet: Always vs IfNotPresent)', () => {
    const always = (from: string) => alwaysPulled(parseSource(from));
    expect(always('busybox')).toBe(true);
    expect(always('127.0.0.1:5000/app:latest')).toBe(true);
    expect(always('busybox:1.36')).toBe(false);
    expect(always(`busybox@sha256:${'a'.repeat(64)}`)).toBe(false);
    expect(always(`busybox:latest@sha256:${'a'.repeat(64)}`)).toBe(false);
    expect(always('oci-archive:busybox.tar')).toBe(false);
    expect(always('scratch')).toBe(false);
  });

  it('writes a reference out in full', () => {
    const ref = parseSource('busybox');
    expect(ref.kind === 'registry' && formatReference(ref)).toBe(
      'docker.io/library/busybox:latest',
    );
  });

  it.each([
    [
      'debian:Bookworm!',
      /debootstrap base and "Bookworm!" is not a suite name .*docker\.io\/library\/debian/,
    ],
    ['Upper/Case', /not scratch, debian:SUITE/],
    ['app@sha256:123', /digest "sha256:123" is not sha256:<64 hex digits>/],
    ['app:bad tag', /"bad tag" is not a valid tag/],
    ['oci-archive:', /needs a path/],
    ['image:Not_Valid', /not a valid Image name/],
  ])('refuses %s', (from, message) => {
    expect(() => parseSource(from)).toThrow(message);
    expect(() => parseSource(from)).toThrow(/^spec\.from: /);
  });
});

describe('image configuration', () => {
  it('reads an OCI config', () => {
    expect(
      fromOciConfig({
        Entrypoint: ['/entry'],
        Cmd: null,
        Env: ['PATH=/usr/bin:/bin', 'EMPTY=', 'A=b=c'],
        WorkingDir: '/srv',
        User: 'www-data',
        ExposedPorts: { '80/tcp': {}, '53/udp': {}, '8080': {}, 'bogus/tcp': {} },
      }),
    ).toEqual({
      entrypoint: ['/entry'],
      env: { PATH: '/usr/bin:/bin', EMPTY: '', A: 'b=c' },
      workingDir: '/srv',
      user: 'www-data',
      exposedPorts: [
        { port: 53, protocol: 'UDP' },
        { port: 80, protocol: 'TCP' },
        { port: 8080, protocol: 'TCP' },
      ],
    });
  });

  it('writes an OCI config that reads back the same (what an export puts in the archive)', () => {
    const config = {
      entrypoint: ['/entry', '--flag'],
      cmd: ['run'],
      env: { PATH: '/usr/bin:/bin', EMPTY: '', A: 'b=c' },
      workingDir: '/srv',
      user: 'www-data:1000',
      exposedPorts: [
        { port: 53, protocol: 'UDP' as const },
        { port: 8080, protocol: 'TCP' as const },
      ],
    };
    expect(toOciConfig(config)).toEqual({
      Entrypoint: ['/entry', '--flag'],
      Cmd: ['run'],
      Env: ['PATH=/usr/bin:/bin', 'EMPTY=', 'A=b=c'],
      WorkingDir: '/srv',
      User: 'www-data:1000',
      ExposedPorts: { '53/udp': {}, '8080/tcp': {} },
    });
    expect(fromOciConfig(toOciConfig(config))).toEqual(config);
    expect(toOciConfig({})).toEqual({});
  });

  it('an exported image config: diff_ids, history, this platform, the newest layer as created', () => {
    const c = exportedConfig({ cmd: ['sh'] }, [
      {
        diffId: 'sha256:a',
        createdBy: 'debootstrap debian bookworm',
        createdAt: '2026-01-02T00:00:00Z',
      },
      { diffId: 'sha256:b', createdBy: 'run apt-get install x', createdAt: '2026-03-04T00:00:00Z' },
      { diffId: 'sha256:c', createdBy: 'copy a /a', createdAt: '2026-02-03T00:00:00Z' },
    ]);
    expect(c).toMatchObject({
      created: '2026-03-04T00:00:00Z',
      os: 'linux',
      architecture: expect.stringMatching(/^(amd64|arm64|arm|ppc64le|s390x|riscv64)$/),
      config: { Cmd: ['sh'] },
      rootfs: { type: 'layers', diff_ids: ['sha256:a', 'sha256:b', 'sha256:c'] },
    });
    expect(c.history?.map((h) => h.created_by)).toEqual([
      'debootstrap debian bookworm',
      'run apt-get install x',
      'copy a /a',
    ]);
  });

  it.each([
    ['conductor-agent:latest', 'docker.io/library/conductor-agent:latest', 'latest'],
    ['conductor-agent', 'docker.io/library/conductor-agent:latest', 'latest'],
    ['example.com/team/app:v1', 'example.com/team/app:v1', 'v1'],
    ['127.0.0.1:5000/app:2', '127.0.0.1:5000/app:2', '2'],
  ])('tags an archive %s as %s', (value, full, tag) => {
    expect(archiveReference(value)).toEqual({ full, tag });
  });

  it.each([`app@sha256:${'a'.repeat(64)}`, 'Upper:case', 'a b', ''])(
    'refuses to tag an archive %j',
    (value) => {
      expect(() => archiveReference(value)).toThrow(/is not an image name to tag an archive with/);
    },
  );

  it('merges as docker does: env adds up, a new entrypoint clears an inherited cmd', () => {
    const base = {
      entrypoint: ['/a'],
      cmd: ['x'],
      env: { A: '1', B: '2' },
      exposedPorts: [{ port: 80, protocol: 'TCP' as const }],
    };
    expect(mergeConfig(base, { env: { B: '3', C: '4' } })).toEqual({
      ...base,
      env: { A: '1', B: '3', C: '4' },
    });
    expect(mergeConfig(base, { entrypoint: ['/b'] })).toEqual({
      entrypoint: ['/b'],
      env: base.env,
      exposedPorts: base.exposedPorts,
    });
    expect(mergeConfig(base, { entrypoint: ['/b'], cmd: ['y'] })).toMatchObject({
      entrypoint: ['/b'],
      cmd: ['y'],
    });
    expect(mergeConfig(base, { cmd: ['z'] })).toMatchObject({ entrypoint: ['/a'], cmd: ['z'] });
    expect(
      mergeConfig(base, {
        exposedPorts: [
          { port: 80, protocol: 'TCP' },
          { port: 443, protocol: 'TCP' },
        ],
      }).exposedPorts,
    ).toEqual([
      { port: 80, protocol: 'TCP' },
      { port: 443, protocol: 'TCP' },
    ]);
  });
});

describe('resolveUser', () => {
  const passwd =
    'root:x:0:0:root:/root:/bin/sh\n# comment\nwww-data:x:33:33::/var/www:/bin/false\nnobody:x:65534:65534::/:/bin/false\n';
  const group =
    'root:x:0:\nwww-data:x:33:\nadm:x:4:www-data\nstaff:x:50:www-data,other\nnogroup:x:65534:\n';

  it.each([
    ['www-data', { uid: 33, gid: 33, additionalGids: [4, 50] }],
    ['nobody', { uid: 65534, gid: 65534 }],
    ['33', { uid: 33, gid: 33, additionalGids: [4, 50] }],
    ['1234', { uid: 1234, gid: 0 }],
    ['1234:99', { uid: 1234, gid: 99 }],
    ['nobody:adm', { uid: 65534, gid: 4 }],
    ['www-data:staff', { uid: 33, gid: 50, additionalGids: [4] }],
  ])('%s', (spec, want) => {
    expect(resolveUser(spec, passwd, group)).toEqual(want);
  });

  it('names what is missing', () => {
    expect(() => resolveUser('ghost', passwd, group)).toThrow(
      `user "ghost" is not in the image's /etc/passwd`,
    );
    expect(() => resolveUser('nobody:ghosts', passwd, group)).toThrow(
      `group "ghosts" is not in the image's /etc/group`,
    );
    expect(() => resolveUser('nobody', undefined, undefined)).toThrow(
      /not in the image's \/etc\/passwd/,
    );
  });
});

it('prints sizes as docker does', () => {
  expect([0, 999, 1000, 1090000, 12_345_678, 100_000_000, 246_000_000_000].map(humanSize)).toEqual([
    '0B',
    '999B',
    '1kB',
    '1.09MB',
    '12.3MB',
    '100MB',
    '246GB',
  ]);
});
