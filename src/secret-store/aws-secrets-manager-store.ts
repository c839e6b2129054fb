/**
 * The AWS Secrets Manager secret store: one secret per connection, as EventBridge keeps it.
 * This module is the SecretStore port's operations; the pieces it stands on are
 *
 * - aws-secret-layout.ts: secret names, tags, version stages, the SecretString's shape;
 * - aws-listing-cache.ts: finding a connection's secret (ListSecrets, listing and ARN caches);
 * - aws-staged-write.ts: compare-and-swap through staging labels;
 * - aws-secret-by-arn.ts: reading, describing and deleting one secret;
 * - aws-error-translation.ts: SDK errors to BrokerErrors;
 * - aws-secrets-manager-client.ts: the SDK client's timeouts and call counter.
 *
 * The adapter keeps no state beyond caches it checks against AWS, so several brokers may share
 * one account and region: writes are compare-and-swap on AWSCURRENT, enforced by Secrets Manager
 * itself. A secret deleted outside the broker with a recovery window reads as a DEAUTHORIZED
 * connection (EventBridge's rule) until it is restored or the window ends.
 */

import {
  CreateSecretCommand,
  DeleteSecretCommand,
  ListSecretsCommand,
} from '@aws-sdk/client-secrets-manager';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { randomUUID } from 'node:crypto';

import { mapWithConcurrency } from '../concurrency.js';
import {
  BrokerError,
  concurrentModification,
  connectionAlreadyExists,
  connectionNotFound,
  secretScheduledForDeletion,
} from '../errors.js';
import { errorName, isNotFound, translated } from './aws-error-translation.js';
import { SecretListingCache } from './aws-listing-cache.js';
import { forceDeleteSecret, readSecret, secretStatus } from './aws-secret-by-arn.js';
import {
  isMarkedScheduled,
  listedVersionOf,
  managedFilters,
  managedTags,
  NAME_PREFIX_PATTERN,
  SECRET_NAME_PREFIX,
  SECRET_UUID_PATTERN,
  secretNameOf,
  VERSION_ID_PATTERN,
} from './aws-secret-layout.js';
import { boundedSecretsManagerClient, countApiCalls } from './aws-secrets-manager-client.js';
import { swapCurrentVersion } from './aws-staged-write.js';
import type {
  ListPage,
  ListQuery,
  SecretStore,
  StoredRecord,
  StoredSecret,
} from './secret-store.js';
import {
  assertValidName,
  CONNECTION_NAME_PATTERN,
  decodeNextToken,
  encodeNextToken,
  validateLimit,
} from './store-rules.js';

/** Parallel secret reads per list() call. */
const READ_CONCURRENCY = 8;
/**
 * Secrets one list() call may read before it returns a short page. Only a state filter (state
 * lives inside the secret) or records deleted mid-list make reads exceed the page size.
 */
const MIN_READ_BUDGET = 100;

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
  /** Milliseconds since the epoch; ages the listing and dates this store's own creates. */
  now?: () => number;
}

export class AwsSecretsManagerStore implements SecretStore {
  readonly kind = 'aws';
  readonly shared = true;

  private readonly client: SecretsManagerClient;
  private readonly ownsClient: boolean;
  private readonly kmsKeyId: string | undefined;
  private readonly prefix: string;
  private readonly secrets: SecretListingCache;

  constructor(options: AwsSecretsManagerStoreOptions) {
    this.ownsClient = options.client === undefined;
    this.client = options.client ?? boundedSecretsManagerClient(options.region);
    this.kmsKeyId = options.kmsKeyId;
    this.prefix = options.secretNamePrefix ?? SECRET_NAME_PREFIX;
    this.secrets = new SecretListingCache({
      listPage: (input) => this.client.send(new ListSecretsCommand(input)),
      prefix: this.prefix,
      maxAgeMs: options.listingMaxAgeMs ?? 0,
      now: options.now ?? Date.now,
    });
    if (options.onApiCall !== undefined) countApiCalls(this.client, options.onApiCall);
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
    this.secrets.forgetArns();
    if (this.ownsClient) this.client.destroy();
    return Promise.resolve();
  }

  async get(name: string): Promise<StoredRecord | undefined> {
    if (!CONNECTION_NAME_PATTERN.test(name)) return undefined;
    return translated(name, async () => {
      // The second pass follows a cached ARN that turned out stale (deleted, maybe recreated).
      for (let attempt = 0; attempt < 2; attempt += 1) {
        const arn = await this.secrets.resolveArn(name);
        if (arn === undefined) return undefined;
        const record = await readSecret(this.client, name, arn);
        if (record !== undefined) return record;
        this.secrets.forgetArn(name);
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
      const candidates = (await this.secrets.recent()).filter(
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
          readSecret(this.client, ref.name, ref.arn),
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
      for (const ref of await this.secrets.full()) {
        const version = listedVersionOf(ref);
        if (version !== undefined) versions.set(ref.name, version);
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
    const secretName = secretNameOf(this.prefix, name, secretUuid);
    return translated(name, async () => {
      if ((await this.secrets.lookup(name)).length > 0) throw connectionAlreadyExists(name);
      // Our own recent create, which ListSecrets may not show yet.
      const cached = this.secrets.arnHint(name);
      if (cached !== undefined && (await secretStatus(this.client, cached)) !== 'absent')
        throw connectionAlreadyExists(name);
      let created;
      try {
        created = await this.client.send(
          new CreateSecretCommand({
            Name: secretName,
            SecretString: JSON.stringify(copy),
            ClientRequestToken: randomUUID(),
            Tags: managedTags(copy.broker),
            ...(this.kmsKeyId !== undefined && { KmsKeyId: this.kmsKeyId }),
          }),
        );
      } catch (error) {
        if (errorName(error) === 'ResourceExistsException') {
          throw connectionAlreadyExists(name, error);
        }
        throw error;
      }
      const { ARN: arn, VersionId: version } = created;
      if (arn === undefined || version === undefined) {
        throw new BrokerError('InternalException', 'CreateSecret returned no ARN or VersionId');
      }
      // Two brokers creating one name at once each get a secret: their names differ by uuid.
      // Every reader takes the earliest-created one, so the other creator backs out here. (Best
      // effort: ListSecrets may not show the other secret yet; readers still converge on one.)
      const winner = (await this.secrets.lookup(name))[0];
      if (winner !== undefined && winner.arn !== arn) {
        await this.client
          .send(new DeleteSecretCommand({ SecretId: arn, ForceDeleteWithoutRecovery: true }))
          .catch(() => undefined);
        throw connectionAlreadyExists(name);
      }
      this.secrets.noteCreated({ name, arn, secretName, version });
      return { name, version, secret: structuredClone(copy), secretArn: arn };
    });
  }

  /** Compare-and-swap on AWSCURRENT (aws-staged-write.ts). */
  async replace(
    name: string,
    secret: StoredSecret,
    expectedVersion: string,
  ): Promise<StoredRecord> {
    const copy = structuredClone(secret);
    return translated(name, async () => {
      if (!CONNECTION_NAME_PATTERN.test(name)) throw connectionNotFound(name);
      for (let attempt = 0; ; attempt += 1) {
        const arn = await this.secrets.resolveArn(name);
        if (arn === undefined) throw connectionNotFound(name);
        if (isMarkedScheduled(expectedVersion)) throw secretScheduledForDeletion(name);
        if (!VERSION_ID_PATTERN.test(expectedVersion)) throw concurrentModification(name);
        try {
          const version = await swapCurrentVersion(this.client, {
            name,
            arn,
            secretString: JSON.stringify(copy),
            expectedVersion,
          });
          this.secrets.rememberArn(name, arn);
          return { name, version, secret: structuredClone(copy), secretArn: arn };
        } catch (error) {
          // Scheduled for deletion since it was read.
          if (errorName(error) === 'InvalidRequestException') {
            throw secretScheduledForDeletion(name, error);
          }
          // A stale cached ARN: look the name up again once.
          if (!isNotFound(error) || attempt > 0) throw error;
          this.secrets.forgetArn(name);
        }
      }
    });
  }

  /** Deletes without a recovery window, as EventBridge does. */
  async delete(name: string): Promise<void> {
    return translated(name, async () => {
      if (!CONNECTION_NAME_PATTERN.test(name)) throw connectionNotFound(name);
      const arns = new Set((await this.secrets.lookup(name)).map((ref) => ref.arn));
      // Our own recent create, which ListSecrets may not show yet.
      const cached = this.secrets.arnHint(name);
      if (cached !== undefined) arns.add(cached);
      this.secrets.noteDeleted(name);
      let deleted = 0;
      // Normally one; more only after two brokers created the name at once.
      for (const arn of arns) {
        // A forced DeleteSecret of a missing secret succeeds, so look first. Two brokers deleting
        // at once may both succeed: Secrets Manager has no conditional delete.
        const status = await secretStatus(this.client, arn);
        if (status === 'absent') continue;
        try {
          await forceDeleteSecret(this.client, arn, status);
          deleted += 1;
        } catch (error) {
          // InvalidRequestException: already being deleted by someone else.
          if (!isNotFound(error) && errorName(error) !== 'InvalidRequestException') throw error;
        }
      }
      if (deleted === 0) throw connectionNotFound(name);
    });
  }
}
