{{/*
NetworkPolicy peers. A peer in another namespace than the policy gets a namespaceSelector on
the automatic kubernetes.io/metadata.name label; a peer in the same namespace gets none
(which means "this namespace").
*/}}

{{/* Pods of one chart component. (dict "root" $ "component" "hub" "policyNamespace" NS) */}}
{{- define "claudehub.netpol.componentPeer" -}}
- podSelector:
    matchLabels:
      {{- include "claudehub.selectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
  {{- if ne .policyNamespace .root.Release.Namespace }}
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .root.Release.Namespace }}
  {{- end }}
{{- end }}

{{/* Sandbox pods (labels set by ClaudeSpawner). (dict "root" $ "policyNamespace" NS) */}}
{{- define "claudehub.netpol.sandboxPeer" -}}
{{- $ns := include "claudehub.sandbox.namespace" .root -}}
- podSelector:
    matchLabels:
      {{- include "claudehub.sandbox.podSelector" .root | nindent 6 }}
  {{- if ne .policyNamespace $ns }}
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ $ns }}
  {{- end }}
{{- end }}

{{/* Egress rule to cluster DNS (UDP and TCP 53). Call with the root context. */}}
{{- define "claudehub.netpol.dnsEgress" -}}
- to:
    - namespaceSelector:
        {{- toYaml .Values.networkPolicy.dns.namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml .Values.networkPolicy.dns.podSelector | nindent 8 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{/* NetworkPolicy peers from a list of {cidr, except}. */}}
{{- define "claudehub.netpol.ipBlocks" -}}
{{- range . }}
- ipBlock:
    cidr: {{ .cidr }}
    {{- with .except }}
    except:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end }}
{{- end }}

{{/* Egress rule to external PostgreSQL servers. Call with the root context. */}}
{{- define "claudehub.netpol.postgresEgress" -}}
- to:
    {{- include "claudehub.netpol.ipBlocks" .Values.networkPolicy.postgresql.ipBlocks | trim | nindent 4 }}
  ports:
    - port: {{ .Values.networkPolicy.postgresql.port }}
      protocol: TCP
{{- end }}

{{/* Egress rule to the internet (GitHub OAuth, course repositories). Call with the root context. */}}
{{- define "claudehub.netpol.internetEgress" -}}
- to:
    {{- include "claudehub.netpol.ipBlocks" .Values.networkPolicy.internet.ipBlocks | trim | nindent 4 }}
  ports:
    {{- range .Values.networkPolicy.internet.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
