/**
 * The image's Node runs the broker: the compiled code, laid out as the Dockerfile lays it out
 * (dist/, package.json, openapi.yaml, node_modules), started with the official binary of the
 * exact version the Dockerfile's FROM lines pin. No Docker engine is needed.
 */

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENSURE_SCRIPT = path.join(PROJECT_ROOT, 'scripts', 'ensure-image-node.sh');
const TSC = path.join(PROJECT_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const INSTALL_TIMEOUT_MS = 300_000;
const BUILD_TIMEOUT_MS = 180_000;
const START_TIMEOUT_MS = 30_000;
const EXIT_TIMEOUT_MS = 15_000;
const REQUEST_TIMEOUT_MS = 10_000;
const LISTENING = /listening on (http:\/\/127\.0\.0\.1:\d+)/;

/** Runs a command to completion (bounded); a failure throws with the output's tail. */
function run(command: string, args: string[], timeoutMs: number): string {
  const result = spawnSync(command, args, {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
  });
  if (result.error !== undefined || result.status !== 0) {
    const output = `${result.stderr}${result.stdout}`.trim().split('\n').slice(-10).join('\n');
    throw new Error(
      `${path.basename(command)} ${args.join(' ')} failed (${result.error?.message ?? `exit ${result.status ?? result.signal}`}):\n${output}`,
    );
  }
  return result.stdout;
}

/** Every file under `dir`, relative, except node_modules. */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => !entry.isDirectory() && !entry.isSymbolicLink())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)))
    .sort();
}

/** Bare package names the compiled code imports (node: builtins left out). */
async function importedPackages(distDir: string): Promise<Set<string>> {
  const packages = new Set<string>();
  for (const file of await listFiles(distDir)) {
    if (!file.endsWith('.js')) continue;
    const code = await readFile(path.join(distDir, file), 'utf8');
    // Static imports and re-exports (statement starts a line), bare imports, dynamic imports.
    const statements =
      /^(?:import|export)\s[^'"]*?\bfrom\s*['"]([^'"]+)['"]|^import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm;
    for (const match of code.matchAll(statements)) {
      const specifier = match[1] ?? match[2] ?? match[3] ?? '';
      if (specifier.startsWith('.') || specifier.startsWith('node:')) continue;
      const parts = specifier.split('/');
      packages.add(specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? ''));
    }
  }
  return packages;
}

async function send(url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
}

describe("the broker on the image's Node", () => {
  let version: string;
  let nodeBinary: string;
  let appDir: string;
  let dataDir: string;
  let child: ChildProcess | undefined;
  let output = '';

  before(async () => {
    const dockerfile = await readFile(path.join(PROJECT_ROOT, 'Dockerfile'), 'utf8');
    const pinned = /^FROM\s+node:(\d+\.\d+\.\d+)-/m.exec(dockerfile)?.[1];
    assert.ok(pinned !== undefined, 'the Dockerfile pins node:X.Y.Z');
    version = pinned;
    nodeBinary = run('bash', [ENSURE_SCRIPT], INSTALL_TIMEOUT_MS).trim().split('\n').at(-1) ?? '';
    appDir = await mkdtemp(path.join(tmpdir(), 'broker-image-app-'));
    dataDir = await mkdtemp(path.join(tmpdir(), 'broker-image-data-'));
    // Its own output directory: `npm run build` elsewhere may be writing dist/ at the same time.
    run(
      process.execPath,
      [TSC, '-p', 'tsconfig.build.json', '--outDir', path.join(appDir, 'dist')],
      BUILD_TIMEOUT_MS,
    );
    await copyFile(path.join(PROJECT_ROOT, 'package.json'), path.join(appDir, 'package.json'));
    await copyFile(path.join(PROJECT_ROOT, 'openapi.yaml'), path.join(appDir, 'openapi.yaml'));
    await symlink(path.join(PROJECT_ROOT, 'node_modules'), path.join(appDir, 'node_modules'));
  });

  after(async () => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
    }
    await rm(appDir, { recursive: true, force: true });
    await rm(dataDir, { recursive: true, force: true });
  });

  it('when the binary is fetched, then it is the version the Dockerfile pins', () => {
    assert.equal(run(nodeBinary, ['--version'], 10_000).trim(), `v${version}`);
  });

  it('when the compiled code imports a package, then it is a production dependency', async () => {
    const manifest = JSON.parse(await readFile(path.join(appDir, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const imported = await importedPackages(path.join(appDir, 'dist'));
    assert.ok(imported.has('express'));
    for (const name of imported) {
      assert.ok(name in manifest.dependencies, `dist imports ${name}, not a production dependency`);
    }
  });

  it('when started on that Node, then it serves a connection and its credentials, is ready, and exits 0 on SIGTERM writing only its data directory', async (t) => {
    const filesBefore = await listFiles(appDir);
    child = spawn(nodeBinary, ['dist/main.js'], {
      cwd: appDir,
      env: {
        PATH: process.env['PATH'] ?? '',
        NODE_ENV: 'production',
        HOST: '127.0.0.1',
        PORT: '0',
        LOG_LEVEL: 'info',
        BROKER_DATA_DIR: dataDir,
        BROKER_MASTER_KEY: randomBytes(32).toString('base64'),
        BROKER_SHUTDOWN_DELAY_SECONDS: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const started = child;
    started.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    started.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const exited = new Promise<number | null>((resolve) =>
      started.once('exit', (code) => resolve(code)),
    );

    const deadline = Date.now() + START_TIMEOUT_MS;
    let url: string | undefined;
    while (url === undefined) {
      url = LISTENING.exec(output)?.[1];
      if (started.exitCode !== null) assert.fail(`exited with ${started.exitCode}:\n${output}`);
      if (Date.now() > deadline)
        assert.fail(`no listening line in ${START_TIMEOUT_MS} ms:\n${output}`);
      await delay(50);
    }

    const created = await send(`${url}/v1/connections`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        Name: 'image-node',
        AuthorizationType: 'API_KEY',
        AuthParameters: {
          ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: 'on-the-image-node' },
        },
      }),
    });
    assert.equal(created.status, 201, await created.clone().text());
    const credentials = await send(`${url}/v1/connections/image-node/authorization`);
    assert.equal(credentials.status, 200);
    const body = (await credentials.json()) as { Headers: Record<string, string> };
    assert.equal(body.Headers['x-api-key'], 'on-the-image-node');
    const ready = await send(`${url}/readyz`);
    assert.equal(ready.status, 200, await ready.clone().text());
    await ready.arrayBuffer();

    const signalledMs = Date.now();
    started.kill('SIGTERM');
    const code = await Promise.race([
      exited,
      delay(EXIT_TIMEOUT_MS).then(() => 'no exit' as const),
    ]);
    assert.equal(code, 0, output);
    t.diagnostic(`node ${version}: exit ${Date.now() - signalledMs} ms after SIGTERM`);
    // A read-only root filesystem would do: nothing appeared beside the code.
    assert.deepEqual(await listFiles(appDir), filesBefore);
  });
});
