/**
 * A loopback JWT issuer for caller-authentication tests: an ES256 key pair (jose), its public key
 * served as a JWKS at `/jwks`, an OpenID discovery document at `/.well-known/openid-configuration`
 * naming that JWKS, and `sign()` to mint tokens as the issuer would.
 */

import { createServer } from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { listenOnLoopback } from './loopback.js';

export interface TokenClaims {
  sub?: string;
  /** Default: the server's issuer. */
  iss?: string;
  /** Default: `connection-broker`. */
  aud?: string;
  /** Seconds since the epoch; default now + 300. `null` omits the claim. */
  exp?: number | null;
  /** Default: now. */
  iat?: number;
}

export interface SignOptions {
  /**
   * A forged token, its header naming the served key's id (or `kid`):
   * - `foreign-key`: ES256 with a key the JWKS does not hold;
   * - `hs256-public-key`: HS256 keyed with the served public JWK (the algorithm confusion);
   * - `alg-none`: `{"alg":"none"}` and a made-up signature segment.
   */
  forge?: 'foreign-key' | 'hs256-public-key' | 'alg-none';
  /** The kid put in the header; default the served key's. */
  kid?: string;
}

export interface JwksServer {
  /** `http://127.0.0.1:PORT`, no trailing slash: the `iss` of every token signed here. */
  issuer: string;
  /** `${issuer}/jwks` */
  jwksUrl: string;
  /** Requests per path (`/jwks`, `/.well-known/openid-configuration`, …). */
  hits(path: string): number;
  sign(claims: TokenClaims, options?: SignOptions): Promise<string>;
  close(): Promise<void>;
}

export const DEFAULT_AUDIENCE = 'connection-broker';
const KID = 'test-key-1';

export async function startJwksServer(): Promise<JwksServer> {
  const served = await generateKeyPair('ES256');
  const foreign = await generateKeyPair('ES256');
  const publicJwk: JWK = {
    ...(await exportJWK(served.publicKey)),
    kid: KID,
    alg: 'ES256',
    use: 'sig',
  };
  const counts = new Map<string, number>();
  let issuer = '';

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    counts.set(path, (counts.get(path) ?? 0) + 1);
    const json = (value: unknown): void => {
      const body = JSON.stringify(value);
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    };
    if (req.method === 'GET' && path === '/jwks') {
      json({ keys: [publicJwk] });
    } else if (req.method === 'GET' && path === '/.well-known/openid-configuration') {
      json({
        issuer,
        jwks_uri: `${issuer}/jwks`,
        id_token_signing_alg_values_supported: ['ES256'],
      });
    } else {
      res.writeHead(404, { 'content-length': 0 });
      res.end();
    }
  });
  const port = await listenOnLoopback(server);
  issuer = `http://127.0.0.1:${port}`;

  const sign = async (claims: TokenClaims, options: SignOptions = {}): Promise<string> => {
    const now = Math.floor(Date.now() / 1000);
    const payload: Record<string, unknown> = {};
    if (claims.sub !== undefined) payload['sub'] = claims.sub;
    const kid = options.kid ?? KID;
    const alg = options.forge === 'hs256-public-key' ? 'HS256' : 'ES256';
    const jwt = new SignJWT(payload)
      .setProtectedHeader({ alg, typ: 'JWT', kid })
      .setIssuer(claims.iss ?? issuer)
      .setAudience(claims.aud ?? DEFAULT_AUDIENCE)
      .setIssuedAt(claims.iat ?? now);
    const exp = claims.exp === undefined ? now + 300 : claims.exp;
    if (exp !== null) jwt.setExpirationTime(exp);
    if (options.forge === 'foreign-key') return jwt.sign(foreign.privateKey);
    if (options.forge === 'hs256-public-key') {
      return jwt.sign(new TextEncoder().encode(JSON.stringify(publicJwk)));
    }
    if (options.forge === 'alg-none') {
      // jose will not sign with "none": reuse the claims of a real token under a new header.
      const [, claimsSegment] = (await jwt.sign(served.privateKey)).split('.');
      const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT', kid })).toString(
        'base64url',
      );
      return `${header}.${claimsSegment ?? ''}.AAAA`;
    }
    return jwt.sign(served.privateKey);
  };

  let closing: Promise<void> | undefined;
  return {
    issuer,
    jwksUrl: `${issuer}/jwks`,
    hits: (path) => counts.get(path) ?? 0,
    sign,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
