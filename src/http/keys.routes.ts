import { Router, type Response } from 'express';
import { BrokerError } from '../errors.js';
import type { components } from '../openapi-types.js';
import type { KeyRingStatus, KeyRotation } from '../secret-store/key-rotation.js';
import { authorizeOnAll } from './access.js';
import type { RequestValidator } from './request-validator.js';

export interface KeysRoutesDeps {
  /** Undefined on the Secrets Manager store, which encrypts with KMS. */
  keys: KeyRotation | undefined;
  validator: RequestValidator;
}

type KeyRingView = components['schemas']['KeyRingStatus'];

/** The master key ring of a store it seals (file, PostgreSQL): status, and rotation without a restart. */
export function keysRoutes({ keys, validator }: KeysRoutesDeps): Router {
  const router = Router();
  const rotation = (res: Response, action: 'DescribeKeys' | 'RotateKeys'): KeyRotation => {
    authorizeOnAll(res, action);
    if (keys === undefined) {
      throw new BrokerError(
        'ValidationException',
        'The Secrets Manager store encrypts with KMS: rotate the KMS key (BROKER_KMS_KEY_ID) instead of a master key.',
      );
    }
    return keys;
  };

  router.get('/v1/keys', async (req, res) => {
    validator.validate('DescribeKeys', req);
    const ring = rotation(res, 'DescribeKeys');
    res.json(keyRingView(ring.storeKind, await ring.status()));
  });

  router.post('/v1/keys/rotate', async (req, res) => {
    validator.validate('RotateKeys', req);
    const ring = rotation(res, 'RotateKeys');
    if (!ring.reloadable) {
      throw new BrokerError(
        'ValidationException',
        'The master key ring does not come from BROKER_MASTER_KEY_FILE (but from BROKER_MASTER_KEY, BROKER_MASTER_KEYS or the development key file), so it cannot change while the broker runs: put the keys in a file, newest first, set BROKER_MASTER_KEY_FILE and restart (README, Rotating the master key).',
      );
    }
    const result = await ring.rotate();
    res.json({ ...keyRingView(ring.storeKind, result), Reencrypted: result.reencrypted });
  });

  return router;
}

function keyRingView(storeKind: string, status: KeyRingStatus): KeyRingView {
  return {
    Store: storeKind === 'postgres' ? 'postgres' : 'file',
    ActiveKeyId: status.activeKeyId,
    KeyIds: status.keyIds,
    RecordsByKeyId: status.recordsByKeyId,
  };
}
