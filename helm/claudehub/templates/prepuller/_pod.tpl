{{/*
The image pullers (continuous DaemonSet and the install/upgrade hook's DaemonSet) and the hook's
awaiter Job. Names and the pullers' pod spec.
*/}}
{{- define "claudehub.prePuller.fullname" -}}{{ include "claudehub.fullname" . }}-prepuller{{- end }}
{{- define "claudehub.prePuller.hook" -}}{{ include "claudehub.fullname" . }}-prepuller-hook{{- end }}
{{- define "claudehub.prePuller.awaiter" -}}{{ include "claudehub.fullname" . }}-prepuller-awaiter{{- end }}

{{/* Cluster-scoped, so the name carries the release's namespace (as the sandbox one does). */}}
{{- define "claudehub.prePuller.priorityClass" -}}
{{- printf "%s-%s-prepuller" (.Release.Namespace | default "default") (include "claudehub.fullname" .) | trunc 253 | trimSuffix "-" | trimPrefix "-" }}
{{- end }}

{{/*
Annotations of every hook object: created before the chart's other objects on install and
upgrade, in weight order, the previous run's removed first and this run's once it succeeded.
Call with (dict "weight" "-10").
*/}}
{{- define "claudehub.prePuller.hookAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}

{{/*
Pod template of a puller DaemonSet. The init container makes the kubelet pull the sandbox image
(with the sandbox's own pull policy and secrets) and runs /bin/true from it; the main container
keeps the image in use, so the kubelet's image garbage collection never removes it while the
puller runs, and does nothing: tini (the sandbox image's PID 1) in front of sleep, so a SIGTERM
ends it at once. Both run as the sandbox image's user 1000, read-only, no capabilities, no
token, no network (the pullers' NetworkPolicy denies everything). They land where sandboxes
land: the sandbox node selector and tolerations (the GPU profile's tolerations too when it is
offered). Call with (dict "root" $ "component" "prepuller" "priorityClass" true).
*/}}
{{- define "claudehub.prePuller.podTemplate" -}}
{{- $root := .root -}}
metadata:
  labels:
    {{- include "claudehub.labels" (dict "root" $root "component" .component) | nindent 4 }}
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: 1
  {{- if .priorityClass }}
  priorityClassName: {{ include "claudehub.prePuller.priorityClass" $root }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    runAsGroup: 1000
    seccompProfile:
      type: RuntimeDefault
  {{- if $root.Values.imagePullSecrets }}{{- include "claudehub.imagePullSecrets" $root | nindent 2 }}{{- end }}
  {{- with $root.Values.sandbox.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $tolerations := $root.Values.sandbox.tolerations }}
  {{- if $root.Values.sandbox.gpu.enabled }}
  {{- $tolerations = concat $tolerations $root.Values.sandbox.gpu.tolerations }}
  {{- end }}
  {{- with $tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  initContainers:
    - name: pull
      image: {{ include "claudehub.sandbox.image" $root }}
      imagePullPolicy: {{ $root.Values.sandbox.image.pullPolicy }}
      command: ["/bin/true"]
      securityContext:
        {{- include "claudehub.prePuller.containerSecurityContext" . | nindent 8 }}
      resources:
        {{- include "claudehub.prePuller.resources" . | nindent 8 }}
    {{- if $root.Values.authoring.enabled }}
    # Instructors' author sessions run the author image (the sandbox image plus one small
    # layer, docs/authoring.md): on the node too, so they start as fast as a learner's.
    - name: pull-author
      image: {{ include "claudehub.sandbox.authorImage" $root }}
      imagePullPolicy: {{ $root.Values.sandbox.image.pullPolicy }}
      command: ["/bin/true"]
      securityContext:
        {{- include "claudehub.prePuller.containerSecurityContext" . | nindent 8 }}
      resources:
        {{- include "claudehub.prePuller.resources" . | nindent 8 }}
    {{- end }}
  containers:
    - name: hold
      image: {{ include "claudehub.sandbox.image" $root }}
      imagePullPolicy: {{ $root.Values.sandbox.image.pullPolicy }}
      command: ["/usr/bin/tini", "--", "/bin/sleep", "infinity"]
      securityContext:
        {{- include "claudehub.prePuller.containerSecurityContext" . | nindent 8 }}
      resources:
        {{- include "claudehub.prePuller.resources" . | nindent 8 }}
{{- end }}

{{- define "claudehub.prePuller.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* /bin/true and sleep need next to nothing: tiny requests fit on any node. */}}
{{- define "claudehub.prePuller.resources" -}}
requests:
  cpu: 1m
  memory: 8Mi
limits:
  cpu: 50m
  memory: 32Mi
{{- end }}

{{/* checkov skips shared by the puller DaemonSets. */}}
{{- define "claudehub.prePuller.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_43=The sandbox image is imported into k3s containerd by tag, as the hub's sandboxes use it (sandbox.image); pulling it by that same reference is the point.
checkov.io/skip2: CKV_K8S_15=The puller uses the sandbox's own pull policy (sandbox.image.pullPolicy), so it pulls exactly as a sandbox would; IfNotPresent works with images imported into containerd.
checkov.io/skip3: CKV_K8S_8=The puller's container only sleeps to keep the image in use; it serves nothing a liveness probe could check.
checkov.io/skip4: CKV_K8S_9=The puller's container serves nothing; ready means its init container pulled the image and ran, which is what the awaiter counts.
checkov.io/skip5: CKV_K8S_40=The sandbox image's user is uid 1000 (images/sandbox/Dockerfile), as in every sandbox pod; the puller runs as that user so the image runs as it was built.
{{- end }}
