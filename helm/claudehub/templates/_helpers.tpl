{{/*
Names, labels, images and shared pod settings. Every object name comes from here.
*/}}

{{- define "claudehub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "claudehub.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Component object names (trunc 40 above leaves room for the longest suffix). */}}
{{- define "claudehub.hub.fullname" -}}{{ include "claudehub.fullname" . }}-hub{{- end }}
{{- define "claudehub.hub.dbPvc" -}}{{ include "claudehub.fullname" . }}-hub-db{{- end }}
{{- define "claudehub.hub.secret" -}}{{ include "claudehub.fullname" . }}-hub{{- end }}
{{- define "claudehub.hub.config" -}}{{ include "claudehub.fullname" . }}-hub-config{{- end }}
{{- define "claudehub.proxy.fullname" -}}{{ include "claudehub.fullname" . }}-proxy{{- end }}
{{- define "claudehub.proxy.public" -}}{{ include "claudehub.fullname" . }}-proxy-public{{- end }}
{{- define "claudehub.proxy.api" -}}{{ include "claudehub.fullname" . }}-proxy-api{{- end }}
{{- define "claudehub.keyproxy.fullname" -}}{{ include "claudehub.fullname" . }}-keyproxy{{- end }}
{{- define "claudehub.keyproxy.usagePvc" -}}{{ include "claudehub.fullname" . }}-keyproxy-usage{{- end }}
{{- define "claudehub.progress.fullname" -}}{{ include "claudehub.fullname" . }}-progress{{- end }}
{{- define "claudehub.progress.dataPvc" -}}{{ include "claudehub.fullname" . }}-progress-data{{- end }}
{{- define "claudehub.sandbox.fullname" -}}{{ include "claudehub.fullname" . }}-sandbox{{- end }}
{{- define "claudehub.tests.fullname" -}}{{ include "claudehub.fullname" . }}-test{{- end }}

{{/* The Secret holding the Anthropic key, and the key inside it. */}}
{{- define "claudehub.keyproxy.apiKeySecret" -}}
{{- if .Values.keyproxy.apiKey.existingSecret }}{{ .Values.keyproxy.apiKey.existingSecret }}{{ else }}{{ include "claudehub.fullname" . }}-anthropic-key{{ end }}
{{- end }}
{{- define "claudehub.keyproxy.apiKeySecretKey" -}}
{{- if .Values.keyproxy.apiKey.existingSecret }}{{ .Values.keyproxy.apiKey.existingSecretKey }}{{ else }}api-key{{ end }}
{{- end }}

{{/* Namespace of the sandbox pods. */}}
{{- define "claudehub.sandbox.namespace" -}}
{{- default .Release.Namespace .Values.sandbox.namespace }}
{{- end }}
{{- define "claudehub.sandbox.separateNamespace" -}}
{{- if and .Values.sandbox.namespace (ne .Values.sandbox.namespace .Release.Namespace) }}true{{ end }}
{{- end }}

{{/*
PriorityClass of sandbox pods: lets the ResourceQuota count only sandboxes in a shared namespace.
PriorityClasses are cluster-scoped, so the name carries the release's namespace (two releases
of the same name in different namespaces must not collide). Without a namespace (`helm
template`, `helm lint`) the release lands in "default", and the name says so: it must be a
valid DNS subdomain whatever the namespace.
*/}}
{{- define "claudehub.sandbox.priorityClass" -}}
{{- printf "%s-%s-sandbox" (.Release.Namespace | default "default") (include "claudehub.fullname" .) | trunc 253 | trimSuffix "-" | trimPrefix "-" }}
{{- end }}

{{/* Where the hub Secret's files are mounted, and the sandbox-token secret among them (the hub
mints tokens with it, the key proxy checks them: both mount it here). */}}
{{- define "claudehub.secretsDir" -}}/etc/claudehub/secrets{{- end }}
{{- define "claudehub.tokenSecretFile" -}}{{ include "claudehub.secretsDir" . }}/token-secret{{- end }}

{{/* In-cluster URLs. */}}
{{- define "claudehub.hub.url" -}}
http://{{ include "claudehub.hub.fullname" . }}.{{ .Release.Namespace }}.svc:8081
{{- end }}
{{- define "claudehub.keyproxy.url" -}}
http://{{ include "claudehub.keyproxy.fullname" . }}.{{ .Release.Namespace }}.svc:8080
{{- end }}
{{- define "claudehub.progress.url" -}}
http://{{ include "claudehub.progress.fullname" . }}.{{ .Release.Namespace }}.svc:8080
{{- end }}

{{/* Labels. */}}
{{- define "claudehub.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: claudehub
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/*
Selector labels of one component. Call with (dict "root" $ "component" "hub").
The sandbox contract fixes app.kubernetes.io/name to "claudehub" for sandbox pods, so every
component uses that name and tells itself apart by app.kubernetes.io/component and instance.
*/}}
{{- define "claudehub.selectorLabels" -}}
app.kubernetes.io/name: claudehub
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "claudehub.labels" -}}
{{ include "claudehub.selectorLabels" . }}
{{ include "claudehub.commonLabels" .root }}
{{- end }}

{{/*
The labels ClaudeSpawner puts on every sandbox pod (ARCHITECTURE.md contract). The spawner does
not set app.kubernetes.io/instance, so the policies select on these two alone.
*/}}
{{- define "claudehub.sandbox.podSelector" -}}
app.kubernetes.io/name: claudehub
app.kubernetes.io/component: sandbox
{{- end }}

{{/* Image of the hub/CHP/keyproxy/progress components. */}}
{{- define "claudehub.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "claudehub.sandbox.image" -}}
{{- printf "%s:%s" .Values.sandbox.image.repository (default .Chart.AppVersion .Values.sandbox.image.tag) }}
{{- end }}

{{- define "claudehub.sandbox.authorImage" -}}
{{- printf "%s:%s" .Values.sandbox.authorImage.repository (default .Chart.AppVersion .Values.sandbox.authorImage.tag) }}
{{- end }}

{{- define "claudehub.imagePullSecrets" -}}
imagePullSecrets:
{{- range .Values.imagePullSecrets }}
  - name: {{ . }}
{{- end }}
{{- end }}

{{/* Pod-level security context shared by every component (uid 10001 is the image's user). */}}
{{- define "claudehub.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context: restricted Pod Security Standard and a read-only root. */}}
{{- define "claudehub.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
A value stored in a Secret the chart generates: the explicit value if given, else what the
live Secret already holds (so upgrades keep it), else a fresh random one.
Call with (dict "root" $ "secret" NAME "key" KEY "value" EXPLICIT "generate" (randAlphaNum 64)).
*/}}
{{- define "claudehub.secretValue" -}}
{{- if .value }}
{{- .value }}
{{- else }}
{{- $live := lookup "v1" "Secret" .root.Release.Namespace .secret }}
{{- if and $live $live.data (hasKey $live.data .key) }}
{{- index $live.data .key | b64dec }}
{{- else }}
{{- .generate }}
{{- end }}
{{- end }}
{{- end }}

{{/* Database URL of a component; call with (dict "db" .Values.x.db "file" "/var/lib/.../x.sqlite"). */}}
{{- define "claudehub.dbUrl" -}}
{{- if eq .db.type "postgresql" }}{{ .db.url }}{{ else }}sqlite:///{{ .file }}{{ end }}
{{- end }}

{{/* PGPASSWORD from the operator's Secret, for a postgresql database. */}}
{{- define "claudehub.dbPasswordEnv" -}}
{{- if and (eq .type "postgresql") .passwordSecret.name -}}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .passwordSecret.name }}
      key: {{ .passwordSecret.key }}
{{- end }}
{{- end }}

{{/* A quantity like 10Gi / 512Mi / 1Ti in Mi, as an integer (the schema allows only these forms). */}}
{{- define "claudehub.toMi" -}}
{{- $n := regexFind "^[0-9]+" . | atoi }}
{{- if hasSuffix "Ti" . }}{{ mul $n 1048576 }}{{ else if hasSuffix "Gi" . }}{{ mul $n 1024 }}{{ else }}{{ $n }}{{ end }}
{{- end }}
