import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

const MAIN = path.resolve('src/main.ts');

interface Started {
  child: ChildProcess;
  url: string;
  output: () => string;
}

function run(env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', MAIN], {
    env: {
      PATH: process.env['PATH'] ?? '',
      PORT: '0',
      LOG_LEVEL: 'info',
      BROKER_SHUTDOWN_DELAY_SECONDS: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Starts the broker as `npm start` does and waits (bounded) for its listening line. */
async function start(env: Record<string, string>): Promise<Started> {
  const child = run(env);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no listening line in 20 s:\n${output}`)),
      20_000,
    );
    const check = (): void => {
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout?.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code}:\n${output}`));
    });
  });
  return { child, url, output: () => output };
}

async function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no exit within 15 s')), 15_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

async function failedStart(
  env: Record<string, string>,
): Promise<{ code: number | null; stderr: string }> {
  const child = run(env);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return { code: await exitOf(child), stderr };
}

describe('starting the broker as a process', () => {
  let dataDir: string;
  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'broker-start-'));
  });
  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('when a variable is invalid, then start-up stops with a message naming it', async () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ PORT: 'eighty' }, /PORT must be integer/],
      [
        { BROKER_ALLOW_INSECURE_ENDPOINTS: 'yes' },
        /BROKER_ALLOW_INSECURE_ENDPOINTS must be equal to one of the allowed values/,
      ],
      [{ BROKER_ACCOUNT_ID: '12' }, /BROKER_ACCOUNT_ID must match pattern/],
    ];
    for (const [env, message] of cases) {
      const { code, stderr } = await failedStart({ BROKER_DATA_DIR: dataDir, ...env });
      assert.equal(code, 2, stderr);
      assert.match(stderr, message);
    }
  });

  it('when the master key is not 32 bytes of base64, then start-up fails naming the variable but not the value', async () => {
    const { code, stderr } = await failedStart({
      BROKER_DATA_DIR: dataDir,
      BROKER_MASTER_KEY: 'c2hvcnQta2V5',
    });
    assert.equal(code, 1);
    assert.match(stderr, /BROKER_MASTER_KEY/);
    assert.ok(!stderr.includes('c2hvcnQta2V5'));
  });

  it('when no key is configured, then a 0600 dev key file is created with a warning, and a restart reuses it', async () => {
    const first = await start({ BROKER_DATA_DIR: dataDir });
    assert.match(first.output(), /fine for development, not for production/);
    const keyFile = await stat(path.join(dataDir, 'master.key'));
    assert.equal(keyFile.mode & 0o777, 0o600);
    const created = await fetch(`${first.url}/v1/connections`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        Name: 'survivor',
        AuthorizationType: 'API_KEY',
        AuthParameters: {
          ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: 'kept-across-restarts' },
        },
      }),
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(created.status, 201);
    const key = await readFile(path.join(dataDir, 'master.key'), 'utf8');
    first.child.kill('SIGTERM');
    assert.equal(await exitOf(first.child), 0, 'SIGTERM drains and exits 0');

    const second = await start({ BROKER_DATA_DIR: dataDir });
    try {
      assert.equal(await readFile(path.join(dataDir, 'master.key'), 'utf8'), key);
      const auth = await fetch(`${second.url}/v1/connections/survivor/authorization`, {
        signal: AbortSignal.timeout(5000),
      });
      assert.equal(auth.status, 200);
      const body = (await auth.json()) as { Headers: Record<string, string> };
      assert.equal(body.Headers['x-api-key'], 'kept-across-restarts');
    } finally {
      second.child.kill('SIGTERM');
      await exitOf(second.child);
    }
  });

  it('when a second broker opens a data directory in use, then it refuses to start', async () => {
    const first = await start({ BROKER_DATA_DIR: dataDir });
    try {
      const { code, stderr } = await failedStart({ BROKER_DATA_DIR: dataDir });
      assert.equal(code, 1);
      assert.match(stderr, /in use by process/);
    } finally {
      first.child.kill('SIGTERM');
      await exitOf(first.child);
    }
  });
});
