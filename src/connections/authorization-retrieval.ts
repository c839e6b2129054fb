import type { Logger } from 'pino';
import { BrokerError, connectionNotAuthorized } from '../errors.js';
import type { ArnContext } from './arn.js';
import { prepareAuthorization, type PreparedAuthorization } from './authorization-parameters.js';
import type { Connection } from './connection.js';
import type { ConnectionRepository, Loaded } from './connection-repository.js';
import { needsRefresh, rejectedByApi } from './connection-transitions.js';
import { workKeys, type ConnectionWork } from './connection-work.js';
import type { TokenLifecycle } from './token-lifecycle.js';

export interface AuthorizationRetrievalDeps {
  repository: ConnectionRepository;
  work: ConnectionWork<Loaded>;
  tokens: TokenLifecycle;
  arn: ArnContext;
  logger: Logger;
  now: () => number;
}

function notAuthorized(c: Connection): BrokerError {
  return connectionNotAuthorized(c.name, c.state, c.stateReason);
}

/**
 * The executors' path: the authorization parameters of a connection, and what happens when an
 * API rejects them (README, Authorization parameters). The HTTP hot path answers from the cache
 * before it gets here.
 */
export class AuthorizationRetrieval {
  constructor(private readonly deps: AuthorizationRetrievalDeps) {}

  /** Loads, refreshes a token close to expiry, and caches the answer. */
  async get(nameOrArn: string): Promise<PreparedAuthorization> {
    const { repository, tokens } = this.deps;
    let loaded = await repository.load(nameOrArn);
    if (loaded.connection.state === 'AUTHORIZING') {
      const name = loaded.connection.name;
      loaded = await tokens.authorizeShared(name, 'retry-later');
      if (loaded.connection.state === 'AUTHORIZING') throw tokens.unavailable(name);
    }
    const connection = loaded.connection;
    if (connection.state !== 'AUTHORIZED') throw notAuthorized(connection);
    if (
      connection.authorizationType === 'OAUTH_CLIENT_CREDENTIALS' &&
      needsRefresh(connection, this.deps.now())
    ) {
      if (tokens.isUsable(connection)) {
        // Ahead of expiry the caller need not wait for the token endpoint, the store, or
        // another broker's refresh: it gets the token that is still valid.
        tokens.refreshInBackground(connection.name, connection.generation);
        return this.prepared(loaded);
      }
      loaded = await tokens.refresh(connection.name, connection.generation);
      const refreshed = loaded.connection;
      if (refreshed.state !== 'AUTHORIZED') throw notAuthorized(refreshed);
      if (refreshed.generation === connection.generation && !tokens.isUsable(refreshed)) {
        throw tokens.unavailable(refreshed.name);
      }
    }
    return this.prepared(loaded);
  }

  /** An executor reports that the upstream answered 401 or 407 to the credentials of `generation`. */
  async reportRejection(
    nameOrArn: string,
    statusCode: number,
    generation: number,
    { mayDeauthorize = true }: { mayDeauthorize?: boolean } = {},
  ): Promise<PreparedAuthorization> {
    const { repository, tokens } = this.deps;
    let reported = (await repository.load(nameOrArn)).connection;
    if (generation > reported.generation)
      reported = (await repository.reload(reported.name)).connection;
    const { name, authorizationType } = reported;
    if (generation > reported.generation) {
      throw new BrokerError(
        'ValidationException',
        `TokenGeneration ${generation} is newer than the connection's current generation ${reported.generation}.`,
      );
    }
    // EventBridge deauthorizes BASIC and API_KEY connections on a 401/407: that is a
    // deauthorization for every caller, so it takes the caller's right to deauthorize.
    if (authorizationType !== 'OAUTH_CLIENT_CREDENTIALS' && !mayDeauthorize) {
      throw new BrokerError(
        'AccessDeniedException',
        `Reporting that the ${authorizationType} credentials of connection '${name}' were rejected deauthorizes it for every caller, which needs DeauthorizeConnection on it (README, Security).`,
      );
    }
    const loaded =
      authorizationType === 'OAUTH_CLIENT_CREDENTIALS'
        ? await tokens.refresh(name, generation)
        : await this.deps.work.shared(workKeys.refresh(name, generation), () =>
            this.rejectStaticCredentials(name, statusCode, generation),
          );
    const connection = loaded.connection;
    if (connection.state !== 'AUTHORIZED') throw notAuthorized(connection);
    if (connection.generation === generation) {
      // No new token yet (the endpoint is unavailable): the one reported must not be handed
      // out again, here or by another broker, until a refresh replaces it.
      await tokens.markRejected(name, generation);
      throw tokens.unavailable(name);
    }
    return this.prepared(loaded);
  }

  /** EventBridge: a 401/407 to unchanged BASIC or API_KEY credentials deauthorizes the connection. */
  private async rejectStaticCredentials(
    name: string,
    statusCode: number,
    generation: number,
  ): Promise<Loaded> {
    const { repository } = this.deps;
    const current = await repository.reload(name);
    const c = current.connection;
    if (c.state !== 'AUTHORIZED' || c.generation !== generation) return current;
    this.deps.logger.warn({ connection: name, statusCode }, 'credentials rejected; deauthorizing');
    return repository.saveOrAdopt(rejectedByApi(c, statusCode), current.version);
  }

  private prepared(loaded: Loaded): PreparedAuthorization {
    loaded.authorization ??= prepareAuthorization(this.deps.arn, loaded.connection);
    return loaded.authorization;
  }
}
