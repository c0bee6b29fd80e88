/**
 * OpenAPI validation of spec with ajv, against the CRD's own schema, and the translation of ajv's
 * errors into the API server's field errors.
 *
 * ajv itself is loaded only when a schema must be compiled here: the build leaves each kind's
 * validators compiled ahead of time (precompiled.ts), which spares a short-lived CLI loading
 * ajv and compiling (about 70 ms of `conductor build`'s start-up).
 */
import { createRequire } from 'node:module';

import type * as AjvModule from 'ajv';
import type { Ajv, ErrorObject, ValidateFunction } from 'ajv';

import type { JSONSchemaProps } from '../api/crd.js';
import { invalid, notSupported, required, typeInvalid, type FieldError } from './field-error.js';
import { QUANTITY_PATTERN } from './quantity.js';

const require = createRequire(import.meta.url);

/** Vendor keywords ajv must accept; structural.ts implements the ones with semantics. */
const KUBERNETES_KEYWORDS = [
  'x-kubernetes-int-or-string',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-embedded-resource',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type',
  'x-kubernetes-validations',
];

/**
 * The formats Kubernetes' schemas use. Each validate function is self-contained (no outside
 * names), because the ahead-of-time validators carry its source text (formatsSource()).
 */
const FORMATS = {
  int32: {
    type: 'number' as const,
    validate: (n: number): boolean => Number.isInteger(n) && n >= -2147483648 && n < 2147483648,
  },
  int64: { type: 'number' as const, validate: (n: number): boolean => Number.isSafeInteger(n) },
  /** RFC 3339, as Kubernetes' strfmt date-time. */
  'date-time': /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/,
};

/** FORMATS as JavaScript source: what the ahead-of-time validators call `formats`. */
export function formatsSource(): string {
  return [
    '{',
    `  int32: { type: 'number', validate: ${FORMATS.int32.validate.toString()} },`,
    `  int64: { type: 'number', validate: ${FORMATS.int64.validate.toString()} },`,
    `  'date-time': ${FORMATS['date-time'].toString()},`,
    '}',
  ].join('\n');
}

/**
 * An ajv for Kubernetes' structural schemas. `source`: keep each compiled function's code, for
 * ajv's standalone code generation (formats then are the generated module's `formats`).
 */
export function newAjv(opts: { source?: boolean } = {}): Ajv {
  const ajvModule = require('ajv') as typeof AjvModule;
  // verbose: errors carry the data and parent schema the messages need. Unoptimized code compiles
  // the three kinds' schemas in a third of the time, and validating a manifest stays well under 1 ms.
  const ajv = new ajvModule.Ajv({
    allErrors: true,
    verbose: true,
    strictTypes: false,
    code: opts.source
      ? { optimize: false, source: true, formats: ajvModule._`formats` }
      : { optimize: false },
  });
  ajv.addVocabulary(KUBERNETES_KEYWORDS);
  for (const [name, format] of Object.entries(FORMATS)) ajv.addFormat(name, format);
  return ajv;
}

/** Validates one subtree (spec) of an object; paths are prefixed with `prefix`. */
export class OpenAPIValidator {
  /**
   * Compiles on first use (a controller that sees only Containers never compiles the rest),
   * unless `precompiled` is this very schema compiled ahead of time.
   */
  readonly precompiled: boolean;

  constructor(
    private readonly schema: JSONSchemaProps,
    private readonly prefix: string,
    private readonly ajv: () => Ajv = newAjv,
    private validateFn?: ValidateFunction,
  ) {
    this.precompiled = validateFn !== undefined;
  }

  /** The compiled schema; throws if ajv cannot compile it (crds.test.ts compiles every one). */
  compile(): ValidateFunction {
    this.validateFn ??= this.ajv().compile(this.schema);
    return this.validateFn;
  }

  validate(value: unknown): FieldError[] {
    const validateFn = this.compile();
    if (validateFn(value)) return [];
    const errors: FieldError[] = [];
    const seen = new Set<string>();
    const all = validateFn.errors ?? [];
    // A string that is too short or too long is not also reported for its pattern, as in Kubernetes.
    const lengthErrors = new Set(
      all
        .filter((e) => e.keyword === 'minLength' || e.keyword === 'maxLength')
        .map((e) => e.instancePath),
    );
    for (const error of all) {
      // Errors inside the branches of anyOf/oneOf are summed up by the anyOf/oneOf error itself.
      if (/\/(anyOf|oneOf)\/\d+\//.test(error.schemaPath)) continue;
      if (error.keyword === 'pattern' && lengthErrors.has(error.instancePath)) continue;
      const fieldError = this.translate(error);
      const key = JSON.stringify(fieldError);
      if (!seen.has(key)) errors.push(fieldError);
      seen.add(key);
    }
    return errors;
  }

  /** ajv's JSON pointer → `spec.ports[0].containerPort`, `spec.selector.app`, as Kubernetes prints them. */
  private fieldPath(instancePath: string): string {
    let path = this.prefix;
    let schema: JSONSchemaProps | undefined = this.schema;
    for (const raw of instancePath.split('/').slice(1)) {
      const segment = raw.replace(/~1/g, '/').replace(/~0/g, '~');
      if (schema?.properties && Object.hasOwn(schema.properties, segment)) {
        path += `.${segment}`;
        schema = schema.properties[segment];
      } else if (schema?.items) {
        path += `[${segment}]`;
        schema = schema.items;
      } else {
        path += `.${segment}`;
        schema =
          typeof schema?.additionalProperties === 'object'
            ? schema.additionalProperties
            : undefined;
      }
    }
    return path;
  }

  private translate(error: ErrorObject): FieldError {
    const field = this.fieldPath(error.instancePath);
    const data: unknown = error.data;
    const parent = error.parentSchema as JSONSchemaProps | undefined;
    const params = error.params as Record<string, unknown>;
    switch (error.keyword) {
      case 'required':
        return required(`${field}.${String(params.missingProperty)}`);
      case 'enum':
        return notSupported(field, data, (params.allowedValues as unknown[] | undefined) ?? []);
      case 'type':
        return typeInvalid(field, data, `must be of type ${String(params.type)}`);
      case 'maximum':
        return invalid(field, data, `must be less than or equal to ${String(params.limit)}`);
      case 'minimum':
        return invalid(field, data, `must be greater than or equal to ${String(params.limit)}`);
      case 'maxLength':
        return {
          type: 'FieldValueTooLong',
          field,
          detail: `may not be more than ${String(params.limit)} bytes`,
        };
      case 'minLength':
        return params.limit === 1
          ? required(field)
          : invalid(field, data, `must be at least ${String(params.limit)} characters long`);
      case 'pattern':
        return params.pattern === QUANTITY_PATTERN
          ? invalid(field, data, 'must be a quantity such as "500m", "0.5", "64Mi" or "1G"')
          : invalid(field, data, `must match the regular expression '${String(params.pattern)}'`);
      case 'maxItems':
        return {
          type: 'FieldValueTooMany',
          field,
          badValue: Array.isArray(data) ? data.length : data,
          detail: `must have at most ${String(params.limit)} items`,
        };
      case 'minItems':
        return params.limit === 1
          ? required(field, 'must have at least 1 item')
          : invalid(field, data, `must have at least ${String(params.limit)} items`);
      case 'minProperties':
      case 'maxProperties':
        return this.propertyCount(field, data, parent, error);
      case 'oneOf':
      case 'anyOf':
        return this.oneOf(field, data, parent, error);
      case 'format':
        return invalid(field, data, `must be a valid ${String(params.format)}`);
      default:
        return invalid(field, data, error.message ?? `failed ${error.keyword}`);
    }
  }

  /** minProperties: 1 + maxProperties: 1 with properties is a one-of (an Image step). */
  private propertyCount(
    field: string,
    data: unknown,
    parent: JSONSchemaProps | undefined,
    error: ErrorObject,
  ): FieldError {
    const limit = Number((error.params as { limit: number }).limit);
    const present = typeof data === 'object' && data !== null ? Object.keys(data) : [];
    if (parent?.properties && parent.minProperties === 1 && parent.maxProperties === 1) {
      const choices = Object.keys(parent.properties).join(', ');
      return present.length === 0
        ? required(field, `must specify one of: ${choices}`)
        : {
            type: 'FieldValueForbidden',
            field,
            detail: `may not specify more than 1 of: ${choices} (found ${present.join(', ')})`,
          };
    }
    return error.keyword === 'maxProperties'
      ? {
          type: 'FieldValueTooMany',
          field,
          badValue: present.length,
          detail: `must have at most ${limit} properties`,
        }
      : invalid(field, data, `must have at least ${limit} properties`);
  }

  /**
   * The two uses of anyOf/oneOf in a structural schema here: int-or-string, and "exactly one of
   * these fields" written as oneOf: [{required: [a]}, {required: [b]}, ...].
   */
  private oneOf(
    field: string,
    data: unknown,
    parent: JSONSchemaProps | undefined,
    error: ErrorObject,
  ): FieldError {
    if (parent?.['x-kubernetes-int-or-string']) {
      // YAML reads `cpu: 0.5` as a number, which an int-or-string rejects (as the API server does).
      const hint = typeof data === 'number' ? ' (write a fraction as a string: "0.5", "500m")' : '';
      return typeInvalid(field, data, `must be of type integer or string${hint}`);
    }
    const branches = (error.keyword === 'oneOf' ? parent?.oneOf : parent?.anyOf) ?? [];
    const choices = branches.flatMap((branch) => branch.required ?? []);
    if (choices.length === branches.length && choices.length > 0) {
      const present =
        typeof data === 'object' && data !== null
          ? choices.filter((c) => Object.hasOwn(data, c))
          : [];
      return present.length === 0
        ? required(field, `must specify one of: ${choices.join(', ')}`)
        : {
            type: 'FieldValueForbidden',
            field,
            detail: `may not specify more than 1 of: ${choices.join(', ')} (found ${present.join(', ')})`,
          };
    }
    return invalid(field, data, error.message ?? `must match ${error.keyword}`);
  }
}
