/**
 * The published artefact: src/cli and src/client compiled the way `npm run build` compiles them
 * (tsconfig.build.json, into a private directory so no other test's build races with it), run
 * as `broker` runs once installed (the file itself, through its shebang).
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startBrokerProcess, type BrokerProcess } from '../support/broker-process.js';
import { explain, PROJECT_ROOT, runCli } from './cli-process.js';

const BUILD_TIMEOUT_MS = 180_000;

describe('broker bin (compiled)', { timeout: 240_000 }, () => {
  let buildDir: string;
  let bin: string;
  let broker: BrokerProcess;

  before(async () => {
    // Inside the project so that the compiled files find node_modules as dist/ does.
    await mkdir(path.join(PROJECT_ROOT, '.tmp'), { recursive: true });
    buildDir = await mkdtemp(path.join(PROJECT_ROOT, '.tmp', 'cli-bin-'));
    const tsconfig = path.join(buildDir, 'tsconfig.json');
    await writeFile(
      tsconfig,
      JSON.stringify({
        extends: path.join(PROJECT_ROOT, 'tsconfig.build.json'),
        compilerOptions: {
          rootDir: path.join(PROJECT_ROOT, 'src'),
          outDir: path.join(buildDir, 'dist'),
          declaration: true,
          sourceMap: false,
        },
        // Only the CLI and the client and what they import, not the whole server.
        files: [
          path.join(PROJECT_ROOT, 'src', 'cli', 'main.ts'),
          path.join(PROJECT_ROOT, 'src', 'client', 'index.ts'),
        ],
        include: [],
      }),
    );
    const tsc = path.join(PROJECT_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const build = await run(process.execPath, [tsc, '-p', tsconfig]);
    assert.equal(build.code, 0, `tsc failed:\n${build.output}`);
    bin = path.join(buildDir, 'dist', 'cli', 'main.js');
    broker = await startBrokerProcess({});
  });

  after(async () => {
    await broker?.stop();
    if (buildDir !== undefined) await rm(buildDir, { recursive: true, force: true });
  });

  it('when compiled, then cli/main.js starts with the node shebang and the client ships its declarations', async () => {
    const [firstLine] = (await readFile(bin, 'utf8')).split('\n');
    assert.equal(firstLine, '#!/usr/bin/env node');
    await stat(path.join(buildDir, 'dist', 'client', 'index.d.ts'));
    const packageJson = JSON.parse(await readFile(path.join(PROJECT_ROOT, 'package.json'), 'utf8'));
    assert.deepEqual(packageJson.bin, { broker: 'dist/cli/main.js' });
    assert.deepEqual(packageJson.exports['./client'], {
      types: './dist/client/index.d.ts',
      default: './dist/client/index.js',
    });
  });

  it('when the compiled file is executed itself, then it answers --help and lists connections of a real broker', async () => {
    await chmod(bin, 0o755);
    const help = await runCli(['--help'], { command: { file: bin, args: [] } });
    assert.equal(help.code, 0, explain(help));
    assert.match(help.stdout, /^Usage: broker <group> <command> \[options\]/);

    const listed = await runCli(['connections', 'list', '-o', 'json'], {
      command: { file: bin, args: [] },
      env: { BROKER_URL: broker.url },
    });
    assert.equal(listed.code, 0, explain(listed));
    assert.deepEqual(JSON.parse(listed.stdout), { Connections: [] });

    const down = await runCli(['keys', 'status'], {
      command: { file: process.execPath, args: [bin] },
      env: { BROKER_URL: 'http://127.0.0.1:1' },
    });
    assert.equal(down.code, 3, explain(down));
  });
});

function run(file: string, args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(file, args, { cwd: PROJECT_ROOT, timeout: BUILD_TIMEOUT_MS });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}
