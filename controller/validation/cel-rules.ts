/**
 * The CRDs' x-kubernetes-validations (CEL) rules, mirrored in TypeScript.
 *
 * Directory mode has no CEL interpreter, so each rule a CRD uses has a hand-written twin here,
 * keyed by the rule's text. Loading a schema with a rule missing from this table fails (and
 * crds.test.ts checks every rule), so a rule cannot be added to a CRD and silently skipped here.
 */
export type RuleCheck = (self: unknown) => boolean;

/** Rule text with whitespace collapsed, as YAML folding may leave it. */
export function normalizeRule(rule: string): string {
  return rule.replace(/\s+/g, ' ').trim();
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

function names(list: unknown): unknown[] {
  return Array.isArray(list) ? list.map((item) => record(item)?.name) : [];
}

const RULES: ReadonlyArray<[string, RuleCheck]> = [
  [
    // Container.spec: every volumeMounts[].name names a volume.
    '!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && self.volumes.exists(v, v.name == m.name))',
    (self) => {
      const spec = record(self);
      if (spec?.volumeMounts === undefined) return true;
      const volumes = new Set(names(spec.volumes));
      return names(spec.volumeMounts).every((name) => volumes.has(name));
    },
  ],
];

export const CEL_RULES: ReadonlyMap<string, RuleCheck> = new Map(
  RULES.map(([rule, check]) => [normalizeRule(rule), check]),
);
