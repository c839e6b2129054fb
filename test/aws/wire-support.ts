/**
 * A real broker on a loopback port for AWS clients (SDK and CLI), which speak HTTP only, plus
 * helpers to send hand-signed or unsigned wire requests.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import {
  DescribeConnectionCommand,
  EventBridgeClient,
  EventBridgeServiceException,
  type DescribeConnectionCommandOutput,
} from '@aws-sdk/client-eventbridge';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { startBroker, type Harness, type HarnessOptions } from '../support/broker-harness.js';
import { listenOnLoopback } from '../support/loopback.js';

export const REGION = 'us-east-1';

export interface WireBroker {
  harness: Harness;
  endpoint: string;
  port: number;
  close(): Promise<void>;
}

export async function startWireBroker(options: HarnessOptions = {}): Promise<WireBroker> {
  const harness = await startBroker({
    ...options,
    env: { BROKER_REGION: REGION, BROKER_ACCOUNT_ID: '123456789012', ...options.env },
  });
  const server: Server = createServer(harness.broker.handler);
  const port = await listenOnLoopback(server);
  return {
    harness,
    port,
    endpoint: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await harness.close();
    },
  };
}

export interface Keys {
  accessKeyId: string;
  secretAccessKey: string;
  /** Temporary credentials; the broker has no STS, so it refuses them. */
  sessionToken?: string;
}

/** A random secret access key, as long as AWS's (40 characters). */
export const newSecretAccessKey = (): string => randomBytes(30).toString('base64');

export const ANY_KEYS: Keys = { accessKeyId: 'AKIAANYTHINGATALL00', secretAccessKey: 'anything' };

/** An SDK client with no retries: a test sees the first answer. */
export function eventBridge(endpoint: string, keys: Keys = ANY_KEYS): EventBridgeClient {
  return new EventBridgeClient({
    endpoint,
    region: REGION,
    credentials: keys,
    maxAttempts: 1,
  });
}

export interface WireAnswer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

export interface WireCall {
  target?: string;
  body?: string;
  keys?: Keys;
  /** Default now; sign at another time to test clock skew. */
  signingDate?: Date;
  region?: string;
  service?: string;
  /** Change the request after signing (e.g. the body), to test tampering. */
  tamper?: (request: HttpRequest) => void;
  unsigned?: boolean;
  /** Headers sent but left out of the signature (as awscurl leaves out X-Amz-Target). */
  unsignedHeaders?: string[];
  contentType?: string;
}

/** Sends one wire request as an AWS client would (SigV4 by @smithy/signature-v4), or unsigned. */
export async function callWire(endpoint: string, call: WireCall): Promise<WireAnswer> {
  const url = new URL(endpoint);
  const body = call.body ?? '{}';
  const headers: Record<string, string> = {
    host: url.host,
    'content-type': call.contentType ?? 'application/x-amz-json-1.1',
  };
  if (call.target !== undefined) headers['x-amz-target'] = call.target;
  let request = new HttpRequest({
    method: 'POST',
    protocol: url.protocol,
    hostname: url.hostname,
    port: Number(url.port),
    path: '/',
    headers,
    body,
  });
  if (call.unsigned !== true) {
    const signer = new SignatureV4({
      credentials: call.keys ?? ANY_KEYS,
      region: call.region ?? REGION,
      service: call.service ?? 'events',
      sha256: Hash.bind(null, 'sha256'),
      applyChecksum: false,
    });
    request = (await signer.sign(request, {
      ...(call.signingDate !== undefined && { signingDate: call.signingDate }),
      ...(call.unsignedHeaders !== undefined && {
        unsignableHeaders: new Set(call.unsignedHeaders),
      }),
    })) as HttpRequest;
  }
  call.tamper?.(request);
  const { host: _host, ...sent } = request.headers;
  const response = await fetch(`${endpoint}/`, {
    method: 'POST',
    headers: sent,
    body: request.body as string,
  });
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>),
  };
}

/** The SDK's error, with the code AWS put in `__type` and the HTTP status. */
export async function sdkError(
  promise: Promise<unknown>,
): Promise<{ name: string; message: string; status: number | undefined }> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof EventBridgeServiceException, `not an SDK error: ${String(error)}`);
    return { name: error.name, message: error.message, status: error.$metadata.httpStatusCode };
  }
  assert.fail('the call succeeded');
}

/** Describes `name` every 50 ms until it is in `state` (at most 10 s); answers that Describe. */
export async function waitForState(
  client: EventBridgeClient,
  name: string,
  state: string,
): Promise<DescribeConnectionCommandOutput> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const described = await client.send(new DescribeConnectionCommand({ Name: name }));
    if (described.ConnectionState === state) return described;
    if (Date.now() > deadline) {
      assert.fail(`${name} stayed ${String(described.ConnectionState)}, not ${state}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
