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

/** The file store's master key ring: status, and rotation without a restart. */
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

  router.get('/v1/keys', (req, res) => {
    validator.validate('DescribeKeys', req);
    res.json(keyRingView(rotation(res, 'DescribeKeys').status()));
  });

  router.post('/v1/keys/rotate', async (req, res) => {
    validator.validate('RotateKeys', req);
    const result = await rotation(res, 'RotateKeys').rotate();
    res.json({ ...keyRingView(result), Reencrypted: result.reencrypted });
  });

  return router;
}

function keyRingView(status: KeyRingStatus): KeyRingView {
  return {
    Store: 'file',
    ActiveKeyId: status.activeKeyId,
    KeyIds: status.keyIds,
    RecordsByKeyId: status.recordsByKeyId,
  };
}
