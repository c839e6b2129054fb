import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';

import { buildHttpTaskRequest } from '../http-task/http-task-request.js';
import { connectionArn } from './arn.js';
import {
  prepareAuthorization,
  UnsendableConnectionError,
  type PreparedAuthorization,
} from './authorization-parameters.js';
import type { ApiKeyConnection, BasicConnection, HttpParameter } from './connection.js';
import { headerRefusal } from './http-fields.js';

// ---- arbitraries --------------------------------------------------------------------------

const ARN = { region: 'eu-west-1', accountId: '123456789012' };
const RUNS = { numRuns: 5_000, seed: 0x5eed_2026 } as const;

const PROTOTYPE_NAMES = Object.getOwnPropertyNames(Object.prototype);
const ORDINARY_NAMES = ['X-Api-Key', 'x-api-key', 'X-Request-Id', 'Accept', 'page', '1', '42'];
const AWKWARD_NAMES = [
  'Authorization',
  'authorization',
  'AUTHORIZATION',
  'Host',
  'Content-Length',
  'transfer-encoding',
  'User-Agent',
  'toJSON',
  'X'.repeat(512),
  'X'.repeat(513),
];
const TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

const printableChar = fc.integer({ min: 0x21, max: 0x7e }).map((code) => String.fromCharCode(code));
const awkwardChar = fc.constantFrom(' ', '\t', '\r', '\n', '\0', '\x7f', 'é', '中', '😀', '\ud800');
const messyString = fc.string({
  unit: fc.oneof({ weight: 4, arbitrary: printableChar }, { weight: 1, arbitrary: awkwardChar }),
  maxLength: 12,
});
const fieldValue = fc
  .array(fc.string({ unit: printableChar, minLength: 1, maxLength: 10 }), {
    minLength: 1,
    maxLength: 3,
  })
  .map((words) => words.join(' '));

const key = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...ORDINARY_NAMES) },
  { weight: 3, arbitrary: fc.constantFrom(...PROTOTYPE_NAMES) },
  { weight: 2, arbitrary: fc.constantFrom(...AWKWARD_NAMES) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom(...TCHARS), minLength: 1 }) },
  { weight: 1, arbitrary: messyString },
);
const value = fc.oneof({ weight: 6, arbitrary: fieldValue }, { weight: 1, arbitrary: messyString });

function parameters(keyArb: fc.Arbitrary<string>): fc.Arbitrary<HttpParameter[]> {
  return fc.array(fc.record({ key: keyArb, value, isValueSecret: fc.boolean() }), {
    maxLength: 5,
  });
}

// Absent from some connections: fc.record leaves the key out (exactOptionalPropertyTypes).
const invocation = fc.record(
  {
    headerParameters: parameters(key),
    queryStringParameters: parameters(key),
    bodyParameters: parameters(key),
  },
  { requiredKeys: [] },
);

const common = {
  name: fc.constantFrom('orders', 'a.b-c_d'),
  uuid: fc.uuid(),
  secretUuid: fc.uuid(),
  state: fc.constantFrom('AUTHORIZED' as const, 'DEAUTHORIZED' as const),
  creationTimeMs: fc.constant(1_700_000_000_000),
  lastModifiedTimeMs: fc.constant(1_700_000_000_000),
  generation: fc.nat(),
  invocationHttpParameters: invocation,
};
// Everything but invocationHttpParameters, which is sometimes absent.
const REQUIRED_COMMON = [
  'name',
  'uuid',
  'secretUuid',
  'state',
  'creationTimeMs',
  'lastModifiedTimeMs',
  'generation',
  'authorizationType',
] as const;

const basicConnection: fc.Arbitrary<BasicConnection> = fc.record(
  {
    ...common,
    authorizationType: fc.constant('BASIC' as const),
    basic: fc.record(
      { username: fc.string({ unit: 'binary' }), password: fc.string({ unit: 'binary' }) },
      { requiredKeys: ['username'] },
    ),
  },
  { requiredKeys: [...REQUIRED_COMMON, 'basic'] },
);

function apiKeyConnection(nameArb: fc.Arbitrary<string>): fc.Arbitrary<ApiKeyConnection> {
  return fc.record(
    {
      ...common,
      authorizationType: fc.constant('API_KEY' as const),
      apiKey: fc.record(
        { apiKeyName: nameArb, apiKeyValue: value },
        { requiredKeys: ['apiKeyName'] },
      ),
    },
    { requiredKeys: [...REQUIRED_COMMON, 'apiKey'] },
  );
}

const connection = fc.oneof(basicConnection, apiKeyConnection(key));

// ---- the oracle ---------------------------------------------------------------------------

/** EventBridge's credential header for the type. */
function credentialOf(c: BasicConnection | ApiKeyConnection): [string, string] {
  if (c.authorizationType === 'API_KEY') return [c.apiKey.apiKeyName, c.apiKey.apiKeyValue ?? ''];
  const pair = `${c.basic.username}:${c.basic.password ?? ''}`;
  return ['Authorization', `Basic ${Buffer.from(pair).toString('base64')}`];
}

/** The keys given, in order: the last value of a key wins. */
function lastWins(list: readonly HttpParameter[] | undefined): Map<string, string> {
  return new Map((list ?? []).map((p) => [p.key, p.value]));
}

function expectedHeaders(c: BasicConnection | ApiKeyConnection): Map<string, string> {
  const headers = lastWins(c.invocationHttpParameters?.headerParameters);
  const [name, credential] = credentialOf(c);
  // The credential replaces an invocation header of its name in any case.
  for (const key of [...headers.keys()]) {
    if (key.toLowerCase() === name.toLowerCase()) headers.delete(key);
  }
  headers.set(name, credential);
  return headers;
}

/** Exactly the keys given, own and enumerable, and nothing an object prototype would add. */
function assertSameMap(actual: Record<string, string>, expected: Map<string, string>): void {
  const keys = [...expected.keys()].sort();
  assert.deepEqual(Object.keys(actual).sort(), keys);
  assert.deepEqual(Object.getOwnPropertyNames(actual).sort(), keys);
  for (const [name, text] of expected) {
    assert.ok(Object.hasOwn(actual, name), `missing ${JSON.stringify(name)}`);
    assert.equal(actual[name], text, `value of ${JSON.stringify(name)}`);
  }
  for (const name of PROTOTYPE_NAMES) {
    if (!expected.has(name)) assert.ok(!(name in actual), `${name} is inherited`);
  }
}

function asMap(record: unknown): Map<string, unknown> {
  assert.ok(typeof record === 'object' && record !== null && !Array.isArray(record));
  return new Map(Object.entries(record));
}

function check(c: BasicConnection | ApiKeyConnection): void {
  const headers = expectedHeaders(c);
  const refused = [...headers].some(([n, v]) => headerRefusal(n, v, 'connection') !== undefined);
  let prepared: PreparedAuthorization;
  try {
    prepared = prepareAuthorization(ARN, c);
  } catch (error) {
    assert.ok(error instanceof UnsendableConnectionError, `threw ${String(error)}`);
    assert.equal(error.code, 'InvalidConnectionStateException');
    assert.ok(refused, `refused a sendable connection: ${error.message}`);
    return;
  }
  assert.ok(!refused, 'handed out a header the rules refuse');
  const invocationParameters = c.invocationHttpParameters;
  assertSameMap(prepared.parameters.headers, headers);
  assertSameMap(
    prepared.parameters.queryParameters,
    lastWins(invocationParameters?.queryStringParameters),
  );
  assertSameMap(prepared.parameters.bodyParameters, lastWins(invocationParameters?.bodyParameters));
  assert.equal(prepared.freshUntilMs, Infinity);
  assert.equal(prepared.generation, c.generation);

  const body: unknown = JSON.parse(prepared.body.toString('utf8'));
  const fields = asMap(body);
  assert.equal(fields.get('ConnectionArn'), connectionArn(ARN, c.name, c.uuid));
  assert.equal(fields.get('AuthorizationType'), c.authorizationType);
  assert.equal(fields.get('TokenGeneration'), c.generation);
  assert.ok(!fields.has('TokenExpiresAt'));
  assert.deepEqual(asMap(fields.get('Headers')), asMap(prepared.parameters.headers));
  assert.deepEqual(
    asMap(fields.get('QueryParameters')),
    asMap(prepared.parameters.queryParameters),
  );
  assert.deepEqual(asMap(fields.get('BodyParameters')), asMap(prepared.parameters.bodyParameters));
}

// ---- properties ---------------------------------------------------------------------------

describe('prepareAuthorization (properties)', () => {
  it('when a BASIC or API_KEY connection has arbitrary parameters, then it throws UnsendableConnectionError exactly when a header breaks the rules, and otherwise hands out every key once with its last value and the credential', () => {
    fc.assert(fc.property(connection, check), RUNS);
  });

  it('when a parameter key has a prototype name, then it is handed out as an ordinary key', () => {
    fc.assert(
      fc.property(fc.constantFrom(...PROTOTYPE_NAMES), basicConnection, (name, c) => {
        const given = [{ key: name, value: 'given', isValueSecret: false }];
        const prepared = prepareAuthorization(ARN, {
          ...c,
          invocationHttpParameters: {
            headerParameters: given,
            queryStringParameters: given,
            bodyParameters: given,
          },
        });
        for (const map of Object.values(prepared.parameters)) {
          assert.ok(Object.hasOwn(map, name));
          assert.equal(map[name], 'given');
        }
      }),
      { numRuns: PROTOTYPE_NAMES.length * 4, seed: 0x5eed_2026 },
    );
  });

  // Regression: the credential replaced only the invocation header of the same exact name; a
  // header that differed only in case then won the case-insensitive merge in
  // buildHttpTaskRequest, and the upstream got the invocation value, not the credential.
  it('when the parameters are merged into an HTTP Task request, then the credential is the value sent for its header, whatever the case of invocation headers', () => {
    const credentialName = fc.constantFrom('Authorization', 'X-Api-Key', 'x-api-key', 'toString');
    const scenario = fc
      .tuple(credentialName, fc.boolean())
      .chain(([name, isBasic]) => {
        const credential = isBasic ? 'Authorization' : name;
        const variants = fc.constantFrom(
          credential,
          credential.toLowerCase(),
          credential.toUpperCase(),
        );
        const headerParameters = parameters(variants);
        const base = isBasic
          ? basicConnection
          : apiKeyConnection(fc.constant(name)).map((c) => ({
              ...c,
              apiKey: { ...c.apiKey, apiKeyValue: 'the-api-key' },
            }));
        return fc.tuple(base, headerParameters);
      })
      .map(([c, headerParameters]) => ({
        ...c,
        invocationHttpParameters: {
          headerParameters: headerParameters.map((p) => ({ ...p, value: 'from-invocation' })),
        },
      }));
    fc.assert(
      fc.property(scenario, (c) => {
        const [name, credential] = credentialOf(c);
        const prepared = prepareAuthorization(ARN, c);
        const request = buildHttpTaskRequest(
          {
            ApiEndpoint: 'https://api.example.com/v1',
            Method: 'GET',
            Authentication: { ConnectionArn: c.name },
          },
          prepared.parameters,
          { userAgent: 'connection-broker/property-test' },
        );
        const sent = Object.entries(request.Headers).filter(
          ([header]) => header.toLowerCase() === name.toLowerCase(),
        );
        assert.deepEqual(
          sent.map(([, text]) => text),
          [credential],
        );
      }),
      { numRuns: 300, seed: 0x5eed_2026 },
    );
  });
});
