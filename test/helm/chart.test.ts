/**
 * The Helm chart, linted and rendered by a real helm (built into .tools/bin by
 * scripts/ensure-helm.sh when missing: never skipped), every rendered object validated against
 * its Kubernetes or prometheus-operator model, and its configuration, dashboard and alerts checked
 * against what the broker really reads and exports.
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  PrometheusRule,
  ServiceMonitor,
} from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, PersistentVolumeClaim, Service, ServiceAccount } from 'kubernetes-models/v1';
import type { IContainer, IPodSpec, IVolume } from 'kubernetes-models/v1';
import { Histogram, Summary } from 'prom-client';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../../src/config.js';
import { createMetrics } from '../../src/metrics.js';
import { ensureTool } from '../support/ensure-tool.js';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHART = join(PROJECT_ROOT, 'helm', 'connection-broker');
const PRODUCTION_VALUES = join(CHART, 'ci', 'production-values.yaml');
const POSTGRES_VALUES = join(CHART, 'ci', 'postgres-values.yaml');
const HELM = join(PROJECT_ROOT, '.tools', 'bin', 'helm');
/** A cold build of helm from the Go module proxy took about 4 to 8 minutes on two cores. */
const INSTALL_TIMEOUT_MS = 1_200_000;
const RELEASE = 'cb';
const NAMESPACE = 'brokers';
const FULLNAME = 'cb-connection-broker';

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

interface HelmResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The PostgreSQL store at three replicas, its URL from CloudNativePG's Secret. */
const POSTGRES_URL = [
  'store.type=postgres',
  'replicaCount=3',
  'store.postgres.existingSecret=broker-db-app',
];

/** The PostgreSQL store at three replicas by its parts, a password file and a CA. */
const POSTGRES_PARTS = [
  'store.type=postgres',
  'replicaCount=3',
  'store.postgres.host=db.example.internal',
  'store.postgres.port=6432',
  'store.postgres.database=brokers',
  'store.postgres.user=broker',
  'store.postgres.passwordSecret.name=broker-db-password',
  'store.postgres.passwordSecret.key=pw',
  'store.postgres.caSecret.name=broker-db-ca',
  'store.postgres.poolMax=20',
];

/**
 * The libpq variables the chart sets for the database's parts that node-postgres reads by itself
 * (src/config.ts reads only PGHOST, to tell that a database is configured).
 */
const LIBPQ_VARIABLES = new Set(['PGPORT', 'PGDATABASE', 'PGUSER']);

/** Every kind the chart may render, and the model that validates it. */
const MODELS: Record<string, (object: K8sObject) => { validate(): void }> = {
  'v1/ConfigMap': (o) => new ConfigMap(o),
  'v1/Service': (o) => new Service(o),
  'v1/ServiceAccount': (o) => new ServiceAccount(o),
  'v1/PersistentVolumeClaim': (o) => new PersistentVolumeClaim(o),
  'apps/v1/Deployment': (o) => new Deployment(o),
  'policy/v1/PodDisruptionBudget': (o) => new PodDisruptionBudget(o),
  'autoscaling/v2/HorizontalPodAutoscaler': (o) => new HorizontalPodAutoscaler(o),
  'networking.k8s.io/v1/NetworkPolicy': (o) => new NetworkPolicy(o),
  'monitoring.coreos.com/v1/ServiceMonitor': (o) => new ServiceMonitor(o as never),
  'monitoring.coreos.com/v1/PrometheusRule': (o) => new PrometheusRule(o as never),
};

function runHelm(args: string[]): HelmResult {
  const result = spawnSync(HELM, args, { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 60_000 });
  if (result.error !== undefined) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function templateArgs(valueFiles: string[], sets: string[]): string[] {
  return [
    'template',
    RELEASE,
    CHART,
    '--namespace',
    NAMESPACE,
    ...valueFiles.flatMap((file) => ['--values', file]),
    ...sets.flatMap((set) => ['--set', set]),
  ];
}

/** `helm template`; fails the test with helm's message when it does not render. */
function render(options: { valueFiles?: string[]; sets?: string[] } = {}): K8sObject[] {
  const result = runHelm(templateArgs(options.valueFiles ?? [], options.sets ?? []));
  assert.equal(result.status, 0, `helm template failed: ${result.stderr}`);
  return parseAllDocuments(result.stdout)
    .map((document) => document.toJS() as K8sObject | null)
    .filter((object): object is K8sObject => object !== null);
}

/** `helm template` that must fail; returns helm's message. */
function renderFailure(sets: string[]): string {
  const result = runHelm(templateArgs([], sets));
  assert.notEqual(result.status, 0, `helm template rendered with ${sets.join(' ')}`);
  return result.stderr;
}

function only(objects: K8sObject[], kind: string): K8sObject {
  const found = objects.filter((object) => object.kind === kind);
  assert.equal(found.length, 1, `expected one ${kind}, got ${found.length}`);
  return found[0]!;
}

function kinds(objects: K8sObject[]): string[] {
  return objects.map((object) => object.kind).sort();
}

function podSpec(objects: K8sObject[]): IPodSpec {
  const deployment = new Deployment(only(objects, 'Deployment'));
  const spec = deployment.spec?.template.spec;
  assert.ok(spec !== undefined);
  return spec;
}

function brokerContainer(objects: K8sObject[]): IContainer {
  const container = podSpec(objects).containers.find((c) => c.name === 'broker');
  assert.ok(container !== undefined);
  return container;
}

function brokerConfigMapData(objects: K8sObject[]): Record<string, string> {
  const configMap = objects.find(
    (object) => object.kind === 'ConfigMap' && object.metadata.name === FULLNAME,
  );
  assert.ok(configMap !== undefined);
  return configMap['data'] as Record<string, string>;
}

/**
 * The broker's environment: the ConfigMap, then the chart's own env entries (which win, as in a
 * pod); a value from a Secret stands in as `<secret/key>`.
 */
function brokerEnvironment(objects: K8sObject[]): Record<string, string> {
  const env: Record<string, string> = { ...brokerConfigMapData(objects) };
  for (const variable of brokerContainer(objects).env ?? []) {
    const ref = variable.valueFrom?.secretKeyRef;
    env[variable.name] = variable.value ?? `<${ref?.name}/${ref?.key}>`;
  }
  return env;
}

function validateAll(objects: K8sObject[]): void {
  for (const object of objects) {
    const model = MODELS[`${object.apiVersion}/${object.kind}`];
    assert.ok(model !== undefined, `no model for ${object.apiVersion}/${object.kind}`);
    model(object).validate();
  }
}

function secretVolume(volumes: IVolume[], name: string): IVolume {
  const volume = volumes.find((v) => v.name === name);
  assert.ok(volume?.secret !== undefined, `no secret volume ${name}`);
  return volume;
}

/**
 * Every environment name src/config.ts reads: loadConfig is handed an env that records reads, on
 * each store (some names are read only on theirs, as PGHOST with postgres).
 */
function namesConfigReads(): Set<string> {
  const read = new Set<string>();
  for (const base of [
    {},
    { BROKER_SECRET_STORE: 'aws' },
    { BROKER_SECRET_STORE: 'postgres', BROKER_MASTER_KEY_FILE: '/keys', PGHOST: 'db' },
  ]) {
    const recorder = new Proxy<NodeJS.ProcessEnv>(base, {
      get(target, name) {
        if (typeof name !== 'string') return undefined;
        read.add(name);
        return target[name];
      },
    });
    loadConfig(recorder);
  }
  return read;
}

interface ExportedMetric {
  labels: Set<string>;
}

/** Series names the broker exports (histograms as _bucket, _sum, _count), with label names. */
function exportedSeries(): Map<string, ExportedMetric> {
  const { registry } = createMetrics({ collectDefaults: true });
  const series = new Map<string, ExportedMetric>();
  for (const metric of registry.getMetricsAsArray()) {
    const labelNames = (metric as unknown as { labelNames?: readonly string[] }).labelNames ?? [];
    const labels = new Set(labelNames);
    if (metric instanceof Histogram) {
      series.set(`${metric.name}_bucket`, { labels: new Set([...labels, 'le']) });
      series.set(`${metric.name}_sum`, { labels });
      series.set(`${metric.name}_count`, { labels });
    } else if (metric instanceof Summary) {
      series.set(metric.name, { labels: new Set([...labels, 'quantile']) });
      series.set(`${metric.name}_sum`, { labels });
      series.set(`${metric.name}_count`, { labels });
    } else {
      series.set(metric.name, { labels });
    }
  }
  return series;
}

/** Labels Prometheus adds to every scraped series (target labels), not the broker's own. */
const TARGET_LABELS = new Set(['namespace', 'job', 'pod', 'instance', 'service', 'container']);

/** Problems with an expression's broker_* metric names and their label matchers. */
function checkPromQL(expr: string, series: Map<string, ExportedMetric>): string[] {
  const problems: string[] = [];
  const references = [...expr.matchAll(/\b(broker_[a-z0-9_]+)\s*(\{[^}]*\})?/g)];
  if (references.length === 0) problems.push(`no broker metric in: ${expr}`);
  for (const [, name, selector] of references) {
    const metric = series.get(name!);
    if (metric === undefined) {
      problems.push(`${name} is not exported by src/metrics.ts (in: ${expr})`);
      continue;
    }
    for (const [, label] of (selector ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) {
      if (!metric.labels.has(label!) && !TARGET_LABELS.has(label!)) {
        problems.push(`${name} has no label ${label} (in: ${expr})`);
      }
    }
  }
  return problems;
}

before(() =>
  ensureTool({
    name: 'helm',
    script: 'scripts/ensure-helm.sh',
    binary: '.tools/bin/helm',
    installTimeoutMs: INSTALL_TIMEOUT_MS,
  }),
);

describe('helm chart', () => {
  describe('chart metadata', () => {
    test('when no image tag is given, then the image is the chart\'s appVersion, which is package.json\'s version', () => {
      const chart = readFileSync(join(CHART, 'Chart.yaml'), 'utf8');
      const appVersion = /^appVersion:\s*"?([^"\s]+)"?\s*$/m.exec(chart)?.[1];
      const { version } = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
        version: string;
      };
      assert.equal(appVersion, version);
      assert.equal(brokerContainer(render()).image, `connection-broker:${version}`);
      const digest = `sha256:${'a'.repeat(64)}`;
      assert.equal(
        brokerContainer(render({ sets: [`image.digest=${digest}`, 'image.tag=9.9.9'] })).image,
        `connection-broker@${digest}`,
      );
    });
  });

  describe('lint', () => {
    test('when the chart is linted strictly with the default values, then it passes', () => {
      const result = runHelm(['lint', '--strict', CHART]);
      assert.equal(result.status, 0, result.stdout + result.stderr);
    });

    test('when the chart is linted strictly with the production values, then it passes', () => {
      const result = runHelm(['lint', '--strict', CHART, '--values', PRODUCTION_VALUES]);
      assert.equal(result.status, 0, result.stdout + result.stderr);
    });

    test('when the chart is linted strictly with the PostgreSQL values, then it passes', () => {
      const result = runHelm(['lint', '--strict', CHART, '--values', POSTGRES_VALUES]);
      assert.equal(result.status, 0, result.stdout + result.stderr);
    });
  });

  describe('rendered objects', () => {
    test('when rendered with the default values, then the file store objects render and each is valid for its model', () => {
      const objects = render();
      assert.deepEqual(kinds(objects), [
        'ConfigMap',
        'Deployment',
        'PersistentVolumeClaim',
        'Service',
        'ServiceAccount',
      ]);
      for (const object of objects) MODELS[`${object.apiVersion}/${object.kind}`]!(object).validate();
    });

    test('when rendered with the production values, then the aws store, scaling and monitoring objects render and each is valid for its model', () => {
      const objects = render({ valueFiles: [PRODUCTION_VALUES] });
      assert.deepEqual(kinds(objects), [
        'ConfigMap',
        'ConfigMap',
        'Deployment',
        'HorizontalPodAutoscaler',
        'NetworkPolicy',
        'PodDisruptionBudget',
        'PrometheusRule',
        'Service',
        'ServiceAccount',
        'ServiceMonitor',
      ]);
      validateAll(objects);
    });

    test('when rendered with the PostgreSQL values, then the shared-store objects render without a claim and each is valid for its model', () => {
      const objects = render({ valueFiles: [POSTGRES_VALUES] });
      assert.deepEqual(kinds(objects), [
        'ConfigMap',
        'Deployment',
        'HorizontalPodAutoscaler',
        'NetworkPolicy',
        'PodDisruptionBudget',
        'Service',
        'ServiceAccount',
      ]);
      validateAll(objects);
    });
  });

  describe('pod', () => {
    test('when rendered, then the pod and its container run hardened', () => {
      for (const objects of [
        render(),
        render({ valueFiles: [PRODUCTION_VALUES] }),
        render({ valueFiles: [POSTGRES_VALUES] }),
      ]) {
        const spec = podSpec(objects);
        assert.equal(spec.securityContext?.runAsNonRoot, true);
        assert.deepEqual(spec.securityContext?.seccompProfile, { type: 'RuntimeDefault' });
        assert.equal(spec.automountServiceAccountToken, false);
        assert.deepEqual(brokerContainer(objects).securityContext, {
          runAsNonRoot: true,
          privileged: false,
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
          capabilities: { drop: ['ALL'] },
          seccompProfile: { type: 'RuntimeDefault' },
        });
      }
    });

    test('when rendered, then liveness checks /healthz and readiness checks /readyz on the http port', () => {
      const container = brokerContainer(render());
      assert.deepEqual(container.ports, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
      assert.deepEqual(container.livenessProbe?.httpGet, { path: '/healthz', port: 'http' });
      assert.deepEqual(container.startupProbe?.httpGet, { path: '/healthz', port: 'http' });
      assert.deepEqual(container.readinessProbe?.httpGet, { path: '/readyz', port: 'http' });
      assert.ok(container.resources?.requests !== undefined);
    });

    test('when rendered, then /tmp is a writable emptyDir over the read-only root filesystem', () => {
      const objects = render();
      const tmpMount = brokerContainer(objects).volumeMounts?.find((m) => m.mountPath === '/tmp');
      assert.ok(tmpMount !== undefined && tmpMount.readOnly !== true);
      const tmp = podSpec(objects).volumes?.find((v) => v.name === tmpMount.name);
      assert.ok(tmp?.emptyDir !== undefined);
    });

    test('when rendered, then the broker delays and drains by itself (no preStop hook) and the grace period outlasts both', () => {
      const objects = render();
      const spec = podSpec(objects);
      assert.equal(brokerContainer(objects).lifecycle, undefined);
      const data = brokerConfigMapData(objects);
      assert.equal(data['BROKER_SHUTDOWN_DELAY_SECONDS'], '5');
      assert.equal(data['BROKER_DRAIN_TIMEOUT_SECONDS'], '10');
      assert.ok(spec.terminationGracePeriodSeconds! >= 5 + 10 + 5);
    });

    test('when the grace period does not cover the shutdown delay plus the drain, then rendering fails saying so', () => {
      const message = renderFailure(['terminationGracePeriodSeconds=15']);
      assert.match(message, /terminationGracePeriodSeconds \(15\) must be at least/);
      assert.doesNotThrow(() =>
        render({ sets: ['config.shutdownDelaySeconds=0', 'terminationGracePeriodSeconds=15'] }),
      );
    });
  });

  describe('secrets', () => {
    test('when rendered with the file store, then the master key and policy Secrets are mounted as read-only directories, never by subPath', () => {
      const objects = render();
      const container = brokerContainer(objects);
      const volumes = podSpec(objects).volumes ?? [];
      const env = brokerConfigMapData(objects);
      for (const [volumeName, variable, secretName] of [
        ['master-key', 'BROKER_MASTER_KEY_FILE', 'connection-broker-master-key'],
        ['policy', 'BROKER_POLICY_FILE', 'connection-broker-policy'],
      ] as const) {
        const mount = container.volumeMounts?.find((m) => m.name === volumeName);
        assert.ok(mount !== undefined, `no mount of ${volumeName}`);
        assert.equal(mount.subPath, undefined);
        assert.equal(mount.subPathExpr, undefined);
        assert.equal(mount.readOnly, true);
        assert.equal(secretVolume(volumes, volumeName).secret?.secretName, secretName);
        assert.ok(env[variable]?.startsWith(`${mount.mountPath}/`), `${variable} is in the mount`);
      }
    });

    test('when rendered with the aws store, then there is no master key volume, PersistentVolumeClaim or data directory', () => {
      const objects = render({ valueFiles: [PRODUCTION_VALUES] });
      const volumes = podSpec(objects).volumes ?? [];
      assert.deepEqual(volumes.map((v) => v.name).sort(), ['policy', 'tmp']);
      assert.ok(!objects.some((object) => object.kind === 'PersistentVolumeClaim'));
      const env = brokerConfigMapData(objects);
      assert.equal(env['BROKER_MASTER_KEY_FILE'], undefined);
      assert.equal(env['BROKER_DATA_DIR'], undefined);
    });

    test('when rendered, then no Secret and no secret value appear anywhere in the output', () => {
      const key = randomBytes(32).toString('base64');
      const cases: { valueFiles: string[]; sets: string[] }[] = [
        { valueFiles: [], sets: [] },
        { valueFiles: [PRODUCTION_VALUES], sets: [] },
        { valueFiles: [POSTGRES_VALUES], sets: [] },
        { valueFiles: [], sets: POSTGRES_PARTS },
      ];
      for (const { valueFiles, sets } of cases) {
        // The config checksum is the one 64-hex-digit value the chart renders on purpose.
        const output = runHelm(templateArgs(valueFiles, sets)).stdout.replace(
          /checksum\/config: [0-9a-f]{64}/g,
          '',
        );
        const objects = render({ valueFiles, sets });
        assert.ok(!objects.some((object) => object.kind === 'Secret'));
        const env = brokerConfigMapData(objects);
        for (const inline of ['BROKER_MASTER_KEY', 'BROKER_MASTER_KEYS']) {
          assert.equal(env[inline], undefined);
        }
        // Nothing shaped like a 32-byte base64 key or a 64-hex-digit caller key.
        assert.doesNotMatch(output, /[A-Za-z0-9+/]{43}=/);
        assert.doesNotMatch(output, /\b[0-9a-f]{64}\b/);
        assert.ok(!output.includes(key));
        // No database URL (which may hold a password) and no password variable.
        assert.doesNotMatch(output, /postgres(ql)?:\/\//);
        assert.ok(!output.includes('PGPASSWORD'));
      }
    });

    test('when a secret is offered through values, then the schema refuses it', () => {
      const key = randomBytes(32).toString('base64');
      assert.match(
        renderFailure([`store.file.masterKey.value=${key}`]),
        /additional properties 'value' not allowed/,
      );
      assert.match(
        renderFailure([`extraEnv[0].name=BROKER_MASTER_KEY`, `extraEnv[0].value=${key}`]),
        /extraEnv\/0\/name/,
      );
      for (const field of ['url', 'password']) {
        assert.match(
          renderFailure([
            ...POSTGRES_URL,
            `store.postgres.${field}=postgresql://broker:${key}@db/broker`,
          ]),
          new RegExp(`at '/store/postgres': additional properties '${field}' not allowed`),
        );
      }
      assert.match(
        renderFailure([...POSTGRES_URL, 'extraEnv[0].name=PGPASSWORD', `extraEnv[0].value=${key}`]),
        /at '\/extraEnv\/0': missing property 'valueFrom'/,
      );
    });
  });

  describe('store modes and scaling', () => {
    test('when rendered with the file store, then one replica is replaced by Recreate on a kept ReadWriteOnce claim', () => {
      const objects = render();
      const deployment = new Deployment(only(objects, 'Deployment'));
      assert.equal(deployment.spec?.replicas, 1);
      assert.deepEqual(deployment.spec?.strategy, { type: 'Recreate' });
      const claim = new PersistentVolumeClaim(only(objects, 'PersistentVolumeClaim'));
      assert.deepEqual(claim.spec?.accessModes, ['ReadWriteOnce']);
      assert.equal(claim.metadata?.annotations?.['helm.sh/resource-policy'], 'keep');
      const data = podSpec(objects).volumes?.find((v) => v.name === 'data');
      assert.equal(data?.persistentVolumeClaim?.claimName, claim.metadata?.name);
      assert.equal(brokerConfigMapData(objects)['BROKER_SECRET_STORE'], 'file');
    });

    test('when accessMode is ReadWriteOncePod, then the claim allows one pod only; a mode that lets two nodes write is refused', () => {
      const objects = render({ sets: ['store.file.persistence.accessMode=ReadWriteOncePod'] });
      const claim = new PersistentVolumeClaim(only(objects, 'PersistentVolumeClaim'));
      assert.deepEqual(claim.spec?.accessModes, ['ReadWriteOncePod']);
      assert.match(
        renderFailure(['store.file.persistence.accessMode=ReadWriteMany']),
        /accessMode/,
      );
    });

    test('when the file store is given replicaCount 2, then rendering fails with a clear message', () => {
      const message = renderFailure(['replicaCount=2']);
      assert.match(message, /store\.type=file runs exactly one replica/);
      assert.match(message, /replicaCount is 2/);
    });

    test('when the file store is given autoscaling, then rendering fails with a clear message', () => {
      assert.match(
        renderFailure(['autoscaling.enabled=true']),
        /store\.type=file runs exactly one replica.*autoscaling\.enabled must be false/,
      );
    });

    test('when rendered with the production values, then Secrets Manager is configured, rolled without downtime and scaled by the HorizontalPodAutoscaler', () => {
      const objects = render({ valueFiles: [PRODUCTION_VALUES] });
      const deployment = new Deployment(only(objects, 'Deployment'));
      assert.equal(deployment.spec?.replicas, undefined, 'the HPA owns the replica count');
      assert.deepEqual(deployment.spec?.strategy, {
        type: 'RollingUpdate',
        rollingUpdate: { maxUnavailable: 0, maxSurge: 1 },
      });
      const hpa = new HorizontalPodAutoscaler(only(objects, 'HorizontalPodAutoscaler'));
      assert.deepEqual(hpa.spec?.scaleTargetRef, {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        name: FULLNAME,
      });
      assert.equal(hpa.spec?.minReplicas, 3);
      const env = brokerConfigMapData(objects);
      assert.equal(env['BROKER_SECRET_STORE'], 'aws');
      assert.equal(env['BROKER_REGION'], 'eu-west-1');
      assert.equal(env['BROKER_SECRET_NAME_PREFIX'], 'connection-broker/');
      assert.match(env['BROKER_KMS_KEY_ID'] ?? '', /^arn:aws:kms:/);
      const account = only(objects, 'ServiceAccount');
      assert.equal(
        (account.metadata as { annotations?: Record<string, string> }).annotations?.[
          'eks.amazonaws.com/role-arn'
        ],
        'arn:aws:iam::123456789012:role/connection-broker',
      );
      assert.equal(podSpec(objects).serviceAccountName, account.metadata.name);
    });

    test('when one replica runs, then there is no PodDisruptionBudget and no anti-affinity', () => {
      for (const objects of [
        render(),
        render({ sets: ['store.type=aws'] }),
        render({ sets: [...POSTGRES_URL, 'replicaCount=1'] }),
      ]) {
        assert.ok(!objects.some((object) => object.kind === 'PodDisruptionBudget'));
        assert.equal(podSpec(objects).affinity, undefined);
      }
    });

    test('when more than one replica runs, then a PodDisruptionBudget and pod anti-affinity keep them apart', () => {
      const objects = render({ sets: ['store.type=aws', 'replicaCount=2'] });
      const budget = new PodDisruptionBudget(only(objects, 'PodDisruptionBudget'));
      assert.equal(budget.spec?.maxUnavailable, 1);
      assert.deepEqual(budget.spec?.selector?.matchLabels, {
        'app.kubernetes.io/name': 'connection-broker',
        'app.kubernetes.io/instance': RELEASE,
      });
      const preferred =
        podSpec(objects).affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution;
      assert.equal(preferred?.[0]?.podAffinityTerm.topologyKey, 'kubernetes.io/hostname');
      const hard = podSpec(render({ valueFiles: [PRODUCTION_VALUES] })).affinity?.podAntiAffinity;
      assert.equal(
        hard?.requiredDuringSchedulingIgnoredDuringExecution?.[0]?.topologyKey,
        'kubernetes.io/hostname',
      );
    });
  });

  describe('postgres store', () => {
    /** The mount a file variable points into: read-only, a whole directory (no subPath). */
    function mountOf(objects: K8sObject[], variable: string, volumeName: string): string {
      const mount = brokerContainer(objects).volumeMounts?.find((m) => m.name === volumeName);
      assert.ok(mount !== undefined, `no mount of ${volumeName}`);
      assert.equal(mount.readOnly, true);
      assert.equal(mount.subPath, undefined);
      const file = brokerConfigMapData(objects)[variable];
      assert.ok(
        file !== undefined && file.startsWith(`${mount.mountPath}/`),
        `${variable} (${file}) is in the mount`,
      );
      return file.slice(mount.mountPath.length + 1);
    }

    /** Three replicas on the shared store: rolled, budgeted and kept apart as on aws; no claim. */
    function assertScaledOut(objects: K8sObject[]): void {
      validateAll(objects);
      const deployment = new Deployment(only(objects, 'Deployment'));
      assert.equal(deployment.spec?.replicas, 3);
      assert.deepEqual(deployment.spec?.strategy, {
        type: 'RollingUpdate',
        rollingUpdate: { maxUnavailable: 0, maxSurge: 1 },
      });
      assert.ok(!objects.some((object) => object.kind === 'PersistentVolumeClaim'));
      const volumes = podSpec(objects).volumes ?? [];
      assert.ok(!volumes.some((v) => v.name === 'data' || v.persistentVolumeClaim !== undefined));
      const budget = new PodDisruptionBudget(only(objects, 'PodDisruptionBudget'));
      assert.equal(budget.spec?.maxUnavailable, 1);
      const preferred =
        podSpec(objects).affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution;
      assert.equal(preferred?.[0]?.podAffinityTerm.topologyKey, 'kubernetes.io/hostname');
      const env = brokerConfigMapData(objects);
      assert.equal(env['BROKER_SECRET_STORE'], 'postgres');
      assert.equal(env['BROKER_DATA_DIR'], undefined);
      // The shared key ring: the master key Secret, mounted as for the file store.
      assert.equal(
        secretVolume(volumes, 'master-key').secret?.secretName,
        'connection-broker-master-key',
      );
      assert.equal(mountOf(objects, 'BROKER_MASTER_KEY_FILE', 'master-key'), 'master.key');
    }

    test('when the URL comes from a Secret at three replicas, then BROKER_DATABASE_URL is a secretKeyRef (never a literal) and the pods scale as on aws', () => {
      const objects = render({ sets: POSTGRES_URL });
      assertScaledOut(objects);
      const env = brokerContainer(objects).env ?? [];
      assert.deepEqual(env, [
        {
          name: 'BROKER_DATABASE_URL',
          valueFrom: { secretKeyRef: { name: 'broker-db-app', key: 'uri' } },
        },
      ]);
      const data = brokerConfigMapData(objects);
      assert.equal(data['BROKER_DATABASE_URL'], undefined);
      assert.equal(data['BROKER_DATABASE_POOL_MAX'], '10');
      assert.equal(data['BROKER_DATABASE_PASSWORD_FILE'], undefined);
      assert.equal(data['BROKER_DATABASE_CA_FILE'], undefined);
      assert.deepEqual(
        (podSpec(objects).volumes ?? []).map((v) => v.name),
        ['tmp', 'master-key', 'policy'],
      );
      const other = brokerContainer(render({ sets: [...POSTGRES_URL, 'store.postgres.urlKey=url'] }));
      assert.equal(other.env?.[0]?.valueFrom?.secretKeyRef?.key, 'url');
    });

    test('when the database is given by its parts with a password file and a CA at three replicas, then the libpq variables are values and the password and the CA are mounted files', () => {
      const objects = render({ sets: POSTGRES_PARTS });
      assertScaledOut(objects);
      assert.deepEqual(brokerContainer(objects).env, [
        { name: 'PGHOST', value: 'db.example.internal' },
        { name: 'PGPORT', value: '6432' },
        { name: 'PGDATABASE', value: 'brokers' },
        { name: 'PGUSER', value: 'broker' },
      ]);
      const data = brokerConfigMapData(objects);
      assert.equal(data['BROKER_DATABASE_POOL_MAX'], '20');
      const volumes = podSpec(objects).volumes ?? [];
      const password = secretVolume(volumes, 'database-password').secret;
      assert.equal(password?.secretName, 'broker-db-password');
      assert.deepEqual(password?.items, [
        { key: 'pw', path: mountOf(objects, 'BROKER_DATABASE_PASSWORD_FILE', 'database-password') },
      ]);
      const ca = secretVolume(volumes, 'database-ca').secret;
      assert.equal(ca?.secretName, 'broker-db-ca');
      assert.deepEqual(ca?.items, [
        { key: 'ca.crt', path: mountOf(objects, 'BROKER_DATABASE_CA_FILE', 'database-ca') },
      ]);
      // Empty database or user: libpq's defaults, not an empty variable.
      const bare = brokerContainer(
        render({ sets: [...POSTGRES_PARTS, 'store.postgres.database=', 'store.postgres.user='] }),
      ).env;
      assert.deepEqual(
        bare?.map((variable) => variable.name),
        ['PGHOST', 'PGPORT'],
      );
    });

    test('when the CA bundle is in a ConfigMap, then it is mounted from the ConfigMap', () => {
      const objects = render({
        sets: [
          ...POSTGRES_URL,
          'store.postgres.caConfigMap.name=internal-ca',
          'store.postgres.caConfigMap.key=bundle.pem',
        ],
      });
      validateAll(objects);
      const volume = (podSpec(objects).volumes ?? []).find((v) => v.name === 'database-ca');
      assert.equal(volume?.configMap?.name, 'internal-ca');
      assert.deepEqual(volume?.configMap?.items, [
        { key: 'bundle.pem', path: mountOf(objects, 'BROKER_DATABASE_CA_FILE', 'database-ca') },
      ]);
    });

    test('when autoscaling is on, then the HorizontalPodAutoscaler owns the replica count as on aws', () => {
      const objects = render({ valueFiles: [POSTGRES_VALUES] });
      const deployment = new Deployment(only(objects, 'Deployment'));
      assert.equal(deployment.spec?.replicas, undefined);
      const hpa = new HorizontalPodAutoscaler(only(objects, 'HorizontalPodAutoscaler'));
      assert.equal(hpa.spec?.scaleTargetRef.name, FULLNAME);
      assert.equal(hpa.spec?.minReplicas, 3);
      assert.ok(objects.some((object) => object.kind === 'PodDisruptionBudget'));
      const affinity = podSpec(objects).affinity?.podAntiAffinity;
      assert.ok(affinity?.requiredDuringSchedulingIgnoredDuringExecution !== undefined);
      assert.equal(podSpec(objects).topologySpreadConstraints?.length, 1);
    });

    test('when the master key Secret is missing, then rendering fails saying the key ring is required', () => {
      assert.match(
        renderFailure([...POSTGRES_URL, 'store.postgres.masterKey.existingSecret.name=']),
        /store\.type=postgres needs store\.postgres\.masterKey\.existingSecret\.name: a Secret holding the key ring every replica shares/,
      );
    });

    test('when the database is given neither or both ways, or the CA twice, then rendering fails saying which to set', () => {
      assert.match(
        renderFailure(['store.type=postgres']),
        /store\.type=postgres needs the database: store\.postgres\.existingSecret .* or store\.postgres\.host/,
      );
      assert.match(
        renderFailure([...POSTGRES_URL, 'store.postgres.host=db']),
        /store\.postgres\.existingSecret .* or from store\.postgres\.host .*, not both/,
      );
      assert.match(
        renderFailure([
          ...POSTGRES_PARTS,
          'store.postgres.caConfigMap.name=internal-ca',
        ]),
        /set store\.postgres\.caSecret\.name or store\.postgres\.caConfigMap\.name .*, not both/,
      );
    });
  });

  describe('scheduling and extensions', () => {
    test('when a topology spread constraint has no labelSelector, then it counts this release\'s pods', () => {
      const constraints = podSpec(render({ valueFiles: [PRODUCTION_VALUES] }))
        .topologySpreadConstraints;
      assert.equal(constraints?.length, 1);
      assert.deepEqual(constraints?.[0]?.labelSelector?.matchLabels, {
        'app.kubernetes.io/name': 'connection-broker',
        'app.kubernetes.io/instance': RELEASE,
      });
      const own = podSpec(
        render({
          sets: [
            'topologySpreadConstraints[0].maxSkew=1',
            'topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone',
            'topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule',
            'topologySpreadConstraints[0].labelSelector.matchLabels.team=payments',
          ],
        }),
      ).topologySpreadConstraints;
      assert.deepEqual(own?.[0]?.labelSelector, { matchLabels: { team: 'payments' } });
    });

    test('when extra volumes and mounts are given (a private CA bundle), then the pod mounts them beside its own', () => {
      const objects = render({
        sets: [
          'extraVolumes[0].name=internal-ca',
          'extraVolumes[0].configMap.name=internal-ca-bundle',
          'extraVolumeMounts[0].name=internal-ca',
          'extraVolumeMounts[0].mountPath=/etc/ssl/internal',
          'extraVolumeMounts[0].readOnly=true',
          'extraEnv[0].name=NODE_EXTRA_CA_CERTS',
          'extraEnv[0].value=/etc/ssl/internal/ca.crt',
        ],
      });
      for (const object of objects) MODELS[`${object.apiVersion}/${object.kind}`]!(object).validate();
      const volumes = podSpec(objects).volumes ?? [];
      assert.deepEqual(volumes.map((v) => v.name), ['tmp', 'data', 'master-key', 'policy', 'internal-ca']);
      assert.deepEqual(volumes.at(-1)?.configMap, { name: 'internal-ca-bundle' });
      const mounts = brokerContainer(objects).volumeMounts ?? [];
      assert.deepEqual(mounts.at(-1), {
        name: 'internal-ca',
        mountPath: '/etc/ssl/internal',
        readOnly: true,
      });
      assert.equal(brokerContainer(objects).securityContext?.readOnlyRootFilesystem, true);
      for (const own of ['policy', 'database-password', 'database-ca']) {
        assert.match(renderFailure([`extraVolumes[0].name=${own}`]), /\/extraVolumes\/0\/name/);
      }
      assert.match(renderFailure(['extraVolumeMounts[0].name=x']), /\/extraVolumeMounts\/0/);
    });
  });

  describe('values schema', () => {
    test('when a value has an unknown key, then the schema refuses it', () => {
      assert.match(renderFailure(['replicas=2']), /additional properties 'replicas' not allowed/);
      assert.match(
        renderFailure(['config.tokenTimeout=5000']),
        /at '\/config': additional properties 'tokenTimeout' not allowed/,
      );
    });

    test('when a value has the wrong type or is out of range, then the schema refuses it', () => {
      assert.match(renderFailure(['replicaCount=two']), /\/replicaCount': got string, want integer/);
      assert.match(
        renderFailure(['store.type=s3']),
        /at '\/store\/type': value must be one of 'file', 'aws', 'postgres'/,
      );
      assert.match(renderFailure(['store.type=postgresql']), /\/store\/type/);
      assert.match(
        renderFailure([...POSTGRES_URL, 'store.postgres.poolMax=101']),
        /\/store\/postgres\/poolMax/,
      );
      assert.match(
        renderFailure([...POSTGRES_PARTS, 'store.postgres.port=70000']),
        /\/store\/postgres\/port/,
      );
      assert.match(
        renderFailure([...POSTGRES_PARTS, 'store.postgres.passwordSecret.name=Not_A_Name']),
        /\/store\/postgres\/passwordSecret\/name/,
      );
      assert.match(
        renderFailure([...POSTGRES_URL, 'networkPolicy.databaseEgress.cidrs[0]=db.example']),
        /\/networkPolicy\/databaseEgress\/cidrs\/0/,
      );
      assert.match(renderFailure(['config.tokenTimeoutMs=50']), /\/config\/tokenTimeoutMs/);
      assert.match(renderFailure(['config.accountId=12345']), /\/config\/accountId/);
    });
  });

  describe('configuration', () => {
    test('when rendered, then every ConfigMap entry is a variable src/config.ts reads, and loadConfig accepts them all', () => {
      const known = namesConfigReads();
      for (const options of [
        {},
        { valueFiles: [PRODUCTION_VALUES] },
        { valueFiles: [POSTGRES_VALUES] },
        { sets: POSTGRES_PARTS },
      ]) {
        const objects = render(options);
        const data = brokerConfigMapData(objects);
        assert.deepEqual(
          Object.keys(data).filter((name) => !known.has(name)),
          [],
        );
        // The chart's own env entries: src/config.ts's names, or the libpq ones node-postgres reads.
        assert.deepEqual(
          Object.keys(brokerEnvironment(objects)).filter(
            (name) => !known.has(name) && !LIBPQ_VARIABLES.has(name),
          ),
          [],
        );
        assert.doesNotThrow(() => loadConfig(brokerEnvironment(objects)));
      }
    });

    test('when JWT callers are configured, then issuer and audience reach the broker, and one without the other is refused', () => {
      const env = brokerConfigMapData(
        render({
          sets: ['config.jwt.issuer=https://oidc.example.com', 'config.jwt.audience=broker'],
        }),
      );
      assert.equal(env['BROKER_JWT_ISSUER'], 'https://oidc.example.com');
      assert.equal(env['BROKER_JWT_AUDIENCE'], 'broker');
      assert.match(
        renderFailure(['config.jwt.issuer=https://oidc.example.com']),
        /config\.jwt\.issuer and config\.jwt\.audience together/,
      );
    });

    test('when the broker runs open deliberately, then no policy is mounted; otherwise the policy Secret is required', () => {
      const objects = render({ sets: ['config.auth=none'] });
      assert.equal(brokerConfigMapData(objects)['BROKER_POLICY_FILE'], undefined);
      assert.ok(!(podSpec(objects).volumes ?? []).some((v) => v.name === 'policy'));
      assert.match(renderFailure(['policy.existingSecret.name=']), /needs policy\.existingSecret\.name/);
    });
  });

  describe('network policy', () => {
    test('when the network policy is on, then ingress reaches only the http port and egress stays open', () => {
      const policy = only(render({ valueFiles: [PRODUCTION_VALUES] }), 'NetworkPolicy');
      const spec = new NetworkPolicy(policy).spec;
      assert.deepEqual(spec?.policyTypes, ['Ingress']);
      assert.deepEqual(spec?.ingress?.[0]?.ports, [{ port: 'http', protocol: 'TCP' }]);
      assert.equal(spec?.ingress?.[0]?.from?.length, 2);
    });

    test('when egress is restricted, then DNS and the listed rules are the only ways out', () => {
      const policy = only(
        render({
          sets: [
            'networkPolicy.enabled=true',
            'networkPolicy.egress.restrict=true',
            'networkPolicy.egress.rules[0].ports[0].port=443',
          ],
        }),
        'NetworkPolicy',
      );
      new NetworkPolicy(policy).validate();
      const spec = new NetworkPolicy(policy).spec;
      assert.deepEqual(spec?.policyTypes, ['Ingress', 'Egress']);
      assert.equal(spec?.egress?.length, 2);
      assert.deepEqual(spec?.egress?.[0]?.ports?.map((p) => p.port), [53, 53]);
      assert.deepEqual(spec?.egress?.[0]?.to, [
        { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } } },
      ]);
      assert.deepEqual(spec?.egress?.[1], { ports: [{ port: 443 }] });
    });

    test('when egress is restricted on the PostgreSQL store, then the database is reachable on its port, at the cidrs and peers given', () => {
      const objects = render({
        sets: [
          ...POSTGRES_PARTS,
          'networkPolicy.enabled=true',
          'networkPolicy.egress.restrict=true',
          'networkPolicy.egress.rules[0].ports[0].port=443',
          'networkPolicy.databaseEgress.cidrs[0]=10.40.0.0/16',
          'networkPolicy.databaseEgress.peers[0].podSelector.matchLabels.cnpg\\.io/cluster=broker-db',
          'networkPolicy.databaseEgress.port=6432',
        ],
      });
      const policy = new NetworkPolicy(only(objects, 'NetworkPolicy'));
      policy.validate();
      const egress = policy.spec?.egress ?? [];
      assert.deepEqual(egress.map((rule) => rule.ports?.map((p) => p.port)), [[53, 53], [6432], [443]]);
      assert.deepEqual(egress[1], {
        ports: [{ port: 6432, protocol: 'TCP' }],
        to: [
          { ipBlock: { cidr: '10.40.0.0/16' } },
          { podSelector: { matchLabels: { 'cnpg.io/cluster': 'broker-db' } } },
        ],
      });

      const ci = new NetworkPolicy(only(render({ valueFiles: [POSTGRES_VALUES] }), 'NetworkPolicy'));
      assert.deepEqual(ci.spec?.policyTypes, ['Ingress', 'Egress']);
      assert.deepEqual(ci.spec?.egress?.[1]?.ports, [{ port: 5432, protocol: 'TCP' }]);
      assert.deepEqual(ci.spec?.egress?.[1]?.to, [
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'databases' } },
          podSelector: { matchLabels: { 'cnpg.io/cluster': 'broker-db' } },
        },
      ]);
    });

    test('when no database peer is given, then the database rule opens its port alone, to any address; other stores get no such rule', () => {
      const restrict = ['networkPolicy.enabled=true', 'networkPolicy.egress.restrict=true'];
      const open = new NetworkPolicy(
        only(render({ sets: [...POSTGRES_URL, ...restrict] }), 'NetworkPolicy'),
      ).spec?.egress;
      assert.equal(open?.length, 2);
      assert.deepEqual(open?.[1], { ports: [{ port: 5432, protocol: 'TCP' }] });
      for (const store of ['file', 'aws']) {
        const egress = new NetworkPolicy(
          only(
            render({
              sets: [
                `store.type=${store}`,
                ...restrict,
                'networkPolicy.databaseEgress.cidrs[0]=10.40.0.0/16',
              ],
            }),
            'NetworkPolicy',
          ),
        ).spec?.egress;
        assert.deepEqual(egress?.map((rule) => rule.ports?.map((p) => p.port)), [[53, 53]]);
      }
      // Unrestricted egress is open already: no Egress policy type, no rule.
      const unrestricted = new NetworkPolicy(
        only(render({ sets: [...POSTGRES_URL, 'networkPolicy.enabled=true'] }), 'NetworkPolicy'),
      ).spec;
      assert.deepEqual(unrestricted?.policyTypes, ['Ingress']);
      assert.equal(unrestricted?.egress, undefined);
    });

    test('when name resolution is elsewhere (NodeLocal DNSCache), then DNS egress goes to the peers given', () => {
      const policy = only(
        render({
          sets: [
            'networkPolicy.enabled=true',
            'networkPolicy.egress.restrict=true',
            'networkPolicy.egress.dnsPeers[0].ipBlock.cidr=169.254.20.10/32',
          ],
        }),
        'NetworkPolicy',
      );
      new NetworkPolicy(policy).validate();
      const spec = new NetworkPolicy(policy).spec;
      assert.deepEqual(spec?.egress?.[0]?.to, [{ ipBlock: { cidr: '169.254.20.10/32' } }]);
      assert.deepEqual(spec?.egress?.[0]?.ports?.map((p) => p.port), [53, 53]);
    });
  });

  describe('monitoring', () => {
    const series = exportedSeries();

    test('when the dashboard is on, then it is a ConfigMap for the Grafana sidecar whose every query uses metrics the broker exports', () => {
      const objects = render({ valueFiles: [PRODUCTION_VALUES] });
      const configMap = objects.find((o) => o.metadata.name === `${FULLNAME}-dashboard`);
      assert.ok(configMap !== undefined);
      assert.equal(configMap.metadata.labels?.['grafana_dashboard'], '1');
      const json = (configMap['data'] as Record<string, string>)['connection-broker.json'];
      assert.ok(json !== undefined);
      assert.equal(json, readFileSync(join(CHART, 'dashboards', 'connection-broker.json'), 'utf8').trimEnd());
      const dashboard = JSON.parse(json) as {
        panels: { type: string; title: string; targets?: { expr: string }[] }[];
      };
      const queries = dashboard.panels.flatMap((panel) => panel.targets ?? []);
      assert.ok(queries.length >= 15, `only ${queries.length} queries`);
      assert.deepEqual(
        queries.flatMap((query) => checkPromQL(query.expr, series)),
        [],
      );
      const titles = dashboard.panels.map((panel) => panel.title);
      for (const title of [
        'Credential requests by status',
        'Credential latency',
        'Token requests by outcome',
        'Cache hit ratio',
        'Connections by state',
        'Secret store up',
        'Secret store errors',
      ]) {
        assert.ok(titles.includes(title), `no panel ${title}`);
      }
    });

    test('when the alerts are on, then every rule uses metrics the broker exports, scoped to this release', () => {
      const rule = new PrometheusRule(
        only(render({ valueFiles: [PRODUCTION_VALUES] }), 'PrometheusRule') as never,
      );
      const rules = rule.spec?.groups?.flatMap((group) => group.rules ?? []) ?? [];
      assert.deepEqual(
        rules.map((r) => r.alert),
        [
          'ConnectionBrokerDown',
          'ConnectionBrokerSecretStoreDown',
          'ConnectionBrokerTokenEndpointFailures',
          'ConnectionBrokerDeauthorizedConnections',
          'ConnectionBrokerServingStaleConnections',
          'ConnectionBrokerHigh5xxRate',
        ],
      );
      for (const r of rules) {
        const expr = String(r.expr);
        // The one rule on Prometheus' own `up`: it fires when the broker's series are all gone.
        if (r.alert !== 'ConnectionBrokerDown') assert.deepEqual(checkPromQL(expr, series), []);
        assert.ok(expr.includes(`namespace="${NAMESPACE}", job="${FULLNAME}"`), expr);
        assert.equal(r.labels?.['team'], 'platform');
      }
      assert.equal(
        String(rules[0]?.expr),
        `absent(up{namespace="${NAMESPACE}", job="${FULLNAME}"} == 1)`,
      );
      assert.equal(rules[0]?.labels?.['namespace'], NAMESPACE);
      assert.match(String(rules[1]?.expr), /broker_secret_store_up\{[^}]*\}\) == 0$/);
    });

    test('when the alerts are on without the chart\'s ServiceMonitor, then no ConnectionBrokerDown alert assumes its job label', () => {
      const rule = new PrometheusRule(
        only(
          render({ valueFiles: [PRODUCTION_VALUES], sets: ['serviceMonitor.enabled=false'] }),
          'PrometheusRule',
        ) as never,
      );
      const alerts = rule.spec?.groups?.flatMap((group) => group.rules ?? []).map((r) => r.alert);
      assert.ok(alerts !== undefined && alerts.length === 5 && !alerts.includes('ConnectionBrokerDown'));
    });

    test('when the ServiceMonitor is on, then it scrapes /metrics on the http port of this release', () => {
      const monitor = new ServiceMonitor(
        only(render({ valueFiles: [PRODUCTION_VALUES] }), 'ServiceMonitor') as never,
      );
      assert.equal(monitor.spec.endpoints?.[0]?.port, 'http');
      assert.equal(monitor.spec.endpoints?.[0]?.path, '/metrics');
      assert.equal(monitor.metadata?.labels?.['release'], 'kube-prometheus-stack');
      assert.deepEqual(monitor.spec.selector.matchLabels, {
        'app.kubernetes.io/name': 'connection-broker',
        'app.kubernetes.io/instance': RELEASE,
      });
    });

    test('when /metrics needs a caller, then the ServiceMonitor must carry a caller key', () => {
      assert.match(
        renderFailure(['store.type=aws', 'config.metricsAuth=true', 'serviceMonitor.enabled=true']),
        /serviceMonitor\.authorization\.secretName/,
      );
      const monitor = only(
        render({
          sets: [
            'config.metricsAuth=true',
            'serviceMonitor.enabled=true',
            'serviceMonitor.authorization.secretName=scraper',
            'serviceMonitor.authorization.secretKey=key',
          ],
        }),
        'ServiceMonitor',
      );
      new ServiceMonitor(monitor as never).validate();
      assert.deepEqual(
        (monitor['spec'] as { endpoints: { authorization: unknown }[] }).endpoints[0]?.authorization,
        { type: 'Bearer', credentials: { name: 'scraper', key: 'key' } },
      );
    });

    test('when the caller key Secret is named without its key, or the other way round, then rendering fails saying so', () => {
      for (const half of [
        'serviceMonitor.authorization.secretName=scraper',
        'serviceMonitor.authorization.secretKey=key',
      ]) {
        assert.match(
          renderFailure(['config.metricsAuth=true', 'serviceMonitor.enabled=true', half]),
          /serviceMonitor\.authorization\.secretName and serviceMonitor\.authorization\.secretKey together/,
        );
      }
    });
  });
});
