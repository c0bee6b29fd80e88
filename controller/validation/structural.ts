/**
 * What the API server does to a custom resource besides OpenAPI validation, driven by the same
 * structural schema: drop nulls of non-nullable fields, reject unknown fields, apply defaults,
 * check x-kubernetes-list-type uniqueness, and collect the x-kubernetes-validations (CEL) rules to
 * evaluate once OpenAPI validation has passed.
 *
 * Unknown fields are rejected, not pruned. The API server prunes them silently, but kubectl's
 * default (--validate=strict) makes it reject them (`unknown field "spec.foo"`), and a typo that
 * silently disappears (`restartpolicy: Never` running with Always) is the worse failure for a file
 * someone edits by hand.
 */
import type { JSONSchemaProps, ValidationRule } from '../api/crd.js';
import { CEL_RULES, normalizeRule } from './cel-rules.js';
import { unknownField, type FieldError } from './field-error.js';

/** A CEL rule and the (defaulted) value it applies to. */
export interface PendingRule {
  path: string;
  value: unknown;
  rule: ValidationRule;
}

export interface StructuralResult {
  errors: FieldError[];
  rules: PendingRule[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Walks value with its schema, in place where possible; returns the value to keep (undefined: drop
 * it). Appends to out; a value with errors is still returned so that validation reports the rest.
 */
export function applyStructural(
  value: unknown,
  schema: JSONSchemaProps,
  path: string,
  out: StructuralResult,
): unknown {
  const { errors } = out;
  if (value === null) return schema.nullable ? null : undefined;

  if (isRecord(value)) {
    if (schema.properties) {
      const preserve = schema['x-kubernetes-preserve-unknown-fields'] === true;
      for (const key of Object.keys(value)) {
        if (!Object.hasOwn(schema.properties, key) && !preserve) {
          errors.push(unknownField(`${path}.${key}`));
        }
      }
      for (const [key, child] of Object.entries(schema.properties)) {
        let v = Object.hasOwn(value, key)
          ? applyStructural(value[key], child, `${path}.${key}`, out)
          : undefined;
        if (v === undefined && child.default !== undefined) {
          v = applyStructural(structuredClone(child.default), child, `${path}.${key}`, out);
        }
        if (v === undefined) Reflect.deleteProperty(value, key);
        else value[key] = v;
      }
    } else if (typeof schema.additionalProperties === 'object') {
      for (const key of Object.keys(value)) {
        const v = applyStructural(value[key], schema.additionalProperties, `${path}.${key}`, out);
        if (v === undefined) Reflect.deleteProperty(value, key);
        else value[key] = v;
      }
    } else if (
      schema.type === 'object' &&
      schema['x-kubernetes-preserve-unknown-fields'] !== true &&
      schema.additionalProperties !== true
    ) {
      for (const key of Object.keys(value)) errors.push(unknownField(`${path}.${key}`));
    }
  } else if (Array.isArray(value) && schema.items) {
    const items = schema.items;
    // A null item is kept (and reported by validation): dropping it would renumber the rest.
    const result = value.map((item, i) =>
      item === null ? null : applyStructural(item, items, `${path}[${i}]`, out),
    );
    value.splice(0, value.length, ...result);
    errors.push(...listTypeErrors(value, schema, path));
  }

  for (const rule of schema['x-kubernetes-validations'] ?? [])
    out.rules.push({ path, value, rule });
  return value;
}

/**
 * Evaluates CEL rules through their TypeScript mirrors. A failure reads as the API server's:
 * `spec: Invalid value: MESSAGE` (no value is printed).
 */
export function evaluateRules(rules: readonly PendingRule[]): FieldError[] {
  const errors: FieldError[] = [];
  for (const { path, value, rule } of rules) {
    const check = CEL_RULES.get(normalizeRule(rule.rule));
    if (check === undefined)
      throw new Error(`${path}: no TypeScript mirror of CEL rule ${rule.rule}`);
    if (!check(value)) {
      errors.push({
        type: 'FieldValueInvalid',
        field: path,
        detail: rule.message ?? `failed rule: ${rule.rule}`,
      });
    }
  }
  return errors;
}

/** x-kubernetes-list-type map and set: no two items with the same key (map) or value (set). */
function listTypeErrors(list: unknown[], schema: JSONSchemaProps, path: string): FieldError[] {
  const type = schema['x-kubernetes-list-type'];
  if (type !== 'map' && type !== 'set') return [];
  const seen = new Set<string>();
  const errors: FieldError[] = [];
  list.forEach((item, i) => {
    let key: unknown = item;
    if (type === 'map') {
      if (!isRecord(item)) return;
      const keys = schema['x-kubernetes-list-map-keys'] ?? [];
      key = Object.fromEntries(keys.map((k) => [k, item[k]]));
    }
    const id = JSON.stringify(key);
    if (seen.has(id)) {
      errors.push({ type: 'FieldValueDuplicate', field: `${path}[${i}]`, badValue: key });
    }
    seen.add(id);
  });
  return errors;
}
