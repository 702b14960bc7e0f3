{{/*
The one workload template: a service's Deployment and Service, used by the thin per-service
files (producer.yaml, ingestor.yaml, ...). Everything a service may differ in is in its
values block, merged over workloadDefaults. The per-kind templates (pdb.yaml, hpa.yaml,
servicemonitor.yaml, networkpolicy.yaml) walk the same list of services.

Usage: {{ include "stockpipe.workload" (dict "ctx" $ "name" "ingestor") }}
*/}}
{{- define "stockpipe.workload" -}}
{{- $ctx := .ctx -}}
{{- $name := .name -}}
{{- $v := include "stockpipe.serviceValues" . | fromYaml -}}
{{- if $v.enabled -}}
{{- $full := include "stockpipe.componentName" (dict "ctx" $ctx "component" $name) -}}
{{- $sel := include "stockpipe.selectorLabels" (dict "ctx" $ctx "component" $name) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $full }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "stockpipe.labels" (dict "ctx" $ctx "component" $name) | nindent 4 }}
spec:
  {{- if not (and $v.autoscaling $v.autoscaling.enabled) }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      {{- $sel | nindent 6 }}
  template:
    metadata:
      labels:
        {{- $sel | nindent 8 }}
        app.kubernetes.io/part-of: stockpipe
        {{- /* Read by the NetworkPolicies of the in-chart Kafka and PostgreSQL. */}}
        stockpipe.io/kafka-client: "true"
        {{- if $v.usesPostgres }}
        stockpipe.io/postgres-client: "true"
        {{- end }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "stockpipe.serviceChecksum" (dict "ctx" $ctx "name" $name) }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "stockpipe.serviceAccountName" $ctx }}
      automountServiceAccountToken: false
      # No service discovery through environment variables: settings come from the ConfigMaps.
      enableServiceLinks: false
      {{- with $ctx.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "stockpipe.podSecurityContext" (dict "runAsUser" 10001) | nindent 8 }}
      # SHUTDOWN_TIMEOUT for the service's own clean stop, plus slack before SIGKILL.
      terminationGracePeriodSeconds: {{ add (ceil $ctx.Values.config.shutdownTimeout | int) 10 }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- if include "stockpipe.migratesOnStart" (dict "ctx" $ctx "name" $name "v" $v) }}
      initContainers:
        # The in-chart database is new at install: apply the migrations before the service starts.
        - name: migrate
          image: {{ include "stockpipe.image" (dict "ctx" $ctx "image" $v.image "name" $name) }}
          imagePullPolicy: {{ ($v.image | default dict).pullPolicy | default $ctx.Values.image.pullPolicy }}
          command: [python, -m, stockpipe.common.migrate]
          envFrom:
            - configMapRef:
                name: {{ include "stockpipe.componentName" (dict "ctx" $ctx "component" "common") }}
          env:
            - name: SERVICE_NAME
              value: migrate
            {{- include "stockpipe.secretEnv" (dict "ctx" $ctx "readonly" false) | nindent 12 }}
          {{- with $ctx.Values.jobs.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- include "stockpipe.containerSecurityContext" (dict "readOnly" true) | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      {{- end }}
      containers:
        - name: {{ $name }}
          image: {{ include "stockpipe.image" (dict "ctx" $ctx "image" $v.image "name" $name) }}
          imagePullPolicy: {{ ($v.image | default dict).pullPolicy | default $ctx.Values.image.pullPolicy }}
          envFrom:
            - configMapRef:
                name: {{ include "stockpipe.componentName" (dict "ctx" $ctx "component" "common") }}
            - configMapRef:
                name: {{ $full }}
          env:
            {{- include "stockpipe.secretEnv" (dict "ctx" $ctx "readonly" (eq $name "dashboard")) | nindent 12 }}
            {{- if eq $name "dashboard" }}
            - name: DASHBOARD_AUTH_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: {{ include "stockpipe.secretName" $ctx }}
                  key: {{ $ctx.Values.secretKeys.dashboardAuthPassword }}
                  optional: true
            {{- end }}
            {{- if eq $name "notifier" }}
            - name: NOTIFY_ENDPOINTS
              valueFrom:
                secretKeyRef:
                  name: {{ include "stockpipe.secretName" $ctx }}
                  key: {{ $ctx.Values.secretKeys.notifyEndpoints }}
                  optional: true
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: http
              containerPort: {{ $v.port }}
              protocol: TCP
          {{- with $v.startupProbe }}
          startupProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $v.livenessProbe }}
          livenessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $v.readinessProbe }}
          readinessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $v.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- include "stockpipe.containerSecurityContext" (dict "readOnly" true) | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        # The one writable place (the root filesystem is read-only).
        - name: tmp
          emptyDir:
            sizeLimit: 256Mi
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $full }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "stockpipe.labels" (dict "ctx" $ctx "component" $name) | nindent 4 }}
  {{- with ($v.service | default dict).annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ ($v.service | default dict).type | default "ClusterIP" }}
  selector:
    {{- $sel | nindent 4 }}
  ports:
    - name: http
      port: {{ ($v.service | default dict).port | default $v.port }}
      targetPort: http
      protocol: TCP
{{- end -}}
{{- end -}}
