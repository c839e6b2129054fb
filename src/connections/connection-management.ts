import { randomUUID } from 'node:crypto';
import { connectionLimitReached } from '../errors.js';
import type { OutboundPolicy } from '../net/outbound-policy.js';
import { QuarantinedRecordError } from '../secret-store/secret-store.js';
import type { Connection } from './connection.js';
import {
  assertOnlyBlockFor,
  assertSendable,
  mergeCredentials,
  mergeHttpParameters,
  requireBlockFor,
  type CreateConnectionInput,
  type Credentials,
  type UpdateConnectionInput,
} from './connection-input.js';
import type { ConnectionRepository, Loaded } from './connection-repository.js';
import { applyUpdate, deauthorizedByCaller, newConnection } from './connection-transitions.js';
import type { ConnectionWork } from './connection-work.js';
import type { TokenLifecycle } from './token-lifecycle.js';

export interface WriteOptions {
  /**
   * When an OAuth connection needs a token: `wait` (default) answers once it is AUTHORIZED or
   * DEAUTHORIZED; `background` answers AUTHORIZING at once, as EventBridge does.
   */
  authorization?: 'wait' | 'background';
  /**
   * An OAuth AuthorizationEndpoint that is no URL at all: `refuse` (default) answers
   * ValidationException; `deauthorize` stores it and lets the authorization fail with a
   * StateReason, as EventBridge does. A URL the outbound policy refuses is refused either way.
   */
  unparsableEndpoint?: 'refuse' | 'deauthorize';
}

export interface ListConnectionsQuery {
  namePrefix?: string;
  state?: string;
  limit: number;
  nextToken?: string;
  nameFilter?: (name: string) => boolean;
}

export interface ConnectionManagementDeps {
  repository: ConnectionRepository;
  work: ConnectionWork<Loaded>;
  tokens: TokenLifecycle;
  /** Where token requests may go: checked before an endpoint is stored. */
  outboundPolicy: OutboundPolicy;
  /** Connections the broker holds at most (0: no limit), as this broker counts them. */
  maxConnections: number;
  now: () => number;
}

const NIL_UUID = '00000000-0000-0000-0000-000000000000';

/** CreateConnection, UpdateConnection, DeleteConnection, DeauthorizeConnection and reads. */
export class ConnectionManagement {
  constructor(private readonly deps: ConnectionManagementDeps) {}

  async create(input: CreateConnectionInput, options: WriteOptions = {}): Promise<Connection> {
    const { repository, tokens } = this.deps;
    // Every connection costs memory and disk: a caller allowed to create cannot take it all.
    if (this.deps.maxConnections > 0 && repository.size >= this.deps.maxConnections) {
      throw connectionLimitReached(repository.size);
    }
    const type = input.AuthorizationType;
    requireBlockFor(type, input.AuthParameters);
    assertOnlyBlockFor(type, input.AuthParameters);
    const credentials = mergeCredentials(type, undefined, input.AuthParameters);
    this.assertEndpoint(credentials, options);
    const invocation = input.AuthParameters.InvocationHttpParameters;
    const invocationHttpParameters =
      invocation === undefined ? undefined : mergeHttpParameters(undefined, invocation);
    assertSendable(credentials, invocationHttpParameters);
    const connection = newConnection(
      {
        name: input.Name,
        credentials,
        uuid: randomUUID(),
        secretUuid: randomUUID(),
        ...(input.Description !== undefined && { description: input.Description }),
        ...(invocationHttpParameters !== undefined && { invocationHttpParameters }),
      },
      this.deps.now(),
    );
    const loaded = await repository.create(connection);
    if (loaded.connection.authorizationType !== 'OAUTH_CLIENT_CREDENTIALS') {
      return loaded.connection;
    }
    if (options.authorization === 'background') {
      tokens.authorizeInBackground(connection.name);
      return loaded.connection;
    }
    return (await tokens.authorizeLoaded(loaded, 'deauthorize')).connection;
  }

  async describe(nameOrArn: string): Promise<Connection> {
    return (await this.deps.repository.load(nameOrArn)).connection;
  }

  list(query: ListConnectionsQuery): Promise<{ connections: Connection[]; nextToken?: string }> {
    return this.deps.repository.list(query);
  }

  async update(
    nameOrArn: string,
    input: UpdateConnectionInput,
    options: WriteOptions = {},
  ): Promise<Connection> {
    const { repository, tokens } = this.deps;
    const { name } = (await repository.load(nameOrArn)).connection;
    const inBackground = options.authorization === 'background';
    const updated = (
      await this.deps.work.serialized(name, async () => {
        const current = await repository.reload(name);
        const plan = applyUpdate(current.connection, input, this.deps.now(), (credentials) =>
          this.assertEndpoint(credentials, options),
        );
        const saved = await repository.save(plan.connection, current.version);
        return plan.reauthorize && !inBackground ? tokens.authorize(saved, 'deauthorize') : saved;
      })
    ).connection;
    if (inBackground && updated.state === 'AUTHORIZING') tokens.authorizeInBackground(name);
    return updated;
  }

  async delete(nameOrArn: string): Promise<Connection> {
    const { repository, tokens } = this.deps;
    let name: string;
    try {
      name = (await repository.load(nameOrArn)).connection.name;
    } catch (error) {
      if (!(error instanceof QuarantinedRecordError)) throw error;
      return this.deleteQuarantined(error.connectionName);
    }
    try {
      return await this.deps.work.serialized(name, async () => {
        const { connection } = await repository.reload(name);
        await repository.delete(name);
        tokens.forget(name);
        return { ...connection, state: 'DELETING' as const };
      });
    } catch (error) {
      // Cached here, but the store refuses the record now: deleting is still how it is cleared.
      if (!(error instanceof QuarantinedRecordError)) throw error;
      return this.deleteQuarantined(error.connectionName);
    }
  }

  /** Drops the credentials and the token; the non-secret fields and invocation parameters stay. */
  async deauthorize(nameOrArn: string): Promise<Connection> {
    const { repository } = this.deps;
    const { name } = (await repository.load(nameOrArn)).connection;
    const saved = await this.deps.work.serialized(name, async () => {
      const current = await repository.reload(name);
      return repository.save(
        deauthorizedByCaller(current.connection, this.deps.now()),
        current.version,
      );
    });
    return saved.connection;
  }

  /**
   * A record the store refuses to read can only be deleted. Its content is unknown, so the
   * answer names it with a nil uuid and the deletion's time (README, Storage and secrecy).
   */
  private async deleteQuarantined(name: string): Promise<Connection> {
    await this.deps.work.serialized(name, () => this.deps.repository.delete(name));
    this.deps.tokens.forget(name);
    const nowMs = this.deps.now();
    return {
      name,
      uuid: NIL_UUID,
      secretUuid: NIL_UUID,
      state: 'DELETING',
      creationTimeMs: nowMs,
      lastModifiedTimeMs: nowMs,
      generation: 0,
      authorizationType: 'BASIC',
      basic: { username: '' },
    };
  }

  private assertEndpoint(credentials: Credentials, options: WriteOptions): void {
    if (credentials.authorizationType !== 'OAUTH_CLIENT_CREDENTIALS') return;
    const endpoint = credentials.oauth.authorizationEndpoint;
    if (options.unparsableEndpoint === 'deauthorize' && !URL.canParse(endpoint)) return;
    this.deps.outboundPolicy.assertEndpointAllowed('AuthorizationEndpoint', endpoint);
  }
}
