import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['build/', 'dist/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // The seam: the controller and the CLI reach the runtime core only through its entry point
    // (runtime-core/src/index.ts), so what they may use is one file's exports.
    files: ['controller/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '(^|/)runtime-core/src/(?!index\\.js$)',
              message:
                'the controller uses the runtime core through runtime-core/src/index.js only: export what you need from there',
            },
          ],
        },
      ],
    },
  },
);
