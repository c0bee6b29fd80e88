/**
 * What every source (the manifest directory now, a Kubernetes API server later) offers the
 * controller: a lifecycle, a sync signal for /readyz, and typed events into a sink, which is
 * where the cache and the work queues are fed from.
 */
import type { ManifestError, ObjectIdentity } from './manifests.js';

/** Receives what a source observes. Calls are serialized and never overlap. */
export interface SourceEventSink<T> {
  /** An object appeared or changed; `file` is the one that now defines it. */
  onUpsert(object: T, file: string): void;
  /** An object is gone; `lastObject` is what it was. */
  onDelete(identity: ObjectIdentity, file: string, lastObject: T): void;
  /** A file's errors changed and it has some (parse, validation or ownership conflicts). */
  onError(file: string, errors: ManifestError[]): void;
  /** A file that had errors has none now (fixed, or removed). */
  onErrorResolved?(file: string): void;
  /**
   * Problems with the watch itself (permissions, too many files) or an exception thrown by
   * one of these callbacks: never about a file's content, and never fatal to the source.
   */
  onWatchError?(error: Error): void;
}

/** The lifecycle every source has. */
export interface Source {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Resolves once the initial content has been fully processed (for /readyz). */
  synced(): Promise<void>;
  /** Whether synced() has resolved: what /readyz asks. */
  hasSynced(): boolean;
  /**
   * Why the source is not feeding the cache any more (stopped, its directory gone, its watch
   * failing for longer than it tolerates), for /healthz; undefined while it is.
   */
  health(): string | undefined;
}

/** An object as a source holds it, with the file (or other origin) that defines it. */
export interface SourcedObject<T> {
  identity: ObjectIdentity;
  object: T;
  file: string;
}
