/**
 * Run by `npm run build` after tsc: writes dist/crds/<file>.json, each CRD parsed from its YAML
 * with the sha256 of that YAML, which loadCrd uses instead of parsing the YAML again when the
 * hash still matches; and dist/crds/<file>.validators.cjs, its spec and status validators
 * compiled ahead of time (validation/precompiled.ts), under the same check.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { parse } from 'yaml';

import { precompiledPath, precompiledSource } from '../validation/precompiled.js';
import {
  defaultCrdsDir,
  parsedCopyPath,
  schemaOf,
  sha256,
  type CustomResourceDefinition,
} from './crd.js';
import { KIND_NAMES, KINDS } from './kinds.js';

for (const kind of KIND_NAMES) {
  const { file } = KINDS[kind];
  const text = readFileSync(join(defaultCrdsDir(), file), 'utf8');
  const out = parsedCopyPath(file);
  mkdirSync(dirname(out), { recursive: true });
  const crd = parse(text) as CustomResourceDefinition;
  const hash = sha256(text);
  writeFileSync(out, JSON.stringify({ sha256: hash, crd }));
  writeFileSync(precompiledPath(file), precompiledSource(schemaOf(crd), hash));
}
