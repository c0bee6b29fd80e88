/**
 * What this node has built of each Image.
 *
 * An Image's status is one for the whole cluster, but its layers are on the node that built
 * them: with several agents on one API server each builds every Image itself. A layer is named
 * by its build's inputs (as Docker's build cache names them), so every node's build of one
 * generation has the same digest and layer names — but a node that has not built it yet lacks
 * the layers the status names, and a `run` step's files (times, ids, package logs) differ from
 * node to node. The Image reconciler records each build it makes here (Ready or Failed, for the
 * generation it built); Containers and `from: image:NAME` builds on this node use that record,
 * and the shared status only when every layer it names is on this node (its own earlier write,
 * read back after a restart). A node that builds an Image already Ready for its generation
 * leaves the status alone (no Building, no second Ready, no failure of its own written over
 * it): the others' containers keep a steady Image, and this node's containers wait for its own
 * build instead of failing on layers it does not have. In directory mode the record and the
 * status are the same.
 */
import type { Image, ImageStatus } from '../api/types.generated.js';

export class NodeImages {
  private readonly built = new Map<string, ImageStatus>();

  /** `changed(key)`: this node's build of the Image changed (its dependents look again). */
  constructor(private readonly changed: (key: string) => void = () => undefined) {}

  /** The status of this node's build of `key` (phase Ready or Failed, its observedGeneration). */
  record(key: string, status: ImageStatus): void {
    const prev = this.built.get(key);
    this.built.set(key, status);
    if (
      prev === undefined ||
      prev.phase !== status.phase ||
      prev.digest !== status.digest ||
      prev.observedGeneration !== status.observedGeneration ||
      prev.message !== status.message
    )
      this.changed(key);
  }

  /** The Image is gone. */
  forget(key: string): void {
    this.built.delete(key);
  }

  /**
   * This node's own build of the Image's current generation; undefined when it has not made one
   * since it started (the shared status, if its layers are here, stands for it).
   */
  own(key: string, image: Image): ImageStatus | undefined {
    const s = this.built.get(key);
    return s && s.observedGeneration === (image.metadata.generation ?? 0) ? s : undefined;
  }

  /**
   * The Image as this node has it: its own build of the current generation, else the shared
   * status when `present` says its layers are all here, else a Pending status saying the node
   * builds it (the Image reconciler does; `changed` tells the dependents when it has).
   */
  async view(
    key: string,
    image: Image,
    present: (layers: readonly { digest: string }[]) => Promise<boolean>,
  ): Promise<ImageStatus | undefined> {
    const own = this.own(key, image);
    if (own) return own;
    const shared = image.status;
    if (shared?.phase !== 'Ready') return shared;
    if (await present(shared.layers ?? [])) return shared;
    return {
      phase: 'Pending',
      observedGeneration: shared.observedGeneration ?? 0,
      message: 'Ready on another node, being built on this one',
    };
  }
}
