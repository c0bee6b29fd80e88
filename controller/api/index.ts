/**
 * Conductor's API: group, version, kinds, and the resource types generated from crds/.
 *
 * The types describe objects after defaulting (fields with a default are not optional), which is
 * what every source hands the controller: validateObject defaults in directory mode, the API
 * server does in Kubernetes mode.
 */
export * from './kinds.js';
export type { ObjectMeta, OwnerReference } from './meta.js';
export type * from './types.generated.js';
export {
  defaultCrdsDir,
  loadCrd,
  schemaOf,
  type CustomResourceDefinition,
  type JSONSchemaProps,
  type PrinterColumn,
  type ValidationRule,
} from './crd.js';

import type { Kind } from './kinds.js';
import type {
  Container,
  ContainerSpec,
  ContainerStatus,
  Image,
  ImageStatus,
  Service,
} from './types.generated.js';

export type RestartPolicy = ContainerSpec['restartPolicy'];
export type NetworkMode = ContainerSpec['network'];
export type ContainerPhase = NonNullable<ContainerStatus['phase']>;
export type ImagePhase = NonNullable<ImageStatus['phase']>;

/** The object type of a kind: ObjectOf<'Container'> is Container. */
export type ObjectOf<K extends Kind> = { Image: Image; Container: Container; Service: Service }[K];
