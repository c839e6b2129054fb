import { createRemoteJWKSet, errors, jwtVerify, type JWTVerifyGetKey } from 'jose';

export interface JwtVerifierOptions {
  issuer: string;
  audience: string;
  /** Defaults to the jwks_uri of the issuer's OpenID discovery document. */
  jwksUrl?: string;
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 5_000;

/** jose's answers about the token itself; any other failure (the JWKS unreachable) is ours. */
const INVALID_TOKEN = new Set([
  'ERR_JWT_EXPIRED',
  'ERR_JWT_CLAIM_VALIDATION_FAILED',
  'ERR_JWT_INVALID',
  'ERR_JWS_INVALID',
  'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
  'ERR_JWKS_NO_MATCHING_KEY',
  'ERR_JWKS_MULTIPLE_MATCHING_KEYS',
  'ERR_JOSE_ALG_NOT_ALLOWED',
  'ERR_JOSE_NOT_SUPPORTED',
  'ERR_JWK_INVALID',
]);

/**
 * Verifies callers' JWTs (a Kubernetes projected service-account token, or any OIDC issuer's):
 * signature against the issuer's JWKS (fetched and cached by jose, refetched on an unknown key
 * id), issuer, audience and expiry. Answers the subject, or undefined for any invalid token.
 */
export class JwtVerifier {
  private keys: Promise<JWTVerifyGetKey> | undefined;

  constructor(private readonly options: JwtVerifierOptions) {}

  async subjectOf(token: string): Promise<string | undefined> {
    let keys: JWTVerifyGetKey;
    try {
      keys = await this.keySet();
    } catch (error) {
      this.keys = undefined; // try discovery again on the next call
      throw error;
    }
    try {
      const { payload } = await jwtVerify(token, keys, {
        issuer: this.options.issuer,
        audience: this.options.audience,
        // A token without an expiry would be good forever.
        requiredClaims: ['exp', 'sub'],
      });
      return typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : undefined;
    } catch (error) {
      if (error instanceof errors.JOSEError && INVALID_TOKEN.has(error.code)) return undefined;
      throw error;
    }
  }

  private keySet(): Promise<JWTVerifyGetKey> {
    this.keys ??= this.jwksUrl().then((url) =>
      createRemoteJWKSet(new URL(url), {
        timeoutDuration: this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      }),
    );
    return this.keys;
  }

  private async jwksUrl(): Promise<string> {
    if (this.options.jwksUrl !== undefined) return this.options.jwksUrl;
    const discovery = `${this.options.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    const response = await fetch(discovery, {
      signal: AbortSignal.timeout(this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS),
      redirect: 'error',
    });
    if (!response.ok) throw new Error(`OpenID discovery answered HTTP ${response.status}`);
    const document = (await response.json()) as { jwks_uri?: unknown }; // only read as unknown, checked below
    if (typeof document.jwks_uri !== 'string') {
      throw new Error('the OpenID discovery document has no jwks_uri');
    }
    return document.jwks_uri;
  }
}
