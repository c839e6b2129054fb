import { BrokerError } from '../errors.js';
/**
 * The secret store port. A record is one connection's secret: EventBridge's snake_case JSON
 * (`username`, `api_key_value`, `client_secret`, `invocation_http_parameters`, …) plus the
 * broker's own block. Adapters encrypt it at rest; callers only ever see it decrypted.
 */

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** What every store checks a decrypted or fetched document against before trusting it. */
export function isStoredSecret(value: unknown): value is StoredSecret {
  if (!isObject(value)) return false;
  const broker = value['broker'];
  return (
    isObject(broker) && typeof broker['name'] === 'string' && typeof broker['state'] === 'string'
  );
}

export interface StoredHttpParameter {
  key: string;
  value: string;
  is_value_secret: boolean;
}

export interface StoredHttpParameters {
  header_parameters?: StoredHttpParameter[];
  query_string_parameters?: StoredHttpParameter[];
  body_parameters?: StoredHttpParameter[];
}

export interface StoredToken {
  access_token: string;
  token_type: string;
  /** ISO 8601. */
  expires_at?: string;
  /** ISO 8601. */
  obtained_at: string;
  /** Reported rejected (401/407) while no new token could be had: not served. */
  rejected?: true;
}

/**
 * A replica's claim to refresh one token generation, so a fleet sharing a store makes one token
 * request per refresh. Expires on its own when the holder dies.
 */
export interface StoredRefreshLease {
  holder: string;
  generation: number;
  /** ISO 8601. */
  expires_at: string;
}

/** Broker-owned fields; EventBridge keeps these outside the secret, we keep one document. */
export interface StoredBrokerFields {
  schema: 1;
  name: string;
  uuid: string;
  secret_uuid: string;
  authorization_type: 'BASIC' | 'OAUTH_CLIENT_CREDENTIALS' | 'API_KEY';
  description?: string;
  state: string;
  state_reason?: string;
  creation_time: string;
  last_modified_time: string;
  last_authorized_time?: string;
  generation: number;
  token?: StoredToken;
  refresh_lease?: StoredRefreshLease;
}

export interface StoredSecret {
  username?: string;
  password?: string;
  api_key_name?: string;
  api_key_value?: string;
  client_id?: string;
  client_secret?: string;
  authorization_endpoint?: string;
  http_method?: string;
  oauth_http_parameters?: StoredHttpParameters;
  invocation_http_parameters?: StoredHttpParameters;
  broker: StoredBrokerFields;
}

export interface StoredRecord {
  name: string;
  /** Opaque; changes on every write. Compare-and-swap writes name the version they read. */
  version: string;
  secret: StoredSecret;
  /** The store's own identifier of the secret, when it has one (Secrets Manager's ARN). */
  secretArn?: string;
}

export interface ListQuery {
  namePrefix?: string;
  state?: string;
  limit: number;
  /** Opaque token from a previous page. */
  nextToken?: string;
  /**
   * Names the caller may see. Applied before paging, so pages fill with visible records and a
   * NextToken never carries a hidden name.
   */
  nameFilter?: (name: string) => boolean;
}

export interface ListPage {
  records: StoredRecord[];
  nextToken?: string;
}

export interface SecretStore {
  /** Short name for logs and metrics labels, e.g. `file`. */
  readonly kind: string;
  /**
   * True when other broker processes may write the same records (Secrets Manager): caches must
   * then be revalidated, and token refreshes coordinated through the records.
   */
  readonly shared: boolean;
  /** Reaches the store once; readiness depends on it. */
  open(): Promise<void>;
  get(name: string): Promise<StoredRecord | undefined>;
  list(query: ListQuery): Promise<ListPage>;
  /**
   * Every record's name and current version, without reading secret values: what a replica
   * compares its cache with. Must cost a small number of store calls per hundred records.
   */
  listVersions(): Promise<Map<string, string>>;
  /** Fails with ResourceAlreadyExistsException when the name is taken. */
  create(name: string, secret: StoredSecret): Promise<StoredRecord>;
  /** Compare-and-swap: fails with ConcurrentModificationException when the version moved on. */
  replace(name: string, secret: StoredSecret, expectedVersion: string): Promise<StoredRecord>;
  /** Fails with ResourceNotFoundException when absent. */
  delete(name: string): Promise<void>;
  close(): Promise<void>;
  /**
   * Optional: tells this process as soon as any writer (this one included) changes a record, so
   * a fleet's caches follow at once rather than at the next sweep. Delivery may be lost (a
   * dropped notification connection): the periodic sweep stays the fallback. Returns the
   * unsubscribe function.
   */
  watch?(onChange: (change: RecordChange) => void, onResync?: () => void): () => void;
  /**
   * Optional: refresh leases kept by the store beside the records and judged by the store's own
   * clock (a database's `now()`), so replicas' clocks do not matter and a lease write does not
   * change a record's version. Without it, the lease travels inside the record
   * (StoredBrokerFields.refresh_lease) and each replica judges expiry by its own clock.
   */
  readonly leases?: StoreLeases | undefined;
}

export type LeaseClaim = { granted: true } | { granted: false; expiresInMs: number };

export interface StoreLeases {
  /**
   * Takes the lease on `name` for `generation` for `ttlMs`, unless another holder has one for
   * this generation or a newer one that has not expired (a replica working from an older read
   * never takes over the refresh of a newer generation). Answers how long the other holder's lease has
   * left when refused.
   */
  claim(name: string, holder: string, generation: number, ttlMs: number): Promise<LeaseClaim>;
  /** Gives up the lease if `holder` has it; nothing otherwise. */
  release(name: string, holder: string): Promise<void>;
}

/** One record changed: its new version, or none when it was deleted. */
export interface RecordChange {
  name: string;
  version?: string;
}

/**
 * A record the store refuses to read (the file store's integrity check: rolled back, replaced,
 * or undecryptable). It can still be deleted, which is how an operator clears it.
 */
export class QuarantinedRecordError extends BrokerError {
  constructor(
    readonly connectionName: string,
    message: string,
  ) {
    super('InvalidStateException', message);
  }
}
