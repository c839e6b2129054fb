import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { ensureTool } from '../support/ensure-tool.js';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import picomatch from 'picomatch';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DOCKERFILE = path.join(PROJECT_ROOT, 'Dockerfile');

interface Instruction {
  keyword: string;
  args: string;
}

/** The Dockerfile's instructions, continuation lines joined and comments dropped. */
function instructions(text: string): Instruction[] {
  const joined = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const match = /^(\S+)\s*(.*)$/.exec(line);
      return { keyword: (match?.[1] ?? '').toUpperCase(), args: match?.[2] ?? '' };
    });
}

/** Docker's rule: the last pattern matching the path or one of its parents decides. */
function isIgnored(patterns: readonly string[], file: string): boolean {
  const parts = file.split('/');
  const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const pattern = path.posix.normalize(negated ? raw.slice(1) : raw).replace(/^\/|\/$/g, '');
    const matches = picomatch(pattern, { dot: true });
    if (candidates.some((candidate) => matches(candidate))) ignored = !negated;
  }
  return ignored;
}

const dockerfile = instructions(readFileSync(DOCKERFILE, 'utf8'));
const finalStage = dockerfile.slice(dockerfile.findLastIndex((i) => i.keyword === 'FROM'));
const ignorePatterns = readFileSync(path.join(PROJECT_ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line !== '' && !line.startsWith('#'));

describe('the container image definition', () => {
  it('when hadolint lints the Dockerfile at warning level, then it finds nothing', () => {
    const hadolint = ensureTool({
      name: 'hadolint',
      script: 'scripts/ensure-hadolint.sh',
      binary: '.venv-hadolint/bin/hadolint',
    });
    const result = spawnSync(
      hadolint,
      ['--no-color', '--failure-threshold', 'warning', DOCKERFILE],
      { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(result.error, undefined);
    assert.equal(result.status, 0, `hadolint:\n${result.stdout}${result.stderr}`);
  });

  it('when the image runs, then its user is numeric and not root, so runAsNonRoot can verify it', () => {
    const users = finalStage.filter((i) => i.keyword === 'USER');
    assert.equal(users.length, 1, 'one USER in the final stage');
    const match = /^(\d+)(?::(\d+))?$/.exec(users[0]?.args ?? '');
    assert.ok(match, `USER ${users[0]?.args} is not numeric`);
    assert.notEqual(Number(match[1]), 0, 'the user is not root');
    if (match[2] !== undefined) assert.notEqual(Number(match[2]), 0, 'the group is not root');
  });

  it('when a stage starts, then its base is node at one exact version', () => {
    const bases = dockerfile.filter((i) => i.keyword === 'FROM').map((i) => i.args.split(/\s+/)[0]);
    assert.ok(bases.length >= 2, 'a build stage and a runtime stage');
    const versions = new Set(
      bases.map((base) => {
        const match = /^node:(\d+\.\d+\.\d+)-[a-z0-9-]+$/.exec(base ?? '');
        assert.ok(match, `FROM ${base} is not pinned to an exact node version`);
        return match[1];
      }),
    );
    assert.equal(versions.size, 1, `every stage on the same Node: ${[...versions].join(', ')}`);
  });

  it('when the image starts, then node runs the compiled broker itself, with no secret or key baked in', () => {
    const cmd = finalStage.find((i) => i.keyword === 'CMD');
    // Not npm: it would write to $HOME (read-only root filesystem) and not forward SIGTERM.
    assert.deepEqual(JSON.parse(cmd?.args ?? 'null'), ['node', 'dist/main.js']);
    for (const { keyword, args } of dockerfile) {
      if (['ENV', 'ARG'].includes(keyword)) {
        assert.doesNotMatch(args, /MASTER_KEY|SECRET|PASSWORD|TOKEN|AWS_/i, `${keyword} ${args}`);
      }
      if (keyword === 'RUN') {
        assert.doesNotMatch(args, /openssl|master\.key|node dist\/main/, `RUN ${args}`);
      }
      if (keyword === 'COPY') assert.doesNotMatch(args, /\bdata\b|\.key\b|\.env/, `COPY ${args}`);
    }
    const runtimeCopies = finalStage.filter((i) => i.keyword === 'COPY').map((i) => i.args);
    assert.ok(
      runtimeCopies.some((args) =>
        /--from=production-dependencies\s+\/app\/node_modules/.test(args),
      ),
      'the runtime stage takes node_modules from the production-only install',
    );
    assert.ok(!runtimeCopies.some((args) => /--from=build\s+\/app\/node_modules/.test(args)));
  });

  it('when the build context is sent, then dependencies, data, tool environments, git and build output stay out', () => {
    for (const file of [
      'node_modules/express/package.json',
      'data/master.key',
      'data/connections/a.json',
      '.venv/bin/moto_server',
      '.venv-hadolint/bin/hadolint',
      '.git/HEAD',
      '.tools/node-26.10.0/bin/node',
      'dist/main.js',
      '.env',
      '.env.local',
      'test/api/connections.test.ts',
      'src/config.test.ts',
      'helm/connection-broker/values.yaml',
    ]) {
      assert.ok(isIgnored(ignorePatterns, file), `${file} reaches the build context`);
    }
  });

  it('when the build copies a file from the context, then .dockerignore lets it through', () => {
    const sources = dockerfile
      .filter((i) => ['COPY', 'ADD'].includes(i.keyword) && !i.args.includes('--from='))
      .flatMap((i) =>
        i.args
          .split(/\s+/)
          .filter((arg) => !arg.startsWith('--'))
          .slice(0, -1),
      );
    assert.ok(sources.length > 0);
    for (const source of sources) {
      const file = source.endsWith('/') ? `${source}main.ts` : source;
      assert.ok(existsSync(path.join(PROJECT_ROOT, file)), `${file} exists`);
      assert.ok(!isIgnored(ignorePatterns, file), `${file} is copied but ignored`);
    }
  });
});
