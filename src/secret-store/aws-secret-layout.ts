/**
 * How a connection lives in AWS Secrets Manager, as EventBridge keeps it: pure functions from
 * connections to secret names, tags, version stages and back. No calls to AWS here.
 *
 * - Name `events!connection/<connection-name>/<secret_uuid>` (the prefix is configurable);
 *   SecretString is the StoredSecret JSON (EventBridge's snake_case fields plus the `broker`
 *   block).
 * - Tagged `connection-broker:managed=true`, and with the connection's name, uuid and
 *   authorization type (EventBridge's own `aws:secretsmanager:owningService` tag is reserved for
 *   AWS services). The tags let a secret scheduled for deletion still be described.
 * - A record's version is the VersionId that holds AWSCURRENT; see "Staging labels" in the
 *   AWS Secrets Manager User Guide
 *   (https://docs.aws.amazon.com/secretsmanager/latest/userguide/whats-in-a-secret.html).
 */

import type {
  DescribeSecretCommandOutput,
  Filter,
  SecretListEntry,
  Tag,
} from '@aws-sdk/client-secrets-manager';

import { BrokerError } from '../errors.js';
import type { StoredBrokerFields, StoredRecord, StoredSecret } from './secret-store.js';
import {
  CONNECTION_NAME_PATTERN,
  compareNames,
  parseStoredSecretText,
  StoredSecretError,
} from './store-rules.js';

export const SECRET_NAME_PREFIX = 'events!connection/';
export const MANAGED_TAG_KEY = 'connection-broker:managed';
export const MANAGED_TAG_VALUE = 'true';
export const CONNECTION_NAME_TAG_KEY = 'connection-broker:connection-name';
export const CONNECTION_UUID_TAG_KEY = 'connection-broker:connection-uuid';
export const AUTHORIZATION_TYPE_TAG_KEY = 'connection-broker:authorization-type';
/**
 * Marks the version of a record read from a secret scheduled for deletion: a different version
 * than the live secret's, so caches notice, and one no write can name.
 */
export const SCHEDULED_DELETION_MARK = '#scheduled-for-deletion';
/** Labels a version between PutSecretValue and the move of AWSCURRENT. */
export const PENDING_STAGE = 'BROKER_PENDING';
export const CURRENT_STAGE = 'AWSCURRENT';

/** A list() name prefix ListSecrets accepts and a connection name can start with. */
export const NAME_PREFIX_PATTERN = /^[.\-_A-Za-z0-9]{0,64}$/;
/** Goes into the secret name, whose alphabet is ASCII letters, digits and `/_+=.@-`. */
export const SECRET_UUID_PATTERN = /^[A-Za-z0-9-]{1,64}$/;
/** Secrets Manager's VersionId length limits; anything else cannot be a version we handed out. */
export const VERSION_ID_PATTERN = /^[!-~]{32,64}$/;

const AUTHORIZATION_TYPES = new Set<string>(['BASIC', 'API_KEY', 'OAUTH_CLIENT_CREDENTIALS']);

/** One Secrets Manager secret holding a connection, as a listing describes it. */
export interface SecretRef {
  name: string;
  arn: string;
  secretName: string;
  createdMs: number;
  /** Scheduled for deletion. */
  deleted: boolean;
  /** As the listing saw it; reads ask DescribeSecret. */
  currentVersion: string | undefined;
}

export function secretNameOf(prefix: string, name: string, secretUuid: string): string {
  return `${connectionSecretsPrefix(prefix, name)}${secretUuid}`;
}

/** What every secret of the connection's name starts with (the `/` keeps `a` from `ab`). */
export function connectionSecretsPrefix(prefix: string, name: string): string {
  return `${prefix}${name}/`;
}

/** `events!connection/<name>/<uuid>` → `<name>`; undefined for any other shape. */
export function connectionNameOf(
  secretName: string,
  prefix = SECRET_NAME_PREFIX,
): string | undefined {
  if (!secretName.startsWith(prefix)) return undefined;
  const rest = secretName.slice(prefix.length);
  const slash = rest.indexOf('/');
  if (slash < 0) return undefined;
  const name = rest.slice(0, slash);
  const uuid = rest.slice(slash + 1);
  return CONNECTION_NAME_PATTERN.test(name) && SECRET_UUID_PATTERN.test(uuid) ? name : undefined;
}

export function managedTags(broker: StoredBrokerFields): Tag[] {
  return [
    { Key: MANAGED_TAG_KEY, Value: MANAGED_TAG_VALUE },
    { Key: CONNECTION_NAME_TAG_KEY, Value: broker.name },
    { Key: CONNECTION_UUID_TAG_KEY, Value: broker.uuid },
    { Key: AUTHORIZATION_TYPE_TAG_KEY, Value: broker.authorization_type },
  ];
}

/** ListSecrets filters: the broker's managed secrets whose names start with the prefix. */
export function managedFilters(secretNamePrefix: string): Filter[] {
  return [
    { Key: 'name', Values: [secretNamePrefix] },
    { Key: 'tag-key', Values: [MANAGED_TAG_KEY] },
  ];
}

/**
 * Whether `version` carries `stage`. Own keys only, and only real label lists: a version id such
 * as `constructor` must not reach Object.prototype, nor a label string match by substring.
 */
export function holdsStage(
  stages: Record<string, string[]> | undefined,
  version: string,
  stage: string,
): boolean {
  if (stages === undefined || !Object.hasOwn(stages, version)) return false;
  const labels: unknown = stages[version];
  return Array.isArray(labels) && labels.includes(stage);
}

/** The version holding AWSCURRENT, if any. */
export function currentVersionOf(stages: Record<string, string[]> | undefined): string | undefined {
  return Object.keys(stages ?? {}).find((version) => holdsStage(stages, version, CURRENT_STAGE));
}

/** Undefined for secrets that are not ours: other names, no managed tag. */
export function toSecretRef(entry: SecretListEntry, prefix: string): SecretRef | undefined {
  const { ARN: arn, Name: secretName } = entry;
  if (arn === undefined || secretName === undefined) return undefined;
  const tags = new Map((entry.Tags ?? []).map((tag) => [tag.Key, tag.Value]));
  if (tags.get(MANAGED_TAG_KEY) !== MANAGED_TAG_VALUE) return undefined;
  // Without these tags a secret scheduled for deletion cannot be described: it does not exist.
  const describable = tags.has(CONNECTION_UUID_TAG_KEY) && tags.has(AUTHORIZATION_TYPE_TAG_KEY);
  if (entry.DeletedDate !== undefined && !describable) return undefined;
  const name = connectionNameOf(secretName, prefix);
  if (name === undefined) return undefined;
  return {
    name,
    arn,
    secretName,
    createdMs: entry.CreatedDate?.getTime() ?? 0,
    deleted: entry.DeletedDate !== undefined,
    currentVersion: currentVersionOf(entry.SecretVersionsToStages),
  };
}

/**
 * Earliest created first; the secret name breaks ties, so every broker picks the same secret
 * when two brokers created one connection name at once.
 */
export function canonicalFirst(left: SecretRef, right: SecretRef): number {
  return left.createdMs - right.createdMs || compareNames(left.secretName, right.secretName);
}

/** One secret per connection name (the canonical one), sorted by connection name. */
export function canonicalPerConnection(refs: Iterable<SecretRef>): SecretRef[] {
  const byName = new Map<string, SecretRef>();
  for (const ref of refs) {
    const seen = byName.get(ref.name);
    if (seen === undefined || canonicalFirst(ref, seen) < 0) byName.set(ref.name, ref);
  }
  return [...byName.values()].sort(byConnectionName);
}

export function byConnectionName(left: SecretRef, right: SecretRef): number {
  return compareNames(left.name, right.name);
}

/** The version listVersions reports: a secret scheduled for deletion gets a version of its own. */
export function listedVersionOf(ref: SecretRef): string | undefined {
  if (ref.currentVersion === undefined) return undefined;
  return ref.deleted ? markScheduled(ref.currentVersion) : ref.currentVersion;
}

export function markScheduled(version: string): string {
  return `${version}${SCHEDULED_DELETION_MARK}`;
}

export function isMarkedScheduled(version: string): boolean {
  return version.endsWith(SCHEDULED_DELETION_MARK);
}

/** A SecretString to the connection's secret. Errors say what is wrong, never what it holds. */
export function parseStoredSecret(secretString: string | undefined, name: string): StoredSecret {
  const invalid = (what: string): BrokerError =>
    new BrokerError('InternalException', `the secret of connection '${name}' ${what}`);
  if (secretString === undefined) throw invalid('has no SecretString');
  try {
    return parseStoredSecretText(secretString, name);
  } catch (error) {
    // No cause: the problem is all there is to say, and nothing of the text may travel on.
    if (error instanceof StoredSecretError) throw invalid(error.problem);
    throw error;
  }
}

/**
 * A secret scheduled for deletion cannot be read, but its tags still describe the connection: it
 * reads as DEAUTHORIZED, without credentials, until it is restored. Undefined without the tags.
 */
export function scheduledForDeletionRecord(
  name: string,
  arn: string,
  version: string,
  described: DescribeSecretCommandOutput,
): StoredRecord | undefined {
  const tag = (key: string): string | undefined =>
    described.Tags?.find((t) => t.Key === key)?.Value;
  const uuid = tag(CONNECTION_UUID_TAG_KEY);
  const type = tag(AUTHORIZATION_TYPE_TAG_KEY);
  const secretUuid = described.Name?.slice(described.Name.lastIndexOf('/') + 1);
  if (uuid === undefined || type === undefined || !isAuthorizationType(type)) return undefined;
  if (secretUuid === undefined || !SECRET_UUID_PATTERN.test(secretUuid)) return undefined;
  // DeletedDate is when the secret will be gone, not when it was deleted.
  const goneAt = described.DeletedDate?.toISOString() ?? 'the end of its recovery window';
  const created = (described.CreatedDate ?? new Date(0)).toISOString();
  const changed = (described.LastChangedDate ?? described.CreatedDate ?? new Date(0)).toISOString();
  return {
    name,
    version: markScheduled(version),
    secretArn: arn,
    secret: {
      broker: {
        schema: 1,
        name,
        uuid,
        secret_uuid: secretUuid,
        authorization_type: type,
        state: 'DEAUTHORIZED',
        state_reason:
          'The secret of this connection was deleted in AWS Secrets Manager outside the broker ' +
          `(scheduled for deletion on ${goneAt}). Restore the secret (RestoreSecret) to use the ` +
          'connection again, or delete the connection.',
        creation_time: created,
        last_modified_time: changed,
        generation: 0,
      },
    },
  };
}

function isAuthorizationType(type: string): type is StoredBrokerFields['authorization_type'] {
  return AUTHORIZATION_TYPES.has(type);
}
