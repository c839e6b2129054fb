/**
 * The AWS Secrets Manager secret store: one secret per connection, as EventBridge keeps it.
 *
 * - Name `events!connection/<connection-name>/<secret_uuid>`; SecretString is the StoredSecret
 *   JSON (EventBridge's snake_case fields plus the `broker` block); KMS key when configured.
 * - Tagged `connection-broker:managed=true`, and with the connection's name, uuid and
 *   authorization type (EventBridge's own `aws:secretsmanager:owningService` tag is reserved for
 *   AWS services). The tags let a secret scheduled for deletion still be described.
 * - A record's version is the VersionId that holds AWSCURRENT.
 * - A secret deleted outside the broker with a recovery window reads as a DEAUTHORIZED
 *   connection (EventBridge's rule) until it is restored or the window ends.
 *
 * Names embed a uuid, so a connection is found with ListSecrets (name-prefix filter, then an exact
 * check of the `<name>/` boundary); its ARN is cached in memory and forgotten when AWS says it is
 * gone. ListSecrets is eventually consistent on AWS: a secret another broker created a moment ago
 * may not be found yet. This process's own creates are found at once through the cache.
 *
 * The adapter keeps no other state, so several brokers may share one account and region: writes
 * are compare-and-swap on AWSCURRENT, enforced by Secrets Manager itself.
 */

import {
  CONNECTION_NAME_PATTERN,
  decodeNextToken,
  encodeNextToken,
  validateLimit,
} from './store-rules.js';
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ListSecretsCommand,
  PutSecretValueCommand,
  RestoreSecretCommand,
  SecretsManagerClient,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import type {
  DescribeSecretCommandOutput,
  Filter,
  SecretListEntry,
  Tag,
} from '@aws-sdk/client-secrets-manager';
import { randomUUID } from 'node:crypto';
import { mapWithConcurrency } from '../concurrency.js';

import { BrokerError, connectionNotFound, isBrokerError } from '../errors.js';
import type {
  ListPage,
  ListQuery,
  SecretStore,
  StoredBrokerFields,
  StoredRecord,
  StoredSecret,
} from './secret-store.js';
import { isObject, isStoredSecret } from './secret-store.js';

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
const SCHEDULED_DELETION_MARK = '#scheduled-for-deletion';
/** Labels a version between PutSecretValue and the move of AWSCURRENT. */
export const PENDING_STAGE = 'BROKER_PENDING';
const CURRENT_STAGE = 'AWSCURRENT';

const NAME_PREFIX_PATTERN = /^[.\-_A-Za-z0-9]{0,64}$/;
/** Goes into the secret name, whose alphabet is ASCII letters, digits and `/_+=.@-`. */
const SECRET_UUID_PATTERN = /^[A-Za-z0-9-]{1,64}$/;
/** Secrets Manager's VersionId length limits; anything else cannot be a version we handed out. */
const VERSION_ID_PATTERN = /^[!-~]{32,64}$/;
/** ListSecrets' maximum page size. */
const LIST_PAGE_SIZE = 100;
/** Bounds a name scan at 100,000 secrets, so a misbehaving endpoint cannot page forever. */
const MAX_LIST_PAGES = 1_000;
/** Parallel secret reads per list() call. */
const READ_CONCURRENCY = 8;
/**
 * Secrets one list() call may read before it returns a short page. Only a state filter (state
 * lives inside the secret) or records deleted mid-list make reads exceed the page size.
 */
const MIN_READ_BUDGET = 100;

/**
 * Bounds one HTTP attempt, so an endpoint that swallows requests fails within seconds (and the
 * broker turns to its cache) instead of hanging: with the SDK's 3 attempts, at most about 7 s.
 */
const CONNECTION_TIMEOUT_MS = 1_000;
const REQUEST_TIMEOUT_MS = 2_000;

export interface AwsSecretsManagerStoreOptions {
  /** Defaults to a client with the SDK's standard configuration and bounded timeouts. */
  client?: SecretsManagerClient;
  region: string;
  /** KMS key (id, ARN or alias) for new secrets; AWS's `aws/secretsmanager` key when absent. */
  kmsKeyId?: string;
  /**
   * Defaults to EventBridge's `events!connection/`. Real Secrets Manager reserves `!` for AWS
   * services' own secrets, so production sets one in the alphabet customers may use.
   */
  secretNamePrefix?: string;
  /**
   * How long list() may reuse the last full listing (listVersions' or its own) instead of
   * listing again: 0 lists on every call. Changes made through this store show at once.
   */
  listingMaxAgeMs?: number;
  /** Called once per HTTP attempt to Secrets Manager (retries included), for quota metrics. */
  onApiCall?: (command: string) => void;
}

/** One Secrets Manager secret holding a connection. */
interface SecretRef {
  name: string;
  arn: string;
  secretName: string;
  createdMs: number;
  /** Scheduled for deletion. */
  deleted: boolean;
  /** As the listing saw it; reads ask DescribeSecret. */
  currentVersion: string | undefined;
}

export class AwsSecretsManagerStore implements SecretStore {
  readonly kind = 'aws';

  private readonly client: SecretsManagerClient;
  private readonly ownsClient: boolean;
  private readonly kmsKeyId: string | undefined;
  private readonly prefix: string;
  private readonly listingMaxAgeMs: number;
  /** The last full listing, canonical secret per connection, sorted by connection name. */
  private listing: { refs: SecretRef[]; takenAtMs: number } | undefined;
  readonly shared = true;

  /** Connection name → secret ARN. Only a hint: every use is checked against AWS. */
  private readonly arns = new Map<string, string>();

  constructor(options: AwsSecretsManagerStoreOptions) {
    this.ownsClient = options.client === undefined;
    this.client =
      options.client ??
      new SecretsManagerClient({
        region: options.region,
        requestHandler: {
          connectionTimeout: CONNECTION_TIMEOUT_MS,
          requestTimeout: REQUEST_TIMEOUT_MS,
          // Without it the SDK only logs a warning when requestTimeout passes, and waits on.
          throwOnRequestTimeout: true,
        },
      });
    this.kmsKeyId = options.kmsKeyId;
    this.prefix = options.secretNamePrefix ?? SECRET_NAME_PREFIX;
    this.listingMaxAgeMs = options.listingMaxAgeMs ?? 0;
    const onApiCall = options.onApiCall;
    if (onApiCall !== undefined) {
      // The deserialize step runs inside the retry loop: once per attempt.
      this.client.middlewareStack.add(
        (next, context) => (args) => {
          onApiCall(context.commandName ?? 'unknown');
          return next(args);
        },
        { step: 'deserialize', name: 'connectionBrokerApiCallCounter', override: true },
      );
    }
  }

  /** One cheap call: proves the endpoint, the credentials and the ListSecrets permission. */
  async open(): Promise<void> {
    await translated(undefined, () =>
      this.client.send(
        new ListSecretsCommand({ MaxResults: 1, Filters: managedFilters(this.prefix) }),
      ),
    );
  }

  close(): Promise<void> {
    this.arns.clear();
    if (this.ownsClient) this.client.destroy();
    return Promise.resolve();
  }

  async get(name: string): Promise<StoredRecord | undefined> {
    if (!CONNECTION_NAME_PATTERN.test(name)) return undefined;
    return translated(name, async () => {
      // The second pass follows a cached ARN that turned out stale (deleted, maybe recreated).
      for (let attempt = 0; attempt < 2; attempt += 1) {
        const arn = await this.resolveArn(name);
        if (arn === undefined) return undefined;
        const record = await this.readIfPresent(name, arn);
        if (record !== undefined) return record;
        this.arns.delete(name);
      }
      return undefined;
    });
  }

  /**
   * Sorted by connection name in code-unit order, like the file store. ListSecrets cannot give
   * that order (moto ignores SortBy; AWS sorts the full secret names, in which `a-b/…` comes
   * before `a/…`), so each call scans the matching secrets' metadata — one ListSecrets call per
   * 100 connections, no secret values — sorts it, and reads values only for the page.
   *
   * The NextToken is the last connection name examined, so pages stay correct while connections
   * come and go. A state filter (state lives inside the secret) reads at most max(limit, 100)
   * secrets per call: a page may then be short, or even empty, and still carry a NextToken.
   */
  async list(query: ListQuery): Promise<ListPage> {
    const limit = validateLimit(query.limit);
    const after = query.nextToken === undefined ? undefined : decodeNextToken(query.nextToken);
    const prefix = query.namePrefix ?? '';
    // No connection name can start with such a prefix, and ListSecrets would reject it.
    if (!NAME_PREFIX_PATTERN.test(prefix)) return { records: [] };
    return translated(undefined, async () => {
      const candidates = (await this.recentListing()).filter(
        (ref) =>
          ref.name.startsWith(prefix) &&
          (after === undefined || ref.name > after) &&
          (query.nameFilter === undefined || query.nameFilter(ref.name)),
      );
      const budget = Math.max(limit, MIN_READ_BUDGET);
      const records: StoredRecord[] = [];
      let examined = 0;
      while (records.length < limit && examined < candidates.length && examined < budget) {
        const batch = candidates.slice(
          examined,
          examined + Math.min(limit - records.length, budget - examined),
        );
        examined += batch.length;
        const read = await mapWithConcurrency(batch, READ_CONCURRENCY, (ref) =>
          this.readIfPresent(ref.name, ref.arn),
        );
        for (const record of read) {
          if (record === undefined) continue; // deleted since the scan
          if (query.state === undefined || record.secret.broker.state === query.state) {
            records.push(record);
          }
        }
      }
      const last = candidates[examined - 1];
      if (examined < candidates.length && last !== undefined) {
        return { records, nextToken: encodeNextToken(last.name) };
      }
      return { records };
    });
  }

  /**
   * One ListSecrets call per 100 secrets: their AWSCURRENT version ids come with the listing.
   * Secrets scheduled for deletion are included, under a version of their own.
   */
  async listVersions(): Promise<Map<string, string>> {
    return translated(undefined, async () => {
      const versions = new Map<string, string>();
      for (const ref of await this.fullListing()) {
        if (ref.currentVersion === undefined) continue;
        versions.set(
          ref.name,
          ref.deleted ? `${ref.currentVersion}${SCHEDULED_DELETION_MARK}` : ref.currentVersion,
        );
      }
      return versions;
    });
  }

  async create(name: string, secret: StoredSecret): Promise<StoredRecord> {
    assertValidName(name);
    const copy = structuredClone(secret);
    const secretUuid = copy.broker.secret_uuid;
    if (!SECRET_UUID_PATTERN.test(secretUuid)) {
      throw new BrokerError('ValidationException', 'The secret uuid must be a uuid.');
    }
    return translated(name, async () => {
      if ((await this.lookup(name)).length > 0) throw alreadyExists(name);
      // Our own recent create, which ListSecrets may not show yet.
      const cached = this.arns.get(name);
      if (cached !== undefined && (await this.exists(cached))) throw alreadyExists(name);
      let created;
      try {
        created = await this.client.send(
          new CreateSecretCommand({
            Name: `${this.prefix}${name}/${secretUuid}`,
            SecretString: JSON.stringify(copy),
            ClientRequestToken: randomUUID(),
            Tags: managedTags(copy.broker),
            ...(this.kmsKeyId !== undefined && { KmsKeyId: this.kmsKeyId }),
          }),
        );
      } catch (error) {
        if (errorName(error) === 'ResourceExistsException') throw alreadyExists(name, error);
        throw error;
      }
      const { ARN: arn, VersionId: version } = created;
      if (arn === undefined || version === undefined) {
        throw new BrokerError('InternalException', 'CreateSecret returned no ARN or VersionId');
      }
      // Two brokers creating one name at once each get a secret: their names differ by uuid.
      // Every reader takes the earliest-created one, so the other creator backs out here. (Best
      // effort: ListSecrets may not show the other secret yet; readers still converge on one.)
      const winner = (await this.lookup(name))[0];
      if (winner !== undefined && winner.arn !== arn) {
        await this.client
          .send(new DeleteSecretCommand({ SecretId: arn, ForceDeleteWithoutRecovery: true }))
          .catch(() => undefined);
        throw alreadyExists(name);
      }
      this.arns.set(name, arn);
      this.noteInListing(name, {
        name,
        arn,
        secretName: `${this.prefix}${name}/${secretUuid}`,
        createdMs: Date.now(),
        deleted: false,
        currentVersion: version,
      });
      return { name, version, secret: structuredClone(copy), secretArn: arn };
    });
  }

  /**
   * Compare-and-swap the way Secrets Manager's own rotation does it: write the new version under
   * a pending label, then move AWSCURRENT to it naming the version it must come from. Secrets
   * Manager rejects the move when AWSCURRENT is no longer on `expectedVersion`.
   *
   * The pending label is one fixed label, removed again after the move whether it succeeded or
   * not. A fresh label per write would spare concurrent writers from taking the label off each
   * other's versions, but every label a crashed broker leaves behind stays for good and a secret
   * may carry only 20 labels; a fixed label can be stranded at most once, and the next write moves
   * it on. Writers never depend on holding it: the move names versions by id, and the removal is
   * conditional (it fails harmlessly when another writer's PutSecretValue took the label).
   */
  async replace(
    name: string,
    secret: StoredSecret,
    expectedVersion: string,
  ): Promise<StoredRecord> {
    const copy = structuredClone(secret);
    return translated(name, async () => {
      if (!CONNECTION_NAME_PATTERN.test(name)) throw connectionNotFound(name);
      for (let attempt = 0; ; attempt += 1) {
        const arn = await this.resolveArn(name);
        if (arn === undefined) throw connectionNotFound(name);
        if (expectedVersion.endsWith(SCHEDULED_DELETION_MARK)) throw scheduledForDeletion(name);
        if (!VERSION_ID_PATTERN.test(expectedVersion)) throw concurrentModification(name);
        try {
          return await this.compareAndSwap(name, arn, copy, expectedVersion);
        } catch (error) {
          // Scheduled for deletion since it was read.
          if (errorName(error) === 'InvalidRequestException')
            throw scheduledForDeletion(name, error);
          // A stale cached ARN: look the name up again once.
          if (!isNotFound(error) || attempt > 0) throw error;
          this.arns.delete(name);
        }
      }
    });
  }

  /** Deletes without a recovery window, as EventBridge does. */
  async delete(name: string): Promise<void> {
    return translated(name, async () => {
      if (!CONNECTION_NAME_PATTERN.test(name)) throw connectionNotFound(name);
      const arns = new Set((await this.lookup(name)).map((ref) => ref.arn));
      // Our own recent create, which ListSecrets may not show yet.
      const cached = this.arns.get(name);
      if (cached !== undefined) arns.add(cached);
      this.arns.delete(name);
      this.noteInListing(name, undefined);
      let deleted = 0;
      // Normally one; more only after two brokers created the name at once.
      for (const arn of arns) {
        // A forced DeleteSecret of a missing secret succeeds, so look first. Two brokers deleting
        // at once may both succeed: Secrets Manager has no conditional delete.
        const status = await this.status(arn);
        if (status === 'absent') continue;
        try {
          await this.forceDelete(arn, status);
          deleted += 1;
        } catch (error) {
          // InvalidRequestException: already being deleted by someone else.
          if (!isNotFound(error) && errorName(error) !== 'InvalidRequestException') throw error;
        }
      }
      if (deleted === 0) throw connectionNotFound(name);
    });
  }

  /**
   * A secret scheduled for deletion (outside the broker) is deleted for good; where Secrets
   * Manager refuses to force-delete it as it stands, it is restored first.
   */
  private async forceDelete(arn: string, status: 'live' | 'scheduled'): Promise<void> {
    const force = new DeleteSecretCommand({ SecretId: arn, ForceDeleteWithoutRecovery: true });
    try {
      await this.client.send(force);
    } catch (error) {
      if (status !== 'scheduled' || errorName(error) !== 'InvalidRequestException') throw error;
      await this.client.send(new RestoreSecretCommand({ SecretId: arn }));
      await this.client.send(force);
    }
  }

  private async compareAndSwap(
    name: string,
    arn: string,
    secret: StoredSecret,
    expectedVersion: string,
  ): Promise<StoredRecord> {
    const put = await this.client.send(
      new PutSecretValueCommand({
        SecretId: arn,
        SecretString: JSON.stringify(secret),
        VersionStages: [PENDING_STAGE],
        ClientRequestToken: randomUUID(),
      }),
    );
    const version = put.VersionId;
    if (version === undefined) {
      throw new BrokerError('InternalException', 'PutSecretValue returned no VersionId');
    }
    try {
      await this.client.send(
        new UpdateSecretVersionStageCommand({
          SecretId: arn,
          VersionStage: CURRENT_STAGE,
          MoveToVersionId: version,
          RemoveFromVersionId: expectedVersion,
        }),
      );
    } catch (error) {
      // The move may have been applied before its answer was lost (a timeout, then the SDK's
      // retry is refused because AWSCURRENT already left expectedVersion): then it succeeded.
      if (await this.holdsCurrent(arn, version).catch(() => false)) {
        await this.removePendingStage(arn, version);
        this.arns.set(name, arn);
        return { name, version, secret: structuredClone(secret), secretArn: arn };
      }
      // Nothing half-written stays labelled; the unlabelled version is left for AWS to expire.
      await this.removePendingStage(arn, version);
      // The rejection of a stale RemoveFromVersionId is an InvalidParameterException; so are
      // other mistakes, so make sure AWSCURRENT really moved on before calling it a conflict.
      if (errorName(error) === 'InvalidParameterException') {
        if (!(await this.holdsCurrent(arn, expectedVersion))) {
          throw concurrentModification(name, error);
        }
      }
      throw error;
    }
    await this.removePendingStage(arn, version);
    this.arns.set(name, arn);
    return { name, version, secret: structuredClone(secret), secretArn: arn };
  }

  /** Best effort: a stranded label is harmless, and the write itself already succeeded or not. */
  private async removePendingStage(arn: string, version: string): Promise<void> {
    try {
      await this.client.send(
        new UpdateSecretVersionStageCommand({
          SecretId: arn,
          VersionStage: PENDING_STAGE,
          RemoveFromVersionId: version,
        }),
      );
    } catch {
      // Another writer's PutSecretValue took the label, or AWS is unreachable: either way no
      // caller should fail for it.
    }
  }

  private async exists(arn: string): Promise<boolean> {
    return (await this.status(arn)) !== 'absent';
  }

  private async status(arn: string): Promise<'live' | 'scheduled' | 'absent'> {
    try {
      const described = await this.client.send(new DescribeSecretCommand({ SecretId: arn }));
      return described.DeletedDate === undefined ? 'live' : 'scheduled';
    } catch (error) {
      if (isNotFound(error)) return 'absent';
      throw error;
    }
  }

  private async holdsCurrent(arn: string, version: string): Promise<boolean> {
    const described = await this.client.send(new DescribeSecretCommand({ SecretId: arn }));
    return described.VersionIdsToStages?.[version]?.includes(CURRENT_STAGE) ?? false;
  }

  private async resolveArn(name: string): Promise<string | undefined> {
    const cached = this.arns.get(name);
    if (cached !== undefined) return cached;
    const arn = (await this.lookup(name))[0]?.arn;
    if (arn !== undefined) this.arns.set(name, arn);
    return arn;
  }

  /** The connection's secrets, the one every reader uses first. */
  private async lookup(name: string): Promise<SecretRef[]> {
    const refs = await this.scanAll(`${this.prefix}${name}/`);
    // The filter is a prefix match; the exact name check keeps `a` from matching `ab`.
    return refs.filter((ref) => ref.name === name).sort(canonicalFirst);
  }

  /** One secret per connection name (the canonical one), sorted by connection name. */
  private async recentListing(): Promise<SecretRef[]> {
    const listing = this.listing;
    if (listing !== undefined && Date.now() - listing.takenAtMs < this.listingMaxAgeMs) {
      return listing.refs;
    }
    return this.fullListing();
  }

  /** Also teaches the ARN map every secret, so reads need no lookup. */
  private async fullListing(): Promise<SecretRef[]> {
    const takenAtMs = Date.now();
    const refs = await this.scan(this.prefix);
    this.listing = { refs, takenAtMs };
    for (const ref of refs) this.arns.set(ref.name, ref.arn);
    return refs;
  }

  /** Keeps the reused listing in step with this store's own creates and deletes. */
  private noteInListing(name: string, ref: SecretRef | undefined): void {
    const listing = this.listing;
    if (listing === undefined) return;
    const refs = listing.refs.filter((existing) => existing.name !== name);
    if (ref !== undefined) refs.push(ref);
    refs.sort((left, right) => compareStrings(left.name, right.name));
    this.listing = { refs, takenAtMs: listing.takenAtMs };
  }

  private async scan(secretNamePrefix: string): Promise<SecretRef[]> {
    const byName = new Map<string, SecretRef>();
    for (const ref of await this.scanAll(secretNamePrefix)) {
      const seen = byName.get(ref.name);
      if (seen === undefined || canonicalFirst(ref, seen) < 0) byName.set(ref.name, ref);
    }
    return [...byName.values()].sort((left, right) => compareStrings(left.name, right.name));
  }

  private async scanAll(secretNamePrefix: string): Promise<SecretRef[]> {
    const refs: SecretRef[] = [];
    let nextToken: string | undefined;
    for (let page = 0; page < MAX_LIST_PAGES; page += 1) {
      const result = await this.client.send(
        new ListSecretsCommand({
          Filters: managedFilters(secretNamePrefix),
          IncludePlannedDeletion: true,
          MaxResults: LIST_PAGE_SIZE,
          ...(nextToken !== undefined && { NextToken: nextToken }),
        }),
      );
      for (const entry of result.SecretList ?? []) {
        const ref = toSecretRef(entry, this.prefix);
        if (ref !== undefined) refs.push(ref);
      }
      nextToken = result.NextToken === '' ? undefined : result.NextToken;
      if (nextToken === undefined) return refs;
    }
    throw new BrokerError(
      'InternalException',
      `ListSecrets returned more than ${MAX_LIST_PAGES} pages for ${secretNamePrefix}`,
    );
  }

  /**
   * Reads the version holding AWSCURRENT, by id: moto's GetSecretValue without a version keeps
   * returning the first version after UpdateSecretVersionStage moved AWSCURRENT, and asking for
   * the id also keeps the returned version and content consistent on AWS. Undefined when gone.
   */
  private async readIfPresent(
    name: string,
    arn: string,
    rereading = false,
  ): Promise<StoredRecord | undefined> {
    try {
      const described = await this.client.send(new DescribeSecretCommand({ SecretId: arn }));
      const version = currentVersionOf(described.VersionIdsToStages);
      if (described.DeletedDate !== undefined) {
        return version === undefined
          ? undefined
          : scheduledForDeletionRecord(name, arn, version, described);
      }
      if (version === undefined) {
        throw new BrokerError(
          'InternalException',
          `the secret of connection '${name}' has no ${CURRENT_STAGE} version`,
        );
      }
      let value;
      try {
        value = await this.client.send(
          new GetSecretValueCommand({ SecretId: arn, VersionId: version }),
        );
      } catch (error) {
        // Scheduled for deletion between the two calls: read it again as such.
        if (errorName(error) === 'InvalidRequestException' && !rereading) {
          return this.readIfPresent(name, arn, true);
        }
        throw error;
      }
      return {
        name,
        version,
        secret: parseStoredSecret(value.SecretString, name),
        secretArn: arn,
      };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }
}

function managedTags(broker: StoredBrokerFields): Tag[] {
  return [
    { Key: MANAGED_TAG_KEY, Value: MANAGED_TAG_VALUE },
    { Key: CONNECTION_NAME_TAG_KEY, Value: broker.name },
    { Key: CONNECTION_UUID_TAG_KEY, Value: broker.uuid },
    { Key: AUTHORIZATION_TYPE_TAG_KEY, Value: broker.authorization_type },
  ];
}

function currentVersionOf(stages: Record<string, string[]> | undefined): string | undefined {
  return Object.entries(stages ?? {}).find(([, labels]) => labels.includes(CURRENT_STAGE))?.[0];
}

const AUTHORIZATION_TYPES = new Set<string>(['BASIC', 'API_KEY', 'OAUTH_CLIENT_CREDENTIALS']);

/**
 * A secret scheduled for deletion cannot be read, but its tags still describe the connection: it
 * reads as DEAUTHORIZED, without credentials, until it is restored. Undefined without the tags.
 */
function scheduledForDeletionRecord(
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
  if (uuid === undefined || type === undefined || !AUTHORIZATION_TYPES.has(type)) return undefined;
  if (secretUuid === undefined || !SECRET_UUID_PATTERN.test(secretUuid)) return undefined;
  // DeletedDate is when the secret will be gone, not when it was deleted.
  const goneAt = described.DeletedDate?.toISOString() ?? 'the end of its recovery window';
  const created = (described.CreatedDate ?? new Date(0)).toISOString();
  const changed = (described.LastChangedDate ?? described.CreatedDate ?? new Date(0)).toISOString();
  return {
    name,
    version: `${version}${SCHEDULED_DELETION_MARK}`,
    secretArn: arn,
    secret: {
      broker: {
        schema: 1,
        name,
        uuid,
        secret_uuid: secretUuid,
        authorization_type: type as StoredBrokerFields['authorization_type'],
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

function managedFilters(secretNamePrefix: string): Filter[] {
  return [
    { Key: 'name', Values: [secretNamePrefix] },
    { Key: 'tag-key', Values: [MANAGED_TAG_KEY] },
  ];
}

/** Undefined for secrets that are not ours: other names, no managed tag. */
function toSecretRef(entry: SecretListEntry, prefix: string): SecretRef | undefined {
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

/** `events!connection/<name>/<uuid>` → `<name>`. */
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

/** Earliest created first; the secret name breaks ties, so every broker picks the same one. */
function canonicalFirst(left: SecretRef, right: SecretRef): number {
  return left.createdMs - right.createdMs || compareStrings(left.secretName, right.secretName);
}

function compareStrings(left: string, right: string): number {
  if (left === right) return 0;
  return left < right ? -1 : 1;
}

/** Errors say what is wrong, never what the secret holds. */
function parseStoredSecret(secretString: string | undefined, name: string): StoredSecret {
  const invalid = (what: string): BrokerError =>
    new BrokerError('InternalException', `the secret of connection '${name}' ${what}`);
  if (secretString === undefined) throw invalid('has no SecretString');
  let value: unknown;
  try {
    value = JSON.parse(secretString);
  } catch {
    // No cause: JSON.parse messages quote the input.
    throw invalid('is not JSON');
  }
  if (!isStoredSecret(value)) throw invalid('is not a stored connection secret');
  if (value.broker.name !== name) throw invalid('belongs to another connection');
  return value;
}

function assertValidName(name: string): void {
  if (!CONNECTION_NAME_PATTERN.test(name)) {
    throw new BrokerError(
      'ValidationException',
      `Connection name must match ${CONNECTION_NAME_PATTERN.source}.`,
    );
  }
}

function alreadyExists(name: string, cause?: unknown): BrokerError {
  return new BrokerError('ResourceAlreadyExistsException', `Connection ${name} already exists.`, {
    cause,
  });
}

function scheduledForDeletion(name: string, cause?: unknown): BrokerError {
  return new BrokerError(
    'InvalidConnectionStateException',
    `The secret of connection '${name}' is scheduled for deletion in AWS Secrets Manager; restore it or delete the connection.`,
    { cause },
  );
}

function concurrentModification(name: string, cause?: unknown): BrokerError {
  return new BrokerError(
    'ConcurrentModificationException',
    `Connection '${name}' was modified concurrently; read it again and retry.`,
    { cause },
  );
}

// ---- Error translation: AWS SDK errors become BrokerErrors at this edge, keeping the cause. ----

const ACCESS_DENIED = new Set(['AccessDeniedException', 'AccessDenied']);
const BAD_CREDENTIALS = new Set([
  'UnrecognizedClientException',
  'InvalidClientTokenId',
  'InvalidSignatureException',
  'IncompleteSignature',
  'MissingAuthenticationToken',
  'ExpiredTokenException',
  'ExpiredToken',
  'CredentialsProviderError',
]);
const KMS_FAILURES = new Set(['DecryptionFailure', 'EncryptionFailure']);
const THROTTLING = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'RequestLimitExceeded',
]);
const NETWORK_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

async function translated<T>(name: string | undefined, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw translateError(error, name);
  }
}

function translateError(error: unknown, name: string | undefined): BrokerError {
  if (isBrokerError(error)) return error;
  const code = errorName(error);
  const options = { cause: error };
  if (code === 'ResourceNotFoundException' && name !== undefined) {
    return new BrokerError('ResourceNotFoundException', connectionNotFound(name).message, options);
  }
  if (ACCESS_DENIED.has(code)) {
    return new BrokerError(
      'ServiceUnavailableException',
      "AWS Secrets Manager denied access (check the broker's IAM policy)",
      options,
    );
  }
  if (BAD_CREDENTIALS.has(code)) {
    return new BrokerError(
      'ServiceUnavailableException',
      "AWS Secrets Manager rejected the broker's credentials (check its AWS credential configuration)",
      options,
    );
  }
  if (KMS_FAILURES.has(code)) {
    return new BrokerError(
      'ServiceUnavailableException',
      "AWS Secrets Manager could not use the KMS key (check the key policy and the broker's KMS permissions)",
      options,
    );
  }
  if (isUnavailable(error, code)) {
    return new BrokerError('ServiceUnavailableException', 'AWS Secrets Manager is unavailable', {
      ...options,
      retryAfterSeconds: 1,
    });
  }
  if (code === 'LimitExceededException') {
    return new BrokerError('LimitExceededException', 'AWS Secrets Manager quota exceeded', options);
  }
  // The error name only: AWS messages are not ours to vouch for.
  return new BrokerError('InternalException', `AWS Secrets Manager failed (${code})`, options);
}

/** Throttling, server faults and network failures, once the SDK's own retries are used up. */
function isUnavailable(error: unknown, code: string): boolean {
  if (THROTTLING.has(code) || code === 'InternalServiceError') return true;
  if (code === 'TimeoutError' || code === 'AbortError') return true;
  if (typeof error !== 'object' || error === null) return false;
  if ('$retryable' in error && isObject(error.$retryable) && error.$retryable['throttling']) {
    return true;
  }
  if ('$fault' in error && error.$fault === 'server') return true;
  if ('$metadata' in error && isObject(error.$metadata)) {
    const status = error.$metadata['httpStatusCode'];
    // Through the SDK without an HTTP response: the request never got an answer.
    return typeof status === 'number' ? status >= 500 || status === 429 : true;
  }
  return 'code' in error && typeof error.code === 'string' && NETWORK_ERROR_CODES.has(error.code);
}

function isNotFound(error: unknown): boolean {
  return errorName(error) === 'ResourceNotFoundException';
}

function errorName(error: unknown): string {
  if (isBrokerError(error)) return error.code;
  return error instanceof Error ? error.name : 'unknown error';
}
