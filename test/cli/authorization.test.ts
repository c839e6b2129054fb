/**
 * `broker connections authorization` and `refresh`, and the StateReason line of create and
 * update, against real broker processes (one in open mode, one with a policy) and a scripted
 * token endpoint: masked and revealed output, generations, the API's errors and exit codes.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createBrokerClient, unwrap, type BrokerClient } from '../../src/client/index.js';
import { startBrokerProcess, type BrokerProcess } from '../support/broker-process.js';
import { newApiKey, sha256Hex } from '../support/policy-file.js';
import {
  startScriptedTokenEndpoint,
  type ScriptedTokenEndpoint,
} from '../support/scripted-token-endpoint.js';
import { explain, runCli, type CliOptions, type CliResult } from './cli-process.js';

const BOUNDED = { timeout: 60_000 } as const;
/** Base64url only, so that no piece of a secret turns up by chance in an ARN or a time. */
const newSecret = (): string => randomBytes(24).toString('base64url');
const mask = (secret: string): string => `****${secret.slice(-4)}`;
const INVALID_CLIENT = {
  kind: 'status',
  status: 401,
  body: JSON.stringify({ error: 'invalid_client' }),
} as const;
const STATE_REASON_401 =
  'StateReason: Authorization failed: the token endpoint answered HTTP 401 (invalid_client).\n';

describe('broker connections authorization and refresh (CLI against a real broker)', () => {
  /** Every credential value the broker serves in these tests; masked output may show 4 characters of each. */
  const secrets = {
    apiKey: newSecret(),
    signingHeader: newSecret(),
    queryToken: newSecret(),
    bodySecret: newSecret(),
    clientSecret: newSecret(),
    firstToken: newSecret(),
    secondToken: newSecret(),
    rejectedSecret: newSecret(),
  };
  const creatorKey = newApiKey();
  /** What the CLI printed without --reveal. */
  const masked: CliResult[] = [];
  let dir: string;
  let openBroker: BrokerProcess;
  let policyBroker: BrokerProcess;
  let tokenEndpoint: ScriptedTokenEndpoint;
  let client: BrokerClient;
  let env: Record<string, string>;

  const cli = async (args: readonly string[], options: CliOptions = {}): Promise<CliResult> => {
    const result = await runCli(args, { env, ...options });
    if (!args.includes('--reveal')) masked.push(result);
    return result;
  };
  const secretFile = async (name: string, content: string): Promise<string> => {
    const file = path.join(dir, name);
    await writeFile(file, content, { mode: 0o600 });
    return file;
  };
  const authorizationOf = async (name: string) =>
    unwrap(
      await client.GET('/v1/connections/{name}/authorization', { params: { path: { name } } }),
    );
  const describeJson = async (name: string) =>
    unwrap(await client.GET('/v1/connections/{name}', { params: { path: { name } } }));
  const time = (iso: string | undefined): string =>
    (iso ?? '').replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  const createOAuth = (name: string, secretPath: string): Promise<CliResult> =>
    cli([
      'connections',
      'create',
      '--name',
      name,
      '--oauth-client-id',
      'app-id',
      '--oauth-client-secret-file',
      secretPath,
      '--oauth-endpoint',
      tokenEndpoint.url,
    ]);

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'broker-cli-authorization-'));
    const policyFile = path.join(dir, 'policy.json');
    // A principal that may change connections but not describe them: create and update still
    // succeed, only the StateReason cannot be read.
    await writeFile(
      policyFile,
      JSON.stringify({
        principals: [
          {
            name: 'creator',
            apiKeySha256: sha256Hex(creatorKey),
            statements: [{ actions: ['CreateConnection'], resources: ['*'] }],
          },
        ],
      }),
      { mode: 0o600 },
    );
    tokenEndpoint = await startScriptedTokenEndpoint();
    // Two brokers start at once, on CI machines busy with other suites: twice the usual bound.
    const startOptions = { startTimeoutMs: 60_000 };
    [openBroker, policyBroker] = await Promise.all([
      startBrokerProcess({ BROKER_ALLOW_INSECURE_ENDPOINTS: 'true' }, startOptions),
      startBrokerProcess(
        { BROKER_POLICY_FILE: policyFile, BROKER_ALLOW_INSECURE_ENDPOINTS: 'true' },
        startOptions,
      ),
    ]);
    // Open mode: no BROKER_API_KEY.
    env = { BROKER_URL: openBroker.url };
    client = createBrokerClient({ baseUrl: openBroker.url });
    unwrap(
      await client.POST('/v1/connections', {
        body: {
          Name: 'stripe',
          AuthorizationType: 'API_KEY',
          AuthParameters: {
            ApiKeyAuthParameters: { ApiKeyName: 'X-Api-Key', ApiKeyValue: secrets.apiKey },
            InvocationHttpParameters: {
              HeaderParameters: [
                { Key: 'Stripe-Version', Value: '2024-06-20', IsValueSecret: false },
                { Key: 'X-Signing', Value: secrets.signingHeader, IsValueSecret: true },
              ],
              QueryStringParameters: [
                { Key: 'token', Value: secrets.queryToken, IsValueSecret: true },
              ],
              BodyParameters: [{ Key: 'account', Value: secrets.bodySecret, IsValueSecret: true }],
            },
          },
        },
      }),
    );
  });

  after(async () => {
    await Promise.all([openBroker?.stop(), policyBroker?.stop()]);
    await tokenEndpoint?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'when the authorization of an API_KEY connection is shown, then every header, query and body value is masked in the table',
    BOUNDED,
    async () => {
      const result = await cli(['connections', 'authorization', 'stripe']);
      assert.equal(result.code, 0, explain(result));
      const answer = await authorizationOf('stripe');
      assert.deepEqual(result, {
        code: 0,
        stdout: [
          'Connection:        stripe',
          `ARN:               ${answer.ConnectionArn}`,
          'Type:              API_KEY',
          `Token generation:  ${answer.TokenGeneration}`,
          '',
          'KIND    NAME            VALUE',
          `header  Stripe-Version  ****`,
          `header  X-Signing       ${mask(secrets.signingHeader)}`,
          `header  X-Api-Key       ${mask(secrets.apiKey)}`,
          `query   token           ${mask(secrets.queryToken)}`,
          `body    account         ${mask(secrets.bodySecret)}`,
          '',
        ].join('\n'),
        stderr: '',
      });
    },
  );

  it(
    'when the authorization is asked as json, then it is the API answer with the values masked in place',
    BOUNDED,
    async () => {
      const result = await cli(['connections', 'authorization', 'stripe', '-o', 'json']);
      assert.equal(result.code, 0, explain(result));
      const answer = await authorizationOf('stripe');
      assert.deepEqual(JSON.parse(result.stdout), {
        ...answer,
        Headers: {
          'Stripe-Version': '****',
          'X-Signing': mask(secrets.signingHeader),
          'X-Api-Key': mask(secrets.apiKey),
        },
        QueryParameters: { token: mask(secrets.queryToken) },
        BodyParameters: { account: mask(secrets.bodySecret) },
      });
      assert.equal(result.stderr, '');
    },
  );

  it(
    'when --reveal is given, then the table and the json show the values in full',
    BOUNDED,
    async () => {
      const answer = await authorizationOf('stripe');
      const json = await cli(['connections', 'authorization', 'stripe', '-o', 'json', '--reveal']);
      assert.equal(json.code, 0, explain(json));
      assert.deepEqual(JSON.parse(json.stdout), answer);

      const table = await cli(['connections', 'authorization', 'stripe', '--reveal']);
      assert.equal(table.code, 0, explain(table));
      assert.match(table.stdout, new RegExp(`^header {2}X-Api-Key {7}${secrets.apiKey}$`, 'm'));
      assert.match(table.stdout, new RegExp(`^body {4}account {9}${secrets.bodySecret}$`, 'm'));
      assert.match(table.stdout, /^header {2}Stripe-Version {2}2024-06-20$/m);
    },
  );

  it(
    'when an OAuth connection is refreshed with a 401, then the token endpoint is asked once more and the generation moves on',
    BOUNDED,
    async () => {
      tokenEndpoint.script(
        { kind: 'token', accessToken: secrets.firstToken, expiresIn: 3600 },
        { kind: 'token', accessToken: secrets.secondToken, expiresIn: 7200 },
      );
      const secretPath = await secretFile('client.secret', secrets.clientSecret);
      const created = await createOAuth('github', secretPath);
      assert.equal(created.code, 0, explain(created));
      assert.equal(created.stderr, '');
      const previous = await authorizationOf('github');
      const requestsBefore = tokenEndpoint.requestCount();

      const result = await cli(['connections', 'refresh', 'github', '--status', '401']);
      assert.equal(result.code, 0, explain(result));
      assert.equal(tokenEndpoint.requestCount(), requestsBefore + 1);
      const current = await authorizationOf('github');
      assert.equal(current.TokenGeneration, previous.TokenGeneration + 1);
      assert.deepEqual(current.Headers, { Authorization: `Bearer ${secrets.secondToken}` });
      assert.deepEqual(result, {
        code: 0,
        stdout: [
          `Reported HTTP 401 for token generation ${previous.TokenGeneration}; the broker now serves generation ${current.TokenGeneration}.`,
          '',
          'Connection:        github',
          `ARN:               ${current.ConnectionArn}`,
          'Type:              OAUTH_CLIENT_CREDENTIALS',
          `Token generation:  ${current.TokenGeneration}`,
          `Token expires:     ${time(current.TokenExpiresAt)}`,
          '',
          'KIND    NAME           VALUE',
          `header  Authorization  ${mask(secrets.secondToken)}`,
          '',
        ].join('\n'),
        stderr: '',
      });
    },
  );

  it(
    'when an older generation is reported, then no token is requested and the current one is answered, masked unless --reveal',
    BOUNDED,
    async () => {
      const current = await authorizationOf('github');
      const requestsBefore = tokenEndpoint.requestCount();
      const stale = String(current.TokenGeneration - 1);

      const json = await cli([
        'connections',
        'refresh',
        'github',
        '--status',
        '407',
        '--generation',
        stale,
        '-o',
        'json',
      ]);
      assert.equal(json.code, 0, explain(json));
      assert.deepEqual(JSON.parse(json.stdout), {
        ...current,
        Headers: { Authorization: mask(secrets.secondToken) },
      });

      const revealed = await cli([
        'connections',
        'refresh',
        'github',
        '--status',
        '407',
        '--generation',
        stale,
        '-o',
        'json',
        '--reveal',
      ]);
      assert.equal(revealed.code, 0, explain(revealed));
      assert.deepEqual(JSON.parse(revealed.stdout), current);
      assert.equal(tokenEndpoint.requestCount(), requestsBefore);
    },
  );

  it(
    'when a 401 is reported for an API_KEY connection in open mode, then the broker deauthorizes it and the CLI exits 1 with its InvalidConnectionStateException',
    BOUNDED,
    async () => {
      unwrap(
        await client.POST('/v1/connections', {
          body: {
            Name: 'static-key',
            AuthorizationType: 'API_KEY',
            AuthParameters: {
              ApiKeyAuthParameters: { ApiKeyName: 'X-Api-Key', ApiKeyValue: secrets.apiKey },
            },
          },
        }),
      );
      const result = await cli(['connections', 'refresh', 'static-key', '--status', '401']);
      assert.equal(result.code, 1, explain(result));
      assert.equal(result.stdout, '');
      assert.match(
        result.stderr,
        /^broker: InvalidConnectionStateException: .*static-key.* \(HTTP 409, request [-0-9a-f]+\)\n$/,
      );
      assert.equal((await describeJson('static-key')).ConnectionState, 'DEAUTHORIZED');

      const again = await cli(['connections', 'authorization', 'static-key']);
      assert.equal(again.code, 1, explain(again));
      assert.match(again.stderr, /^broker: InvalidConnectionStateException: .*\(HTTP 409/);
    },
  );

  it(
    'when --status or --generation is wrong or missing, then exit 2 with the message and nothing is sent',
    BOUNDED,
    async () => {
      const generation = (await authorizationOf('github')).TokenGeneration;
      const requestsBefore = tokenEndpoint.requestCount();
      const cases: Array<[string[], string]> = [
        [['--status', '403'], '--status must be one of 401, 407'],
        [[], '--status is required: 401 or 407'],
        [
          ['--status', '401', '--generation', 'latest'],
          '--generation must be an integer from 1 to 9007199254740991',
        ],
        [
          ['--status', '401', '--generation', '1.5'],
          '--generation must be an integer from 1 to 9007199254740991',
        ],
        [
          ['--status', '401', '--generation', '0'],
          '--generation must be an integer from 1 to 9007199254740991',
        ],
      ];
      for (const [flags, message] of cases) {
        const result = await cli(['connections', 'refresh', 'github', ...flags]);
        assert.deepEqual(
          result,
          {
            code: 2,
            stdout: '',
            stderr: `broker: ${message}\nRun 'broker connections refresh --help' for usage.\n`,
          },
          flags.join(' '),
        );
      }
      const noName = await cli(['connections', 'authorization', '--reveal']);
      assert.equal(noName.code, 2, explain(noName));
      assert.equal(
        noName.stderr,
        "broker: expected NAME, got 0 positional argument(s)\nRun 'broker connections authorization --help' for usage.\n",
      );
      assert.equal(tokenEndpoint.requestCount(), requestsBefore);
      assert.equal((await authorizationOf('github')).TokenGeneration, generation);
    },
  );

  it(
    'when an OAuth connection is created and its token endpoint answers 401, then the StateReason line is printed and the exit code is 0',
    BOUNDED,
    async () => {
      tokenEndpoint.script(INVALID_CLIENT, INVALID_CLIENT);
      const secretPath = await secretFile('rejected.secret', secrets.rejectedSecret);
      const table = await createOAuth('rejected', secretPath);
      assert.equal(table.code, 0, explain(table));
      assert.match(table.stdout, /^rejected\s+DEAUTHORIZED\s/m);
      assert.equal(table.stderr, STATE_REASON_401);

      const json = await cli([
        'connections',
        'create',
        '--name',
        'rejected-json',
        '--oauth-client-id',
        'app-id',
        '--oauth-client-secret-file',
        secretPath,
        '--oauth-endpoint',
        tokenEndpoint.url,
        '-o',
        'json',
      ]);
      assert.equal(json.code, 0, explain(json));
      assert.equal(JSON.parse(json.stdout).ConnectionState, 'DEAUTHORIZED');
      assert.equal(json.stderr, STATE_REASON_401);
    },
  );

  it(
    'when an update leaves an OAuth connection DEAUTHORIZED, then the StateReason line is printed and the exit code is 0',
    BOUNDED,
    async () => {
      tokenEndpoint.script(INVALID_CLIENT);
      const secretPath = await secretFile('rotated.secret', secrets.rejectedSecret);
      const result = await cli([
        'connections',
        'update',
        'github',
        '--oauth-client-secret-file',
        secretPath,
      ]);
      assert.equal(result.code, 0, explain(result));
      assert.match(result.stdout, /^github\s+DEAUTHORIZED\s/m);
      assert.equal(result.stderr, STATE_REASON_401);
    },
  );

  it(
    'when the caller may create but not describe, then a create that ends DEAUTHORIZED still exits 0 and says why the StateReason is missing',
    BOUNDED,
    async () => {
      tokenEndpoint.script(INVALID_CLIENT);
      const secretPath = await secretFile('creator.secret', secrets.rejectedSecret);
      const result = await cli(
        [
          'connections',
          'create',
          '--name',
          'created-blind',
          '--oauth-client-id',
          'app-id',
          '--oauth-client-secret-file',
          secretPath,
          '--oauth-endpoint',
          tokenEndpoint.url,
        ],
        { env: { BROKER_URL: policyBroker.url, BROKER_API_KEY: creatorKey } },
      );
      assert.equal(result.code, 0, explain(result));
      assert.match(result.stdout, /^created-blind\s+DEAUTHORIZED\s/m);
      assert.equal(
        result.stderr,
        'The connection is DEAUTHORIZED; describing it for its StateReason failed: AccessDeniedException (HTTP 403).\n',
      );
    },
  );

  it('when every command has run without --reveal, then no secret appeared beyond its last 4 characters', () => {
    assert.ok(masked.length > 10);
    for (const result of masked) {
      for (const [name, secret] of Object.entries(secrets)) {
        // Any 5 characters in a row would be more than the mask shows.
        for (let start = 0; start + 5 <= secret.length; start += 1) {
          const piece = secret.slice(start, start + 5);
          assert.ok(!result.stdout.includes(piece), `part of ${name} in stdout`);
          assert.ok(!result.stderr.includes(piece), `part of ${name} in stderr`);
        }
      }
    }
  });
});
