/**
 * The broker's IAM: principals (an API key's hash, a JWT subject, or an AWS access key and its
 * secret for SigV4) and what they may do to which connections. Parsed once per policy file
 * version; lookups are constant-time in the key.
 */

import { Ajv } from 'ajv';
import { createHash, timingSafeEqual } from 'node:crypto';
import picomatch from 'picomatch';

export const ACTIONS = [
  'CreateConnection',
  'DescribeConnection',
  'ListConnections',
  'UpdateConnection',
  'DeleteConnection',
  'DeauthorizeConnection',
  'RetrieveConnectionCredentials',
  'InvokeHttpTask',
  'RevealSecrets',
  // The broker's own resources (the master key ring), granted only by a `*` resource.
  'DescribeKeys',
  'RotateKeys',
] as const;
export type Action = (typeof ACTIONS)[number];

interface StatementDocument {
  actions: string[];
  resources: string[];
}

interface PrincipalDocument {
  name: string;
  apiKeySha256?: string;
  subject?: string;
  /** An AWS-style credential for the SigV4-signed wire protocol (src/http/aws-api). */
  awsAccessKeyId?: string;
  awsSecretAccessKey?: string;
  statements: StatementDocument[];
}

interface PolicyDocument {
  principals: PrincipalDocument[];
}

const policySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['principals'],
  properties: {
    principals: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'statements'],
        // An API key or a subject (not both), or else only an AWS credential.
        oneOf: [
          { required: ['apiKeySha256'] },
          { required: ['subject'] },
          {
            required: ['awsAccessKeyId'],
            not: { anyOf: [{ required: ['apiKeySha256'] }, { required: ['subject'] }] },
          },
        ],
        dependencies: {
          awsAccessKeyId: ['awsSecretAccessKey'],
          awsSecretAccessKey: ['awsAccessKeyId'],
        },
        properties: {
          name: { type: 'string', pattern: '^[A-Za-z0-9._:@/-]{1,128}$' },
          apiKeySha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
          subject: { type: 'string', minLength: 1, maxLength: 512 },
          // IAM's AccessKeyId alphabet and lengths.
          awsAccessKeyId: { type: 'string', pattern: '^\\w{16,128}$' },
          // SigV4 needs the secret itself (it keys the HMAC): a hash cannot verify a signature.
          awsSecretAccessKey: { type: 'string', pattern: '^[!-~]{16,128}$' },
          statements: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['actions', 'resources'],
              properties: {
                actions: {
                  type: 'array',
                  minItems: 1,
                  items: { type: 'string', enum: ['*', ...ACTIONS] },
                },
                resources: {
                  type: 'array',
                  minItems: 1,
                  items: { type: 'string', pattern: '^[.\\-_A-Za-z0-9*?]{1,64}$' },
                },
              },
            },
          },
        },
      },
    },
  },
} as const;

const validatePolicy = new Ajv({ allErrors: true }).compile<PolicyDocument>(policySchema);

export interface Principal {
  readonly name: string;
  /** Whether this principal may do `action` to the connection `resource`. */
  can(action: Action, resource: string): boolean;
  /** Whether some statement grants `action` at all (listing filters by resource afterwards). */
  hasAction(action: Action): boolean;
  /** Whether a statement grants `action` on every resource (`*`): broker-wide actions need it. */
  canOnAll(action: Action): boolean;
}

interface CompiledStatement {
  actions: ReadonlySet<string>;
  matches: (resource: string) => boolean;
  coversAll: boolean;
}

class PolicyPrincipal implements Principal {
  private readonly statements: CompiledStatement[];

  constructor(
    readonly name: string,
    statements: StatementDocument[],
  ) {
    this.statements = statements.map((statement) => ({
      actions: new Set(statement.actions),
      // Connection names may start with a dot; `*` must cover them.
      matches: picomatch(statement.resources, { dot: true, nobrace: true, noextglob: true }),
      coversAll: statement.resources.includes('*'),
    }));
  }

  can(action: Action, resource: string): boolean {
    return this.statements.some(
      (s) => (s.actions.has('*') || s.actions.has(action)) && s.matches(resource),
    );
  }

  hasAction(action: Action): boolean {
    return this.statements.some((s) => s.actions.has('*') || s.actions.has(action));
  }

  canOnAll(action: Action): boolean {
    return this.statements.some(
      (s) => (s.actions.has('*') || s.actions.has(action)) && s.coversAll,
    );
  }
}

/** Everyone may do everything: the broker without a policy, on loopback or BROKER_AUTH=none. */
export const OPEN_PRINCIPAL: Principal = {
  name: 'anonymous',
  can: () => true,
  hasAction: () => true,
  canOnAll: () => true,
};

/** What a SigV4 signature is checked with, and whom it then authenticates. */
export interface AwsCredential {
  principal: Principal;
  secretAccessKey: string;
}

export class PolicyError extends Error {
  override name = 'PolicyError';
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

export class Policy {
  private constructor(
    private readonly keyed: ReadonlyArray<{ hash: Buffer; principal: Principal }>,
    private readonly bySubject: ReadonlyMap<string, Principal>,
    private readonly byAccessKeyId: ReadonlyMap<string, AwsCredential> = new Map(),
  ) {}

  /** Never echoes the document: it holds key hashes and may hold AWS secret access keys. */
  static parse(text: string, source: string): Policy {
    let document: unknown;
    try {
      document = JSON.parse(text);
    } catch {
      throw new PolicyError(`${source} is not JSON`);
    }
    if (!validatePolicy(document)) {
      const problems = (validatePolicy.errors ?? [])
        .map((error) => `${error.instancePath || '/'} ${error.message ?? 'is invalid'}`)
        .join('; ');
      throw new PolicyError(`${source} is not a valid policy: ${problems}`);
    }
    const names = new Set<string>();
    const keyed: Array<{ hash: Buffer; principal: Principal }> = [];
    const bySubject = new Map<string, Principal>();
    const byAccessKeyId = new Map<string, AwsCredential>();
    for (const p of document.principals) {
      if (names.has(p.name)) throw new PolicyError(`${source} names principal ${p.name} twice`);
      names.add(p.name);
      const principal = new PolicyPrincipal(p.name, p.statements);
      if (p.apiKeySha256 !== undefined) {
        keyed.push({ hash: Buffer.from(p.apiKeySha256, 'hex'), principal });
      }
      if (p.subject !== undefined) {
        if (bySubject.has(p.subject)) {
          throw new PolicyError(`${source} maps subject ${p.subject} to two principals`);
        }
        bySubject.set(p.subject, principal);
      }
      if (p.awsAccessKeyId !== undefined && p.awsSecretAccessKey !== undefined) {
        if (byAccessKeyId.has(p.awsAccessKeyId)) {
          throw new PolicyError(`${source} gives one awsAccessKeyId to two principals`);
        }
        byAccessKeyId.set(p.awsAccessKeyId, { principal, secretAccessKey: p.awsSecretAccessKey });
      }
    }
    return new Policy(keyed, bySubject, byAccessKeyId);
  }

  /** The principal and secret of an AWS access key id (not secret: AWS sends it in the clear). */
  awsCredentialFor(accessKeyId: string): AwsCredential | undefined {
    return this.byAccessKeyId.get(accessKeyId);
  }

  /**
   * The principal holding this API key. Every stored hash is compared, in constant time, so
   * neither the key nor which principal matched shows in the timing.
   */
  principalForKey(apiKey: string): Principal | undefined {
    const presented = createHash('sha256').update(apiKey, 'utf8').digest();
    let found: Principal | undefined;
    for (const { hash, principal } of this.keyed) {
      if (timingSafeEqual(hash, presented) && found === undefined) found = principal;
    }
    return found;
  }

  /** Whether some principal names a JWT subject (and so needs a JWT issuer configured). */
  get hasSubjects(): boolean {
    return this.bySubject.size > 0;
  }

  principalForSubject(subject: string): Principal | undefined {
    return this.bySubject.get(subject);
  }
}
