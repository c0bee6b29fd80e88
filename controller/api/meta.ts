/**
 * Object metadata, in the shape of Kubernetes' metav1.ObjectMeta (the part Conductor uses).
 *
 * Defined here rather than imported from @kubernetes/client-node so that the API types (and
 * directory mode) do not depend on the Kubernetes client. Unlike V1ObjectMeta, `name` and
 * `namespace` are required: every object that reaches a cache has both (validateObject defaults
 * the namespace to "default"; the API server always sets it for namespaced kinds).
 */
export interface ObjectMeta {
  /** Unique within the namespace and kind. */
  name: string;
  namespace: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Set by the source (API server or directory source), never by users. */
  uid?: string;
  resourceVersion?: string;
  /** Incremented by the source on every change of spec; status.observedGeneration follows it. */
  generation?: number;
  /** RFC 3339. */
  creationTimestamp?: string;
  /** RFC 3339; set once deletion was requested and finalizers are pending. */
  deletionTimestamp?: string;
  finalizers?: string[];
  ownerReferences?: OwnerReference[];
}

/** metav1.OwnerReference. */
export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}
