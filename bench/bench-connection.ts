/**
 * The connection the bench loads, created through the broker's HTTP API by bench/run.ts, not by
 * the broker's own process: a server that has also been an HTTP client (fetch or node:http)
 * runs its server path 25-40% slower per request afterwards, measured on a bare node:http
 * server, which would charge the bench's set-up to the broker.
 */
export const BENCH_CONNECTION = 'bench-api';
export const AUTHORIZATION_PATH = `/v1/connections/${BENCH_CONNECTION}/authorization`;

/** An API key plus invocation parameters, so the answer is ~350 bytes like a real one. */
const createRequest = {
  Name: BENCH_CONNECTION,
  AuthorizationType: 'API_KEY',
  AuthParameters: {
    ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: `bench_${'k'.repeat(32)}` },
    InvocationHttpParameters: {
      HeaderParameters: [
        { Key: 'Accept', Value: 'application/json', IsValueSecret: false },
        { Key: 'X-Api-Version', Value: '2024-06-20', IsValueSecret: false },
      ],
      QueryStringParameters: [{ Key: 'region', Value: 'eu-west-1', IsValueSecret: false }],
    },
  },
};

/** Creates the connection and fills the cache; returns the exact body the broker answers. */
export async function createBenchConnection(baseUrl: string): Promise<string> {
  const created = await fetch(`${baseUrl}/v1/connections`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(createRequest),
  });
  if (created.status !== 201) {
    throw new Error(`creating ${BENCH_CONNECTION}: ${created.status} ${await created.text()}`);
  }
  // The first GET goes through express and fills the cache; the second is a hot-path hit.
  const first = await fetch(`${baseUrl}${AUTHORIZATION_PATH}`);
  const firstBody = await first.text();
  const cached = await fetch(`${baseUrl}${AUTHORIZATION_PATH}`);
  const body = await cached.text();
  if (first.status !== 200 || cached.status !== 200 || body !== firstBody) {
    throw new Error(`authorization: ${first.status}/${cached.status} ${firstBody} | ${body}`);
  }
  return body;
}
