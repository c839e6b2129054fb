/**
 * Compare-and-swap on one secret, the way Secrets Manager's own rotation does it ("How rotation
 * works" in the AWS Secrets Manager User Guide): write the new version under a pending label,
 * then move AWSCURRENT to it naming the version it must come from. Secrets Manager rejects the
 * move when AWSCURRENT is no longer on the expected version, so several brokers sharing one
 * account and region never overwrite each other's writes.
 *
 * The pending label is one fixed label, removed again after the move whether it succeeded or
 * not. A fresh label per write would spare concurrent writers from taking the label off each
 * other's versions, but every label a crashed broker leaves behind stays for good and a secret
 * may carry only 20 labels; a fixed label can be stranded at most once, and the next write moves
 * it on. Writers never depend on holding it: the move names versions by id, and the removal is
 * conditional (it fails harmlessly when another writer's PutSecretValue took the label).
 */

import {
  DescribeSecretCommand,
  PutSecretValueCommand,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { randomUUID } from 'node:crypto';

import { BrokerError, concurrentModification } from '../errors.js';
import { errorName } from './aws-error-translation.js';
import { CURRENT_STAGE, holdsStage, PENDING_STAGE } from './aws-secret-layout.js';

export interface StagedWrite {
  /** The connection, for the error a lost race raises. */
  name: string;
  arn: string;
  secretString: string;
  /** The VersionId the writer read; AWSCURRENT must still be on it. */
  expectedVersion: string;
}

/**
 * Returns the written VersionId, which now holds AWSCURRENT. Fails with
 * ConcurrentModificationException when AWSCURRENT had moved on; other failures are the SDK's.
 */
export async function swapCurrentVersion(
  client: SecretsManagerClient,
  write: StagedWrite,
): Promise<string> {
  const { arn, expectedVersion } = write;
  const put = await client.send(
    new PutSecretValueCommand({
      SecretId: arn,
      SecretString: write.secretString,
      VersionStages: [PENDING_STAGE],
      ClientRequestToken: randomUUID(),
    }),
  );
  const version = put.VersionId;
  if (version === undefined) {
    throw new BrokerError('InternalException', 'PutSecretValue returned no VersionId');
  }
  try {
    await client.send(
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
    if (await holdsCurrent(client, arn, version).catch(() => false)) {
      await removePendingStage(client, arn, version);
      return version;
    }
    // Nothing half-written stays labelled; the unlabelled version is left for AWS to expire.
    await removePendingStage(client, arn, version);
    // The rejection of a stale RemoveFromVersionId is an InvalidParameterException; so are
    // other mistakes, so make sure AWSCURRENT really moved on before calling it a conflict.
    if (errorName(error) === 'InvalidParameterException') {
      if (!(await holdsCurrent(client, arn, expectedVersion))) {
        throw concurrentModification(write.name, error);
      }
    }
    throw error;
  }
  await removePendingStage(client, arn, version);
  return version;
}

/** Best effort: a stranded label is harmless, and the write itself already succeeded or not. */
async function removePendingStage(
  client: SecretsManagerClient,
  arn: string,
  version: string,
): Promise<void> {
  try {
    await client.send(
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

async function holdsCurrent(
  client: SecretsManagerClient,
  arn: string,
  version: string,
): Promise<boolean> {
  const described = await client.send(new DescribeSecretCommand({ SecretId: arn }));
  return holdsStage(described.VersionIdsToStages, version, CURRENT_STAGE);
}
