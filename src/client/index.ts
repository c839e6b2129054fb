/** The package's client entry (`connection-broker/client`): a typed REST client for executors and ops. */
export {
  createBrokerClient,
  listAllConnections,
  type BrokerClient,
  type BrokerClientOptions,
  type ConnectionSummary,
  type ListConnectionsQuery,
} from './broker-client.js';
export {
  BrokerApiError,
  BrokerUnreachableError,
  isProblem,
  toBrokerApiError,
  unwrap,
  type Problem,
} from './broker-api-error.js';
export type { components, paths } from '../openapi-types.js';
