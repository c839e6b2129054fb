import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';

import {
  headerRefusal,
  isFieldName,
  isFieldValue,
  isForbiddenHeader,
  nullPrototypeRecord,
} from '../connections/http-fields.js';
import {
  buildHttpTaskRequest,
  RESPONSE_RANGE,
  type ConnectionParameters,
  type HttpTaskParameters,
  type PreparedRequest,
} from './http-task-request.js';
import { TaskFailure } from './task-failure.js';

// ---- arbitraries --------------------------------------------------------------------------

type Scalar = string | number | boolean;
type Entries<V> = Array<[string, V]>;

const PROTOTYPE_NAMES = Object.getOwnPropertyNames(Object.prototype);
/** Names that libraries look up on objects they are handed (JSON.stringify, qs, await). */
const DUCK_TYPING_NAMES = ['toJSON', 'then', 'length', 'isBuffer', 'prototype'];
const ORDINARY_NAMES = [
  'Accept',
  'X-Request-Id',
  'x-request-id',
  'X-Custom',
  'page',
  'q',
  '1',
  '42',
];
const FORBIDDEN_VARIANTS = [
  'Host',
  'host',
  'HOST',
  'transfer-encoding',
  'Transfer-Encoding',
  'Content-Length',
  'content-length',
  'CONTENT-LENGTH',
  'Authorization',
  'authorization',
  'Proxy-Authorization',
  'Connection',
  'te',
  'Upgrade',
  'X-Forwarded-For',
  'x-amz-date',
  'X-Amzn-Trace-Id',
];
const BROKER_NAMES = ['User-Agent', 'user-agent', 'Range', 'RANGE', 'Content-Type', 'content-type'];
// RFC 9110 §5.6.2 tchar, and the 512-character limit on either side.
const TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const LENGTH_EDGES = ['X'.repeat(512), 'X'.repeat(513)];

const printableChar = fc.integer({ min: 0x21, max: 0x7e }).map((code) => String.fromCharCode(code));
// Well-formed UTF-16 only: lone surrogates have their own (failing) test below.
const awkwardChar = fc.constantFrom(
  ' ',
  '\t',
  '\r',
  '\n',
  '\r\n',
  '\0',
  '\x7f',
  'é',
  'ß',
  '中',
  '😀',
  '\u2028',
  '\ufeff',
);
const messyString = fc.string({
  unit: fc.oneof({ weight: 4, arbitrary: printableChar }, { weight: 1, arbitrary: awkwardChar }),
  maxLength: 12,
});
const tokenString = fc.string({ unit: fc.constantFrom(...TCHARS), minLength: 1, maxLength: 12 });
const fieldValue = fc
  .array(fc.string({ unit: printableChar, minLength: 1, maxLength: 10 }), {
    minLength: 1,
    maxLength: 3,
  })
  .chain((words) => fc.constantFrom(' ', '\t', '  ').map((gap) => words.join(gap)));

const headerName = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...ORDINARY_NAMES, ...DUCK_TYPING_NAMES) },
  { weight: 3, arbitrary: fc.constantFrom(...PROTOTYPE_NAMES) },
  { weight: 2, arbitrary: fc.constantFrom(...BROKER_NAMES) },
  { weight: 2, arbitrary: tokenString },
  { weight: 1, arbitrary: fc.constantFrom(...FORBIDDEN_VARIANTS, ...LENGTH_EDGES) },
  { weight: 1, arbitrary: messyString },
);
const headerValue = fc.oneof(
  { weight: 9, arbitrary: fieldValue },
  { weight: 1, arbitrary: messyString },
);
const anyKey = fc.oneof(
  fc.constantFrom(...ORDINARY_NAMES, ...DUCK_TYPING_NAMES, ...PROTOTYPE_NAMES, ...BROKER_NAMES),
  fc.constantFrom(...FORBIDDEN_VARIANTS),
  messyString,
);
// JSON numbers only: what a parsed request body can hold.
const jsonNumber = fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }));
const scalar: fc.Arbitrary<Scalar> = fc.oneof(
  { weight: 4, arbitrary: fieldValue },
  { weight: 1, arbitrary: jsonNumber },
  { weight: 1, arbitrary: fc.boolean() },
);

function entries<V>(key: fc.Arbitrary<string>, value: fc.Arbitrary<V>): fc.Arbitrary<Entries<V>> {
  return fc.array(fc.tuple(key, value), { maxLength: 4 });
}

/** As JSON.parse builds it: an ordinary object, where `__proto__` is an own key. */
function jsonObject<V>(list: Entries<V>): Record<string, V> {
  return Object.fromEntries(list);
}

/** As the connection cache builds it: no prototype at all. */
function nullPrototypeObject<V>(list: Entries<V>): Record<string, V> {
  const map = nullPrototypeRecord<V>();
  for (const [key, value] of list) map[key] = value;
  return map;
}

const requestBody: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  { weight: 4, arbitrary: entries(anyKey, fc.jsonValue({ maxDepth: 2 })).map(jsonObject) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
);

const transform = fc.option(
  fc.record(
    {
      RequestBodyEncoding: fc.constantFrom('NONE' as const, 'URL_ENCODED' as const),
      RequestEncodingOptions: fc.record({
        ArrayFormat: fc.constantFrom(
          'INDICES' as const,
          'REPEAT' as const,
          'COMMAS' as const,
          'BRACKETS' as const,
        ),
      }),
    },
    { requiredKeys: ['RequestBodyEncoding'] },
  ),
  { nil: undefined },
);

const ENDPOINTS = [
  'https://api.example.com/v1/items',
  'https://api.example.com/search?fixed=1&fixed=2&q=kept',
  'https://api.example.com/p%20ath?x=a+b#fragment',
  'http://127.0.0.1:8080/',
];

const scenario = fc.record({
  endpoint: fc.constantFrom(...ENDPOINTS),
  method: fc.constantFrom('GET' as const, 'POST' as const, 'PUT' as const, 'DELETE' as const),
  // Unique regardless of case: names that differ only in case have their own (failing) test.
  taskHeaders: fc.option(
    fc.uniqueArray(fc.tuple(headerName, scalar), {
      selector: ([name]) => name.toLowerCase(),
      maxLength: 4,
    }),
    { nil: undefined },
  ),
  taskQuery: fc.option(entries(anyKey, fc.oneof(scalar, fc.array(scalar, { maxLength: 3 }))), {
    nil: undefined,
  }),
  requestBody,
  transform,
  connectionHeaders: entries(headerName, headerValue),
  connectionQuery: entries(anyKey, messyString),
  connectionBody: fc.oneof(
    { weight: 2, arbitrary: fc.constant<Entries<string>>([]) },
    { weight: 1, arbitrary: entries(anyKey, messyString) },
  ),
  nullPrototype: fc.boolean(),
});
type Scenario = typeof scenario extends fc.Arbitrary<infer S> ? S : never;

// ---- the oracle ---------------------------------------------------------------------------

const USER_AGENT = 'connection-broker/property-test';
const BROKER_SET = new Set(['user-agent', 'range']);
const RUNS = { numRuns: 5_000, seed: 0x5eed_2026 } as const;

function parametersOf(s: Scenario): HttpTaskParameters {
  const parameters: HttpTaskParameters = {
    ApiEndpoint: s.endpoint,
    Method: s.method,
    Authentication: { ConnectionArn: 'property-test' },
  };
  if (s.taskHeaders !== undefined) parameters.Headers = jsonObject(s.taskHeaders);
  if (s.taskQuery !== undefined) parameters.QueryParameters = jsonObject(s.taskQuery);
  if (s.requestBody !== undefined) parameters.RequestBody = s.requestBody;
  if (s.transform !== undefined) parameters.Transform = s.transform;
  return parameters;
}

function connectionOf(s: Scenario): ConnectionParameters {
  const build = s.nullPrototype ? nullPrototypeObject : jsonObject;
  return {
    headers: build(s.connectionHeaders),
    queryParameters: build(s.connectionQuery),
    bodyParameters: build(s.connectionBody),
  };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Last value per lower-cased name, in the order the function under test reads them. */
function byLowerName(record: Record<string, string>): Map<string, string> {
  const map = new Map<string, string>();
  for (const [name, value] of Object.entries(record)) map.set(name.toLowerCase(), value);
  return map;
}

/** Why the request cannot be built, from the rules alone; undefined when it can. */
function expectedRefusal(
  parameters: HttpTaskParameters,
  connection: ConnectionParameters,
): string | undefined {
  for (const [name, value] of Object.entries(parameters.Headers ?? {})) {
    const refusal = headerRefusal(name, String(value), 'task');
    if (refusal !== undefined) return `task header ${refusal}`;
  }
  for (const [name, value] of Object.entries(connection.headers)) {
    const refusal = headerRefusal(name, value, 'connection');
    if (refusal !== undefined) return `connection header ${refusal}`;
  }
  const body = parameters.RequestBody;
  const hasConnectionBody = Object.keys(connection.bodyParameters).length > 0;
  if (hasConnectionBody && body !== undefined && body !== null && !isPlainObject(body)) {
    return 'body not mergeable';
  }
  const merged = hasConnectionBody && (body === undefined || body === null) ? {} : body;
  const isForm = parameters.Transform?.RequestBodyEncoding === 'URL_ENCODED';
  if (isForm && merged !== undefined && typeof merged !== 'string' && !isPlainObject(merged)) {
    return 'form body not an object';
  }
  return undefined;
}

function valueOf(headers: Record<string, string>, lowerName: string): string | undefined {
  return Object.entries(headers).find(([name]) => name.toLowerCase() === lowerName)?.[1];
}

function assertHeaders(
  request: PreparedRequest,
  parameters: HttpTaskParameters,
  connection: ConnectionParameters,
): void {
  const headers = request.Headers;
  const names = Object.keys(headers);
  const lowerNames = names.map((name) => name.toLowerCase());
  assert.equal(new Set(lowerNames).size, names.length, `duplicate names: ${names.join(', ')}`);

  const fromConnection = byLowerName(connection.headers);
  const fromTask = new Map<string, string>();
  for (const [name, value] of Object.entries(parameters.Headers ?? {})) {
    fromTask.set(name.toLowerCase(), String(value));
  }

  for (const [name, value] of Object.entries(headers)) {
    assert.ok(isFieldName(name), `invalid name ${JSON.stringify(name)}`);
    assert.ok(isFieldValue(value), `invalid value ${JSON.stringify(value)} for ${name}`);
    const lower = name.toLowerCase();
    assert.notEqual(lower, 'content-length', 'Content-Length comes from the body, never a source');
    if (BROKER_SET.has(lower)) continue;
    if (fromConnection.has(lower)) {
      assert.ok(!isForbiddenHeader(name, 'connection'), `${name} is forbidden from a connection`);
    } else if (fromTask.has(lower)) {
      assert.ok(!isForbiddenHeader(name, 'task'), `${name} is forbidden from a task`);
    } else {
      assert.equal(lower, 'content-type', `${name} came from nowhere`);
    }
  }

  // The connection wins over the task; the broker over both.
  for (const [lower, value] of fromConnection) {
    if (BROKER_SET.has(lower)) continue;
    assert.equal(valueOf(headers, lower), value, `connection header ${lower}`);
  }
  for (const [lower, value] of fromTask) {
    if (BROKER_SET.has(lower) || fromConnection.has(lower) || lower === 'content-length') continue;
    assert.equal(valueOf(headers, lower), value, `task header ${lower}`);
  }
  assert.equal(headers['User-Agent'], USER_AGENT);
  assert.equal(headers['Range'], RESPONSE_RANGE);
  if (request.Body !== null) assert.ok(lowerNames.includes('content-type'), 'no Content-Type');
}

function assertQuery(
  request: PreparedRequest,
  parameters: HttpTaskParameters,
  connection: ConnectionParameters,
): void {
  const sent = new URL(request.Url).searchParams;
  const before = new URL(parameters.ApiEndpoint).searchParams;
  for (const [key, value] of Object.entries(connection.queryParameters)) {
    assert.deepEqual(sent.getAll(key), [...before.getAll(key), value], `connection query ${key}`);
  }
  for (const [key, value] of Object.entries(parameters.QueryParameters ?? {})) {
    if (Object.hasOwn(connection.queryParameters, key)) continue;
    const items = (Array.isArray(value) ? value : [value]).map(String);
    assert.deepEqual(sent.getAll(key), [...before.getAll(key), ...items], `task query ${key}`);
  }
}

function assertBody(
  request: PreparedRequest,
  parameters: HttpTaskParameters,
  connection: ConnectionParameters,
): void {
  const bodyParameters = Object.entries(connection.bodyParameters);
  if (bodyParameters.length === 0) return;
  assert.notEqual(request.Body, null);
  const text = request.Body ?? '';
  if (parameters.Transform?.RequestBodyEncoding === 'URL_ENCODED') {
    const form = new URLSearchParams(text);
    for (const [key, value] of bodyParameters) {
      assert.ok(form.getAll(key).includes(value), `form body lost ${JSON.stringify(key)}`);
    }
    return;
  }
  const parsed: unknown = JSON.parse(text);
  assert.ok(isPlainObject(parsed));
  for (const [key, value] of bodyParameters) {
    assert.ok(Object.hasOwn(parsed, key), `JSON body lost ${JSON.stringify(key)}`);
    assert.equal(parsed[key], value);
  }
}

function check(s: Scenario): void {
  const parameters = parametersOf(s);
  const connection = connectionOf(s);
  const refusal = expectedRefusal(parameters, connection);
  let request: PreparedRequest;
  try {
    request = buildHttpTaskRequest(parameters, connection, { userAgent: USER_AGENT });
  } catch (error) {
    assert.ok(error instanceof TaskFailure, `threw a non-TaskFailure: ${String(error)}`);
    assert.equal(error.error, 'States.Runtime');
    assert.notEqual(refusal, undefined, `refused a sendable request: ${error.causeText}`);
    return;
  }
  assert.equal(refusal, undefined, `built a request the rules refuse (${refusal})`);
  assert.equal(request.Method, s.method);
  assertHeaders(request, parameters, connection);
  assertQuery(request, parameters, connection);
  assertBody(request, parameters, connection);
}

// ---- properties ---------------------------------------------------------------------------

describe('buildHttpTaskRequest (properties)', () => {
  it('when task and connection parameters are arbitrary, then it throws a States.Runtime TaskFailure exactly when a rule refuses them, and otherwise builds a request that keeps every rule', () => {
    fc.assert(fc.property(scenario, check), RUNS);
  });

  it('when a connection parameter has a prototype name, then it reaches the request', () => {
    fc.assert(
      fc.property(fc.constantFrom(...PROTOTYPE_NAMES), fc.boolean(), (name, nullPrototype) => {
        const s: Scenario = {
          endpoint: 'https://api.example.com/v1',
          method: 'POST',
          taskHeaders: undefined,
          taskQuery: undefined,
          requestBody: undefined,
          transform: undefined,
          connectionHeaders: [[name, 'from-connection']],
          connectionQuery: [[name, 'from-connection']],
          connectionBody: [[name, 'from-connection']],
          nullPrototype,
        };
        const request = buildHttpTaskRequest(parametersOf(s), connectionOf(s), {
          userAgent: USER_AGENT,
        });
        assert.ok(Object.hasOwn(request.Headers, name));
        assert.equal(request.Headers[name], 'from-connection');
        assert.deepEqual(new URL(request.Url).searchParams.getAll(name), ['from-connection']);
        check(s);
      }),
      { numRuns: PROTOTYPE_NAMES.length * 4, seed: 0x5eed_2026 },
    );
  });

  // Regression: two JSON keys that differ only in case both reached the request.
  it('when task Headers hold two names that differ only in case, then the request carries one of them', () => {
    const nameWithLetters = fc
      .constantFrom(...ORDINARY_NAMES, ...PROTOTYPE_NAMES, 'Content-Type')
      .filter((name) => name.toLowerCase() !== name.toUpperCase());
    fc.assert(
      fc.property(nameWithLetters, fieldValue, fieldValue, (name, first, second) => {
        check({
          endpoint: 'https://api.example.com/v1',
          method: 'GET',
          taskHeaders: [
            [name.toLowerCase(), first],
            [name.toUpperCase(), second],
          ],
          taskQuery: undefined,
          requestBody: undefined,
          transform: undefined,
          connectionHeaders: [],
          connectionQuery: [],
          connectionBody: [],
          nullPrototype: true,
        });
      }),
      { numRuns: 50, seed: 0x5eed_2026 },
    );
  });

  // Regression: encodeURIComponent threw URIError on a lone surrogate, which JSON (and so a
  // task's QueryParameters, or a stored connection) can carry as "\ud800".
  it('when a query key or value holds a lone surrogate, then it throws only a TaskFailure', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('\ud800', '\udbff', '\udc00', '\udfff'),
        fc.boolean(),
        fc.boolean(),
        (surrogate, inKey, fromConnection) => {
          const pair: [string, string] = inKey ? [`k${surrogate}`, 'v'] : ['k', `v${surrogate}`];
          const s: Scenario = {
            endpoint: 'https://api.example.com/v1',
            method: 'GET',
            taskHeaders: undefined,
            taskQuery: fromConnection ? undefined : [pair],
            requestBody: undefined,
            transform: undefined,
            connectionHeaders: [],
            connectionQuery: fromConnection ? [pair] : [],
            connectionBody: [],
            nullPrototype: true,
          };
          try {
            buildHttpTaskRequest(parametersOf(s), connectionOf(s), { userAgent: USER_AGENT });
          } catch (error) {
            assert.ok(error instanceof TaskFailure, `threw ${String(error)}`);
          }
        },
      ),
      { numRuns: 16, seed: 0x5eed_2026 },
    );
  });
});
