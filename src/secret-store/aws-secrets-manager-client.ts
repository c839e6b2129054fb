/**
 * The Secrets Manager SDK client the adapter builds when none is given, and the per-attempt call
 * counter behind the broker's quota metric. Timeouts and retries are the SDK's "Retry behavior"
 * and request handler settings (AWS SDK for JavaScript v3 Developer Guide).
 */

import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

/**
 * Bounds one HTTP attempt, so an endpoint that swallows requests fails within seconds (and the
 * broker turns to its cache) instead of hanging: with the SDK's 3 attempts, at most about 7 s.
 */
const CONNECTION_TIMEOUT_MS = 1_000;
const REQUEST_TIMEOUT_MS = 2_000;

/** The SDK's standard configuration (credentials, retries) with bounded timeouts. */
export function boundedSecretsManagerClient(region: string): SecretsManagerClient {
  return new SecretsManagerClient({
    region,
    requestHandler: {
      connectionTimeout: CONNECTION_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      // Without it the SDK only logs a warning when requestTimeout passes, and waits on.
      throwOnRequestTimeout: true,
    },
  });
}

/** Calls `onApiCall` with the command's name once per HTTP attempt, retries included. */
export function countApiCalls(
  client: SecretsManagerClient,
  onApiCall: (command: string) => void,
): void {
  // The deserialize step runs inside the retry loop: once per attempt.
  client.middlewareStack.add(
    (next, context) => (args) => {
      onApiCall(context.commandName ?? 'unknown');
      return next(args);
    },
    { step: 'deserialize', name: 'connectionBrokerApiCallCounter', override: true },
  );
}
