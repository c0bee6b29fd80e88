/** Where things live: the state directory layout of runtime-core/README.md, and build outputs. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEFAULT_STATE_DIR = '/var/lib/conductor';

/**
 * A file in build/Release, found by walking up from this module: the same lookup works from
 * runtime-core/src (tests) and from dist/runtime-core/src (the built controller).
 */
export function buildOutput(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'build', 'Release', name);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  // Not built: the path where it would be, so the error message that follows names it.
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'build', 'Release', name);
}

export class StateLayout {
  constructor(readonly stateDir: string) {}

  get runtimeRoot(): string {
    return join(this.stateDir, 'runtime');
  }

  get containersDir(): string {
    return join(this.stateDir, 'containers');
  }

  container(id: string): ContainerPaths {
    return new ContainerPaths(join(this.containersDir, id));
  }

  /** A container's volumes (emptyDir on disk): they outlive its restarts, not its owner. */
  volumes(id: string): string {
    return join(this.stateDir, 'volumes', id);
  }

  /** The lower layer of an image with none (scratch with no copy step): overlayfs needs one. */
  get emptyLayer(): string {
    return join(this.stateDir, 'layers', 'empty');
  }
}

export class ContainerPaths {
  constructor(readonly dir: string) {}

  get bundle(): string {
    return join(this.dir, 'bundle');
  }
  get rootfs(): string {
    return join(this.dir, 'bundle', 'rootfs');
  }
  get config(): string {
    return join(this.dir, 'bundle', 'config.json');
  }
  get upper(): string {
    return join(this.dir, 'upper');
  }
  get work(): string {
    return join(this.dir, 'work');
  }
  /** The facade's record of what it was asked to run (spec + layers). */
  get spec(): string {
    return join(this.dir, 'spec.json');
  }
  /** The facade's record of the shim's identity (pid + start time), against pid reuse. */
  get shim(): string {
    return join(this.dir, 'shim.json');
  }
  get shimPid(): string {
    return join(this.dir, 'shim.pid');
  }
  get status(): string {
    return join(this.dir, 'status.json');
  }
  get containerPid(): string {
    return join(this.dir, 'container.pid');
  }
  get log(): string {
    return join(this.dir, 'container.log');
  }
  get runtimeLog(): string {
    return join(this.dir, 'runtime.log');
  }
}
