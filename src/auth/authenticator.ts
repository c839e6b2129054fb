import { BrokerError, unauthorized } from '../errors.js';
import type { JwtVerifier } from './jwt-verifier.js';
import { OPEN_PRINCIPAL, type AwsCredential, type Principal } from './policy.js';
import type { PolicySource } from './policy-source.js';

export interface Caller {
  principal: Principal;
  via: 'open' | 'api-key' | 'jwt' | 'sigv4';
}

const OPEN_CALLER: Caller = { principal: OPEN_PRINCIPAL, via: 'open' };
// RFC 9110: the scheme name is case-insensitive.
const BEARER = /^Bearer +([!-~]{1,8192})$/i;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** Who is calling: an API key from the policy, a JWT subject from the policy, or nobody. */
export class Authenticator {
  constructor(
    private readonly policy: PolicySource | undefined,
    private readonly jwt: JwtVerifier | undefined,
  ) {}

  get open(): boolean {
    return this.policy === undefined;
  }

  /** For SigV4 callers (src/http/aws-api): the policy's AWS credential with this access key id. */
  awsCredential(accessKeyId: string): AwsCredential | undefined {
    return this.policy?.policy.awsCredentialFor(accessKeyId);
  }

  /**
   * Without I/O: the caller when it is open mode or an API key, undefined when it needs the
   * asynchronous path (a JWT) or is not authenticated (the express path answers 401).
   */
  callerNow(authorization: string | undefined): Caller | undefined {
    if (this.policy === undefined) return OPEN_CALLER;
    const token = bearerToken(authorization);
    if (token === undefined) return undefined;
    if (this.jwt !== undefined && JWT_SHAPE.test(token)) return undefined;
    const principal = this.policy.policy.principalForKey(token);
    return principal === undefined ? undefined : { principal, via: 'api-key' };
  }

  /** Throws UnauthorizedException when nobody is authenticated. */
  async caller(authorization: string | undefined): Promise<Caller> {
    const now = this.callerNow(authorization);
    if (now !== undefined) return now;
    const token = bearerToken(authorization);
    if (token === undefined || this.policy === undefined || this.jwt === undefined) {
      throw unauthorized();
    }
    if (!JWT_SHAPE.test(token)) throw unauthorized();
    let subject: string | undefined;
    try {
      subject = await this.jwt.subjectOf(token);
    } catch (error) {
      throw new BrokerError(
        'ServiceUnavailableException',
        'The JWT issuer cannot be reached to verify the token.',
        { cause: error, retryAfterSeconds: 5 },
      );
    }
    const principal =
      subject === undefined ? undefined : this.policy.policy.principalForSubject(subject);
    if (principal === undefined) throw unauthorized();
    return { principal, via: 'jwt' };
  }
}

function bearerToken(authorization: string | undefined): string | undefined {
  if (authorization === undefined) return undefined;
  return BEARER.exec(authorization)?.[1];
}
