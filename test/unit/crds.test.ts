/**
 * The CRDs in crds/ are what a kube-apiserver would accept: structural schemas, described for
 * `kubectl explain`, with valid defaults and printer columns; and they agree with the tables in
 * controller/api and controller/validation that are written by hand.
 */
import { describe, expect, it } from '@jest/globals';

import {
  GROUP,
  KIND_NAMES,
  KINDS,
  VERSION,
  loadCrd,
  schemaOf,
  type JSONSchemaProps,
} from '../../controller/api/index.js';
import { CEL_RULES, normalizeRule } from '../../controller/validation/cel-rules.js';
import { NAME_RULE_SPECS, NAME_RULES } from '../../controller/validation/index.js';
import { newAjv, OpenAPIValidator } from '../../controller/validation/openapi.js';
import { QUANTITY_PATTERN } from '../../controller/validation/quantity.js';

interface SchemaNode {
  path: string;
  node: JSONSchemaProps;
}

/** Every schema node a value can sit at (not the branches of anyOf/oneOf/allOf/not). */
function nodes(node: JSONSchemaProps, path = ''): SchemaNode[] {
  const out: SchemaNode[] = [{ path, node }];
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    out.push(...nodes(child, path === '' ? name : `${path}.${name}`));
  }
  if (node.items) out.push(...nodes(node.items, `${path}[]`));
  if (typeof node.additionalProperties === 'object') {
    out.push(...nodes(node.additionalProperties, `${path}.*`));
  }
  return out;
}

function junctors(node: JSONSchemaProps): JSONSchemaProps[] {
  return [
    ...(node.anyOf ?? []),
    ...(node.oneOf ?? []),
    ...(node.allOf ?? []),
    ...(node.not ? [node.not] : []),
  ];
}

/** Keywords a node under anyOf/oneOf/allOf/not may use: value validations only. */
const VALUE_VALIDATIONS = new Set([
  'required',
  'enum',
  'pattern',
  'minimum',
  'maximum',
  'minLength',
  'maxLength',
  'minItems',
  'maxItems',
  'minProperties',
  'maxProperties',
  'format',
]);

/** Short names kubectl already resolves to built-in kinds. */
const BUILT_IN_SHORT_NAMES = new Set([
  'cm',
  'cs',
  'csr',
  'crd',
  'crds',
  'cj',
  'deploy',
  'ds',
  'ep',
  'ev',
  'hpa',
  'ing',
  'limits',
  'netpol',
  'no',
  'ns',
  'pc',
  'pdb',
  'po',
  'psp',
  'pv',
  'pvc',
  'quota',
  'rc',
  'rs',
  'sa',
  'sc',
  'sts',
  'svc',
  'img',
  'ctr',
]);

const crds = KIND_NAMES.map((kind) => ({
  kind,
  crd: loadCrd(kind),
  schema: schemaOf(loadCrd(kind)),
}));

describe.each(crds)('crds/ $kind', ({ kind, crd, schema }) => {
  const all = nodes(schema);

  it('matches controller/api KINDS', () => {
    const info = KINDS[kind];
    expect(crd.metadata.name).toBe(`${info.plural}.${GROUP}`);
    expect(crd.spec.group).toBe(GROUP);
    expect(crd.spec.scope).toBe('Namespaced');
    expect(crd.spec.names).toMatchObject({
      kind,
      plural: info.plural,
      singular: info.singular,
      shortNames: [...info.shortNames],
      categories: ['conductor'],
    });
    expect(crd.spec.versions.map((v) => [v.name, v.served, v.storage])).toEqual([
      [VERSION, true, true],
    ]);
    expect(crd.spec.versions[0]?.subresources).toEqual({ status: {} });
  });

  it('has short names that shadow no built-in kind', () => {
    for (const name of crd.spec.names.shortNames ?? [])
      expect(BUILT_IN_SHORT_NAMES.has(name)).toBe(false);
  });

  it('describes every field (kubectl explain)', () => {
    // The root metadata is the exception: the API server allows nothing there but restrictions
    // on name, and kubectl explain shows ObjectMeta's own documentation.
    const undescribed = all
      .filter(({ path }) => path !== 'metadata')
      .filter(({ node }) => !node.description?.trim())
      .map(({ path }) => path || '<root>');
    expect(undescribed).toEqual([]);
  });

  it('is structural', () => {
    const problems: string[] = [];
    for (const { path, node } of all) {
      const at = path || '<root>';
      if (node['x-kubernetes-int-or-string']) {
        if (node.type !== undefined) problems.push(`${at}: int-or-string with a type`);
        expect(node.anyOf).toEqual([{ type: 'integer' }, { type: 'string' }]);
      } else if (node.type === undefined && !node['x-kubernetes-preserve-unknown-fields']) {
        problems.push(`${at}: no type`);
      }
      if (node.properties && node.additionalProperties !== undefined) {
        problems.push(`${at}: properties and additionalProperties`);
      }
      if (node.type === 'array' && !node.items) problems.push(`${at}: array without items`);
      if (node.uniqueItems) problems.push(`${at}: uniqueItems (use x-kubernetes-list-type: set)`);
      if ('$ref' in node || 'additionalItems' in node) problems.push(`${at}: $ref/additionalItems`);
      if (node['x-kubernetes-list-type'] === 'map') {
        const items = node.items;
        for (const key of node['x-kubernetes-list-map-keys'] ?? []) {
          const keyNode = items?.properties?.[key];
          if (!keyNode || !['string', 'integer'].includes(keyNode.type ?? '')) {
            problems.push(`${at}: list map key ${key} is not a scalar property`);
          } else if (!items?.required?.includes(key) && keyNode.default === undefined) {
            problems.push(`${at}: list map key ${key} is neither required nor defaulted`);
          }
        }
      }
      for (const branch of junctors(node)) {
        if (node['x-kubernetes-int-or-string']) continue;
        for (const keyword of Object.keys(branch)) {
          if (!VALUE_VALIDATIONS.has(keyword)) problems.push(`${at}: ${keyword} inside a junctor`);
        }
      }
      for (const required of node.required ?? []) {
        if (!node.properties?.[required])
          problems.push(`${at}: required ${required} is not a property`);
      }
      for (const branch of node.oneOf ?? []) {
        for (const required of branch.required ?? []) {
          if (!node.properties?.[required]) problems.push(`${at}: oneOf names unknown ${required}`);
        }
      }
      if (node.pattern !== undefined && /\(\?[=!<]|\\\d/.test(node.pattern)) {
        problems.push(`${at}: pattern uses lookaround or backreferences, which Go's RE2 lacks`);
      }
      if (node.format !== undefined && !['int32', 'int64', 'date-time'].includes(node.format)) {
        problems.push(`${at}: format ${node.format} not known to controller/validation`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('restricts root metadata to name only (the API server allows nothing else there)', () => {
    const metadata = schema.properties?.metadata;
    expect(metadata?.type).toBe('object');
    expect(Object.keys(metadata ?? {}).filter((k) => k !== 'type' && k !== 'properties')).toEqual(
      [],
    );
    expect(
      Object.keys(metadata?.properties ?? {}).every((k) => k === 'name' || k === 'generateName'),
    ).toBe(true);
  });

  it('agrees with controller/validation on metadata.name', () => {
    const name = schema.properties?.metadata?.properties?.name;
    const rule = NAME_RULE_SPECS[NAME_RULES[kind]];
    if (name === undefined) {
      // the API server's own rule for custom resources
      expect(NAME_RULES[kind]).toBe('DNS1123Subdomain');
    } else {
      expect({ pattern: name.pattern, maxLength: name.maxLength }).toEqual({
        pattern: rule.pattern,
        maxLength: rule.maxLength,
      });
    }
  });

  it('has defaults that validate against their own field', () => {
    const ajv = newAjv();
    const problems: string[] = [];
    for (const { path, node } of all) {
      if (node.default === undefined) continue;
      const { default: value, ...rest } = node;
      if (!ajv.validate(rest, value)) problems.push(`${path}: default ${JSON.stringify(value)}`);
    }
    expect(problems).toEqual([]);
  });

  it('gives every quantity field the quantity pattern and minimum', () => {
    const quantities = all.filter(({ node }) => /\bquantity\b/.test(node.description ?? ''));
    for (const { path, node } of quantities) {
      expect([path, node.pattern, node.minimum]).toEqual([path, QUANTITY_PATTERN, 0]);
      expect(node['x-kubernetes-int-or-string']).toBe(true);
    }
  });

  it('compiles with ajv (spec and status), as directory mode uses it', () => {
    for (const part of ['spec', 'status'] as const) {
      const node = schema.properties?.[part];
      expect(node).toBeDefined();
      if (node) expect(() => new OpenAPIValidator(node, part).compile()).not.toThrow();
    }
  });

  it('mirrors every CEL rule in controller/validation', () => {
    const rules = all.flatMap(({ node }) => node['x-kubernetes-validations'] ?? []);
    for (const { rule, message } of rules) {
      expect(CEL_RULES.has(normalizeRule(rule))).toBe(true);
      expect(message).toBeTruthy();
    }
  });

  it('has printer columns whose paths exist, and an Age column', () => {
    const columns = crd.spec.versions[0]?.additionalPrinterColumns ?? [];
    expect(columns.at(-1)).toEqual({
      name: 'Age',
      type: 'date',
      jsonPath: '.metadata.creationTimestamp',
    });
    const paths = new Set(all.map(({ path }) => path));
    for (const { jsonPath } of columns.slice(0, -1)) {
      const path = jsonPath.slice(1).replace(/\[\*\]/g, '[]');
      expect([jsonPath, paths.has(path)]).toEqual([jsonPath, true]);
    }
  });
});
