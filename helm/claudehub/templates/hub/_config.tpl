{{/*
The hub's settings file (/etc/claudehub/config/values.yaml, read by
hub_config/jupyterhub_config.py through claudehub.hub.settings and claudehub.hub.kubernetes).

It is the chart's own values, as the operator gave them merged over values.yaml, for the
sections the hub reads, minus the keys that hold secrets (those reach the hub from the hub
Secret as environment variables); and, under "chart", what the templates compute (service
URLs, names, the sandbox image). The hub checks the values against the chart's own
values.schema.json, mounted beside this file, and claudehub.hub.kubernetes.VALUE_TRAITS maps
each key onto the trait it sets: a values key is never renamed or given a second default here.
*/}}
{{- define "claudehub.hub.values" -}}
{{- $v := .Values -}}
{{- $auth := omit $v.auth "password" "github" -}}
{{- $_ := set $auth "github" (omit $v.auth.github "clientId" "clientSecret" "existingSecret") -}}
{{- $values := dict
  "imagePullSecrets" $v.imagePullSecrets
  "auth" $auth
  "classes" $v.classes
  "hub" (omit $v.hub "cookieSecret")
  "sandbox" $v.sandbox
  "limits" $v.limits
  "culling" $v.culling
  "progress" (pick $v.progress "tutorCompletionsCount")
-}}
{{- $chart := dict
  "hubBindUrl" "http://0.0.0.0:8081"
  "hubUrl" (include "claudehub.hub.url" .)
  "hubDbUrl" (include "claudehub.dbUrl" (dict "db" $v.hub.db "file" "/srv/jupyterhub/jupyterhub.sqlite"))
  "proxyApiUrl" (printf "http://%s.%s.svc:8001" (include "claudehub.proxy.api" .) .Release.Namespace)
  "sandboxNamespace" (include "claudehub.sandbox.namespace" .)
  "sandboxImage" (include "claudehub.sandbox.image" .)
  "sandboxAuthorImage" (ternary (include "claudehub.sandbox.authorImage" .) "" $v.authoring.enabled)
  "sandboxPriorityClass" (ternary (include "claudehub.sandbox.priorityClass" .) "" $v.sandbox.quota.enabled)
  "keyproxyUrl" (include "claudehub.keyproxy.url" .)
  "progressUrl" (include "claudehub.progress.url" .)
  "tokenSecretFile" (include "claudehub.tokenSecretFile" .)
-}}
{{- $_ := set $values "chart" $chart -}}
{{- toJson $values -}}
{{- end }}
