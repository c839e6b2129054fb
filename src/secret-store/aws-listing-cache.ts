/**
 * How the Secrets Manager adapter finds connections' secrets: ListSecrets scans, the last full
 * listing (reused for a configurable while), and connection name → ARN hints.
 *
 * Names embed a uuid, so a connection is found with ListSecrets (name-prefix filter, then an exact
 * check of the `<name>/` boundary). ListSecrets is eventually consistent on AWS ("ListSecrets" in
 * the Secrets Manager API reference): a secret another broker created a moment ago may not be
 * listed yet. This process's own creates and deletes are noted here, so they show at once.
 */

import type {
  ListSecretsCommandInput,
  ListSecretsCommandOutput,
} from '@aws-sdk/client-secrets-manager';

import { BrokerError } from '../errors.js';
import {
  byConnectionName,
  canonicalFirst,
  canonicalPerConnection,
  connectionSecretsPrefix,
  managedFilters,
  toSecretRef,
} from './aws-secret-layout.js';
import type { SecretRef } from './aws-secret-layout.js';

/** ListSecrets' maximum page size. */
export const LIST_PAGE_SIZE = 100;
/** Bounds a name scan at 100,000 secrets, so a misbehaving endpoint cannot page forever. */
export const MAX_LIST_PAGES = 1_000;

/** One ListSecrets call; the adapter sends it through its SDK client. */
export type ListSecretsPage = (input: ListSecretsCommandInput) => Promise<ListSecretsCommandOutput>;

export interface SecretListingCacheOptions {
  listPage: ListSecretsPage;
  /** The secret name prefix, e.g. `events!connection/`. */
  prefix: string;
  /** How long recent() may reuse the last full listing: 0 lists on every call. */
  maxAgeMs: number;
  now: () => number;
}

/** The secret a create just made, as the listing will describe it. */
export interface CreatedSecret {
  name: string;
  arn: string;
  secretName: string;
  version: string;
}

export class SecretListingCache {
  private readonly listPage: ListSecretsPage;
  private readonly prefix: string;
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  /** The last full listing, canonical secret per connection, sorted by connection name. */
  private listing: { refs: SecretRef[]; takenAtMs: number } | undefined;
  /** Connection name → secret ARN. Only a hint: every use is checked against AWS. */
  private readonly arns = new Map<string, string>();

  constructor(options: SecretListingCacheOptions) {
    this.listPage = options.listPage;
    this.prefix = options.prefix;
    this.maxAgeMs = options.maxAgeMs;
    this.now = options.now;
  }

  /** The ARN last seen for the connection, without asking AWS. */
  arnHint(name: string): string | undefined {
    return this.arns.get(name);
  }

  rememberArn(name: string, arn: string): void {
    this.arns.set(name, arn);
  }

  /** AWS said the hinted secret is gone: the next use looks the name up again. */
  forgetArn(name: string): void {
    this.arns.delete(name);
  }

  forgetArns(): void {
    this.arns.clear();
  }

  /** The hinted ARN, or the canonical secret's ARN from a lookup (then remembered). */
  async resolveArn(name: string): Promise<string | undefined> {
    const cached = this.arns.get(name);
    if (cached !== undefined) return cached;
    const arn = (await this.lookup(name))[0]?.arn;
    if (arn !== undefined) this.arns.set(name, arn);
    return arn;
  }

  /** The connection's secrets, the one every reader uses first. */
  async lookup(name: string): Promise<SecretRef[]> {
    const refs = await this.scanAll(connectionSecretsPrefix(this.prefix, name));
    // The filter is a prefix match; the exact name check keeps `a` from matching `ab`.
    return refs.filter((ref) => ref.name === name).sort(canonicalFirst);
  }

  /** One secret per connection name (the canonical one), sorted by connection name. */
  async recent(): Promise<SecretRef[]> {
    const listing = this.listing;
    if (listing !== undefined && this.now() - listing.takenAtMs < this.maxAgeMs) {
      return listing.refs;
    }
    return this.full();
  }

  /** Lists again. Also teaches the ARN hints every secret, so reads need no lookup. */
  async full(): Promise<SecretRef[]> {
    // Taken before the scan: a change made while it runs may be missing, so its age counts.
    const takenAtMs = this.now();
    const refs = canonicalPerConnection(await this.scanAll(this.prefix));
    this.listing = { refs, takenAtMs };
    for (const ref of refs) this.arns.set(ref.name, ref.arn);
    return refs;
  }

  /** This store's own create: listed at once, though ListSecrets may not show it yet. */
  noteCreated(created: CreatedSecret): void {
    this.arns.set(created.name, created.arn);
    this.replaceInListing(created.name, {
      name: created.name,
      arn: created.arn,
      secretName: created.secretName,
      createdMs: this.now(),
      deleted: false,
      currentVersion: created.version,
    });
  }

  /** This store's own delete: gone at once from the hints and the reused listing. */
  noteDeleted(name: string): void {
    this.arns.delete(name);
    this.replaceInListing(name, undefined);
  }

  /** Keeps the reused listing in step; its age stays that of the scan. */
  private replaceInListing(name: string, ref: SecretRef | undefined): void {
    const listing = this.listing;
    if (listing === undefined) return;
    const refs = listing.refs.filter((existing) => existing.name !== name);
    if (ref !== undefined) refs.push(ref);
    refs.sort(byConnectionName);
    this.listing = { refs, takenAtMs: listing.takenAtMs };
  }

  /** Every managed secret whose name starts with the prefix, scheduled for deletion or not. */
  private async scanAll(secretNamePrefix: string): Promise<SecretRef[]> {
    const refs: SecretRef[] = [];
    let nextToken: string | undefined;
    for (let page = 0; page < MAX_LIST_PAGES; page += 1) {
      const result = await this.listPage({
        Filters: managedFilters(secretNamePrefix),
        IncludePlannedDeletion: true,
        MaxResults: LIST_PAGE_SIZE,
        ...(nextToken !== undefined && { NextToken: nextToken }),
      });
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
}
