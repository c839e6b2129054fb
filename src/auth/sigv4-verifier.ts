import { timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Caller } from './authenticator.js';
import type { AwsCredential } from './policy.js';

/**
 * Verifies AWS Signature Version 4 (header form) on an incoming request: the canonical request is
 * rebuilt from what arrived and signed again with the caller's secret by @smithy/signature-v4,
 * the same code the AWS SDK signs with, and the two signatures are compared in constant time.
 */

export type SigV4ErrorCode =
  | 'MissingAuthenticationTokenException'
  | 'IncompleteSignatureException'
  | 'InvalidSignatureException'
  | 'UnrecognizedClientException';

/** A refusal in AWS's own code and words; the caller learns nothing about the secret. */
export class SigV4Error extends Error {
  constructor(
    readonly code: SigV4ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = code;
  }
}

/** What arrived, as it arrived: the path and query still percent-encoded. */
export interface SignedRequest {
  method: string;
  path: string;
  /** Without the leading `?`; empty when there is none. */
  query: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface SigV4VerifierOptions {
  /** The credential scope's region: the broker's BROKER_REGION. */
  region: string;
  /** The credential scope's service, e.g. `events`. */
  service: string;
  credentialFor: (accessKeyId: string) => AwsCredential | undefined;
  /**
   * Headers the service acts on (e.g. `x-amz-target`, which names the operation): when one
   * arrives unsigned it could be changed in transit or in a replay, so the request is refused.
   * Not every x-amz-* header: proxies add their own (CloudFront's x-amz-cf-id).
   */
  signedWhenPresent?: readonly string[];
  /** AWS allows 5 minutes between the signing time and its own clock. */
  maxSkewMs?: number;
  now?: () => number;
}

const ALGORITHM = 'AWS4-HMAC-SHA256';
const TERMINATOR = 'aws4_request';
const FIVE_MINUTES_MS = 5 * 60_000;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
const SIGNATURE = /^[0-9a-f]{64}$/;

export const SIGNATURE_MISMATCH =
  'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';
export const INVALID_TOKEN = 'The security token included in the request is invalid.';

interface ParsedAuthorization {
  accessKeyId: string;
  scopeDate: string;
  scopeRegion: string;
  scopeService: string;
  scopeTerminator: string;
  signedHeaders: string[];
  signature: string;
}

function incomplete(message: string): SigV4Error {
  return new SigV4Error('IncompleteSignatureException', message);
}

function invalid(message: string): SigV4Error {
  return new SigV4Error('InvalidSignatureException', message);
}

function parseAuthorization(header: string | undefined): ParsedAuthorization {
  if (header === undefined || header.trim() === '') {
    throw new SigV4Error('MissingAuthenticationTokenException', 'Missing Authentication Token');
  }
  const space = header.indexOf(' ');
  const algorithm = space < 0 ? header : header.slice(0, space);
  if (algorithm !== ALGORITHM) {
    throw incomplete(
      `Authorization header must use ${ALGORITHM} (Signature Version 4); got '${algorithm.slice(0, 32)}'.`,
    );
  }
  const fields = new Map<string, string>();
  for (const part of header.slice(space + 1).split(',')) {
    const equals = part.indexOf('=');
    if (equals > 0) fields.set(part.slice(0, equals).trim(), part.slice(equals + 1).trim());
  }
  const missing = ['Credential', 'Signature', 'SignedHeaders'].filter((f) => !fields.has(f));
  if (missing.length > 0) {
    throw incomplete(
      missing.map((f) => `Authorization header requires '${f}' parameter.`).join(' '),
    );
  }
  const credential = fields.get('Credential') ?? '';
  const scope = credential.split('/');
  if (scope.length !== 5) {
    throw incomplete(
      `Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '${credential.slice(0, 256)}'`,
    );
  }
  const [accessKeyId = '', scopeDate = '', scopeRegion = '', scopeService = ''] = scope;
  return {
    accessKeyId,
    scopeDate,
    scopeRegion,
    scopeService,
    scopeTerminator: scope[4] ?? '',
    signedHeaders: (fields.get('SignedHeaders') ?? '').split(';').filter((h) => h !== ''),
    signature: fields.get('Signature') ?? '',
  };
}

function parseAmzDate(value: string | string[] | undefined): { text: string; ms: number } {
  const text = typeof value === 'string' ? value : undefined;
  const match = text === undefined ? null : AMZ_DATE.exec(text);
  if (text === undefined || match === null) {
    throw incomplete(
      "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    );
  }
  const [, y, mo, d, h, mi, s] = match.map(Number) as [number, ...number[]];
  return { text, ms: Date.UTC(y!, mo! - 1, d, h, mi, s) };
}

/** `20250102T030405Z`, as AWS prints times in its skew messages. */
function basicIso(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
}

/** The raw query as @smithy/protocol-http wants it: decoded once, repeated keys as arrays. */
function parseQuery(query: string): Record<string, string | string[] | null> {
  // No prototype: a key such as `constructor` or `__proto__` is a key like any other.
  const parsed = Object.create(null) as Record<string, string | string[] | null>; // no prototype: keys come from the caller
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const equals = pair.indexOf('=');
    const key = safeDecode(equals < 0 ? pair : pair.slice(0, equals));
    const value = equals < 0 ? '' : safeDecode(pair.slice(equals + 1));
    const existing = parsed[key];
    if (existing === undefined || existing === null) parsed[key] = value;
    else parsed[key] = Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  return parsed;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value;
}

export class SigV4Verifier {
  private readonly maxSkewMs: number;
  private readonly now: () => number;

  constructor(private readonly options: SigV4VerifierOptions) {
    this.maxSkewMs = options.maxSkewMs ?? FIVE_MINUTES_MS;
    this.now = options.now ?? Date.now;
  }

  /**
   * Everything but the signature itself, from the headers alone: run before the body is read,
   * so a caller without a known access key costs no buffering.
   */
  checkHeaders(headers: IncomingHttpHeaders): void {
    this.checkedHeaders(headers);
  }

  /** The authenticated caller, or a SigV4Error in AWS's code and words. */
  async verify(request: SignedRequest): Promise<Caller> {
    const { auth, date, credential } = this.checkedHeaders(request.headers);
    const bodySha256 = createHash('sha256').update(request.body).digest('hex');
    const declared = headerText(request.headers['x-amz-content-sha256']);
    if (declared !== undefined && declared !== bodySha256) {
      throw invalid("The provided 'x-amz-content-sha256' header does not match what was computed.");
    }
    const expected = await this.signatureOf(request, auth, date.ms, credential.secretAccessKey);
    if (!SIGNATURE.test(auth.signature) || !sameHex(expected, auth.signature)) {
      throw invalid(SIGNATURE_MISMATCH);
    }
    return { principal: credential.principal, via: 'sigv4' };
  }

  private checkedHeaders(headers: IncomingHttpHeaders): {
    auth: ParsedAuthorization;
    date: { text: string; ms: number };
    credential: AwsCredential;
  } {
    const auth = parseAuthorization(headerText(headers.authorization));
    const date = parseAmzDate(headers['x-amz-date']);
    if (!auth.signedHeaders.includes('host')) {
      throw incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
    }
    if (!auth.signedHeaders.includes('x-amz-date')) {
      throw incomplete("'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.");
    }
    const unsigned = (this.options.signedWhenPresent ?? []).find(
      (name) => headers[name] !== undefined && !auth.signedHeaders.includes(name),
    );
    if (unsigned !== undefined) {
      throw incomplete(`'${unsigned}' must be a 'SignedHeader' in the AWS Authorization.`);
    }
    this.assertFresh(date);
    this.assertScope(auth, date.text);
    const credential = this.options.credentialFor(auth.accessKeyId);
    // Temporary credentials would need an STS the broker does not have.
    if (credential === undefined || headers['x-amz-security-token'] !== undefined) {
      throw new SigV4Error('UnrecognizedClientException', INVALID_TOKEN);
    }
    return { auth, date, credential };
  }

  private assertFresh(date: { text: string; ms: number }): void {
    const nowMs = this.now();
    const minutes = `${Math.round(this.maxSkewMs / 60_000)} min.`;
    if (date.ms < nowMs - this.maxSkewMs) {
      throw invalid(
        `Signature expired: ${date.text} is now earlier than ${basicIso(nowMs - this.maxSkewMs)} (${basicIso(nowMs)} - ${minutes})`,
      );
    }
    if (date.ms > nowMs + this.maxSkewMs) {
      throw invalid(
        `Signature not yet current: ${date.text} is still later than ${basicIso(nowMs + this.maxSkewMs)} (${basicIso(nowMs)} + ${minutes})`,
      );
    }
  }

  private assertScope(auth: ParsedAuthorization, amzDate: string): void {
    const day = amzDate.slice(0, 8);
    if (auth.scopeDate !== day) {
      throw invalid(
        `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${auth.scopeDate.slice(0, 16)}' != '${day}', from 'X-Amz-Date'.`,
      );
    }
    if (auth.scopeRegion !== this.options.region) {
      throw invalid(
        `Credential should be scoped to a valid region, not '${auth.scopeRegion.slice(0, 32)}'. This broker's region is '${this.options.region}'.`,
      );
    }
    if (auth.scopeService !== this.options.service) {
      throw invalid(`Credential should be scoped to correct service: '${this.options.service}'. `);
    }
    if (auth.scopeTerminator !== TERMINATOR) {
      throw invalid(
        `Credential should be scoped with a valid terminator: '${TERMINATOR}', not '${auth.scopeTerminator.slice(0, 32)}'.`,
      );
    }
  }

  private async signatureOf(
    request: SignedRequest,
    auth: ParsedAuthorization,
    signingMs: number,
    secretAccessKey: string,
  ): Promise<string> {
    // Only what the caller signed. Own properties only: a name such as `constructor` would
    // otherwise read Object.prototype. A signed header that did not arrive is refused: left
    // out, it would let anyone add names to SignedHeaders without changing the signature.
    const headers: Record<string, string> = Object.create(null) as Record<string, string>; // no prototype: keys come from the caller
    for (const name of auth.signedHeaders) {
      const value = Object.hasOwn(request.headers, name)
        ? headerText(request.headers[name])
        : undefined;
      if (typeof value !== 'string') throw invalid(SIGNATURE_MISMATCH);
      headers[name] = value;
    }
    const signer = new SignatureV4({
      credentials: { accessKeyId: auth.accessKeyId, secretAccessKey },
      region: this.options.region,
      service: this.options.service,
      sha256: Hash.bind(null, 'sha256'),
      // The payload hash goes into the canonical request, never into a header of ours.
      applyChecksum: false,
      uriEscapePath: true,
    });
    const signed = await signer.sign(
      new HttpRequest({
        method: request.method,
        protocol: 'http:',
        hostname: headers['host'] ?? '',
        path: request.path,
        query: parseQuery(request.query),
        headers,
        body: request.body,
      }),
      { signingDate: new Date(signingMs), signableHeaders: new Set(auth.signedHeaders) },
    );
    const match = /Signature=([0-9a-f]{64})/.exec(String(signed.headers['authorization']));
    if (match?.[1] === undefined) throw new Error('the signer produced no signature');
    return match[1];
  }
}

function sameHex(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === right.length && timingSafeEqual(left, right);
}
