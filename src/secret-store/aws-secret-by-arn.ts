/**
 * Calls on one Secrets Manager secret, named by its ARN: read the record it holds, tell whether
 * it is live, scheduled for deletion or gone, and delete it for good. Finding a connection's ARN
 * is aws-listing-cache.ts's job; these calls trust no cached ARN and answer "absent" instead.
 */

import {
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  RestoreSecretCommand,
} from '@aws-sdk/client-secrets-manager';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

import { BrokerError } from '../errors.js';
import { errorName, isNotFound } from './aws-error-translation.js';
import {
  CURRENT_STAGE,
  currentVersionOf,
  parseStoredSecret,
  scheduledForDeletionRecord,
} from './aws-secret-layout.js';
import type { StoredRecord } from './secret-store.js';

export type SecretStatus = 'live' | 'scheduled' | 'absent';

/**
 * Reads the version holding AWSCURRENT, by id: moto's GetSecretValue without a version keeps
 * returning the first version after UpdateSecretVersionStage moved AWSCURRENT, and asking for
 * the id also keeps the returned version and content consistent on AWS. Undefined when gone.
 */
export async function readSecret(
  client: SecretsManagerClient,
  name: string,
  arn: string,
  rereading = false,
): Promise<StoredRecord | undefined> {
  try {
    const described = await client.send(new DescribeSecretCommand({ SecretId: arn }));
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
      value = await client.send(new GetSecretValueCommand({ SecretId: arn, VersionId: version }));
    } catch (error) {
      // Scheduled for deletion between the two calls: read it again as such.
      if (errorName(error) === 'InvalidRequestException' && !rereading) {
        return readSecret(client, name, arn, true);
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

export async function secretStatus(
  client: SecretsManagerClient,
  arn: string,
): Promise<SecretStatus> {
  try {
    const described = await client.send(new DescribeSecretCommand({ SecretId: arn }));
    return described.DeletedDate === undefined ? 'live' : 'scheduled';
  } catch (error) {
    if (isNotFound(error)) return 'absent';
    throw error;
  }
}

/**
 * Deletes without a recovery window, as EventBridge does. A secret scheduled for deletion
 * (outside the broker) is deleted for good; where Secrets Manager refuses to force-delete it as
 * it stands, it is restored first.
 */
export async function forceDeleteSecret(
  client: SecretsManagerClient,
  arn: string,
  status: Exclude<SecretStatus, 'absent'>,
): Promise<void> {
  const force = new DeleteSecretCommand({ SecretId: arn, ForceDeleteWithoutRecovery: true });
  try {
    await client.send(force);
  } catch (error) {
    if (status !== 'scheduled' || errorName(error) !== 'InvalidRequestException') throw error;
    await client.send(new RestoreSecretCommand({ SecretId: arn }));
    await client.send(force);
  }
}
