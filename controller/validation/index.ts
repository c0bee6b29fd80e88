/**
 * Validation and defaulting of manifests in directory mode, with the CRDs' own schemas, so a
 * manifest the API server would reject is rejected here too, with the same field paths.
 *
 * For each object, in the API server's order:
 * 1. apiVersion and kind must name one of Conductor's kinds;
 * 2. metadata: name by the kind's rule (DNS-1123 subdomain / label, DNS-1035 label), namespace
 *    defaulted to "default", labels and annotations as Kubernetes checks them; fields the source
 *    sets (uid, resourceVersion, generation, creationTimestamp, ...) are dropped;
 * 3. status is dropped: the status subresource means only Conductor writes it, as the API server
 *    ignores status in a create or update of the object;
 * 4. spec: nulls dropped, unknown fields rejected (structural.ts says why not pruned), defaults
 *    applied recursively (array items and map values included), list-type uniqueness checked,
 *    OpenAPI validation with ajv (allErrors), then the CEL rules (through their TypeScript
 *    mirrors) unless an error blocks them, as in the API server.
 *
 * The input is never modified; a valid result is a defaulted deep copy.
 */
import { defaultCrdsDir, readCrd, schemaOf, type JSONSchemaProps } from '../api/crd.js';
import { join } from 'node:path';

import type { Ajv } from 'ajv';

import { API_VERSION, KIND_NAMES, KINDS, isKind, type Kind } from '../api/kinds.js';
import type { ConductorObject } from '../api/types.generated.js';
import {
  formatFieldErrors,
  invalid,
  isBlocking,
  notSupported,
  required,
  ROOT,
  toPathMessage,
  type PathMessage,
  unknownField,
  type FieldError,
} from './field-error.js';
import { validateMetadata } from './metadata.js';
import { newAjv, OpenAPIValidator } from './openapi.js';
import { loadPrecompiled, precompiledName } from './precompiled.js';
import { applyStructural, evaluateRules, type StructuralResult } from './structural.js';

export * from './field-error.js';
export { checkName, NAME_RULES, NAME_RULE_SPECS, type NameRule } from './metadata.js';
export { parseQuantity, QUANTITY_PATTERN } from './quantity.js';

export type ValidationResult =
  { ok: true; object: ConductorObject } | { ok: false; errors: FieldError[] };

/** Thrown by Validator.mustValidate; message is the errors, one per line. */
export class ValidationError extends Error {
  constructor(readonly errors: FieldError[]) {
    super(formatFieldErrors(errors));
    this.name = 'ValidationError';
  }
}

const TOP_LEVEL_FIELDS = new Set(['apiVersion', 'kind', 'metadata', 'spec', 'status']);

/** The schema of spec or status, and its compiled validator. */
interface Subtree {
  schema: JSONSchemaProps;
  openapi: OpenAPIValidator;
}

interface KindSchema {
  spec: Subtree;
  status: Subtree;
  specRequired: boolean;
}

/** Structural pass, OpenAPI validation, then CEL rules; returns the value to keep. */
function checkSubtree(
  name: string,
  value: unknown,
  subtree: Subtree,
  errors: FieldError[],
): unknown {
  const structural: StructuralResult = { errors: [], rules: [] };
  const kept = applyStructural(value, subtree.schema, name, structural);
  const found = [...structural.errors];
  if (kept !== undefined) found.push(...subtree.openapi.validate(kept));
  // As the API server: CEL rules only run on an object without blocking errors.
  if (!found.some(isBlocking) && !errors.some(isBlocking)) {
    found.push(...evaluateRules(structural.rules));
  }
  errors.push(...found);
  return kept;
}

/** Validates objects of every kind against the CRDs in one directory (compiled once). */
export class Validator {
  private readonly kinds: Partial<Record<Kind, KindSchema>> = {};
  private ajvInstance: Ajv | undefined;

  /**
   * CRDs are read when a kind is first validated: `conductor build` reads only the Image's.
   * `precompiledDir`: where the ahead-of-time validators are (default: the build's dist/crds).
   */
  constructor(
    private readonly crdsDir = defaultCrdsDir(),
    private readonly opts: { precompiledDir?: string } = {},
  ) {}

  private schemaFor(kind: Kind): KindSchema {
    const cached = this.kinds[kind];
    if (cached) return cached;
    const { crd, sha256 } = readCrd(kind, this.crdsDir);
    const root = schemaOf(crd);
    const { spec, status } = root.properties ?? {};
    if (!spec || !status) throw new Error(`the ${kind} CRD has no spec or status in its schema`);
    const { file } = KINDS[kind];
    const dir = this.opts.precompiledDir;
    const pre = loadPrecompiled(
      file,
      sha256,
      dir === undefined ? undefined : join(dir, precompiledName(file)),
    );
    const ajv = (): Ajv => (this.ajvInstance ??= newAjv());
    const schema: KindSchema = {
      spec: { schema: spec, openapi: new OpenAPIValidator(spec, 'spec', ajv, pre?.spec) },
      status: { schema: status, openapi: new OpenAPIValidator(status, 'status', ajv, pre?.status) },
      specRequired: root.required?.includes('spec') ?? false,
    };
    this.kinds[kind] = schema;
    return schema;
  }

  /** Whether the kind's validators are the build's ahead-of-time ones (ajv is then never loaded). */
  compiledAheadOfTime(kind: Kind): boolean {
    const { spec, status } = this.schemaFor(kind);
    return spec.openapi.precompiled && status.openapi.precompiled;
  }

  validate(input: unknown): ValidationResult {
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      return { ok: false, errors: [invalid(ROOT, input, 'must be an object')] };
    }
    const obj = structuredClone(input) as Record<string, unknown>;

    const errors: FieldError[] = [];
    if (obj.apiVersion === undefined || obj.apiVersion === null)
      errors.push(required('apiVersion'));
    else if (obj.apiVersion !== API_VERSION) {
      errors.push(notSupported('apiVersion', obj.apiVersion, [API_VERSION]));
    }
    if (obj.kind === undefined || obj.kind === null) errors.push(required('kind'));
    else if (!isKind(obj.kind)) errors.push(notSupported('kind', obj.kind, KIND_NAMES));
    if (errors.length > 0 || !isKind(obj.kind)) return { ok: false, errors };
    const kind = obj.kind;
    const schema = this.schemaFor(kind);

    for (const key of Object.keys(obj)) {
      if (!TOP_LEVEL_FIELDS.has(key)) errors.push(unknownField(key));
    }
    errors.push(...validateMetadata(kind, obj.metadata));
    delete obj.status;

    const spec = checkSubtree('spec', obj.spec, schema.spec, errors);
    if (spec === undefined) {
      delete obj.spec;
      if (schema.specRequired) errors.push(required('spec'));
    } else {
      obj.spec = spec;
    }
    if (errors.length > 0) return { ok: false, errors };
    return { ok: true, object: obj as unknown as ConductorObject };
  }

  /**
   * Checks a status as the API server checks a write to the status subresource, so reconcilers
   * (and their tests) can tell a status Kubernetes would refuse. Status has no defaults.
   */
  validateStatus(kind: Kind, status: unknown): FieldError[] {
    const errors: FieldError[] = [];
    checkSubtree('status', structuredClone(status), this.schemaFor(kind).status, errors);
    return errors;
  }

  /** validate, throwing a ValidationError on errors. */
  mustValidate(input: unknown): ConductorObject {
    const result = this.validate(input);
    if (!result.ok) throw new ValidationError(result.errors);
    return result.object;
  }
}

let defaultValidator: Validator | undefined;

/** The Validator of the repository's crds/, compiled on first use. */
export function defaultValidatorInstance(): Validator {
  defaultValidator ??= new Validator();
  return defaultValidator;
}

/** Validates and defaults one object with the repository's CRDs; see the module comment. */
export function validateObject(obj: unknown): ValidationResult {
  return defaultValidatorInstance().validate(obj);
}

/**
 * validateObject with errors as `{path, message}`, the ValidateFn contract of
 * controller/source/manifests.ts (which maps paths back to lines of the file).
 */
export function validateManifest(
  obj: unknown,
): { ok: true; object: ConductorObject } | { ok: false; errors: PathMessage[] } {
  const result = validateObject(obj);
  return result.ok ? result : { ok: false, errors: result.errors.map(toPathMessage) };
}

/** Validator.validateStatus with the repository's CRDs. */
export function validateStatus(kind: Kind, status: unknown): FieldError[] {
  return defaultValidatorInstance().validateStatus(kind, status);
}
