/**
 * The seam between the controller and the runtime core is one file: eslint refuses a controller
 * or CLI import of any other runtime-core module (eslint.config.js), and the tree obeys it.
 */
import { describe, expect, it } from '@jest/globals';
import { ESLint } from 'eslint';

import { REPO_ROOT } from '../fixtures/controller.js';

const eslint = new ESLint({ cwd: REPO_ROOT });

async function restricted(code: string, file: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: `${REPO_ROOT}/${file}` });
  return (result?.messages ?? [])
    .filter((m) => m.ruleId === '@typescript-eslint/no-restricted-imports')
    .map((m) => m.message);
}

describe('the runtime core seam', () => {
  it('refuses controller imports of runtime-core modules other than its index', async () => {
    for (const spec of [
      '../../runtime-core/src/containers.js',
      '../../runtime-core/src/images/builder.js',
      '../../runtime-core/src/paths.js',
    ]) {
      const type = await restricted(
        `import type { X } from '${spec}';\nexport type Y = X;\n`,
        'controller/controllers/seam-check.ts',
      );
      expect(type).toHaveLength(1);
      expect(type[0]).toMatch(/runtime-core\/src\/index\.js only/);
      const value = await restricted(
        `import { x } from '${spec}';\nexport const y = x;\n`,
        'controller/cli/seam-check.ts',
      );
      expect(value).toHaveLength(1);
    }
  });

  it('allows the index, and the runtime core itself and the tests import what they like', async () => {
    expect(
      await restricted(
        `import { RuntimeCore } from '../../runtime-core/src/index.js';\nexport const c = RuntimeCore;\n`,
        'controller/controllers/seam-check.ts',
      ),
    ).toEqual([]);
    expect(
      await restricted(
        `import { x } from './containers.js';\nexport const y = x;\n`,
        'runtime-core/src/seam-check.ts',
      ),
    ).toEqual([]);
  });

  it('holds for the tree as it is', async () => {
    const results = await eslint.lintFiles(['controller/**/*.ts']);
    const broken = results.flatMap((r) =>
      r.messages
        .filter((m) => m.ruleId === '@typescript-eslint/no-restricted-imports')
        .map((m) => `${r.filePath}:${m.line}: ${m.message}`),
    );
    expect(broken).toEqual([]);
  }, 60_000);
});
