/**
 * The `broker connections` commands against a real broker process with a policy: every command,
 * table and json output, pagination, and the exit codes (1 API error, 2 usage, 3 unreachable).
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createBrokerClient, unwrap, type BrokerClient } from '../../src/client/index.js';
import { startBrokerProcess, type BrokerProcess } from '../support/broker-process.js';
import { findFreePort } from '../support/loopback.js';
import {
  startScriptedTokenEndpoint,
  type ScriptedTokenEndpoint,
} from '../support/scripted-token-endpoint.js';
import { newApiKey } from '../support/policy-file.js';
import { explain, runCli, writePolicy, type CliOptions, type CliResult } from './cli-process.js';

const BOUNDED = { timeout: 60_000 } as const;
const newSecret = (label: string): string => `${label}-${randomBytes(12).toString('hex')}`;

describe('broker connections (CLI against a real broker)', () => {
  const opsKey = newApiKey();
  const readerKey = newApiKey();
  /** Every secret a test hands the CLI; none may appear in anything it prints. */
  const secrets = {
    apiKey: newSecret('api-key'),
    rotatedApiKey: newSecret('rotated-key'),
    password: newSecret('password'),
    fileApiKey: newSecret('file-key'),
    secretHeader: newSecret('secret-header'),
    clientSecret: newSecret('client-secret'),
    argvSecret: newSecret('argv'),
  };
  const printed: CliResult[] = [];
  let dir: string;
  let broker: BrokerProcess;
  let tokenEndpoint: ScriptedTokenEndpoint;
  let client: BrokerClient;
  let opsEnv: Record<string, string>;

  const cli = async (args: readonly string[], options: CliOptions = {}): Promise<CliResult> => {
    const result = await runCli(args, { env: opsEnv, ...options });
    printed.push(result);
    return result;
  };
  const secretFile = async (name: string, content: string): Promise<string> => {
    const file = path.join(dir, name);
    await writeFile(file, content, { mode: 0o600 });
    return file;
  };
  const credentialHeaders = async (name: string): Promise<Record<string, string>> =>
    unwrap(await client.GET('/v1/connections/{name}/authorization', { params: { path: { name } } }))
      .Headers;
  const describeJson = async (name: string) =>
    unwrap(await client.GET('/v1/connections/{name}', { params: { path: { name } } }));

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'broker-cli-'));
    const policyFile = path.join(dir, 'policy.json');
    await writePolicy(policyFile, { ops: opsKey, reader: readerKey });
    tokenEndpoint = await startScriptedTokenEndpoint();
    broker = await startBrokerProcess({
      BROKER_POLICY_FILE: policyFile,
      BROKER_ALLOW_INSECURE_ENDPOINTS: 'true',
    });
    opsEnv = { BROKER_URL: broker.url, BROKER_API_KEY: opsKey };
    client = createBrokerClient({ baseUrl: broker.url, apiKey: opsKey });
  });

  after(async () => {
    await broker?.stop();
    await tokenEndpoint?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'when an API_KEY connection is created from flags with the key in a file, then the table shows it AUTHORIZED and the broker holds the key without the newline',
    BOUNDED,
    async () => {
      const keyFile = await secretFile('stripe.key', `${secrets.apiKey}\n`);
      const result = await cli([
        'connections',
        'create',
        '--name',
        'stripe',
        '--api-key-name',
        'X-Api-Key',
        '--api-key-value-file',
        keyFile,
        '--description',
        'Stripe test key',
      ]);
      assert.equal(result.code, 0, explain(result));
      const [header, row, ...rest] = result.stdout.trimEnd().split('\n');
      assert.match(header ?? '', /^NAME\s+STATE\s+LAST MODIFIED\s+ARN$/);
      assert.match(
        row ?? '',
        /^stripe\s+AUTHORIZED\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+arn:aws:events:us-east-1:000000000000:connection\/stripe\/[-0-9a-f]+$/,
      );
      assert.deepEqual(rest, []);
      assert.equal(result.stderr, '');
      assert.deepEqual(await credentialHeaders('stripe'), { 'X-Api-Key': secrets.apiKey });
    },
  );

  it(
    'when a BASIC connection is created with the password on stdin, then the broker holds that password',
    BOUNDED,
    async () => {
      const result = await cli(
        [
          'connections',
          'create',
          '--name',
          'legacy',
          '--basic-username',
          'svc-user',
          '--basic-password-file',
          '-',
          '--output',
          'json',
        ],
        { stdin: `${secrets.password}\n` },
      );
      assert.equal(result.code, 0, explain(result));
      const state = JSON.parse(result.stdout);
      assert.deepEqual(Object.keys(state).sort(), [
        'ConnectionArn',
        'ConnectionState',
        'CreationTime',
        'LastAuthorizedTime',
        'LastModifiedTime',
      ]);
      assert.equal(state.ConnectionState, 'AUTHORIZED');
      const expected = `Basic ${Buffer.from(`svc-user:${secrets.password}`).toString('base64')}`;
      assert.deepEqual(await credentialHeaders('legacy'), { Authorization: expected });
    },
  );

  it(
    'when an OAuth connection is created from flags with the client secret in a file, then the broker gets a token with that secret (POST by default)',
    BOUNDED,
    async () => {
      const secretPath = await secretFile('client.secret', secrets.clientSecret);
      const result = await cli([
        'connections',
        'create',
        '--name',
        'github',
        '--oauth-client-id',
        'app-id',
        '--oauth-client-secret-file',
        secretPath,
        '--oauth-endpoint',
        tokenEndpoint.url,
      ]);
      assert.equal(result.code, 0, explain(result));
      assert.match(result.stdout, /^github\s+AUTHORIZED\s/m);
      const [tokenRequest] = tokenEndpoint.requests();
      assert.equal(tokenRequest?.method, 'POST');
      assert.equal(
        tokenRequest?.headers['authorization'],
        `Basic ${Buffer.from(`app-id:${secrets.clientSecret}`).toString('base64')}`,
      );
      const described = await describeJson('github');
      assert.deepEqual(described.AuthParameters.OAuthParameters, {
        ClientParameters: { ClientID: 'app-id' },
        AuthorizationEndpoint: tokenEndpoint.url,
        HttpMethod: 'POST',
      });
    },
  );

  it(
    'when a connection is created from --file with invocation parameters, then describe shows them with the secret one as (secret) and never its value',
    BOUNDED,
    async () => {
      const body = {
        Name: 'from-file',
        AuthorizationType: 'API_KEY',
        AuthParameters: {
          ApiKeyAuthParameters: { ApiKeyName: 'Authorization', ApiKeyValue: secrets.fileApiKey },
          InvocationHttpParameters: {
            HeaderParameters: [
              { Key: 'Stripe-Version', Value: '2024-06-20', IsValueSecret: false },
              { Key: 'X-Signing', Value: secrets.secretHeader },
            ],
            QueryStringParameters: [{ Key: 'expand', Value: 'customer', IsValueSecret: false }],
          },
        },
      };
      const bodyFile = await secretFile('conn.json', JSON.stringify(body));
      const created = await cli(['connections', 'create', '--file', bodyFile]);
      assert.equal(created.code, 0, explain(created));
      assert.match(created.stdout, /^from-file\s+AUTHORIZED\s/m);

      const table = await cli(['connections', 'describe', 'from-file']);
      assert.equal(table.code, 0, explain(table));
      const described = await describeJson('from-file');
      assert.equal(
        table.stdout,
        [
          'Name:             from-file',
          `ARN:              ${described.ConnectionArn}`,
          'State:            AUTHORIZED',
          'Type:             API_KEY',
          'API key name:     Authorization',
          `Secret ARN:       ${described.SecretArn}`,
          `Created:          ${described.CreationTime.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}`,
          `Last modified:    ${described.LastModifiedTime.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}`,
          `Last authorized:  ${(described.LastAuthorizedTime ?? '').replace('T', ' ').replace(/\.\d+Z$/, 'Z')}`,
          '',
          'Parameters:',
          '  FOR         IN      KEY             VALUE',
          '  invocation  header  Stripe-Version  2024-06-20',
          '  invocation  header  X-Signing       (secret)',
          '  invocation  query   expand          customer',
          '',
        ].join('\n'),
      );

      const json = await cli(['connections', 'describe', 'from-file', '-o', 'json']);
      assert.equal(json.code, 0, explain(json));
      assert.deepEqual(JSON.parse(json.stdout), described);
    },
  );

  it(
    'when connections span several pages, then list follows NextToken; --limit stops early and --next-token continues',
    BOUNDED,
    async () => {
      const names = ['page-a', 'page-b', 'page-c', 'page-d', 'page-e'];
      for (const name of names) {
        unwrap(
          await client.POST('/v1/connections', {
            body: {
              Name: name,
              AuthorizationType: 'BASIC',
              AuthParameters: {
                BasicAuthParameters: { Username: 'u', Password: secrets.password },
              },
            },
          }),
        );
      }
      const all = await cli([
        'connections',
        'list',
        '--name-prefix',
        'page-',
        '--page-size',
        '2',
        '-o',
        'json',
      ]);
      assert.equal(all.code, 0, explain(all));
      const listed = JSON.parse(all.stdout);
      assert.deepEqual(
        listed.Connections.map((c: { Name: string }) => c.Name),
        names,
      );
      assert.equal(listed.NextToken, undefined);

      const firstThree = await cli([
        'connections',
        'list',
        '--name-prefix',
        'page-',
        '--page-size',
        '2',
        '--limit',
        '3',
        '-o',
        'json',
      ]);
      const cut = JSON.parse(firstThree.stdout);
      assert.deepEqual(
        cut.Connections.map((c: { Name: string }) => c.Name),
        names.slice(0, 3),
      );
      assert.equal(typeof cut.NextToken, 'string');
      const rest = await cli([
        'connections',
        'list',
        '--name-prefix',
        'page-',
        '--next-token',
        cut.NextToken,
        '-o',
        'json',
      ]);
      assert.deepEqual(
        JSON.parse(rest.stdout).Connections.map((c: { Name: string }) => c.Name),
        names.slice(3),
      );

      const table = await cli([
        'connections',
        'list',
        '--name-prefix',
        'page-',
        '--page-size',
        '2',
      ]);
      assert.equal(table.code, 0, explain(table));
      const lines = table.stdout.trimEnd().split('\n');
      assert.equal(lines.length, 1 + names.length);
      assert.match(lines[0] ?? '', /^NAME\s+STATE\s+TYPE\s+LAST MODIFIED\s+LAST AUTHORIZED$/);
      for (const [index, name] of names.entries()) {
        assert.match(
          lines[index + 1] ?? '',
          new RegExp(`^${name}\\s+AUTHORIZED\\s+BASIC\\s+\\d{4}-`),
        );
      }
      // Aligned: every row's STATE column starts where the header's does.
      const stateColumn = (lines[0] ?? '').indexOf('STATE');
      for (const line of lines.slice(1)) assert.equal(line.indexOf('AUTHORIZED'), stateColumn);

      const none = await cli(['connections', 'list', '--name-prefix', 'nothing-here']);
      assert.deepEqual([none.code, none.stdout, none.stderr], [0, '', 'No connections found.\n']);
    },
  );

  it(
    'when a connection is updated with a new key file and a description, then the broker serves the new key and describes the description',
    BOUNDED,
    async () => {
      const rotated = await secretFile('rotated.key', secrets.rotatedApiKey);
      const result = await cli([
        'connections',
        'update',
        'stripe',
        '--api-key-value-file',
        rotated,
      ]);
      assert.equal(result.code, 0, explain(result));
      assert.match(result.stdout, /^stripe\s+AUTHORIZED\s/m);
      assert.deepEqual(await credentialHeaders('stripe'), { 'X-Api-Key': secrets.rotatedApiKey });

      const described = await cli(['connections', 'update', 'stripe', '--description', 'rotated']);
      assert.equal(described.code, 0, explain(described));
      assert.equal((await describeJson('stripe')).Description, 'rotated');
    },
  );

  it(
    'when a connection is deauthorized, then it is DEAUTHORIZED until an update brings its credentials back',
    BOUNDED,
    async () => {
      const result = await cli(['connections', 'deauthorize', 'legacy']);
      assert.equal(result.code, 0, explain(result));
      assert.match(result.stdout, /^legacy\s+DEAUTHORIZED\s/m);
      assert.equal((await describeJson('legacy')).ConnectionState, 'DEAUTHORIZED');

      const reauthorized = await cli(
        [
          'connections',
          'update',
          'legacy',
          '--basic-username',
          'svc-user',
          '--basic-password-file',
          '-',
        ],
        { stdin: secrets.password },
      );
      assert.equal(reauthorized.code, 0, explain(reauthorized));
      assert.match(reauthorized.stdout, /^legacy\s+AUTHORIZED\s/m);
    },
  );

  it(
    'when a connection is deleted, then describing it exits 1 with the ResourceNotFoundException message on stderr',
    BOUNDED,
    async () => {
      const deleted = await cli(['connections', 'delete', 'from-file', '-o', 'json']);
      assert.equal(deleted.code, 0, explain(deleted));
      assert.equal(JSON.parse(deleted.stdout).ConnectionState, 'DELETING');

      const missing = await cli(['connections', 'describe', 'from-file']);
      assert.equal(missing.code, 1, explain(missing));
      assert.equal(missing.stdout, '');
      assert.match(
        missing.stderr,
        /^broker: ResourceNotFoundException: Failed to describe the connection\(s\)\. Connection 'from-file' does not exist\. \(HTTP 404, request [-0-9a-f]+\)\n$/,
      );
    },
  );

  it(
    'when the broker rejects the body, then exit 1 with its ValidationException',
    BOUNDED,
    async () => {
      const bodyFile = await secretFile(
        'invalid.json',
        JSON.stringify({ Name: 'bad name', AuthorizationType: 'BASIC', AuthParameters: {} }),
      );
      const result = await cli(['connections', 'create', '--file', bodyFile]);
      assert.equal(result.code, 1, explain(result));
      assert.match(result.stderr, /^broker: ValidationException: .*\(HTTP 400/);
    },
  );

  it(
    'when the caller may only look, then list works and create exits 1 with AccessDeniedException',
    BOUNDED,
    async () => {
      const readerEnv = { BROKER_URL: broker.url, BROKER_API_KEY: readerKey };
      const listed = await cli(['connections', 'list', '-o', 'json'], { env: readerEnv });
      assert.equal(listed.code, 0, explain(listed));
      assert.ok(JSON.parse(listed.stdout).Connections.length > 0);

      const keyFile = await secretFile('reader.key', secrets.apiKey);
      const denied = await cli(
        [
          'connections',
          'create',
          '--name',
          'not-allowed',
          '--api-key-name',
          'k',
          '--api-key-value-file',
          keyFile,
        ],
        { env: readerEnv },
      );
      assert.equal(denied.code, 1, explain(denied));
      assert.equal(denied.stdout, '');
      assert.match(denied.stderr, /^broker: AccessDeniedException: .*\(HTTP 403/);
    },
  );

  it(
    'when no API key is set, then exit 1 with UnauthorizedException and a hint about BROKER_API_KEY',
    BOUNDED,
    async () => {
      const result = await cli(['connections', 'list'], { env: { BROKER_URL: broker.url } });
      assert.equal(result.code, 1, explain(result));
      assert.match(
        result.stderr,
        /^broker: UnauthorizedException: .*\(HTTP 401.*\nSet BROKER_API_KEY/,
      );
    },
  );

  it(
    'when a secret is given on the command line, then exit 2 naming the -file flag, without echoing it or sending anything',
    BOUNDED,
    async () => {
      for (const secretArgs of [
        ['--api-key-value', secrets.argvSecret],
        [`--api-key-value=${secrets.argvSecret}`],
      ]) {
        const result = await cli([
          'connections',
          'create',
          '--name',
          'argv',
          '--api-key-name',
          'k',
          ...secretArgs,
        ]);
        assert.equal(result.code, 2, explain(result));
        assert.equal(
          result.stderr,
          "broker: --api-key-value is refused: a secret on the command line is visible to other users (ps, /proc) and kept in shell history. Use --api-key-value-file instead (a file path, or - to read stdin).\nRun 'broker connections create --help' for usage.\n",
        );
      }
      const missing = await cli(['connections', 'describe', 'argv']);
      assert.equal(missing.code, 1, 'nothing was created');
    },
  );

  it(
    'when the arguments are wrong, then exit 2 with the message and the help pointer on stderr',
    BOUNDED,
    async () => {
      const result = await cli(['connections', 'describe']);
      assert.deepEqual(result, {
        code: 2,
        stdout: '',
        stderr:
          "broker: expected NAME, got 0 positional argument(s)\nRun 'broker connections describe --help' for usage.\n",
      });
    },
  );

  it('when the broker is down, then exit 3 saying it cannot be reached', BOUNDED, async () => {
    const closedPort = await findFreePort();
    const result = await cli(['connections', 'list'], {
      env: { BROKER_URL: `http://127.0.0.1:${closedPort}`, BROKER_API_KEY: opsKey },
    });
    assert.equal(result.code, 3, explain(result));
    assert.equal(
      result.stderr,
      `broker: cannot reach the broker at http://127.0.0.1:${closedPort}: connection refused (set BROKER_URL to the broker's address)\n`,
    );
  });

  it('when every command has run, then no secret appeared in anything the CLI printed', () => {
    assert.ok(printed.length > 15);
    for (const result of printed) {
      for (const [name, secret] of Object.entries(secrets)) {
        assert.ok(!result.stdout.includes(secret), `${name} in stdout`);
        assert.ok(!result.stderr.includes(secret), `${name} in stderr`);
      }
    }
  });
});
