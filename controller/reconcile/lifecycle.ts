/**
 * Ownership of what a component opens (VS Code's DisposableStore): register each timer,
 * listener, server or subscription as it is created, and dispose() releases all of them, newest
 * first, so stop() is complete by construction.
 */
export interface Disposable {
  dispose(): void | Promise<void>;
}

export class DisposableStore implements Disposable {
  private readonly items: Disposable[] = [];
  private disposed = false;

  /** Takes ownership of item; if the store is already disposed, disposes it at once. */
  add<T extends Disposable>(item: T): T {
    if (this.disposed) {
      void item.dispose();
    } else {
      this.items.push(item);
    }
    return item;
  }

  /** Registers a cleanup function. */
  defer(fn: () => void | Promise<void>): void {
    this.add({ dispose: fn });
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /**
   * Disposes everything, newest first. Every item is disposed even if some fail; the first
   * failure is rethrown afterwards (with the others attached) so a cleanup error never hides
   * another.
   */
  async dispose(): Promise<void> {
    this.disposed = true;
    const errors: unknown[] = [];
    for (const item of this.items.splice(0).reverse()) {
      try {
        await item.dispose();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, 'dispose: several cleanups failed');
  }
}
