{{/*
The hub's settings file (/etc/claudehub/values.yaml, read by hub_config/jupyterhub_config.py
through claudehub.hub.kubernetes). It holds no secret: secrets reach the hub as
environment variables and files from the hub Secret. This template is the single place where
chart values map onto the hub loader's keys.
*/}}
{{- define "claudehub.hub.configFile" -}}
{{- $v := .Values -}}
hub:
  bindUrl: http://0.0.0.0:8081
  connectUrl: {{ include "claudehub.hub.url" . }}
  dbUrl: {{ include "claudehub.dbUrl" (dict "db" $v.hub.db "file" "/srv/jupyterhub/jupyterhub.sqlite") | quote }}
  logLevel: {{ $v.hub.logLevel }}
proxy:
  apiUrl: http://{{ include "claudehub.proxy.api" . }}.{{ .Release.Namespace }}.svc:8001
auth:
  type: {{ $v.auth.type }}
  admins: {{ $v.auth.admins | toJson }}
  allowedUsers: {{ $v.auth.allowedUsers | toJson }}
  adminsAttachServers: {{ $v.auth.adminsAttachServers }}
  {{- if eq $v.auth.type "github" }}
  github:
    callbackUrl: {{ $v.auth.github.callbackUrl | quote }}
    allowedOrganizations: {{ $v.auth.github.allowedOrganizations | toJson }}
  {{- end }}
spawner:
  namespace: {{ include "claudehub.sandbox.namespace" . }}
  image: {{ include "claudehub.sandbox.image" . | quote }}
  imagePullPolicy: {{ $v.sandbox.image.pullPolicy }}
  imagePullSecrets: {{ $v.imagePullSecrets | toJson }}
  startTimeout: {{ $v.hub.startTimeout }}
  resources: {{ $v.sandbox.resources | toJson }}
  storage:
    capacity: {{ $v.sandbox.storage.capacity | quote }}
    storageClassName: {{ $v.sandbox.storage.storageClassName | quote }}
  nodeSelector: {{ $v.sandbox.nodeSelector | toJson }}
  tolerations: {{ $v.sandbox.tolerations | toJson }}
  {{- if $v.sandbox.quota.enabled }}
  priorityClassName: {{ include "claudehub.sandbox.priorityClass" . }}
  {{- end }}
  keyproxyUrl: {{ include "claudehub.keyproxy.url" . }}
  progressUrl: {{ include "claudehub.progress.url" . }}/services/progress/
  tokenSecretFile: /etc/claudehub/secrets/token-secret
  models: {{ $v.sandbox.models | toJson }}
  profiles:
    - slug: default
      displayName: Standard
      default: true
      resources: {{ $v.sandbox.resources | toJson }}
    {{- if $v.sandbox.gpu.enabled }}
    - slug: gpu
      displayName: {{ $v.sandbox.gpu.displayName | quote }}
      resources: {{ $v.sandbox.gpu.resources | toJson }}
      gpu:
        count: {{ $v.sandbox.gpu.count }}
        runtimeClassName: {{ $v.sandbox.gpu.runtimeClassName | quote }}
      nodeSelector: {{ $v.sandbox.gpu.nodeSelector | toJson }}
      tolerations: {{ $v.sandbox.gpu.tolerations | toJson }}
    {{- end }}
limits:
  maxActiveSessions: {{ $v.limits.maxActiveSessions }}
  concurrentSpawnLimit: {{ $v.limits.concurrentSpawnLimit }}
  startSlots: {{ $v.limits.startSlots }}
culling:
  enabled: {{ $v.culling.enabled }}
  idleTimeout: {{ $v.culling.idleTimeout }}
  maxAge: {{ $v.culling.maxAge }}
  every: {{ $v.culling.every }}
services:
  keyproxy:
    apiTokenEnv: CLAUDEHUB_KEYPROXY_API_TOKEN
  progress:
    url: {{ include "claudehub.progress.url" . }}
    apiTokenEnv: CLAUDEHUB_PROGRESS_API_TOKEN
    tutorCompletionsCount: {{ $v.progress.tutorCompletionsCount }}
{{- /* Limit names stay camelCase here; claudehub.hub.kubernetes maps them onto the contract's. */}}
classes: {{ $v.classes | toJson }}
{{- end }}
