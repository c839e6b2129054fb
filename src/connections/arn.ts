import { createHash } from 'node:crypto';

export interface ArnContext {
  region: string;
  accountId: string;
}

const CONNECTION_ARN =
  /^arn:aws[a-z-]*:events:[a-z0-9-]*:(?:[0-9]{12})?:connection\/([.\-_A-Za-z0-9]+)\/([-A-Za-z0-9]+)$/;

export function connectionArn(context: ArnContext, name: string, uuid: string): string {
  return `arn:aws:events:${context.region}:${context.accountId}:connection/${name}/${uuid}`;
}

/**
 * Secrets Manager appends six characters to a secret's ARN; the file store has no such
 * service, so it derives them from the secret's name to keep the ARN stable.
 */
export function secretArn(context: ArnContext, name: string, secretUuid: string): string {
  const secretName = `events!connection/${name}/${secretUuid}`;
  const suffix = createHash('sha256')
    .update(secretName)
    .digest('base64url')
    .replace(/[-_]/g, 'x')
    .slice(0, 6);
  return `arn:aws:secretsmanager:${context.region}:${context.accountId}:secret:${secretName}-${suffix}`;
}

export interface ConnectionReference {
  name: string;
  /** Present when the caller named the connection by ARN: it must match the stored one. */
  uuid?: string;
}

/** A path segment holds a name or a connection ARN. */
export function parseConnectionReference(nameOrArn: string): ConnectionReference {
  const match = CONNECTION_ARN.exec(nameOrArn);
  if (match === null) return { name: nameOrArn };
  return { name: match[1] ?? '', uuid: match[2] ?? '' };
}
