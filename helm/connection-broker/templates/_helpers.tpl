{{/* Chart name, overridable with nameOverride. */}}
{{- define "connection-broker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name, at most 63 characters (DNS label limit). */}}
{{- define "connection-broker.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels that select the broker's pods; must not change between upgrades. */}}
{{- define "connection-broker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "connection-broker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels for every resource of the chart. */}}
{{- define "connection-broker.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "connection-broker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: broker
{{- end }}

{{/* The service account's name. */}}
{{- define "connection-broker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "connection-broker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: a digest wins over a tag. */}}
{{- define "connection-broker.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The fewest replicas that will run: autoscaling's floor, else replicaCount. */}}
{{- define "connection-broker.minReplicas" -}}
{{- if .Values.autoscaling.enabled }}
{{- .Values.autoscaling.minReplicas }}
{{- else }}
{{- .Values.replicaCount }}
{{- end }}
{{- end }}

{{/* Whether the callers' policy is mounted: always, unless the broker runs open on purpose. */}}
{{- define "connection-broker.hasPolicy" -}}
{{- if ne .Values.config.auth "none" }}true{{ end }}
{{- end }}

{{/*
The Secret (name, key) holding the key ring, for the stores that seal records with it (file and
postgres); empty for aws, which Secrets Manager encrypts with KMS.
*/}}
{{- define "connection-broker.masterKeySecret" -}}
{{- if eq .Values.store.type "file" }}
{{- toYaml .Values.store.file.masterKey.existingSecret }}
{{- else if eq .Values.store.type "postgres" }}
{{- toYaml .Values.store.postgres.masterKey.existingSecret }}
{{- end }}
{{- end }}

{{/* The database's CA bundle as a volume source (secret or configMap), if one is given. */}}
{{- define "connection-broker.databaseCaVolume" -}}
{{- with .Values.store.postgres }}
{{- if .caSecret.name }}
secret:
  secretName: {{ .caSecret.name }}
  defaultMode: 0444
  items:
    - key: {{ .caSecret.key }}
      path: ca.crt
{{- else if .caConfigMap.name }}
configMap:
  name: {{ .caConfigMap.name }}
  defaultMode: 0444
  items:
    - key: {{ .caConfigMap.key }}
      path: ca.crt
{{- end }}
{{- end }}
{{- end }}

{{/* Paths inside the container. */}}
{{- define "connection-broker.dataDir" -}}/var/lib/connection-broker{{- end }}
{{- define "connection-broker.masterKeyDir" -}}/etc/connection-broker/master-key{{- end }}
{{- define "connection-broker.policyDir" -}}/etc/connection-broker/policy{{- end }}
{{- define "connection-broker.databasePasswordDir" -}}/etc/connection-broker/database-password{{- end }}
{{- define "connection-broker.databaseCaDir" -}}/etc/connection-broker/database-ca{{- end }}

{{/*
Combinations the schema cannot explain well; each fails the render with what to change.
Shutdown: the broker serves for config.shutdownDelaySeconds after SIGTERM, drains for at most
config.drainTimeoutSeconds, then closes its store (allow 5 s).
*/}}
{{- define "connection-broker.validate" -}}
{{- $store := .Values.store.type }}
{{- if eq $store "file" }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail (printf "store.type=file runs exactly one replica (the file store locks its data directory on one ReadWriteOnce volume), but replicaCount is %d: set replicaCount to 1, or use store.type=aws or postgres to scale" (int .Values.replicaCount)) }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- fail "store.type=file runs exactly one replica (the file store locks its data directory on one ReadWriteOnce volume), so autoscaling.enabled must be false: use store.type=aws or postgres to autoscale" }}
{{- end }}
{{- if not .Values.store.file.masterKey.existingSecret.name }}
{{- fail "store.type=file needs store.file.masterKey.existingSecret.name: a Secret holding the master key (openssl rand -base64 32); see the chart's README" }}
{{- end }}
{{- end }}
{{- if eq $store "postgres" }}
{{- with .Values.store.postgres }}
{{- if not .masterKey.existingSecret.name }}
{{- fail "store.type=postgres needs store.postgres.masterKey.existingSecret.name: a Secret holding the key ring every replica shares (openssl rand -base64 32), which seals every row; see the chart's README" }}
{{- end }}
{{- if and .existingSecret .host }}
{{- fail "store.type=postgres takes the database from store.postgres.existingSecret (a Secret holding a libpq URL under store.postgres.urlKey) or from store.postgres.host (with port, database, user and passwordSecret), not both: empty one of them" }}
{{- end }}
{{- if not (or .existingSecret .host) }}
{{- fail "store.type=postgres needs the database: store.postgres.existingSecret (a Secret holding a libpq URL under store.postgres.urlKey, e.g. CloudNativePG's <cluster>-app, key uri) or store.postgres.host (with port, database, user and passwordSecret)" }}
{{- end }}
{{- if and .caSecret.name .caConfigMap.name }}
{{- fail "set store.postgres.caSecret.name or store.postgres.caConfigMap.name (the database's CA bundle), not both" }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (include "connection-broker.hasPolicy" .) (not .Values.policy.existingSecret.name) }}
{{- fail "config.auth=policy needs policy.existingSecret.name: a Secret holding the callers' policy JSON; the broker refuses to listen beyond loopback without one (or set config.auth=none to run open deliberately)" }}
{{- end }}
{{- if ne (empty .Values.config.jwt.issuer) (empty .Values.config.jwt.audience) }}
{{- fail "set config.jwt.issuer and config.jwt.audience together" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail (printf "autoscaling.minReplicas (%d) is above autoscaling.maxReplicas (%d)" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- end }}
{{- $needed := add .Values.config.shutdownDelaySeconds .Values.config.drainTimeoutSeconds 5 }}
{{- if lt (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least config.shutdownDelaySeconds + config.drainTimeoutSeconds + 5 s to close the store (%d), or in-flight requests are cut off" (int .Values.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- with .Values.serviceMonitor.authorization }}
{{- if ne (empty .secretName) (empty .secretKey) }}
{{- fail "set serviceMonitor.authorization.secretName and serviceMonitor.authorization.secretKey together (the Secret and its key holding the scraper's caller key)" }}
{{- end }}
{{- end }}
{{- if and .Values.config.metricsAuth .Values.serviceMonitor.enabled (not .Values.serviceMonitor.authorization.secretName) }}
{{- fail "config.metricsAuth=true makes /metrics need a caller key: set serviceMonitor.authorization.secretName and secretKey" }}
{{- end }}
{{- end }}
