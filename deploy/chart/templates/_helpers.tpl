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

{{/* The image injected as the sidecar. */}}
{{- define "sidecred.sidecarImage" -}}
{{- default (include "sidecred.image" .) .Values.sidecarImage -}}
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
Arguments: dict "root" $ "optIn" BOOL; with optIn the namespaceLabels opt-in
selects too (injection and annotated pods), without it not (the boundary holds
in every namespace).
*/}}
{{- define "sidecred.namespaceSelector" -}}
{{- $root := .root -}}
namespaceSelector:
  {{- if and .optIn $root.Values.namespaceLabels }}
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

{{/* The fields every validating webhook shares. Arguments: dict "root" $ "optIn" BOOL. */}}
{{- define "sidecred.validatingWebhook" -}}
admissionReviewVersions: ["v1"]
clientConfig:
  {{- include "sidecred.clientConfig" (dict "root" .root "path" "/validate") | nindent 2 }}
failurePolicy: Fail
sideEffects: None
timeoutSeconds: {{ .root.Values.timeoutSeconds }}
matchPolicy: Equivalent
{{ include "sidecred.namespaceSelector" . }}
{{- end -}}

{{/* Pod CREATE/UPDATE and ephemeral-container UPDATE (`kubectl debug`). */}}
{{- define "sidecred.podRules" -}}
- apiGroups: [""]
  apiVersions: ["v1"]
  operations: ["CREATE", "UPDATE"]
  resources: ["pods"]
  scope: Namespaced
- apiGroups: [""]
  apiVersions: ["v1"]
  operations: ["UPDATE"]
  resources: ["pods/ephemeralcontainers"]
  scope: Namespaced
{{- end -}}

{{/*
CEL, total on any object (every optional field is tested with has() before it
is read). String literals are single-quoted; the values schema keeps quotes and
backslashes out of every value put into them.
*/}}

{{/* An object carries an annotation. Arguments: dict "obj" "object" "key" "KEY".
`'KEY' in MAP` is how CEL tests a map key holding dots and slashes. */}}
{{- define "sidecred.hasAnnotation" -}}
{{- printf "(has(%s.metadata) && has(%s.metadata.annotations) && '%s' in %s.metadata.annotations)" .obj .obj .key .obj -}}
{{- end -}}

{{/* A pod annotated for sidecred: the role annotation or any sidecred.dev/ key.
Arguments: dict "obj" "object" "root" $. */}}
{{- define "sidecred.annotatedPod" -}}
{{- $o := .obj -}}
(has({{ $o }}.metadata) && has({{ $o }}.metadata.annotations)
&& ('{{ .root.Values.annotationKey }}' in {{ $o }}.metadata.annotations
|| {{ $o }}.metadata.annotations.exists(k, k.startsWith('sidecred.dev/'))))
{{- end -}}

{{/* The audiences only the canonical sidecar may hold, lowercased, as a CEL list. */}}
{{- define "sidecred.audiences" -}}
{{- $auds := list (lower .Values.tokenAudience) (lower .Values.brokerAudience) | uniq -}}
['{{ join "', '" $auds }}']
{{- end -}}

{{/* Repositories that hold the sidecar (the injected image and the webhook's,
which carries the same entry point), lowercased, without tag or digest. */}}
{{- define "sidecred.imageRepositories" -}}
{{- $sidecar := regexReplaceAll "(@.*$)|(:[^/:]*$)" (include "sidecred.sidecarImage" .) "" -}}
{{- $repos := list (lower .Values.image.repository) (lower $sidecar) | uniq -}}
['{{ join "', '" $repos }}']
{{- end -}}

{{/* A pod carrying anything of the sidecar's: a container (of any kind) named
sidecred, running a sidecred image or command, with SIDECRED_ env or an envFrom
prefix that can produce it, or mounting a sidecred volume; a volume named like
sidecred's, or a projected service-account token for a sidecred audience.
Arguments: dict "obj" "object" "root" $. */}}
{{- define "sidecred.sidecredPod" -}}
{{- $o := .obj -}}
(has({{ $o }}.spec) && (((has({{ $o }}.spec.containers) ? {{ $o }}.spec.containers : [])
+ (has({{ $o }}.spec.initContainers) ? {{ $o }}.spec.initContainers : [])
+ (has({{ $o }}.spec.ephemeralContainers) ? {{ $o }}.spec.ephemeralContainers : []))
.exists(c, (has(c.name) && c.name == 'sidecred')
|| (has(c.image) && (c.image.lowerAscii().contains('sidecred')
|| {{ include "sidecred.imageRepositories" .root }}.exists(r, c.image.lowerAscii() == r
|| c.image.lowerAscii().startsWith(r + ':') || c.image.lowerAscii().startsWith(r + '@'))))
|| (has(c.command) && c.command.exists(a, a.contains('sidecred')))
|| (has(c.args) && c.args.exists(a, a.contains('sidecred')))
|| (has(c.env) && c.env.exists(e, has(e.name) && e.name.startsWith('SIDECRED_')))
|| (has(c.envFrom) && c.envFrom.exists(e, has(e.prefix) && e.prefix != ''
&& (e.prefix.startsWith('SIDECRED_') || 'SIDECRED_'.startsWith(e.prefix))))
|| (has(c.volumeMounts) && c.volumeMounts.exists(m, has(m.name) && m.name.startsWith('sidecred'))))
|| (has({{ $o }}.spec.volumes) && {{ $o }}.spec.volumes.exists(v,
(has(v.name) && v.name.startsWith('sidecred'))
|| (has(v.projected) && has(v.projected.sources) && v.projected.sources.exists(s,
has(s.serviceAccountToken) && has(s.serviceAccountToken.audience)
&& s.serviceAccountToken.audience.lowerAscii() in {{ include "sidecred.audiences" .root }}))))))
{{- end -}}
