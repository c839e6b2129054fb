// ESLint flat config: typescript-eslint type-checked rules for src/, test/ and bench/.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

/**
 * The layers of src/ (README, Development: Layout): entry points (http/, with the AWS wire
 * protocol in http/aws-api/, and cli/) on top; then http-task/; the domain (connections/);
 * the adapters that implement its ports (oauth/, secret-store/) and the leaves (net/, auth/,
 * client/). A folder may not import the folders listed for it: an import upwards, or sideways
 * into an adapter, fails lint. Tests may cross layers.
 */
const FORBIDDEN_IMPORTS = {
  'http-task': ['http', 'cli', 'oauth', 'secret-store', 'auth'],
  connections: ['http', 'cli', 'http-task', 'oauth', 'auth'],
  oauth: ['http', 'cli', 'http-task', 'secret-store', 'auth'],
  'secret-store': ['http', 'cli', 'http-task', 'connections', 'oauth', 'auth', 'net'],
  net: ['http', 'cli', 'http-task', 'connections', 'oauth', 'secret-store', 'auth'],
  auth: ['http', 'cli', 'http-task', 'connections', 'oauth', 'secret-store', 'net'],
  client: ['http', 'cli', 'http-task', 'connections', 'oauth', 'secret-store', 'auth', 'net'],
  // The CLI shares the domain's vocabulary (connection states, types), nothing else of the server.
  cli: ['http', 'http-task', 'oauth', 'secret-store', 'auth', 'net'],
};

const layerRules = Object.entries(FORBIDDEN_IMPORTS).map(([folder, forbidden]) => ({
  files: [`src/${folder}/**/*.ts`],
  ignores: ['**/*.test.ts'],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: forbidden.map((target) => ({
          group: [`../${target}/*`, `../../${target}/*`],
          message: `src/${folder}/ may not import src/${target}/ (eslint.config.js: the layers of src/).`,
        })),
      },
    ],
  },
}));

export default defineConfig(
  {
    ignores: [
      'dist/',
      'node_modules/',
      'data/',
      'coverage/',
      'helm/',
      '**/*.config.js',
      '.tmp/',
      'src/openapi-types.ts',
    ],
  },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          // node:test's test()/describe() return promises the runner itself awaits.
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] },
          ],
        },
      ],
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      // A leading underscore marks a deliberately unused name (express's 4-argument error
      // handler, omitting a field by destructuring).
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      // Express 5 and node callbacks accept async functions; keep the check for conditionals.
      '@typescript-eslint/no-misused-promises': [
        'error',
        { checksVoidReturn: { arguments: false, attributes: false } },
      ],
    },
  },
  ...layerRules,
  {
    files: ['**/*.test.ts', 'test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
);
