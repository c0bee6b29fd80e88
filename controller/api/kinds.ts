/** The API group, version and kinds Conductor serves; crds/ holds one CRD per kind. */
export const GROUP = 'conductor.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}` as const;

export type Kind = 'Image' | 'Container' | 'Service';

export interface KindInfo {
  kind: Kind;
  /** The resource name in URLs and `conductor get`. */
  plural: string;
  singular: string;
  shortNames: readonly string[];
  /** The CRD's file in crds/. */
  file: string;
}

/** Kind ↔ plural ↔ CRD file; crds.test.ts checks this table against the CRDs. */
export const KINDS: Readonly<Record<Kind, KindInfo>> = {
  Image: {
    kind: 'Image',
    plural: 'images',
    singular: 'image',
    shortNames: ['cimg'],
    file: 'images.yaml',
  },
  Container: {
    kind: 'Container',
    plural: 'containers',
    singular: 'container',
    shortNames: ['cctr'],
    file: 'containers.yaml',
  },
  Service: {
    kind: 'Service',
    plural: 'services',
    singular: 'service',
    shortNames: ['csvc'],
    file: 'services.yaml',
  },
};

/** The kinds in dependency order: Images before the Containers that run them. */
export const KIND_NAMES: readonly Kind[] = ['Image', 'Container', 'Service'];

export function isKind(value: unknown): value is Kind {
  return typeof value === 'string' && Object.hasOwn(KINDS, value);
}

/** Resolves what a user may type (kind, plural, singular or short name, any case) to a kind. */
export function kindFor(resource: string): Kind | undefined {
  const wanted = resource.toLowerCase();
  for (const info of Object.values(KINDS)) {
    if (
      info.kind.toLowerCase() === wanted ||
      info.plural === wanted ||
      info.singular === wanted ||
      info.shortNames.includes(wanted) ||
      `${info.plural}.${GROUP}` === wanted
    ) {
      return info.kind;
    }
  }
  return undefined;
}
