# Connection Broker container image.
# Node 20.20.2 is the newest 20.x release and matches the toolchain used in development and CI.

FROM node:20.20.2-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json openapi.yaml ./
COPY src/ ./src/
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:20.20.2-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
COPY --from=build --chown=node:node /app/openapi.yaml /app/package.json ./
ENV HOST=0.0.0.0 \
    PORT=8080 \
    BROKER_DATA_DIR=/var/lib/connection-broker
# The file store writes here; the directory must exist and belong to the runtime user
# before VOLUME so a fresh named volume inherits that ownership.
RUN mkdir -p /var/lib/connection-broker \
 && chown node:node /var/lib/connection-broker
VOLUME ["/var/lib/connection-broker"]
USER node
EXPOSE 8080
# The slim image has no curl; Node 20's global fetch does the probe.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || '8080') + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/main.js"]
