/**
 * The layers of src/ are enforced by lint (README, Development: Layout; the FORBIDDEN_IMPORTS
 * table of eslint.config.js): an import upwards, or sideways into an adapter, is an error of
 * `no-restricted-imports`. These tests lint virtual files through ESLint's Node API, in this
 * process, with the project's own eslint.config.js.
 *
 * Only `no-restricted-imports` runs, without type information: the virtual files are not on disk,
 * so TypeScript's project service could not open them, and the layer rule reads import paths only.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';
import { ESLint, type Linter } from 'eslint';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RULE = 'no-restricted-imports';

let eslint: ESLint;

before(() => {
  eslint = new ESLint({
    cwd: PROJECT_ROOT,
    overrideConfig: {
      files: ['**/*.ts'],
      languageOptions: { parserOptions: { projectService: false } },
    },
    ruleFilter: ({ ruleId }) => ruleId === RULE,
  });
});

/** Lints `code` as if it were the file at `filePath` (relative to the project). */
async function lint(filePath: string, code: string): Promise<Linter.LintMessage[]> {
  const [result] = await eslint.lintText(code, { filePath });
  assert.ok(result !== undefined, `ESLint answered no result for ${filePath}`);
  return result.messages;
}

/** A module that imports `specifier` and uses what it imports. */
const importing = (specifier: string): string =>
  `import { probe } from '${specifier}';\nexport const used = probe;\n`;

function assertRefused(messages: Linter.LintMessage[], from: string, to: string): void {
  assert.equal(messages.length, 1, JSON.stringify(messages));
  const [message] = messages;
  assert.equal(message?.ruleId, RULE);
  assert.equal(message?.severity, 2, 'an error, so `npm run lint` fails');
  assert.match(message?.message ?? '', new RegExp(`src/${from}/ may not import src/${to}/`));
}

describe('lint: the layers of src/', () => {
  it('when a file in src/connections/ imports ../http/app.js, then no-restricted-imports fails it', async () => {
    const messages = await lint('src/connections/layer-probe.ts', importing('../http/app.js'));
    assertRefused(messages, 'connections', 'http');
  });

  it('when a file in src/secret-store/ imports ../connections/connection.js, then no-restricted-imports fails it', async () => {
    const messages = await lint(
      'src/secret-store/layer-probe.ts',
      importing('../connections/connection.js'),
    );
    assertRefused(messages, 'secret-store', 'connections');
  });

  it('when the forbidden import comes from a nested folder (../../), then it fails the same way', async () => {
    const messages = await lint(
      'src/secret-store/nested/layer-probe.ts',
      importing('../../connections/connection.js'),
    );
    assertRefused(messages, 'secret-store', 'connections');
  });

  it('when an import goes downwards (http/ → connections/, connections/ → secret-store/ and net/), then it passes', async () => {
    for (const [filePath, specifier] of [
      ['src/http/layer-probe.ts', '../connections/connection.js'],
      ['src/connections/layer-probe.ts', '../secret-store/secret-store.js'],
      ['src/connections/layer-probe.ts', '../net/outbound-policy.js'],
      ['src/connections/layer-probe.ts', './connection.js'],
    ] as const) {
      assert.deepEqual(
        await lint(filePath, importing(specifier)),
        [],
        `${filePath} → ${specifier}`,
      );
    }
  });

  it('when a test file beside the code crosses a layer, then it passes (tests may cross layers)', async () => {
    const messages = await lint('src/connections/layer-probe.test.ts', importing('../http/app.js'));
    assert.deepEqual(messages, []);
  });
});
