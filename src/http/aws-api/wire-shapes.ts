import type { ArnContext } from '../../connections/arn.js';
import type { Connection } from '../../connections/connection.js';
import {
  describeView,
  stateView,
  summaryView,
  type TimeFormat,
} from '../../connections/connection-view.js';

/** The REST API's views (no secrets, one place) in the AWS JSON protocol's shapes. */

/** AWS JSON sends timestamps as epoch seconds, a JSON number with the milliseconds as fraction. */
export const epochSeconds: TimeFormat<number> = (ms) => ms / 1000;

/**
 * EventBridge describes an OAuth connection that is still AUTHORIZING with a LastAuthorizedTime
 * (eventbridge-semantics.md §1.3, recorded): the time its authorization began, which at create is
 * the creation time. The broker sets the field only once a token arrives, so it is filled here.
 */
function asEventBridgeKeepsIt(connection: Connection): Connection {
  if (connection.state !== 'AUTHORIZING' || connection.lastAuthorizedTimeMs !== undefined) {
    return connection;
  }
  return { ...connection, lastAuthorizedTimeMs: connection.lastModifiedTimeMs };
}

/** CreateConnectionResponse has no LastAuthorizedTime (eventbridge-semantics.md §1.2). */
export function createdShape(arn: ArnContext, connection: Connection) {
  const { LastAuthorizedTime: _absent, ...shape } = stateView(arn, connection, epochSeconds);
  return shape;
}

export function stateShape(arn: ArnContext, connection: Connection) {
  return stateView(arn, asEventBridgeKeepsIt(connection), epochSeconds);
}

/**
 * DeauthorizeConnection answers DEAUTHORIZING, as EventBridge does while it removes the
 * secret; the broker has already finished, so a describe shows DEAUTHORIZED.
 */
export function deauthorizingShape(arn: ArnContext, connection: Connection) {
  return { ...stateShape(arn, connection), ConnectionState: 'DEAUTHORIZING' };
}

export function describeShape(arn: ArnContext, connection: Connection) {
  return describeView(arn, asEventBridgeKeepsIt(connection), epochSeconds);
}

export function summaryShape(arn: ArnContext, connection: Connection) {
  return summaryView(arn, asEventBridgeKeepsIt(connection), epochSeconds);
}
