import type { OAuthAuth, OAuthToken } from './connection.js';

/**
 * One client-credentials token request, as the domain needs it (src/oauth/token-client.ts is
 * the adapter). The outcome separates a definitive rejection (which deauthorizes a connection)
 * from an unreachable endpoint (which keeps a valid token in service).
 */
export type TokenResult =
  | { outcome: 'issued'; token: OAuthToken; durationMs: number }
  | { outcome: 'rejected'; reason: string; durationMs: number }
  | { outcome: 'unavailable'; reason: string; durationMs: number };

export interface TokenClient {
  requestToken(oauth: OAuthAuth): Promise<TokenResult>;
}
