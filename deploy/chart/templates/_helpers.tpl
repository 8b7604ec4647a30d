{{/* Name of every object; "sidecred" when the release is called sidecred. */}}
{{- define "sidecred.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sidecred.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "sidecred.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "sidecred.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret holding the serving certificate (tls.crt, tls.key). */}}
{{- define "sidecred.tlsSecret" -}}
{{- if .Values.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "sidecred.fullname" .) -}}
{{- else -}}
{{- required "tls.existingSecret is required when tls.certManager.enabled is false (see deploy/README.md)" .Values.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* cert-manager's CA injector or a caBundle given by value; one of the two. */}}
{{- define "sidecred.caInjection" -}}
{{- if .Values.tls.certManager.enabled -}}
cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "sidecred.fullname" .) }}
{{- end -}}
{{- end -}}

{{/* Arguments: dict "root" $ "path" "/mutate". */}}
{{- define "sidecred.clientConfig" -}}
service:
  name: {{ include "sidecred.fullname" .root }}
  namespace: {{ .root.Release.Namespace }}
  port: 443
  path: {{ .path }}
{{- if not .root.Values.tls.certManager.enabled }}
caBundle: {{ required "tls.caBundle is required when tls.certManager.enabled is false (see deploy/README.md)" .root.Values.tls.caBundle }}
{{- end }}
{{- end -}}

{{/*
The webhooks never see their own namespace or kube-system, so a broken
webhook can always be repaired and the control plane keeps starting.
*/}}
{{- define "sidecred.namespaceSelector" -}}
{{- $root := .root -}}
namespaceSelector:
  {{- if $root.Values.namespaceLabels }}
  matchLabels:
    {{- toYaml $root.Values.namespaceLabels | nindent 4 }}
  {{- end }}
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- range (concat (list $root.Release.Namespace "kube-system") $root.Values.excludedNamespaces | uniq) }}
        - {{ . | quote }}
        {{- end }}
{{- end -}}

{{/*
CEL test that an object carries an annotation. Arguments: dict "obj" "object" "key" "KEY".
`'KEY' in MAP` is how CEL tests a map key holding dots and slashes (field
selection cannot name it). The key is a single-quoted CEL literal; the
values schema restricts annotationKey to annotation-key characters, so no
quote can end it early.
*/}}
{{- define "sidecred.hasAnnotation" -}}
{{- printf "(has(%s.metadata) && has(%s.metadata.annotations) && '%s' in %s.metadata.annotations)" .obj .obj .key .obj -}}
{{- end -}}
