import { Router } from 'express';
import type { ConnectionService } from '../connections/connection-service.js';
import { CONNECTION_STATES } from '../connections/connection.js';
import type { BrokerMetrics } from '../metrics.js';
import type { StoreHealth } from '../secret-store/instrumented-store.js';

export interface OperationsRoutesDeps {
  service: Pick<ConnectionService, 'countByState'>;
  metrics: Pick<BrokerMetrics, 'registry' | 'connections'>;
  storeHealth: StoreHealth;
  isShuttingDown: () => boolean;
}

/** Liveness, readiness and metrics. */
export function operationsRoutes(deps: OperationsRoutesDeps): Router {
  const router = Router();

  router.get('/healthz', (_req, res) => {
    res.set('cache-control', 'no-store').json({ status: 'ok' });
  });

  router.get('/readyz', (_req, res) => {
    const health = deps.storeHealth;
    // A later store outage shows here without failing readiness: cached credentials still serve.
    const ready = health.reachedSinceStart && !deps.isShuttingDown();
    res
      .status(ready ? 200 : 503)
      .set('cache-control', 'no-store')
      .json({
        status: ready ? 'ready' : 'not-ready',
        store: {
          kind: health.kind,
          reachedSinceStart: health.reachedSinceStart,
          healthy: health.healthy,
          ...(health.lastError !== undefined && { lastError: health.lastError }),
        },
      });
  });

  router.get('/metrics', async (_req, res) => {
    const counts = deps.service.countByState();
    for (const state of CONNECTION_STATES) {
      deps.metrics.connections.set({ state }, counts.get(state) ?? 0);
    }
    res
      .set('content-type', deps.metrics.registry.contentType)
      .send(await deps.metrics.registry.metrics());
  });

  return router;
}
