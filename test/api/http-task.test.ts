import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import type { Response } from 'supertest';

import { USER_AGENT } from '../../src/broker.js';
import { INVOKE_TIMEOUT_MS } from '../../src/http-task/http-task-invoker.js';
import { HttpTaskService } from '../../src/http-task/http-task-service.js';
import { createMetrics } from '../../src/metrics.js';
import {
  createConnection,
  invokeTask,
  prepareTask,
  REQUEST_TIMEOUT_MS,
  uniqueName,
} from '../support/api-calls.js';
import { startBroker, type Harness } from '../support/broker-harness.js';
import { apiKeyInput, basicInput, oauthInput } from '../support/connection-inputs.js';
import { findFreePort } from '../support/loopback.js';
import { assertMatchesSpec } from '../support/openapi-contract.js';
import { assertProblem } from '../support/problem.js';
import {
  startScriptedTokenEndpoint,
  type ScriptedTokenEndpoint,
} from '../support/scripted-token-endpoint.js';
import {
  headerValues,
  jsonAnswer,
  startUpstreamServer,
  type UpstreamRequest,
  type UpstreamServer,
} from '../support/upstream-server.js';

// ---- fixtures and helpers -----------------------------------------------------------------

/** Every supertest call is bounded (REQUEST_TIMEOUT_MS); so is every test. */
const BOUNDED = { timeout: 15_000 } as const;
const JSON_UTF8 = 'application/json; charset=UTF-8';
const FORM = 'application/x-www-form-urlencoded';
const RANGE = 'bytes=0-262144';
/** The Range asks for bytes 0 to 262144 inclusive. */
const MAX_BODY_BYTES = 262_145;

interface TaskRequest {
  Method: string;
  Url: string;
  Headers: Record<string, string>;
  Body: string | null;
}

interface TaskOutput {
  ResponseBody: unknown;
  Headers: Record<string, string[]>;
  StatusCode: number;
  StatusText: string;
}

interface InspectionData {
  Parameters?: unknown;
  Request?: TaskRequest;
  Response?: {
    Protocol: string;
    StatusCode: number;
    StatusMessage: string;
    Headers: Record<string, string[]>;
    Body: string;
  };
}

interface TaskResult {
  Status: 'SUCCEEDED' | 'FAILED';
  Request?: TaskRequest;
  Output?: TaskOutput;
  Error?: string;
  Cause?: string;
  InspectionData?: InspectionData;
}

/** Creates a connection that must come out AUTHORIZED; answers its ARN. */
async function createAuthorized(h: Harness, body: Record<string, unknown>): Promise<string> {
  const res = await createConnection(h, body);
  assert.equal(res.status, 201, res.text);
  assert.equal((res.body as { ConnectionState?: unknown }).ConnectionState, 'AUTHORIZED');
  return String((res.body as { ConnectionArn?: unknown }).ConnectionArn);
}

async function connectionState(h: Harness, name: string): Promise<string> {
  const res = await h.request.get(`/v1/connections/${name}`).timeout(REQUEST_TIMEOUT_MS);
  assertMatchesSpec('DescribeConnection', res);
  assert.equal(res.status, 200, res.text);
  return String((res.body as { ConnectionState?: unknown }).ConnectionState);
}

function result(res: Response): TaskResult {
  assert.equal(res.status, 200, res.text);
  assert.equal(String(res.headers['content-type']).split(';')[0], 'application/json');
  return res.body as TaskResult;
}

function succeededOutput(res: Response): TaskOutput {
  const body = result(res);
  assert.equal(body.Status, 'SUCCEEDED', res.text);
  assert.ok(body.Output, res.text);
  return body.Output;
}

function preparedRequest(res: Response): TaskRequest {
  const body = result(res);
  assert.equal(body.Status, 'SUCCEEDED', res.text);
  assert.ok(body.Request, res.text);
  return body.Request;
}

/** Asserts a task failure: HTTP 200 `{Status: FAILED, Error, Cause}` with nothing else. */
function assertFailed(res: Response, error: string, cause?: RegExp): TaskResult {
  const body = result(res);
  assert.equal(body.Status, 'FAILED', res.text);
  assert.equal(body.Error, error, res.text);
  assert.equal(typeof body.Cause, 'string');
  assert.ok(String(body.Cause).length > 0, 'a Cause');
  if (cause !== undefined) assert.match(String(body.Cause), cause);
  return body;
}

function onlyRequest(upstream: UpstreamServer): UpstreamRequest {
  const requests = upstream.requests();
  assert.equal(requests.length, 1, 'exactly one request reached the upstream');
  return requests[0]!;
}

/** The single value of a header on the wire (case-insensitive name). */
function wireHeader(request: UpstreamRequest, name: string): string | undefined {
  const values = headerValues(request, name);
  assert.ok(values.length <= 1, `${name} sent once: ${JSON.stringify(values)}`);
  return values[0];
}

function metricValue(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const basic = (username: string, password: string): string =>
  `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;

/** The "Merging" example's connection (README, HTTP Tasks: prepare and invoke). */
const seedApiKeyConnection = (name: string): Record<string, unknown> =>
  apiKeyInput(
    name,
    { keyName: 'ApiKey', value: 'key_value' },
    {
      invocation: {
        BodyParameters: [{ Key: 'BodyParam', Value: 'connection_body_param' }],
        HeaderParameters: [{ Key: 'Header-Param', Value: 'connection_header_param' }],
        QueryStringParameters: [{ Key: 'QueryParam', Value: 'connection_query_param' }],
      },
    },
  );

/**
 * The invoice example's connection (README, HTTP Tasks: prepare and invoke): BASIC, no
 * invocation parameters.
 */
const seedBasicConnection = (name: string): Record<string, unknown> =>
  basicInput(name, { username: 'myUsername', password: 'myPassword' });

const oauthConnection = (name: string, tokenUrl: string): Record<string, unknown> =>
  oauthInput(name, {
    endpoint: tokenUrl,
    clientId: 'task-client',
    clientSecret: 'task-client-secret-Qw3',
  });

/**
 * The merging example's task (README, HTTP Tasks: prepare and invoke), with POST: EventBridge's
 * page defines it with GET, yet shows a POST request line.
 */
const seedMergingTask = (origin: string, connection: string): Record<string, unknown> => ({
  Authentication: { ConnectionArn: connection },
  ApiEndpoint: `${origin}/path`,
  Method: 'POST',
  Headers: { 'Request-Id': 'my_request_id', 'Header-Param': 'state_machine_header_param' },
  RequestBody: {
    Job: 'Software Engineer',
    Company: 'AnyCompany',
    BodyParam: 'state_machine_body_param',
  },
  QueryParameters: { QueryParam: 'state_machine_query_param' },
});

const SEED_MERGED_BODY =
  '{"Job":"Software Engineer","Company":"AnyCompany","BodyParam":"connection_body_param"}';

// ---- the broker under test, with its upstream and token endpoint ---------------------------

describe('HTTP Task against a loopback upstream', () => {
  let h: Harness;
  let upstream: UpstreamServer;
  let tokens: ScriptedTokenEndpoint;
  /** Names of every connection this suite creates (none may show in /metrics). */
  const names: string[] = [];
  let seedArn: string;
  let seedName: string;
  let basicName: string;
  let queryName: string;

  const named = (prefix: string): string => {
    const name = uniqueName(prefix);
    names.push(name);
    return name;
  };

  before(async () => {
    upstream = await startUpstreamServer();
    tokens = await startScriptedTokenEndpoint();
    h = await startBroker();
    seedName = named('ht-seed');
    seedArn = await createAuthorized(h, seedApiKeyConnection(seedName));
    basicName = named('ht-basic');
    await createAuthorized(h, seedBasicConnection(basicName));
    queryName = named('ht-query');
    await createAuthorized(h, {
      Name: queryName,
      AuthorizationType: 'API_KEY',
      AuthParameters: {
        ApiKeyAuthParameters: { ApiKeyName: 'X-Api-Key', ApiKeyValue: 'query-conn-key' },
        InvocationHttpParameters: {
          QueryStringParameters: [{ Key: 'QueryParam', Value: 'connection_query_param' }],
        },
      },
    });
  });
  after(async () => {
    await h.close();
    await upstream.close();
    await tokens.close();
  });
  beforeEach(() => upstream.reset());

  const task = (
    connection: string,
    extra: Record<string, unknown> = {},
  ): Record<string, unknown> => ({
    ApiEndpoint: `${upstream.origin}/api`,
    Method: 'POST',
    Authentication: { ConnectionArn: connection },
    ...extra,
  });

  // ---- 1. the README's merging example ----------------------------------------------------

  describe("the seed's merging example", () => {
    it(
      "when the seed's merging task runs with POST (the page's definition says GET, its request line POST), then the upstream receives the seed's request: connection values win, broker headers added",
      BOUNDED,
      async () => {
        const res = await invokeTask(h, seedMergingTask(upstream.origin, seedArn));
        assert.deepEqual(succeededOutput(res).ResponseBody, { ok: true });

        const sent = onlyRequest(upstream);
        assert.equal(sent.method, 'POST');
        assert.equal(sent.url, '/path?QueryParam=connection_query_param');
        assert.equal(wireHeader(sent, 'Apikey'), 'key_value');
        assert.equal(wireHeader(sent, 'Header-Param'), 'connection_header_param');
        assert.equal(wireHeader(sent, 'Request-Id'), 'my_request_id');
        assert.equal(wireHeader(sent, 'Content-Type'), JSON_UTF8);
        assert.equal(wireHeader(sent, 'Range'), RANGE);
        assert.equal(wireHeader(sent, 'User-Agent'), `${USER_AGENT}|HttpInvoke|us-east-1`);
        assert.match(String(wireHeader(sent, 'User-Agent')), /ConnectionBroker/);
        assert.equal(wireHeader(sent, 'Host'), `127.0.0.1:${upstream.port}`);
        // The page's Content-Length (79) does not match its own 86-byte body; the bytes decide.
        assert.equal(
          wireHeader(sent, 'Content-Length'),
          String(Buffer.byteLength(SEED_MERGED_BODY)),
        );
        assert.equal(sent.body.toString('utf8'), SEED_MERGED_BODY);
        const names = new Set(
          sent.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase()),
        );
        assert.deepEqual(
          [...names].sort(),
          [
            'apikey',
            'connection',
            'content-length',
            'content-type',
            'header-param',
            'host',
            'range',
            'request-id',
            'user-agent',
          ],
          'no other header reaches the upstream',
        );
      },
    );

    it(
      "when the seed's merging task is prepared, then the answer is exactly the seed's request (Method, Url, Headers, Body) and nothing is sent",
      BOUNDED,
      async () => {
        const res = await prepareTask(h, seedMergingTask(upstream.origin, seedName));
        assert.deepEqual(result(res), {
          Status: 'SUCCEEDED',
          Request: {
            Method: 'POST',
            Url: `${upstream.origin}/path?QueryParam=connection_query_param`,
            Headers: {
              'Request-Id': 'my_request_id',
              'Header-Param': 'connection_header_param',
              ApiKey: 'key_value',
              'Content-Type': JSON_UTF8,
              'User-Agent': `${USER_AGENT}|HttpInvoke|us-east-1`,
              Range: RANGE,
            },
            Body: SEED_MERGED_BODY,
          },
        });
        assert.equal(res.headers['cache-control'], 'no-store');
        assert.equal(upstream.requestCount(), 0);
      },
    );
  });

  // ---- 2. the README's invoice example ----------------------------------------------------

  describe("the seed's invoice example", () => {
    it(
      'when the invoice task runs with a BASIC connection, URL_ENCODED and INDICES, then the body is the form in object key order and Authorization is Basic',
      BOUNDED,
      async () => {
        const res = await invokeTask(
          h,
          task(basicName, {
            ApiEndpoint: `${upstream.origin}/v1/invoices`,
            Headers: { 'Content-Type': FORM },
            RequestBody: {
              customer: '1234567890',
              description: 'Monthly subscription',
              metadata: { order_details: 'monthly report data' },
            },
            Transform: {
              RequestBodyEncoding: 'URL_ENCODED',
              RequestEncodingOptions: { ArrayFormat: 'INDICES' },
            },
          }),
        );
        succeededOutput(res);
        const sent = onlyRequest(upstream);
        assert.equal(sent.method, 'POST');
        assert.equal(sent.url, '/v1/invoices');
        assert.equal(
          sent.body.toString('utf8'),
          'customer=1234567890&description=Monthly%20subscription&metadata%5Border_details%5D=monthly%20report%20data',
        );
        assert.equal(wireHeader(sent, 'Authorization'), basic('myUsername', 'myPassword'));
        assert.equal(wireHeader(sent, 'Content-Type'), FORM);
        assert.equal(wireHeader(sent, 'Range'), RANGE);
        assert.equal(wireHeader(sent, 'Host'), `127.0.0.1:${upstream.port}`);
      },
    );
  });

  // ---- 3. array formats ---------------------------------------------------------------------

  describe('URL-encoded array formats', () => {
    const arrayTask = (format: string | undefined): Record<string, unknown> =>
      task(basicName, {
        RequestBody: { array: ['a', 'b', 'c', 'd'] },
        Transform: {
          RequestBodyEncoding: 'URL_ENCODED',
          ...(format !== undefined && { RequestEncodingOptions: { ArrayFormat: format } }),
        },
      });

    const sentBody = async (format: string | undefined): Promise<string> => {
      succeededOutput(await invokeTask(h, arrayTask(format)));
      return onlyRequest(upstream).body.toString('utf8');
    };

    it(
      'when ArrayFormat is INDICES, then the body decodes to array[0]=a&array[1]=b&array[2]=c&array[3]=d with the brackets percent-encoded on the wire',
      BOUNDED,
      async () => {
        const body = await sentBody('INDICES');
        assert.equal(body, 'array%5B0%5D=a&array%5B1%5D=b&array%5B2%5D=c&array%5B3%5D=d');
        assert.equal(decodeURIComponent(body), 'array[0]=a&array[1]=b&array[2]=c&array[3]=d');
      },
    );

    it(
      'when ArrayFormat is REPEAT, then the body is array=a&array=b&array=c&array=d',
      BOUNDED,
      async () => {
        assert.equal(await sentBody('REPEAT'), 'array=a&array=b&array=c&array=d');
      },
    );

    it('when ArrayFormat is COMMAS, then the body is exactly array=a,b,c,d', BOUNDED, async () => {
      assert.equal(await sentBody('COMMAS'), 'array=a,b,c,d');
    });

    it(
      'when ArrayFormat is BRACKETS, then the body decodes to array[]=a&array[]=b&array[]=c&array[]=d',
      BOUNDED,
      async () => {
        const body = await sentBody('BRACKETS');
        assert.equal(body, 'array%5B%5D=a&array%5B%5D=b&array%5B%5D=c&array%5B%5D=d');
        assert.equal(decodeURIComponent(body), 'array[]=a&array[]=b&array[]=c&array[]=d');
      },
    );

    it('when no ArrayFormat is given, then INDICES is used', BOUNDED, async () => {
      assert.equal(
        await sentBody(undefined),
        'array%5B0%5D=a&array%5B1%5D=b&array%5B2%5D=c&array%5B3%5D=d',
      );
    });
  });

  // ---- 4. query parameters ------------------------------------------------------------------

  describe('query parameters', () => {
    it(
      'when ApiEndpoint already has a query, then QueryParameters are appended after it, URL-encoded with %20, and the connection wins on a duplicate key',
      BOUNDED,
      async () => {
        const res = await invokeTask(
          h,
          task(queryName, {
            ApiEndpoint: `${upstream.origin}/search?existing=1&x=a%20b`,
            Method: 'GET',
            QueryParameters: {
              q: 'hello world',
              QueryParam: 'state_machine_query_param',
              'sp&cial': 'a=b/é',
              tag: ['one', 'two'],
            },
          }),
        );
        succeededOutput(res);
        const sent = onlyRequest(upstream);
        assert.equal(
          sent.url,
          '/search?existing=1&x=a%20b&q=hello%20world&QueryParam=connection_query_param&sp%26cial=a%3Db%2F%C3%A9&tag=one&tag=two',
        );
        assert.equal(sent.method, 'GET');
        assert.equal(sent.body.length, 0, 'a GET without RequestBody sends no body');
        assert.equal(wireHeader(sent, 'Content-Type'), undefined);
      },
    );
  });

  // ---- 5. forbidden headers -----------------------------------------------------------------

  describe('forbidden headers', () => {
    const refused: Array<[family: string, header: string]> = [
      ['a named one (Cache-Control)', 'Cache-Control'],
      ['a named one (Host)', 'Host'],
      ['a named one (Proxy-Authorization)', 'Proxy-Authorization'],
      ['a named one in any case (cOnNeCtIoN)', 'cOnNeCtIoN'],
      ['the x-forwarded-* prefix', 'X-Forwarded-For'],
      ['the x-amz-* prefix', 'x-amz-date'],
      ['the x-amzn-* prefix', 'X-Amzn-Trace-Id'],
      ['Authorization (it belongs in the connection)', 'Authorization'],
    ];
    for (const [family, header] of refused) {
      it(
        `when the task's Headers contain ${family}, then the task FAILS with States.Runtime naming it and nothing is sent`,
        BOUNDED,
        async () => {
          const parameters = task(basicName, { Headers: { Accept: 'text/plain', [header]: 'v' } });
          const escaped = header.replace(/[-]/g, '\\-');
          const invoked = assertFailed(
            await invokeTask(h, parameters),
            'States.Runtime',
            new RegExp(escaped, 'i'),
          );
          assert.deepEqual(Object.keys(invoked).sort(), ['Cause', 'Error', 'Status']);
          assertFailed(
            await prepareTask(h, parameters),
            'States.Runtime',
            new RegExp(escaped, 'i'),
          );
          assert.equal(upstream.requestCount(), 0, 'no request reached the upstream');
        },
      );
    }

    it(
      "when the task's Headers contain every header of the seed's list, then each one alone fails the task",
      BOUNDED,
      async () => {
        const list = [
          'A-IM',
          'Accept-Charset',
          'Accept-Datetime',
          'Accept-Encoding',
          'Cache-Control',
          'Connection',
          'Content-Encoding',
          'Content-MD5',
          'Date',
          'Expect',
          'Forwarded',
          'From',
          'Host',
          'HTTP2-Settings',
          'If-Match',
          'If-Modified-Since',
          'If-None-Match',
          'If-Range',
          'If-Unmodified-Since',
          'Max-Forwards',
          'Origin',
          'Pragma',
          'Proxy-Authorization',
          'Referer',
          'Server',
          'TE',
          'Trailer',
          'Transfer-Encoding',
          'Upgrade',
          'Via',
          'Warning',
        ];
        for (const header of list) {
          assertFailed(
            await prepareTask(h, task(basicName, { Headers: { [header.toLowerCase()]: 'x' } })),
            'States.Runtime',
          );
        }
      },
    );

    it(
      'when the task sends ordinary headers, then they reach the upstream unchanged',
      BOUNDED,
      async () => {
        const res = await invokeTask(
          h,
          task(basicName, {
            Headers: { Accept: 'text/plain', 'X-Custom-Host': 'h', 'X-Count': 3 },
          }),
        );
        succeededOutput(res);
        const sent = onlyRequest(upstream);
        assert.equal(wireHeader(sent, 'Accept'), 'text/plain');
        assert.equal(wireHeader(sent, 'X-Custom-Host'), 'h');
        assert.equal(wireHeader(sent, 'X-Count'), '3');
      },
    );
  });

  describe('headers the broker owns', () => {
    it(
      "when the task sets User-Agent, Range and Content-Length, then the broker's User-Agent and Range and the body's real length are sent, once each",
      BOUNDED,
      async () => {
        succeededOutput(
          await invokeTask(
            h,
            task(basicName, {
              Headers: { 'user-agent': 'mine/1.0', range: 'bytes=0-1', 'Content-Length': '999' },
              RequestBody: { a: 1 },
            }),
          ),
        );
        const sent = onlyRequest(upstream);
        assert.equal(wireHeader(sent, 'User-Agent'), `${USER_AGENT}|HttpInvoke|us-east-1`);
        assert.equal(wireHeader(sent, 'Range'), RANGE);
        assert.equal(wireHeader(sent, 'Content-Length'), '7');
        assert.equal(sent.body.toString('utf8'), '{"a":1}');
      },
    );

    it(
      "when the task sets the connection's API key header in another case, then only the connection's key is sent",
      BOUNDED,
      async () => {
        succeededOutput(
          await invokeTask(
            h,
            task(seedName, { Headers: { apikey: 'task-guess' }, RequestBody: {} }),
          ),
        );
        const sent = onlyRequest(upstream);
        assert.deepEqual(headerValues(sent, 'ApiKey'), ['key_value']);
      },
    );
  });

  // ---- 6. string bodies ---------------------------------------------------------------------

  describe('string request bodies', () => {
    it(
      'when RequestBody is a string and the connection has body parameters, then the task FAILS with States.Runtime and nothing is sent',
      BOUNDED,
      async () => {
        const parameters = task(seedName, { RequestBody: 'plain text body' });
        assertFailed(await invokeTask(h, parameters), 'States.Runtime');
        assertFailed(await prepareTask(h, parameters), 'States.Runtime');
        assert.equal(upstream.requestCount(), 0);
      },
    );

    it(
      'when RequestBody is a string and the connection has no body parameters, then it is sent as is',
      BOUNDED,
      async () => {
        const res = await invokeTask(h, task(basicName, { RequestBody: 'raw=1&x={"a": 2}' }));
        succeededOutput(res);
        const sent = onlyRequest(upstream);
        assert.equal(sent.body.toString('utf8'), 'raw=1&x={"a": 2}');
        assert.equal(
          wireHeader(sent, 'Content-Length'),
          String(Buffer.byteLength('raw=1&x={"a": 2}')),
        );
      },
    );
  });

  // ---- 7. Content-Type ----------------------------------------------------------------------

  describe('Content-Type', () => {
    it(
      'when a JSON body has no Content-Type, then application/json; charset=UTF-8 is sent',
      BOUNDED,
      async () => {
        succeededOutput(await invokeTask(h, task(basicName, { RequestBody: { a: 1 } })));
        const sent = onlyRequest(upstream);
        assert.equal(wireHeader(sent, 'Content-Type'), JSON_UTF8);
        assert.equal(sent.body.toString('utf8'), '{"a":1}');
      },
    );

    it("when the task sets a Content-Type, then the task's value is sent", BOUNDED, async () => {
      succeededOutput(
        await invokeTask(
          h,
          task(basicName, {
            Headers: { 'content-type': 'application/vnd.api+json' },
            RequestBody: { a: 1 },
          }),
        ),
      );
      assert.equal(wireHeader(onlyRequest(upstream), 'Content-Type'), 'application/vnd.api+json');
    });

    it(
      'when the body is URL_ENCODED without a task Content-Type, then application/x-www-form-urlencoded is sent',
      BOUNDED,
      async () => {
        succeededOutput(
          await invokeTask(
            h,
            task(basicName, {
              RequestBody: { a: 'b c' },
              Transform: { RequestBodyEncoding: 'URL_ENCODED' },
            }),
          ),
        );
        const sent = onlyRequest(upstream);
        assert.equal(wireHeader(sent, 'Content-Type'), FORM);
        assert.equal(sent.body.toString('utf8'), 'a=b%20c');
      },
    );

    it(
      'when the connection and the task both set Content-Type (different case), then only the connection value is sent',
      BOUNDED,
      async () => {
        const name = named('ht-ctype');
        await createAuthorized(h, {
          Name: name,
          AuthorizationType: 'BASIC',
          AuthParameters: {
            BasicAuthParameters: { Username: 'u', Password: 'p' },
            InvocationHttpParameters: {
              HeaderParameters: [{ Key: 'content-type', Value: 'text/plain' }],
            },
          },
        });
        succeededOutput(
          await invokeTask(
            h,
            task(name, { Headers: { 'Content-Type': 'application/json' }, RequestBody: 'x' }),
          ),
        );
        assert.equal(wireHeader(onlyRequest(upstream), 'Content-Type'), 'text/plain');
      },
    );
  });

  // ---- 8. invoke output ---------------------------------------------------------------------

  describe('invoke output', () => {
    it(
      'when the upstream answers JSON, then Output has the parsed body, Headers as name to values, StatusCode and StatusText',
      BOUNDED,
      async () => {
        upstream.script({
          kind: 'respond',
          status: 201,
          statusText: 'Created It',
          headers: {
            'Content-Type': 'application/json; charset=utf-8',
            'X-Multi': ['one', 'two'],
            'Set-Cookie': ['a=1', 'b=2'],
          },
          body: JSON.stringify({ id: 7, tags: ['x'], nested: { ok: true } }),
        });
        const output = succeededOutput(await invokeTask(h, task(basicName)));
        assert.deepEqual(output.ResponseBody, { id: 7, tags: ['x'], nested: { ok: true } });
        assert.equal(output.StatusCode, 201);
        assert.equal(output.StatusText, 'Created It');
        assert.deepEqual(output.Headers['content-type'], ['application/json; charset=utf-8']);
        assert.deepEqual(output.Headers['x-multi'], ['one', 'two']);
        assert.deepEqual(output.Headers['set-cookie'], ['a=1', 'b=2']);
        assert.deepEqual(output.Headers['content-length'], [
          String(Buffer.byteLength(JSON.stringify({ id: 7, tags: ['x'], nested: { ok: true } }))),
        ]);
        for (const [name, values] of Object.entries(output.Headers)) {
          assert.equal(name, name.toLowerCase());
          assert.ok(Array.isArray(values) && values.length > 0);
        }
      },
    );

    it('when the upstream answers text, then ResponseBody is the string', BOUNDED, async () => {
      upstream.script({
        kind: 'respond',
        status: 200,
        headers: { 'Content-Type': 'text/plain; charset=utf-8' },
        body: 'hello wörld ✓',
      });
      const output = succeededOutput(await invokeTask(h, task(basicName)));
      assert.equal(output.ResponseBody, 'hello wörld ✓');
      assert.equal(output.StatusText, 'OK');
    });

    it(
      'when a JSON content type carries a body that is not JSON, or there is no content type, then ResponseBody is the text',
      BOUNDED,
      async () => {
        upstream.script(
          {
            kind: 'respond',
            status: 200,
            headers: { 'Content-Type': 'application/json' },
            body: 'not {json',
          },
          { kind: 'respond', status: 200, body: '{"a":1}' },
          {
            kind: 'respond',
            status: 200,
            headers: { 'Content-Type': 'application/problem+json' },
            body: '{"a":1}',
          },
        );
        assert.equal(
          succeededOutput(await invokeTask(h, task(basicName))).ResponseBody,
          'not {json',
        );
        assert.equal(succeededOutput(await invokeTask(h, task(basicName))).ResponseBody, '{"a":1}');
        assert.deepEqual(succeededOutput(await invokeTask(h, task(basicName))).ResponseBody, {
          a: 1,
        });
      },
    );

    it(
      'when the upstream answers 404, then the task FAILS with States.Http.StatusCode.404 and the Cause carries the response',
      BOUNDED,
      async () => {
        upstream.script(jsonAnswer(404, { message: 'no such customer' }));
        const failed = assertFailed(
          await invokeTask(h, task(basicName)),
          'States.Http.StatusCode.404',
        );
        const cause = JSON.parse(String(failed.Cause)) as TaskOutput;
        assert.deepEqual(cause.ResponseBody, { message: 'no such customer' });
        assert.equal(cause.StatusCode, 404);
        assert.equal(cause.StatusText, 'Not Found');
        assert.deepEqual(cause.Headers['content-type'], ['application/json']);
      },
    );

    it(
      'when the upstream answers 500 with an image body, then the status decides: States.Http.StatusCode.500',
      BOUNDED,
      async () => {
        upstream.script({
          kind: 'respond',
          status: 500,
          headers: { 'Content-Type': 'image/png' },
          body: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0xff, 0x00]),
        });
        assertFailed(await invokeTask(h, task(basicName)), 'States.Http.StatusCode.500');
      },
    );

    it(
      'when the upstream answers 302, then the redirect is not followed and the task FAILS with States.Http.StatusCode.302',
      BOUNDED,
      async () => {
        upstream.script({
          kind: 'respond',
          status: 302,
          headers: { Location: `${upstream.origin}/elsewhere` },
        });
        assertFailed(await invokeTask(h, task(basicName)), 'States.Http.StatusCode.302');
        assert.equal(upstream.requestCount(), 1);
      },
    );

    for (const contentType of [
      'application/octet-stream',
      'image/png',
      'video/mp4',
      'audio/mpeg',
    ]) {
      it(
        `when the upstream answers 200 with ${contentType}, then the task FAILS with States.Runtime`,
        BOUNDED,
        async () => {
          upstream.script({
            kind: 'respond',
            status: 200,
            headers: { 'Content-Type': contentType },
            body: 'plain ascii bytes',
          });
          assertFailed(await invokeTask(h, task(basicName)), 'States.Runtime', /content type/i);
        },
      );
    }

    it(
      'when the upstream answers invalid UTF-8 as text/plain, then the task FAILS with States.Runtime',
      BOUNDED,
      async () => {
        upstream.script({
          kind: 'respond',
          status: 200,
          headers: { 'Content-Type': 'text/plain' },
          body: Buffer.from([0x41, 0xff, 0xfe, 0xc3, 0x28]),
        });
        assertFailed(await invokeTask(h, task(basicName)), 'States.Runtime');
      },
    );

    it(
      'when the body is exactly 262145 bytes, then it is accepted; at 262146 bytes the task FAILS with States.Runtime',
      BOUNDED,
      async () => {
        upstream.script(
          {
            kind: 'respond',
            status: 200,
            headers: { 'Content-Type': 'text/plain' },
            body: 'a'.repeat(MAX_BODY_BYTES),
          },
          {
            kind: 'respond',
            status: 200,
            headers: { 'Content-Type': 'text/plain' },
            body: 'a'.repeat(MAX_BODY_BYTES + 1),
          },
          {
            kind: 'respond',
            status: 200,
            headers: { 'Content-Type': 'text/plain' },
            body: 'after',
          },
        );
        const output = succeededOutput(await invokeTask(h, task(basicName)));
        assert.equal(String(output.ResponseBody).length, MAX_BODY_BYTES);
        assertFailed(await invokeTask(h, task(basicName)), 'States.Runtime', /262145/);
        // The broker is fine afterwards.
        assert.equal(succeededOutput(await invokeTask(h, task(basicName))).ResponseBody, 'after');
      },
    );

    it(
      'when the task uses HEAD, then the upstream sees HEAD and the output has the headers and an empty body',
      BOUNDED,
      async () => {
        upstream.script({
          kind: 'respond',
          status: 200,
          headers: { 'Content-Type': 'application/json', 'X-Total': '42' },
          body: '{"would":"be here"}',
        });
        const output = succeededOutput(await invokeTask(h, task(basicName, { Method: 'HEAD' })));
        assert.equal(onlyRequest(upstream).method, 'HEAD');
        assert.equal(output.StatusCode, 200);
        assert.equal(output.ResponseBody, '');
        assert.deepEqual(output.Headers['x-total'], ['42']);
      },
    );
  });

  // ---- 9. socket errors ---------------------------------------------------------------------

  describe('socket errors', () => {
    it(
      'when the connection is refused, then the task FAILS with States.Http.Socket',
      BOUNDED,
      async () => {
        const port = await findFreePort();
        assertFailed(
          await invokeTask(h, task(basicName, { ApiEndpoint: `http://127.0.0.1:${port}/x` })),
          'States.Http.Socket',
          /ECONNREFUSED/,
        );
      },
    );

    it(
      'when the upstream destroys the socket before answering, then the task FAILS with States.Http.Socket',
      BOUNDED,
      async () => {
        upstream.script({ kind: 'destroy' });
        assertFailed(await invokeTask(h, task(basicName)), 'States.Http.Socket');
        assert.equal(upstream.requestCount(), 1);
      },
    );

    it(
      'when the upstream closes the socket in the middle of the body, then the task FAILS with States.Http.Socket',
      BOUNDED,
      async () => {
        upstream.script({
          kind: 'truncate',
          status: 200,
          headers: { 'Content-Type': 'text/plain' },
          declaredLength: 1000,
          body: 'only the beginning',
        });
        assertFailed(await invokeTask(h, task(basicName)), 'States.Http.Socket');
      },
    );

    it(
      'when the upstream hangs, then the cap fails the task with States.Http.Socket (cap shortened to 300 ms on a service over this broker; the default is 60 s)',
      BOUNDED,
      async () => {
        assert.equal(INVOKE_TIMEOUT_MS, 60_000);
        const service = new HttpTaskService({
          connections: h.broker.service,
          userAgent: 'test',
          allowInsecureEndpoints: true,
          metrics: createMetrics(),
          logger: pino({ level: 'silent' }),
          invokeTimeoutMs: 300,
        });
        upstream.script({ kind: 'hang' });
        const startedMs = Date.now();
        const outcome = await service.invoke(
          {
            ApiEndpoint: `${upstream.origin}/slow`,
            Method: 'GET',
            Authentication: { ConnectionArn: basicName },
          },
          { level: 'INFO', revealSecrets: false },
        );
        const elapsedMs = Date.now() - startedMs;
        assert.equal(outcome.Status, 'FAILED');
        assert.equal(outcome.Status === 'FAILED' && outcome.Error, 'States.Http.Socket');
        assert.ok(elapsedMs >= 250 && elapsedMs < 5000, `failed after ${elapsedMs} ms`);
        assert.equal(upstream.requestCount(), 1);
      },
    );
  });

  // ---- 10. OAuth: 401 refreshes the token so the Retry succeeds ---------------------------

  describe('OAuth 401 → refresh → Retry', () => {
    it(
      'when the upstream answers 401 to the token, then the invoke FAILS with States.Http.StatusCode.401 after exactly one token request, and the Retry SUCCEEDS with the new token',
      BOUNDED,
      async () => {
        const name = named('ht-oauth');
        tokens.script({ kind: 'token', accessToken: 'tok-old', expiresIn: 3600 });
        const arn = await createAuthorized(h, oauthConnection(name, tokens.url));
        const tokenRequestsBefore = tokens.requestCount();
        upstream.setDefault((request) =>
          request.headers['authorization'] === 'Bearer tok-new'
            ? jsonAnswer(200, { customers: [] })
            : jsonAnswer(401, { message: 'token expired' }),
        );
        tokens.script({ kind: 'token', accessToken: 'tok-new', expiresIn: 3600 });

        const parameters = task(arn, {
          Method: 'GET',
          ApiEndpoint: `${upstream.origin}/v1/customers`,
        });
        const first = await invokeTask(h, parameters);
        assertFailed(first, 'States.Http.StatusCode.401');
        assert.equal(tokens.requestCount(), tokenRequestsBefore + 1, 'exactly one token request');

        const retry = await invokeTask(h, parameters);
        assert.deepEqual(succeededOutput(retry).ResponseBody, { customers: [] });
        assert.equal(tokens.requestCount(), tokenRequestsBefore + 1, 'no token request on Retry');

        const seen = upstream.requests().map((r) => wireHeader(r, 'Authorization'));
        assert.deepEqual(seen, ['Bearer tok-old', 'Bearer tok-new']);
        assert.equal(await connectionState(h, name), 'AUTHORIZED');
      },
    );

    it(
      'when 30 concurrent invokes all get 401 for the same token, then exactly one token request is made and the next invoke uses the new token',
      BOUNDED,
      async () => {
        const name = named('ht-oauth-storm');
        tokens.script({ kind: 'token', accessToken: 'storm-old', expiresIn: 3600 });
        await createAuthorized(h, oauthConnection(name, tokens.url));
        const tokenRequestsBefore = tokens.requestCount();
        tokens.script({ kind: 'token', accessToken: 'storm-new', expiresIn: 3600 });

        let release!: () => void;
        const gate = new Promise<void>((resolve) => {
          release = resolve;
        });
        upstream.setDefault((request) =>
          request.headers['authorization'] === 'Bearer storm-new'
            ? jsonAnswer(200, { ok: 'new' })
            : { ...jsonAnswer(401, { message: 'expired' }), gate },
        );

        const parameters = task(name, { Method: 'GET' });
        const pending = Array.from({ length: 30 }, () => invokeTask(h, parameters));
        // Every invoke holds the old token before any 401 arrives.
        try {
          await upstream.waitForRequests(30, 8000);
        } finally {
          release();
        }
        const answers = await Promise.all(pending);
        for (const res of answers) assertFailed(res, 'States.Http.StatusCode.401');
        assert.equal(tokens.requestCount(), tokenRequestsBefore + 1, 'exactly one token request');
        assert.ok(
          upstream.requests().every((r) => wireHeader(r, 'Authorization') === 'Bearer storm-old'),
        );

        upstream.reset();
        upstream.setDefault((request) =>
          request.headers['authorization'] === 'Bearer storm-new'
            ? jsonAnswer(200, { ok: 'new' })
            : jsonAnswer(401, { message: 'expired' }),
        );
        const next = await invokeTask(h, parameters);
        assert.deepEqual(succeededOutput(next).ResponseBody, { ok: 'new' });
        assert.equal(wireHeader(onlyRequest(upstream), 'Authorization'), 'Bearer storm-new');
      },
    );

    it(
      'when the upstream answers 401 and the token endpoint is down, then the task still FAILS with States.Http.StatusCode.401 and the connection stays AUTHORIZED',
      BOUNDED,
      async () => {
        const name = named('ht-oauth-down');
        tokens.script({ kind: 'token', accessToken: 'down-old', expiresIn: 3600 });
        await createAuthorized(h, oauthConnection(name, tokens.url));
        tokens.script({ kind: 'status', status: 503 });
        upstream.script(jsonAnswer(401, { message: 'expired' }));
        assertFailed(await invokeTask(h, task(name)), 'States.Http.StatusCode.401');
        assert.equal(await connectionState(h, name), 'AUTHORIZED');
      },
    );

    it(
      'when an OAuth upstream answers 403, then the task FAILS with States.Http.StatusCode.403 and no token request is made',
      BOUNDED,
      async () => {
        const name = named('ht-oauth-403');
        tokens.script({ kind: 'token', accessToken: 'forbidden-tok', expiresIn: 3600 });
        await createAuthorized(h, oauthConnection(name, tokens.url));
        const tokenRequestsBefore = tokens.requestCount();
        upstream.script(jsonAnswer(403, { message: 'forbidden' }));
        assertFailed(await invokeTask(h, task(name)), 'States.Http.StatusCode.403');
        assert.equal(tokens.requestCount(), tokenRequestsBefore);
        assert.equal(await connectionState(h, name), 'AUTHORIZED');
      },
    );
  });

  // ---- 11. BASIC and API_KEY credentials rejected --------------------------------------------

  describe('static credentials rejected', () => {
    it(
      'when a BASIC connection gets 401, then the task FAILS with States.Http.StatusCode.401, the connection is DEAUTHORIZED and the next invoke FAILS with Events.ConnectionResource.InvalidConnectionState',
      BOUNDED,
      async () => {
        const name = named('ht-basic-401');
        await createAuthorized(h, seedBasicConnection(name));
        upstream.script(jsonAnswer(401, { message: 'bad credentials' }));
        assertFailed(await invokeTask(h, task(name)), 'States.Http.StatusCode.401');
        assert.equal(await connectionState(h, name), 'DEAUTHORIZED');

        const next = await invokeTask(h, task(name));
        assertFailed(next, 'Events.ConnectionResource.InvalidConnectionState');
        assertFailed(
          await prepareTask(h, task(name)),
          'Events.ConnectionResource.InvalidConnectionState',
        );
        assert.equal(upstream.requestCount(), 1, 'the later calls sent nothing');
      },
    );

    it(
      'when an API_KEY connection gets 407, then the connection is DEAUTHORIZED as well',
      BOUNDED,
      async () => {
        const name = named('ht-apikey-407');
        await createAuthorized(h, {
          Name: name,
          AuthorizationType: 'API_KEY',
          AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'X-Key', ApiKeyValue: 'k-407' } },
        });
        upstream.script({ kind: 'respond', status: 407 });
        assertFailed(await invokeTask(h, task(name)), 'States.Http.StatusCode.407');
        assert.equal(await connectionState(h, name), 'DEAUTHORIZED');
      },
    );
  });

  // ---- 12. inspection levels ----------------------------------------------------------------

  describe('inspectionLevel and revealSecrets', () => {
    const inspectedTask = (): Record<string, unknown> =>
      task(seedName, {
        ApiEndpoint: `${upstream.origin}/inspect`,
        Headers: { 'Request-Id': 'task-request-id' },
        QueryParameters: { page: '2' },
        RequestBody: { Job: 'Software Engineer' },
      });

    const answerText = (): void =>
      upstream.script({
        kind: 'respond',
        status: 200,
        headers: { 'Content-Type': 'application/json' },
        body: '{"raw": true}',
      });

    it('when inspectionLevel is INFO, then there is no InspectionData', BOUNDED, async () => {
      answerText();
      const body = result(await invokeTask(h, inspectedTask(), { inspectionLevel: 'INFO' }));
      assert.deepEqual(Object.keys(body).sort(), ['Output', 'Status']);
      assert.equal(
        'InspectionData' in
          result(await prepareTask(h, inspectedTask(), { inspectionLevel: 'INFO' })),
        false,
      );
    });

    it(
      'when inspectionLevel is DEBUG, then InspectionData holds only the Parameters',
      BOUNDED,
      async () => {
        answerText();
        const parameters = inspectedTask();
        const body = result(await invokeTask(h, parameters, { inspectionLevel: 'DEBUG' }));
        assert.equal(body.Status, 'SUCCEEDED');
        assert.deepEqual(body.InspectionData, { Parameters: parameters });
      },
    );

    it(
      "when inspectionLevel is TRACE, then InspectionData shows the Request with the connection's values as ***** (the task's own values as they are) and the raw Response",
      BOUNDED,
      async () => {
        answerText();
        const parameters = inspectedTask();
        const body = result(await invokeTask(h, parameters, { inspectionLevel: 'TRACE' }));
        assert.equal(body.Status, 'SUCCEEDED');
        const data = body.InspectionData;
        assert.ok(data);
        assert.deepEqual(Object.keys(data).sort(), ['Parameters', 'Request', 'Response']);
        assert.deepEqual(data.Parameters, parameters);
        assert.deepEqual(data.Request, {
          Method: 'POST',
          Url: `${upstream.origin}/inspect?page=2&QueryParam=*****`,
          Headers: {
            'Request-Id': 'task-request-id',
            'Header-Param': '*****',
            ApiKey: '*****',
            'Content-Type': JSON_UTF8,
            'User-Agent': `${USER_AGENT}|HttpInvoke|us-east-1`,
            Range: RANGE,
          },
          Body: '{"Job":"Software Engineer","BodyParam":"*****"}',
        });
        assert.ok(data.Response);
        assert.equal(data.Response.Body, '{"raw": true}');
        assert.equal(data.Response.StatusCode, 200);
        assert.equal(data.Response.StatusMessage, 'OK');
        assert.equal(data.Response.Protocol, 'HTTP/1.1');
        assert.deepEqual(data.Response.Headers['content-type'], ['application/json']);
        for (const secret of [
          'key_value',
          'connection_header_param',
          'connection_query_param',
          'connection_body_param',
        ]) {
          assert.equal(JSON.stringify(data).includes(secret), false, `${secret} is redacted`);
        }
        // The upstream got the real values.
        const sent = onlyRequest(upstream);
        assert.equal(sent.url, '/inspect?page=2&QueryParam=connection_query_param');
        assert.equal(wireHeader(sent, 'ApiKey'), 'key_value');
      },
    );

    it(
      'when inspectionLevel is TRACE and revealSecrets=true, then the Request shows the real values, as prepare returns them',
      BOUNDED,
      async () => {
        answerText();
        const parameters = inspectedTask();
        const body = result(
          await invokeTask(h, parameters, { inspectionLevel: 'TRACE', revealSecrets: 'true' }),
        );
        assert.equal(body.Status, 'SUCCEEDED');
        const expected = preparedRequest(await prepareTask(h, parameters));
        assert.deepEqual(body.InspectionData?.Request, expected);
        assert.equal(
          expected.Url,
          `${upstream.origin}/inspect?page=2&QueryParam=connection_query_param`,
        );
        assert.equal(expected.Headers['ApiKey'], 'key_value');
        assert.equal(expected.Headers['Header-Param'], 'connection_header_param');
        assert.equal(
          expected.Body,
          '{"Job":"Software Engineer","BodyParam":"connection_body_param"}',
        );
      },
    );

    it(
      'when inspectionLevel is TRACE on a prepare, then InspectionData.Request is redacted while Request is the real one',
      BOUNDED,
      async () => {
        const body = result(await prepareTask(h, inspectedTask(), { inspectionLevel: 'TRACE' }));
        assert.equal(body.Status, 'SUCCEEDED');
        assert.equal(body.Request?.Headers['ApiKey'], 'key_value');
        assert.equal(body.InspectionData?.Request?.Headers['ApiKey'], '*****');
        assert.equal(body.InspectionData?.Response, undefined);
      },
    );

    it(
      'when inspectionLevel is TRACE and the upstream answers 404, then the FAILED answer carries the Request and the Response',
      BOUNDED,
      async () => {
        upstream.script(jsonAnswer(404, { missing: true }));
        const body = assertFailed(
          await invokeTask(h, inspectedTask(), { inspectionLevel: 'TRACE' }),
          'States.Http.StatusCode.404',
        );
        assert.equal(body.InspectionData?.Response?.StatusCode, 404);
        assert.equal(body.InspectionData?.Response?.Body, '{"missing":true}');
        assert.equal(body.InspectionData?.Request?.Headers['ApiKey'], '*****');
      },
    );
  });

  // ---- 13. broker-level problems ------------------------------------------------------------

  describe('broker problems stay problem+json', () => {
    it(
      'when the connection does not exist, then prepare and invoke answer 404',
      BOUNDED,
      async () => {
        const parameters = task('ht-no-such-connection');
        assertProblem(
          await invokeTask(h, parameters),
          404,
          'ResourceNotFoundException',
          /ht-no-such-connection/,
        );
        assertProblem(
          await prepareTask(h, parameters),
          404,
          'ResourceNotFoundException',
          /ht-no-such-connection/,
        );
        const wrongUuid = seedArn.replace(/[0-9a-f-]{36}$/, '00000000-0000-0000-0000-000000000000');
        assertProblem(await invokeTask(h, task(wrongUuid)), 404, 'ResourceNotFoundException', /./);
        assert.equal(upstream.requestCount(), 0);
      },
    );

    it('when Method is missing, then invoke answers 400 ValidationException', BOUNDED, async () => {
      const { Method: _omitted, ...withoutMethod } = task(basicName);
      assertProblem(await invokeTask(h, withoutMethod), 400, 'ValidationException', /Method/i);
      assertProblem(await prepareTask(h, withoutMethod), 400, 'ValidationException', /Method/i);
      assert.equal(upstream.requestCount(), 0);
    });

    it(
      'when ApiEndpoint is not an absolute http(s) URL or carries credentials, then invoke answers 400 ValidationException',
      BOUNDED,
      async () => {
        for (const endpoint of [
          'not a url',
          `ftp://127.0.0.1:${upstream.port}/x`,
          `http://user:pass@127.0.0.1:${upstream.port}/x`,
        ]) {
          assertProblem(
            await invokeTask(h, task(basicName, { ApiEndpoint: endpoint })),
            400,
            'ValidationException',
            /ApiEndpoint/,
          );
        }
        assert.equal(upstream.requestCount(), 0);
      },
    );

    it("when Method is 'FETCH', then invoke answers 400 ValidationException", BOUNDED, async () => {
      assertProblem(
        await invokeTask(h, task(basicName, { Method: 'FETCH' })),
        400,
        'ValidationException',
        /FETCH|Method/i,
      );
      assert.equal(upstream.requestCount(), 0);
    });
  });

  // ---- 14. metrics (after everything above) -------------------------------------------------

  describe('metrics', () => {
    it(
      'when /metrics is scraped after the tasks above, then it counts SUCCEEDED and States.Http.StatusCode outcomes and names no URL or connection',
      BOUNDED,
      async () => {
        const res = await h.request.get('/metrics').timeout(REQUEST_TIMEOUT_MS);
        assert.equal(res.status, 200);
        const text = res.text;
        const succeeded = metricValue(
          text,
          'broker_http_task_invocations_total{outcome="SUCCEEDED"}',
        );
        const statusCode = metricValue(
          text,
          'broker_http_task_invocations_total{outcome="States.Http.StatusCode"}',
        );
        assert.ok(succeeded !== undefined && succeeded > 0, 'SUCCEEDED is counted');
        assert.ok(statusCode !== undefined && statusCode > 0, 'States.Http.StatusCode is counted');
        assert.ok(
          (metricValue(text, 'broker_http_task_invocations_total{outcome="States.Runtime"}') ?? 0) >
            0,
        );
        assert.ok(
          (metricValue(text, 'broker_http_task_invocations_total{outcome="States.Http.Socket"}') ??
            0) > 0,
        );
        assert.equal(text.includes('127.0.0.1'), false, 'no URL');
        assert.equal(text.includes('/inspect'), false, 'no path');
        assert.equal(text.includes('http://'), false, 'no URL');
        for (const name of names) assert.equal(text.includes(name), false, `no connection ${name}`);
        assert.equal(text.includes('States.Http.StatusCode.'), false, 'the status family only');
      },
    );
  });
});

// ---- 13b. a broker that refuses insecure endpoints -------------------------------------------

describe('HTTP Task on a broker with BROKER_ALLOW_INSECURE_ENDPOINTS=false', () => {
  let h: Harness;
  let upstream: UpstreamServer;
  const name = 'ht-secure-basic';

  before(async () => {
    upstream = await startUpstreamServer();
    h = await startBroker({ env: { BROKER_ALLOW_INSECURE_ENDPOINTS: 'false' } });
    await createAuthorized(h, seedBasicConnection(name));
  });
  after(async () => {
    await h.close();
    await upstream.close();
  });

  it(
    'when ApiEndpoint is http://, then prepare and invoke answer 400 ValidationException and nothing is sent',
    BOUNDED,
    async () => {
      const parameters = {
        ApiEndpoint: `${upstream.origin}/api`,
        Method: 'GET',
        Authentication: { ConnectionArn: name },
      };
      assertProblem(
        await invokeTask(h, parameters),
        400,
        'ValidationException',
        /ApiEndpoint.*https/,
      );
      assertProblem(
        await prepareTask(h, parameters),
        400,
        'ValidationException',
        /ApiEndpoint.*https/,
      );
      const loopbackHttps = {
        ...parameters,
        ApiEndpoint: `https://127.0.0.1:${upstream.port}/api`,
      };
      assertProblem(await invokeTask(h, loopbackHttps), 400, 'ValidationException', /ApiEndpoint/);
      assert.equal(upstream.requestCount(), 0);
    },
  );

  it(
    'when an invoke ends in a broker problem, then it is not counted as a SUCCEEDED HTTP Task',
    BOUNDED,
    async () => {
      const scrape = async (): Promise<string> => {
        const res = await h.request.get('/metrics').timeout(REQUEST_TIMEOUT_MS);
        assert.equal(res.status, 200);
        return res.text;
      };
      const series = 'broker_http_task_invocations_total{outcome="SUCCEEDED"}';
      const before = metricValue(await scrape(), series) ?? 0;
      assertProblem(
        await invokeTask(h, {
          ApiEndpoint: 'http://api.example.com/x',
          Method: 'GET',
          Authentication: { ConnectionArn: name },
        }),
        400,
        'ValidationException',
        /ApiEndpoint/,
      );
      assertProblem(
        await invokeTask(h, {
          ApiEndpoint: 'https://api.example.com/x',
          Method: 'GET',
          Authentication: { ConnectionArn: 'ht-secure-missing' },
        }),
        404,
        'ResourceNotFoundException',
        /ht-secure-missing/,
      );
      assert.equal(metricValue(await scrape(), series) ?? 0, before, 'no SUCCEEDED was counted');
    },
  );
});
