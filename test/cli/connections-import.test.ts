/**
 * `broker connections import` against real broker processes: new, existing and invalid lines,
 * -o json, stdin, an unreadable file, and a broker whose rate limit turns most creates away.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createBrokerClient, unwrap, type BrokerClient } from '../../src/client/index.js';
import { startBrokerProcess, type BrokerProcess } from '../support/broker-process.js';
import { newApiKey } from '../support/policy-file.js';
import { explain, runCli, writePolicy, type CliOptions, type CliResult } from './cli-process.js';

const BOUNDED = { timeout: 60_000 } as const;
const newSecret = (label: string): string => `${label}-${randomBytes(12).toString('hex')}`;

const apiKeyLine = (name: string, secret: string): string =>
  JSON.stringify({
    Name: name,
    AuthorizationType: 'API_KEY',
    AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'X-Api-Key', ApiKeyValue: secret } },
  });

describe('broker connections import (CLI against a real broker)', () => {
  const opsKey = newApiKey();
  const readerKey = newApiKey();
  /** Every secret in an import file; none may appear in anything the CLI prints. */
  const secrets: string[] = [];
  const secret = (label: string): string => {
    const value = newSecret(label);
    secrets.push(value);
    return value;
  };
  const printed: CliResult[] = [];
  let dir: string;
  let policyFile: string;
  let broker: BrokerProcess;
  let client: BrokerClient;

  const cli = async (
    env: Record<string, string>,
    args: readonly string[],
    options: CliOptions = {},
  ): Promise<CliResult> => {
    const result = await runCli(['connections', 'import', ...args], { env, ...options });
    printed.push(result);
    return result;
  };
  const opsEnv = (target: BrokerProcess): Record<string, string> => ({
    BROKER_URL: target.url,
    BROKER_API_KEY: opsKey,
  });
  const importFile = async (name: string, lines: readonly string[]): Promise<string> => {
    const file = path.join(dir, name);
    await writeFile(file, `${lines.join('\n')}\n`, { mode: 0o600 });
    return file;
  };
  const credentialHeaders = async (name: string): Promise<Record<string, string>> =>
    unwrap(await client.GET('/v1/connections/{name}/authorization', { params: { path: { name } } }))
      .Headers;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'broker-cli-import-'));
    policyFile = path.join(dir, 'policy.json');
    await writePolicy(policyFile, { ops: opsKey, reader: readerKey });
    broker = await startBrokerProcess({ BROKER_POLICY_FILE: policyFile });
    client = createBrokerClient({ baseUrl: broker.url, apiKey: opsKey });
  });

  after(async () => {
    await broker?.stop();
    await rm(dir, { recursive: true, force: true });
    for (const result of printed) {
      for (const value of secrets) {
        assert.ok(
          !result.stdout.includes(value) && !result.stderr.includes(value),
          `a secret was printed:\n${explain(result)}`,
        );
      }
    }
  });

  it(
    'when a file holds new, existing and invalid lines, then the new ones are created, the existing skipped, each invalid one failed by line and Name, exit 1, and no secret printed',
    BOUNDED,
    async () => {
      unwrap(
        await client.POST('/v1/connections', {
          body: JSON.parse(apiKeyLine('existing', secret('existing'))),
        }),
      );
      const newKey = secret('new-key');
      const password = secret('password');
      const file = await importFile('mixed.jsonl', [
        apiKeyLine('fresh-key', newKey),
        apiKeyLine('existing', secret('existing-again')),
        `{"Name":"truncated","AuthParameters":{"ApiKeyValue":"${secret('truncated')}"`,
        '',
        `["${secret('array')}"]`,
        JSON.stringify({
          Name: 'no-key-name',
          AuthorizationType: 'API_KEY',
          AuthParameters: { ApiKeyAuthParameters: { ApiKeyValue: secret('no-key-name') } },
        }),
        JSON.stringify({
          Name: 'fresh-basic',
          AuthorizationType: 'BASIC',
          AuthParameters: { BasicAuthParameters: { Username: 'svc', Password: password } },
        }),
      ]);
      const result = await cli(opsEnv(broker), [file]);
      assert.equal(result.code, 1, explain(result));
      const [created, skipped, failed, retried, blank, header, ...rows] = result.stdout
        .trimEnd()
        .split('\n');
      assert.match(created ?? '', /^Created:\s+2$/);
      assert.match(skipped ?? '', /^Skipped \(already exist\):\s+1$/);
      assert.match(failed ?? '', /^Failed:\s+3$/);
      assert.match(retried ?? '', /^Retried \(throttled\):\s+0$/);
      assert.equal(blank, '');
      assert.match(header ?? '', /^LINE\s+NAME\s+CODE\s+DETAIL$/);
      assert.equal(rows.length, 3, explain(result));
      assert.match(rows[0] ?? '', /^3\s+-\s+InvalidLine\s+the line is not valid JSON$/);
      assert.match(rows[1] ?? '', /^5\s+-\s+InvalidLine\s+the line is not a JSON object$/);
      assert.match(rows[2] ?? '', /^6\s+no-key-name\s+ValidationException\s+\S/);
      assert.match(result.stderr, /^imported 6 \(created 2, skipped 1, failed 3\)$/m);
      assert.match(result.stderr, /^broker: 3 line\(s\) failed to import/m);
      assert.deepEqual(await credentialHeaders('fresh-key'), { 'X-Api-Key': newKey });
      assert.deepEqual(await credentialHeaders('fresh-basic'), {
        Authorization: `Basic ${Buffer.from(`svc:${password}`).toString('base64')}`,
      });
    },
  );

  it(
    'when -o json is asked, then stdout is the counts and the failures list {line, name, code, detail}',
    BOUNDED,
    async () => {
      const file = await importFile('json.jsonl', [
        apiKeyLine('json-one', secret('json-one')),
        JSON.stringify({ Name: 'json-bad', AuthorizationType: 'NOPE', AuthParameters: {} }),
      ]);
      const result = await cli(opsEnv(broker), [file, '-o', 'json']);
      assert.equal(result.code, 1, explain(result));
      const summary: unknown = JSON.parse(result.stdout);
      assert.deepEqual(
        { ...(summary as Record<string, unknown>), failures: undefined }, // an object: deepEqual below fails otherwise
        { created: 1, skipped: 0, failed: 1, retried: 0, failures: undefined },
      );
      const { failures } = summary as { failures: Array<Record<string, unknown>> }; // shape checked just below
      assert.equal(failures.length, 1);
      assert.deepEqual(Object.keys(failures[0] ?? {}), ['line', 'name', 'code', 'detail']);
      assert.equal(failures[0]?.['line'], 2);
      assert.equal(failures[0]?.['name'], 'json-bad');
      assert.equal(failures[0]?.['code'], 'ValidationException');
      assert.equal(typeof failures[0]?.['detail'], 'string');
    },
  );

  it('when FILE is -, then the lines come from stdin and exit 0', BOUNDED, async () => {
    const key = secret('stdin');
    const result = await cli(opsEnv(broker), ['-', '-o', 'json'], {
      stdin: `${apiKeyLine('stdin-one', key)}\r\n${apiKeyLine('stdin-two', secret('stdin-two'))}`,
    });
    assert.equal(result.code, 0, explain(result));
    assert.deepEqual(JSON.parse(result.stdout), {
      created: 2,
      skipped: 0,
      failed: 0,
      retried: 0,
      failures: [],
    });
    assert.deepEqual(await credentialHeaders('stdin-one'), { 'X-Api-Key': key });
  });

  it('when FILE cannot be read, then exit 2 and nothing is sent', BOUNDED, async () => {
    const missing = await cli(opsEnv(broker), [path.join(dir, 'missing.jsonl')]);
    assert.equal(missing.code, 2, explain(missing));
    assert.match(missing.stderr, /^broker: FILE: cannot read .*missing\.jsonl \(ENOENT\)$/m);
    assert.equal(missing.stdout, '');
    const directory = await cli(opsEnv(broker), [dir]);
    assert.equal(directory.code, 2, explain(directory));
    const badConcurrency = await cli(opsEnv(broker), ['-', '--concurrency', '0']);
    assert.equal(badConcurrency.code, 2, explain(badConcurrency));
  });

  it(
    'when the broker allows 5 requests a second, then every line is still created, the 429s retried after Retry-After',
    BOUNDED,
    async () => {
      const limited = await startBrokerProcess({
        BROKER_POLICY_FILE: policyFile,
        BROKER_RATE_LIMIT_PER_SECOND: '5',
        BROKER_RATE_LIMIT_BURST: '5',
      });
      try {
        const names = Array.from({ length: 20 }, (_, index) => `limited-${index}`);
        const file = await importFile(
          'limited.jsonl',
          names.map((name) => apiKeyLine(name, secret(name))),
        );
        const result = await cli(opsEnv(limited), [file, '-o', 'json']);
        assert.equal(result.code, 0, explain(result));
        const summary = JSON.parse(result.stdout) as Record<string, unknown>; // checked field by field
        assert.equal(summary['created'], 20, explain(result));
        assert.equal(summary['failed'], 0);
        assert.ok(Number(summary['retried']) > 0, 'the limit turned creates away');
        const limitedClient = createBrokerClient({ baseUrl: limited.url, apiKey: opsKey });
        let listed = await limitedClient.GET('/v1/connections', {
          params: { query: { Limit: 100 } },
        });
        // The import used up the bucket: wait for the token the broker names, as the CLI does.
        for (let attempt = 0; listed.response.status === 429 && attempt < 10; attempt++) {
          await new Promise((resolve) => setTimeout(resolve, 1_000));
          listed = await limitedClient.GET('/v1/connections', {
            params: { query: { Limit: 100 } },
          });
        }
        const listing = unwrap(listed);
        assert.deepEqual(
          listing.Connections.map((connection) => connection.Name).sort(),
          [...names].sort(),
        );
      } finally {
        await limited.stop();
      }
    },
  );
});
