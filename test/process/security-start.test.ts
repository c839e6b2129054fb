/**
 * The start-up rule of README, Security: "Open mode", on the broker started as `npm start` runs
 * it: without a policy file it runs open only on loopback (loudly), or anywhere with an explicit
 * BROKER_AUTH=none; a broken policy file stops start-up; with a policy, callers need a key.
 */

import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { isRunning, spawnBroker } from '../support/broker-process.js';
import { newApiKey, sha256Hex } from '../support/policy-file.js';

const START_TIMEOUT_MS = 30_000;
const EXIT_TIMEOUT_MS = 20_000;
const BOUNDED = { timeout: 60_000 } as const;
/** Any host: the broker logs the address it was given, 0.0.0.0 included. */
const LISTENING = /listening on http:\/\/[^\s"]+:(\d+)/;

const children = new Set<ChildProcess>();

interface Run {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** spawnBroker, its process killed by this file's after() if a test leaves it running. */
function run(env: Record<string, string>): Run {
  const { child, output, exited } = spawnBroker(env);
  children.add(child);
  return {
    child,
    output,
    exited: exited.then(({ code }) => {
      children.delete(child);
      return code;
    }),
  };
}

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const timer = new AbortController();
  try {
    return await Promise.race([
      promise,
      delay(ms, undefined, { signal: timer.signal }).then(() => {
        throw new Error(`${what}: not within ${ms} ms`);
      }),
    ]);
  } finally {
    timer.abort();
  }
}

/** The exit code of a start that must fail, and what it wrote. */
async function failedStart(
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  const started = run(env);
  try {
    const code = await within(started.exited, EXIT_TIMEOUT_MS, 'the refused start to exit');
    return { code, output: started.output() };
  } finally {
    if (isRunning(started.child)) started.child.kill('SIGKILL');
  }
}

interface Started extends Run {
  /** Always reached over loopback, whatever HOST is. */
  url: string;
  stop(): Promise<number | null>;
}

async function start(env: Record<string, string>): Promise<Started> {
  const started = run(env);
  const stop = async (): Promise<number | null> => {
    if (isRunning(started.child)) started.child.kill('SIGTERM');
    try {
      return await within(started.exited, 15_000, 'the broker to drain');
    } catch {
      started.child.kill('SIGKILL');
      return within(started.exited, 5_000, 'the broker to die');
    }
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const port = LISTENING.exec(started.output())?.[1];
    if (port !== undefined) return { ...started, url: `http://127.0.0.1:${port}`, stop };
    if (!isRunning(started.child)) {
      throw new Error(`the broker exited with ${started.child.exitCode}:\n${started.output()}`);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`no listening line in ${START_TIMEOUT_MS} ms:\n${started.output()}`);
    }
    await delay(50);
  }
}

async function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(5_000) });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : {},
  };
}

/** The pino lines of a broker's output. */
function logEntries(output: string): Array<Record<string, unknown>> {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('starting the broker with or without callers\u2019 authentication', () => {
  let dir: string;
  let dataDir: string;
  const key = newApiKey();

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'broker-security-start-'));
    dataDir = path.join(dir, 'data');
  });

  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'when HOST=0.0.0.0 and no policy file is set, then start-up stops with a message naming BROKER_POLICY_FILE',
    BOUNDED,
    async () => {
      const { code, output } = await failedStart({ HOST: '0.0.0.0', BROKER_DATA_DIR: dataDir });
      assert.notEqual(code, 0, output);
      assert.notEqual(code, null, output);
      assert.match(output, /BROKER_POLICY_FILE/);
      assert.match(output, /BROKER_AUTH=none/);
      assert.doesNotMatch(output, /listening on/);
    },
  );

  it(
    'when HOST=0.0.0.0 and BROKER_AUTH=none, then it starts, open, and says RUNNING OPEN',
    BOUNDED,
    async () => {
      const broker = await start({
        HOST: '0.0.0.0',
        BROKER_AUTH: 'none',
        BROKER_DATA_DIR: dataDir,
      });
      try {
        const warning = logEntries(broker.output()).find((e) =>
          /RUNNING OPEN/.test(String(e['msg'])),
        );
        assert.ok(warning, broker.output());
        assert.equal(warning['level'], 40, 'a warning');
        assert.match(String(warning['msg']), /BROKER_AUTH=none/);
        const res = await get(`${broker.url}/v1/connections`);
        assert.equal(res.status, 200, 'open: no key needed');
      } finally {
        assert.equal(await broker.stop(), 0);
      }
    },
  );

  it(
    'when HOST=127.0.0.1 and no policy file is set, then it starts open and warns',
    BOUNDED,
    async () => {
      const broker = await start({ HOST: '127.0.0.1', BROKER_DATA_DIR: dataDir });
      try {
        const warning = logEntries(broker.output()).find((e) =>
          /RUNNING OPEN/.test(String(e['msg'])),
        );
        assert.ok(warning, broker.output());
        assert.equal(warning['level'], 40, 'a warning');
        assert.match(String(warning['msg']), /BROKER_POLICY_FILE/);
        assert.equal((await get(`${broker.url}/v1/connections`)).status, 200);
      } finally {
        assert.equal(await broker.stop(), 0);
      }
    },
  );

  it(
    'when the policy file is not valid JSON, then start-up stops naming the file without echoing it',
    BOUNDED,
    async () => {
      const marker = `policy-content-${randomBytes(6).toString('hex')}`;
      const policyFile = path.join(dir, 'broken-policy.json');
      await writeFile(policyFile, `{"principals": [{"name": "${marker}", "apiKeySha256": `);
      for (const host of ['0.0.0.0', '127.0.0.1']) {
        const { code, output } = await failedStart({
          HOST: host,
          BROKER_POLICY_FILE: policyFile,
          BROKER_DATA_DIR: dataDir,
        });
        assert.notEqual(code, 0, output);
        assert.notEqual(code, null, output);
        assert.ok(output.includes(policyFile), output);
        assert.match(output, /not JSON/);
        assert.ok(!output.includes(marker), 'the content is not echoed');
        assert.doesNotMatch(output, /listening on/);
      }
    },
  );

  it(
    'when the policy file is missing or not a valid policy, then start-up stops naming the file',
    BOUNDED,
    async () => {
      const invalid = path.join(dir, 'invalid-policy.json');
      await writeFile(
        invalid,
        JSON.stringify({
          principals: [{ name: 'ops', apiKeySha256: 'not-a-hash', statements: [] }],
        }),
      );
      for (const policyFile of [path.join(dir, 'no-such-policy.json'), invalid]) {
        const { code, output } = await failedStart({
          HOST: '0.0.0.0',
          BROKER_POLICY_FILE: policyFile,
          BROKER_DATA_DIR: dataDir,
        });
        assert.notEqual(code, 0, output);
        assert.ok(output.includes(policyFile), output);
        assert.doesNotMatch(output, /listening on/);
      }
    },
  );

  it(
    'when a valid policy file is set on HOST=0.0.0.0, then it starts, a request without a key gets 401 and the key works; SIGHUP reloads instead of killing',
    BOUNDED,
    async () => {
      const policyFile = path.join(dir, 'policy.json');
      await writeFile(
        policyFile,
        JSON.stringify({
          principals: [
            {
              name: 'ops',
              apiKeySha256: sha256Hex(key),
              statements: [{ actions: ['*'], resources: ['*'] }],
            },
          ],
        }),
      );
      const broker = await start({
        HOST: '0.0.0.0',
        BROKER_POLICY_FILE: policyFile,
        BROKER_DATA_DIR: dataDir,
      });
      try {
        assert.doesNotMatch(broker.output(), /RUNNING OPEN/);
        const anonymous = await get(`${broker.url}/v1/connections`);
        assert.equal(anonymous.status, 401);
        assert.equal(anonymous.body['code'], 'UnauthorizedException');
        assert.equal(anonymous.headers.get('www-authenticate'), 'Bearer');
        const wrong = await get(`${broker.url}/v1/connections`, {
          authorization: `Bearer cbk_${randomBytes(24).toString('base64url')}`,
        });
        assert.equal(wrong.status, 401);
        assert.equal(
          (await get(`${broker.url}/v1/connections`, { authorization: `Bearer ${key}` })).status,
          200,
        );
        assert.equal((await get(`${broker.url}/healthz`)).status, 200);
        assert.equal((await get(`${broker.url}/readyz`)).status, 200);

        broker.child.kill('SIGHUP');
        const reloaded = (): boolean => /"msg":"policy reloaded"/.test(broker.output());
        for (let waited = 0; !reloaded() && waited < 5_000; waited += 50) await delay(50);
        assert.ok(reloaded(), `SIGHUP reloads the policy:\n${broker.output()}`);
        assert.ok(isRunning(broker.child), 'SIGHUP does not stop the broker');
        assert.equal(
          (await get(`${broker.url}/v1/connections`, { authorization: `Bearer ${key}` })).status,
          200,
        );
        assert.ok(!broker.output().includes(key), 'the key is never logged');
      } finally {
        assert.equal(await broker.stop(), 0);
      }
    },
  );
});
