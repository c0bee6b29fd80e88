/**
 * Field errors in the shape of Kubernetes' field.Error (k8s.io/apimachinery/pkg/util/validation/field),
 * so a manifest rejected in directory mode reads as the API server would reject it:
 * `spec.ports[0].containerPort: Invalid value: 70000: must be less than or equal to 65535`.
 */
export type FieldErrorType =
  | 'FieldValueRequired'
  | 'FieldValueInvalid'
  /** A value of the wrong JSON type; printed as Invalid value, as in Kubernetes. */
  | 'FieldValueTypeInvalid'
  | 'FieldValueNotSupported'
  | 'FieldValueDuplicate'
  | 'FieldValueTooLong'
  | 'FieldValueTooMany'
  | 'FieldValueForbidden'
  /** A field the schema does not know: the API server's strict field validation rejects it. */
  | 'FieldValueUnknown';

export interface FieldError {
  type: FieldErrorType;
  /** The field's path as Kubernetes prints it: `spec.ports[0].containerPort`, `spec.selector.app`. */
  field: string;
  /** Omitted from the message when absent (as for CEL rule failures). */
  badValue?: unknown;
  detail?: string;
}

const TYPE_TEXT: Record<FieldErrorType, string> = {
  FieldValueRequired: 'Required value',
  FieldValueInvalid: 'Invalid value',
  FieldValueTypeInvalid: 'Invalid value',
  FieldValueNotSupported: 'Unsupported value',
  FieldValueDuplicate: 'Duplicate value',
  FieldValueTooLong: 'Too long',
  FieldValueTooMany: 'Too many',
  FieldValueForbidden: 'Forbidden',
  FieldValueUnknown: 'Unknown field',
};

/** Types whose message omits the value, as in field.Error.ErrorBody. */
const WITHOUT_VALUE = new Set<FieldErrorType>([
  'FieldValueRequired',
  'FieldValueForbidden',
  'FieldValueTooLong',
]);

/** A value as field.Error prints it: strings quoted, everything else as JSON. */
export function formatValue(value: unknown): string {
  if (value === undefined) return 'null';
  return JSON.stringify(value) ?? String(value);
}

/** The one-line message: `FIELD: TYPE[: VALUE][: DETAIL]`, or strict decoding's `unknown field "FIELD"`. */
export function formatFieldError(error: FieldError): string {
  if (error.type === 'FieldValueUnknown') return `unknown field ${JSON.stringify(error.field)}`;
  return `${error.field}: ${formatFieldErrorBody(error)}`;
}

/** The message without its field: `TYPE[: VALUE][: DETAIL]` (`Unknown field` for unknown ones). */
export function formatFieldErrorBody(error: FieldError): string {
  let message = TYPE_TEXT[error.type];
  if (!WITHOUT_VALUE.has(error.type) && 'badValue' in error) {
    message += `: ${formatValue(error.badValue)}`;
  }
  if (error.detail) message += `: ${error.detail}`;
  return message;
}

/** The path/message shape controller/source reports per field (its ValidateFn contract). */
export interface PathMessage {
  /** `spec.ports[0].containerPort`; '' for the whole object. */
  path: string;
  message: string;
}

export function toPathMessage(error: FieldError): PathMessage {
  return {
    path: error.field === ROOT ? '' : error.field,
    message: formatFieldErrorBody(error),
  };
}

/** The field of an error about the whole object. */
export const ROOT = '<root>';

/** All errors, one per line, as the API server joins them. */
export function formatFieldErrors(errors: readonly FieldError[]): string {
  return errors.map(formatFieldError).join('\n');
}

export const required = (field: string, detail?: string): FieldError => ({
  type: 'FieldValueRequired',
  field,
  ...(detail !== undefined && { detail }),
});

export const invalid = (field: string, badValue: unknown, detail: string): FieldError => ({
  type: 'FieldValueInvalid',
  field,
  badValue,
  detail,
});

export const typeInvalid = (field: string, badValue: unknown, detail: string): FieldError => ({
  type: 'FieldValueTypeInvalid',
  field,
  badValue,
  detail,
});

export const notSupported = (
  field: string,
  badValue: unknown,
  supported: readonly unknown[],
): FieldError => ({
  type: 'FieldValueNotSupported',
  field,
  badValue,
  detail: `supported values: ${supported.map(formatValue).join(', ')}`,
});

export const forbidden = (field: string, detail: string): FieldError => ({
  type: 'FieldValueForbidden',
  field,
  detail,
});

/**
 * Errors after which the API server does not evaluate CEL rules (hasBlockingErr in its
 * customresource strategy): the rules could not make sense of the object.
 */
export function isBlocking(error: FieldError): boolean {
  return [
    'FieldValueNotSupported',
    'FieldValueRequired',
    'FieldValueTooLong',
    'FieldValueTooMany',
    'FieldValueTypeInvalid',
  ].includes(error.type);
}

export const unknownField = (field: string): FieldError => ({ type: 'FieldValueUnknown', field });
