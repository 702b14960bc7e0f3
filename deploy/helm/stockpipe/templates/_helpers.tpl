{{/*
Names and labels, in the shape of the prometheus-community charts: selectors hold only
name, instance and component (never the chart version, which changes on every upgrade).
*/}}

{{- define "stockpipe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stockpipe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "stockpipe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* stockpipe.componentName: (dict "ctx" $ "component" "ingestor") -> <fullname>-ingestor */}}
{{- define "stockpipe.componentName" -}}
{{- printf "%s-%s" (include "stockpipe.fullname" .ctx | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{/* stockpipe.selectorLabels: (dict "ctx" $ "component" "ingestor") */}}
{{- define "stockpipe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stockpipe.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/* stockpipe.labels: (dict "ctx" $ "component" "ingestor"); component may be empty. */}}
{{- define "stockpipe.labels" -}}
helm.sh/chart: {{ include "stockpipe.chart" .ctx }}
{{ include "stockpipe.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: stockpipe
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The six services, in pipeline order: the one list every per-kind template walks. */}}
{{- define "stockpipe.services" -}}
producer ingestor analytics forecaster dashboard notifier
{{- end -}}

{{/* stockpipe.image: (dict "ctx" $ "image" <service or job image values> "name" "ingestor") */}}
{{- define "stockpipe.image" -}}
{{- $img := .image | default dict -}}
{{- $g := .ctx.Values.image -}}
{{- $repo := $img.repository | default (printf "%s%s" $g.repositoryPrefix .name) -}}
{{- if and $g.registry (not $img.repository) -}}
{{- $repo = printf "%s/%s" $g.registry $repo -}}
{{- end -}}
{{- $tag := $img.tag | default $g.tag | default .ctx.Chart.AppVersion -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $repo $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (toString $tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding credentials: existingSecret or the chart's. */}}
{{- define "stockpipe.secretName" -}}
{{- .Values.existingSecret | default (include "stockpipe.fullname" .) -}}
{{- end -}}

{{/* Kafka bootstrap servers: the in-chart broker's Service, else the external list. */}}
{{- define "stockpipe.kafkaBootstrap" -}}
{{- if .Values.kafka.enabled -}}
{{- printf "%s:%d" (include "stockpipe.componentName" (dict "ctx" . "component" "kafka")) (int .Values.kafka.port) -}}
{{- else -}}
{{- required "kafka.bootstrapServers is required when kafka.enabled=false (host:port[,host:port])" .Values.kafka.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{- define "stockpipe.postgresHost" -}}
{{- if .Values.postgresql.enabled -}}
{{- include "stockpipe.componentName" (dict "ctx" . "component" "postgresql") -}}
{{- else -}}
{{- required "postgresql.host is required when postgresql.enabled=false" .Values.postgresql.host -}}
{{- end -}}
{{- end -}}

{{/* The migration hook runs before every upgrade (schema first, then the new code) and,
with an external database, before install. The in-chart database does not exist before
install: then the writers' init container migrates (see stockpipe.migrateInitContainer). */}}
{{- define "stockpipe.migrateHook" -}}
{{- if .Values.postgresql.enabled -}}pre-upgrade{{- else -}}pre-install,pre-upgrade{{- end -}}
{{- end -}}

{{/* Whether a service's pods migrate first (init container): with the in-chart database,
for the services that write to it. Safe from many pods at once (an advisory lock) and a
no-op when the schema is current. (dict "ctx" $ "name" "ingestor" "v" <merged values>) */}}
{{- define "stockpipe.migratesOnStart" -}}
{{- if and .ctx.Values.migrations.enabled .ctx.Values.postgresql.enabled .v.usesPostgres (ne .name "dashboard") -}}true{{- end -}}
{{- end -}}

{{/* Pod-level security: the restricted Pod Security Standard. */}}
{{- define "stockpipe.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsUser }}
fsGroup: {{ .runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* stockpipe.containerSecurityContext: (dict "readOnly" true) */}}
{{- define "stockpipe.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ .readOnly }}
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Environment every stockpipe container gets from the Secret (credentials only). */}}
{{- define "stockpipe.secretEnv" -}}
{{- $secret := include "stockpipe.secretName" .ctx -}}
{{- $keys := .ctx.Values.secretKeys -}}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ ternary $keys.postgresReadonlyPassword $keys.postgresPassword (eq .readonly true) }}
{{- if .ctx.Values.kafka.sasl.mechanism }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.kafkaSaslPassword }}
{{- end }}
{{- end -}}

{{/* Settings every service and job reads (the data of the common ConfigMap), as YAML. */}}
{{- define "stockpipe.commonConfig" -}}
{{- $c := .Values.config -}}
KAFKA_BOOTSTRAP_SERVERS: {{ include "stockpipe.kafkaBootstrap" . | quote }}
KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.securityProtocol | quote }}
KAFKA_COMPRESSION: {{ .Values.kafka.compression | quote }}
{{- if .Values.kafka.sasl.mechanism }}
KAFKA_SASL_MECHANISM: {{ .Values.kafka.sasl.mechanism | quote }}
KAFKA_SASL_USERNAME: {{ .Values.kafka.sasl.username | quote }}
{{- end }}
TOPIC_PREFIX: {{ $c.topicPrefix | quote }}
TOPIC_RAW: {{ $c.topics.raw | quote }}
TOPIC_INDICATORS: {{ $c.topics.indicators | quote }}
TOPIC_ALERTS: {{ $c.topics.alerts | quote }}
TOPIC_FORECASTS: {{ $c.topics.forecasts | quote }}
TOPIC_DLQ: {{ $c.topics.dlq | quote }}
POSTGRES_HOST: {{ include "stockpipe.postgresHost" . | quote }}
POSTGRES_PORT: {{ .Values.postgresql.port | quote }}
POSTGRES_DB: {{ .Values.postgresql.database | quote }}
POSTGRES_USER: {{ .Values.postgresql.username | quote }}
POSTGRES_CONNECT_TIMEOUT: {{ .Values.postgresql.connectTimeout | quote }}
HTTP_HOST: "0.0.0.0"
LIVENESS_TIMEOUT: {{ $c.livenessTimeout | quote }}
CLOCK_SKEW_TOLERANCE: {{ $c.clockSkewTolerance | quote }}
LOG_LEVEL: {{ $c.logLevel | quote }}
LOG_FORMAT: {{ $c.logFormat | quote }}
SHUTDOWN_TIMEOUT: {{ $c.shutdownTimeout | quote }}
PROGRESS_INTERVAL: {{ $c.progressInterval | quote }}
{{- range $k, $v := $c.extra }}
{{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/* One service's own settings (its ConfigMap's data): (dict "ctx" $ "name" "ingestor"). */}}
{{- define "stockpipe.serviceConfig" -}}
{{- $svc := index .ctx.Values .name -}}
SERVICE_NAME: {{ .name | quote }}
HTTP_PORT: {{ $svc.port | quote }}
{{- if eq .name "dashboard" }}
POSTGRES_USER: {{ .ctx.Values.postgresql.readonlyRole.username | quote }}
{{- /* SET ROLE to itself: the sessions keep the read-only login role's own rights. */}}
DASHBOARD_DB_ROLE: {{ .ctx.Values.postgresql.readonlyRole.username | quote }}
{{- $urls := list -}}
{{- range $s := splitList " " (include "stockpipe.services" .ctx) -}}
{{- $v := index $.ctx.Values $s -}}
{{- if and $v.enabled (ne $s "dashboard") -}}
{{- $urls = append $urls (printf "%s=http://%s:%d/metrics" $s (include "stockpipe.componentName" (dict "ctx" $.ctx "component" $s)) (int $v.port)) -}}
{{- end -}}
{{- end }}
DASHBOARD_METRICS_URLS: {{ join "," $urls | quote }}
{{- end }}
{{- range $k, $v := $svc.config }}
{{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/* Hash of a service's settings (common + own + credentials): a change rolls its pods. */}}
{{- define "stockpipe.serviceChecksum" -}}
{{- $sec := "" -}}
{{- if not .ctx.Values.existingSecret -}}
{{- $sec = include "stockpipe.secretData" .ctx -}}
{{- end -}}
{{- printf "%s\n%s\n%s" (include "stockpipe.commonConfig" .ctx) (include "stockpipe.serviceConfig" .) $sec | sha256sum -}}
{{- end -}}

{{/*
A password for the chart's Secret: the value given, else the one already in the cluster's
Secret (so upgrades keep it), else a new random one. (dict "ctx" $ "key" "..." "value" "...")
Rendering without a cluster (helm template) makes a new one each time.
*/}}
{{- define "stockpipe.password" -}}
{{- if .value -}}
{{- .value -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace (include "stockpipe.fullname" .ctx) -}}
{{- if and $existing (hasKey ($existing.data | default dict) .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The chart Secret's data (base64), computed once per render and cached in .Values so
every template (Secret, checksums) sees the same generated passwords. */}}
{{- define "stockpipe.secretData" -}}
{{- if not (hasKey .Values "__secretData") -}}
{{- $k := .Values.secretKeys -}}
{{- $d := dict -}}
{{- $_ := set $d $k.postgresPassword (include "stockpipe.password" (dict "ctx" . "key" $k.postgresPassword "value" .Values.postgresql.password) | b64enc) -}}
{{- $_ := set $d $k.postgresReadonlyPassword (include "stockpipe.password" (dict "ctx" . "key" $k.postgresReadonlyPassword "value" .Values.postgresql.readonlyRole.password) | b64enc) -}}
{{- if .Values.kafka.sasl.mechanism -}}
{{- $_ := set $d $k.kafkaSaslPassword (required "kafka.sasl.password is required with kafka.sasl.mechanism (or use existingSecret)" .Values.kafka.sasl.password | b64enc) -}}
{{- end -}}
{{- $_ := set $d $k.notifyEndpoints (toJson (.Values.notifier.endpoints | default list) | b64enc) -}}
{{- if .Values.dashboard.authPassword -}}
{{- $_ := set $d $k.dashboardAuthPassword (.Values.dashboard.authPassword | b64enc) -}}
{{- end -}}
{{- $_ := set .Values "__secretData" (toYaml $d) -}}
{{- end -}}
{{- index .Values "__secretData" -}}
{{- end -}}

{{- define "stockpipe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "stockpipe.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* A service's values merged over workloadDefaults: (dict "ctx" $ "name" "ingestor") -> YAML */}}
{{- define "stockpipe.serviceValues" -}}
{{- $svc := index .ctx.Values .name -}}
{{- toYaml (mergeOverwrite (deepCopy .ctx.Values.workloadDefaults) (deepCopy $svc)) -}}
{{- end -}}

{{/* PostgreSQL settings of the migration hook Job, inline (hooks may run before the
ConfigMaps exist): (dict "ctx" $ "secret" "<secret name>") */}}
{{- define "stockpipe.jobPostgresEnv" -}}
- name: SERVICE_NAME
  value: migrate
- name: POSTGRES_HOST
  value: {{ include "stockpipe.postgresHost" .ctx | quote }}
- name: POSTGRES_PORT
  value: {{ .ctx.Values.postgresql.port | quote }}
- name: POSTGRES_DB
  value: {{ .ctx.Values.postgresql.database | quote }}
- name: POSTGRES_USER
  value: {{ .ctx.Values.postgresql.username | quote }}
- name: POSTGRES_CONNECT_TIMEOUT
  value: {{ .ctx.Values.postgresql.connectTimeout | quote }}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .ctx.Values.secretKeys.postgresPassword }}
- name: LOG_LEVEL
  value: {{ .ctx.Values.config.logLevel | quote }}
- name: LOG_FORMAT
  value: {{ .ctx.Values.config.logFormat | quote }}
{{- end -}}

{{/* An egress rule to Kafka or PostgreSQL: the in-chart pods, else networkPolicy.externalTo
(any address when empty) on the port. (dict "ctx" $ "component" "kafka" "inChart" true "port" 9092) */}}
{{- define "stockpipe.egressTo" -}}
- ports:
    - {port: {{ .port }}, protocol: TCP}
  {{- if .inChart }}
  to:
    - podSelector:
        matchLabels:
          {{- include "stockpipe.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 10 }}
  {{- else if .ctx.Values.networkPolicy.externalTo }}
  to:
    {{- toYaml .ctx.Values.networkPolicy.externalTo | nindent 4 }}
  {{- end }}
{{- end -}}
