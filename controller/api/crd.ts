/**
 * Reading crds/: the CustomResourceDefinitions are the single source of truth for the schema of
 * every kind. The type generator and directory-mode validation both load them from here.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { parse } from 'yaml';

import { GROUP, KINDS, VERSION, type Kind } from './kinds.js';

/** apiextensions.k8s.io/v1 JSONSchemaProps: the subset a structural schema uses. */
export interface JSONSchemaProps {
  description?: string;
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  format?: string;
  title?: string;
  default?: unknown;
  nullable?: boolean;
  enum?: unknown[];
  properties?: Record<string, JSONSchemaProps>;
  required?: string[];
  additionalProperties?: boolean | JSONSchemaProps;
  items?: JSONSchemaProps;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  multipleOf?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minItems?: number;
  maxItems?: number;
  uniqueItems?: boolean;
  minProperties?: number;
  maxProperties?: number;
  anyOf?: JSONSchemaProps[];
  oneOf?: JSONSchemaProps[];
  allOf?: JSONSchemaProps[];
  not?: JSONSchemaProps;
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-embedded-resource'?: boolean;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: 'atomic' | 'granular';
  'x-kubernetes-validations'?: ValidationRule[];
}

/** A CEL rule of x-kubernetes-validations. */
export interface ValidationRule {
  rule: string;
  message?: string;
  messageExpression?: string;
  reason?: string;
  fieldPath?: string;
}

export interface PrinterColumn {
  name: string;
  type: 'integer' | 'number' | 'string' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  format?: string;
  priority?: number;
}

export interface CustomResourceDefinitionVersion {
  name: string;
  served: boolean;
  storage: boolean;
  schema: { openAPIV3Schema: JSONSchemaProps };
  subresources?: { status?: Record<string, never> };
  additionalPrinterColumns?: PrinterColumn[];
}

export interface CustomResourceDefinition {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string };
  spec: {
    group: string;
    scope: 'Namespaced' | 'Cluster';
    names: {
      kind: string;
      listKind?: string;
      plural: string;
      singular?: string;
      shortNames?: string[];
      categories?: string[];
    };
    versions: CustomResourceDefinitionVersion[];
  };
}

/**
 * The repository's crds/ directory, found from this module's location so it works from the
 * sources (controller/api) and from the build (dist/controller/api).
 */
export function defaultCrdsDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'crds', 'containers.yaml'))) return join(dir, 'crds');
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`crds/ not found above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** Where `npm run build` leaves parsed copies of the CRDs: dist/crds/<file>.json. */
export function parsedCopyPath(file: string): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'crds', `${file}.json`);
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * The build's parsed copy of a CRD when it was made from exactly this YAML text (parsing the
 * YAML costs a short-lived CLI tens of milliseconds; the copy is checked, never trusted stale).
 */
function parsedCopy(file: string, hash: string): unknown {
  try {
    const copy = JSON.parse(readFileSync(parsedCopyPath(file), 'utf8')) as {
      sha256?: string;
      crd?: unknown;
    };
    return copy.sha256 === hash ? copy.crd : undefined;
  } catch {
    return undefined;
  }
}

/** Reads and checks the CRD of one kind; throws naming the file if it does not describe it. */
export function loadCrd(kind: Kind, crdsDir = defaultCrdsDir()): CustomResourceDefinition {
  return readCrd(kind, crdsDir).crd;
}

/** loadCrd, with the sha256 of the YAML it was read from (what build outputs are checked by). */
export function readCrd(
  kind: Kind,
  crdsDir = defaultCrdsDir(),
): { crd: CustomResourceDefinition; sha256: string } {
  const info = KINDS[kind];
  const file = join(crdsDir, info.file);
  const text = readFileSync(file, 'utf8');
  const hash = sha256(text);
  const crd = (parsedCopy(info.file, hash) ?? parse(text)) as CustomResourceDefinition;
  const expectedName = `${info.plural}.${GROUP}`;
  if (
    crd?.kind !== 'CustomResourceDefinition' ||
    crd.metadata?.name !== expectedName ||
    crd.spec?.names?.kind !== kind ||
    crd.spec.group !== GROUP
  ) {
    throw new Error(`${file}: not the CustomResourceDefinition ${expectedName} of kind ${kind}`);
  }
  return { crd, sha256: hash };
}

/** The openAPIV3Schema of VERSION in a CRD. */
export function schemaOf(crd: CustomResourceDefinition): JSONSchemaProps {
  const version = crd.spec.versions.find((v) => v.name === VERSION);
  if (!version) throw new Error(`${crd.metadata.name}: no version ${VERSION}`);
  return version.schema.openAPIV3Schema;
}
