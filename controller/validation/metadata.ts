/**
 * metadata validation as the API server does it for custom resources (ValidateObjectMeta), with
 * Kubernetes' own messages. Name rules are per kind: the CRDs restrict metadata.name further
 * where the name becomes a hostname or DNS name (crds.test.ts checks the two agree).
 */
import type { Kind } from '../api/kinds.js';
import {
  forbidden,
  invalid,
  required,
  typeInvalid,
  unknownField,
  type FieldError,
} from './field-error.js';

export type NameRule = 'DNS1123Subdomain' | 'DNS1123Label' | 'DNS1035Label';

/** Container names are hostnames and Service names DNS names; Image names are only names. */
export const NAME_RULES: Readonly<Record<Kind, NameRule>> = {
  Image: 'DNS1123Subdomain',
  Container: 'DNS1123Label',
  Service: 'DNS1035Label',
};

const LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const SUBDOMAIN = `${LABEL}(\\.${LABEL})*`;
const DNS1035 = '[a-z]([-a-z0-9]*[a-z0-9])?';
const QUALIFIED_NAME = '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]';
const LABEL_VALUE = `(${QUALIFIED_NAME})?`;

interface Rule {
  /** Anchored, as in the CRDs. */
  pattern: string;
  maxLength: number;
  message: string;
}

export const NAME_RULE_SPECS: Readonly<Record<NameRule, Rule>> = {
  DNS1123Subdomain: {
    pattern: `^${SUBDOMAIN}$`,
    maxLength: 253,
    message:
      "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '" +
      SUBDOMAIN +
      "')",
  },
  DNS1123Label: {
    pattern: `^${LABEL}$`,
    maxLength: 63,
    message:
      "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '" +
      LABEL +
      "')",
  },
  DNS1035Label: {
    pattern: `^${DNS1035}$`,
    maxLength: 63,
    message:
      "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '" +
      DNS1035 +
      "')",
  },
};

/** Kubernetes' messages for one name; empty when valid. */
export function checkName(value: string, rule: NameRule): string[] {
  const spec = NAME_RULE_SPECS[rule];
  const problems: string[] = [];
  if (value.length > spec.maxLength) {
    problems.push(`must be no more than ${spec.maxLength} characters`);
  }
  if (!new RegExp(spec.pattern).test(value)) problems.push(spec.message);
  return problems;
}

/** metadata fields users may set. */
const USER_FIELDS = new Set(['name', 'namespace', 'labels', 'annotations']);
/**
 * Fields the source sets (the API server resets them on create too): dropped, so the output of
 * `conductor get -o yaml` can be applied again.
 */
const SYSTEM_FIELDS = new Set([
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'managedFields',
  'selfLink',
]);
/** ObjectMeta fields that mean something only with an API server. */
const UNSUPPORTED_FIELDS = new Set(['generateName', 'finalizers', 'ownerReferences']);

const TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkQualifiedName(field: string, key: string): FieldError[] {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  const errors: FieldError[] = [];
  if (prefix !== undefined) {
    for (const problem of checkName(prefix, 'DNS1123Subdomain')) {
      errors.push(invalid(field, key, `prefix part ${problem}`));
    }
  }
  if (name.length === 0) {
    errors.push(invalid(field, key, 'name part must be non-empty'));
  } else {
    if (name.length > 63)
      errors.push(invalid(field, key, 'name part must be no more than 63 characters'));
    if (!new RegExp(`^${QUALIFIED_NAME}$`).test(name)) {
      errors.push(
        invalid(
          field,
          key,
          "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '" +
            QUALIFIED_NAME +
            "')",
        ),
      );
    }
  }
  return errors;
}

function checkStringMap(
  field: string,
  value: unknown,
  checkValue: (field: string, v: string) => FieldError[],
): FieldError[] {
  if (!isRecord(value)) return [typeInvalid(field, value, 'must be of type object')];
  const errors: FieldError[] = [];
  for (const [key, v] of Object.entries(value)) {
    errors.push(...checkQualifiedName(field, key));
    if (typeof v !== 'string')
      errors.push(typeInvalid(`${field}.${key}`, v, 'must be of type string'));
    else errors.push(...checkValue(field, v));
  }
  return errors;
}

/** Labels as Kubernetes checks them: qualified names to label values (e.g. a node's labels). */
export function checkLabels(field: string, value: unknown): FieldError[] {
  return checkStringMap(field, value, checkLabelValue);
}

function checkLabelValue(field: string, value: string): FieldError[] {
  const errors: FieldError[] = [];
  if (value.length > 63) errors.push(invalid(field, value, 'must be no more than 63 characters'));
  if (!new RegExp(`^${LABEL_VALUE}$`).test(value)) {
    errors.push(
      invalid(
        field,
        value,
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '" +
          LABEL_VALUE +
          "')",
      ),
    );
  }
  return errors;
}

/**
 * Validates metadata in place: drops system fields, defaults the namespace to "default".
 * Returns the errors; metadata is usable only when there are none.
 */
export function validateMetadata(kind: Kind, metadata: unknown): FieldError[] {
  if (metadata === undefined || metadata === null) return [required('metadata')];
  if (!isRecord(metadata)) return [typeInvalid('metadata', metadata, 'must be of type object')];
  const errors: FieldError[] = [];
  for (const key of Object.keys(metadata)) {
    if (SYSTEM_FIELDS.has(key)) {
      Reflect.deleteProperty(metadata, key);
    } else if (UNSUPPORTED_FIELDS.has(key)) {
      errors.push(forbidden(`metadata.${key}`, 'not supported in directory mode'));
    } else if (!USER_FIELDS.has(key)) {
      errors.push(unknownField(`metadata.${key}`));
    }
  }

  const { name } = metadata;
  if (name === undefined || name === null || name === '') {
    errors.push(required('metadata.name', 'name or generateName is required'));
  } else if (typeof name !== 'string') {
    errors.push(typeInvalid('metadata.name', name, 'must be of type string'));
  } else {
    const { maxLength } = NAME_RULE_SPECS[NAME_RULES[kind]];
    if (name.length > maxLength) {
      // as the CRD's maxLength reads from the API server
      errors.push({
        type: 'FieldValueTooLong',
        field: 'metadata.name',
        detail: `may not be more than ${maxLength} bytes`,
      });
    } else {
      for (const problem of checkName(name, NAME_RULES[kind])) {
        errors.push(invalid('metadata.name', name, problem));
      }
    }
  }

  if (
    metadata.namespace === undefined ||
    metadata.namespace === null ||
    metadata.namespace === ''
  ) {
    metadata.namespace = 'default';
  } else if (typeof metadata.namespace !== 'string') {
    errors.push(typeInvalid('metadata.namespace', metadata.namespace, 'must be of type string'));
  } else {
    for (const problem of checkName(metadata.namespace, 'DNS1123Label')) {
      errors.push(invalid('metadata.namespace', metadata.namespace, problem));
    }
  }

  if (metadata.labels === null) delete metadata.labels;
  if (metadata.labels !== undefined) {
    errors.push(...checkStringMap('metadata.labels', metadata.labels, checkLabelValue));
  }
  if (metadata.annotations === null) delete metadata.annotations;
  if (metadata.annotations !== undefined) {
    errors.push(...checkStringMap('metadata.annotations', metadata.annotations, () => []));
    if (isRecord(metadata.annotations)) {
      let size = 0;
      for (const [k, v] of Object.entries(metadata.annotations)) {
        size += Buffer.byteLength(k) + (typeof v === 'string' ? Buffer.byteLength(v) : 0);
      }
      if (size > TOTAL_ANNOTATION_SIZE_LIMIT) {
        errors.push({
          type: 'FieldValueTooLong',
          field: 'metadata.annotations',
          detail: `may not be more than ${TOTAL_ANNOTATION_SIZE_LIMIT} bytes`,
        });
      }
    }
  }
  return errors;
}
