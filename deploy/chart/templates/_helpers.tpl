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

{{/* Selector labels of a component. Arguments: dict "root" $ "component" "webhook". */}}
{{- define "sidecred.componentSelector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sidecred.selectorLabels" -}}
{{- include "sidecred.componentSelector" (dict "root" . "component" "webhook") -}}
{{- end -}}

{{/* An image reference: repository@digest, else repository:tag (tag defaults to appVersion).
Arguments: dict "image" .Values.image "root" $. */}}
{{- define "sidecred.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The webhook's (and broker's) image. */}}
{{- define "sidecred.image" -}}
{{- include "sidecred.imageRef" (dict "image" .Values.image "root" .) -}}
{{- end -}}

{{/* The image injected as the sidecar. */}}
{{- define "sidecred.sidecarImage" -}}
{{- include "sidecred.imageRef" (dict "image" .Values.sidecar.image "root" .) -}}
{{- end -}}

{{- define "sidecred.brokerName" -}}
{{- printf "%s-broker" (include "sidecred.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Where the webhook and the broker read the broker's CA (the sidecars get its PEM). */}}
{{- define "sidecred.brokerCaDir" -}}/etc/sidecred/broker-ca{{- end -}}

{{/* The Secret holding the broker's serving certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "sidecred.brokerTlsSecret" -}}
{{- if .Values.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "sidecred.brokerName" .) -}}
{{- else -}}
{{- required "broker.tls.existingSecret is required when credentialSource is broker and tls.certManager.enabled is false (see deploy/README.md)" .Values.broker.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{/*
Every setting the webhook uses to build the sidecar, as SIDECRED_* env. One
ConfigMap holds them for the webhook and the broker, so both build the same
canonical sidecar.
*/}}
{{- define "sidecred.settings" -}}
{{- with .Values.baseRoleArn }}
SIDECRED_BASE_ROLE_ARN: {{ . | quote }}
{{- end }}
SIDECRED_ANNOTATION_KEY: {{ .Values.annotationKey | quote }}
SIDECRED_NAMESPACE_POLICY: {{ .Values.namespacePolicy | quote }}
{{- if .Values.explainDenials }}
{{- if not (and .Values.networkPolicy.enabled .Values.networkPolicy.apiServerCIDRs) }}
{{- fail "explainDenials puts namespace policies in denials, which any pod that reaches the webhook could then read: it needs networkPolicy.enabled and networkPolicy.apiServerCIDRs (see deploy/README.md)" }}
{{- end }}
SIDECRED_EXPLAIN_DENIALS: "true"
{{- end }}
SIDECRED_CREDENTIAL_SOURCE: {{ .Values.credentialSource | quote }}
SIDECRED_SIDECAR_IMAGE: {{ include "sidecred.sidecarImage" . | quote }}
{{- with .Values.sidecar.imagePullSecrets }}
SIDECRED_SIDECAR_IMAGE_PULL_SECRETS: {{ join "," . | quote }}
{{- end }}
{{- with .Values.sidecar.repositories }}
SIDECRED_SIDECAR_REPOSITORIES: {{ join "," . | quote }}
{{- end }}
{{- with .Values.sidecar.extraEnv }}
SIDECRED_SIDECAR_EXTRA_ENV: {{ toJson . | quote }}
{{- end }}
{{- with .Values.sidecar.acceptedExtraEnv }}
SIDECRED_SIDECAR_ACCEPTED_ENV: {{ toJson . | quote }}
{{- end }}
SIDECRED_SIDECAR_MODE: {{ .Values.sidecar.mode | quote }}
SIDECRED_TOKEN_MODE: {{ .Values.sidecar.tokenMode | quote }}
{{- with .Values.region }}
SIDECRED_REGION: {{ . | quote }}
{{- end }}
SIDECRED_SESSION_DURATION: {{ .Values.sessionDuration | quote }}
SIDECRED_TOKEN_AUDIENCE: {{ .Values.tokenAudience | quote }}
SIDECRED_BROKER_AUDIENCE: {{ .Values.brokerAudience | quote }}
SIDECRED_SIDECAR_PORT: {{ .Values.sidecar.port | quote }}
SIDECRED_HEALTH_PORT: {{ .Values.sidecar.healthPort | quote }}
SIDECRED_DRAIN_SECONDS: {{ .Values.sidecar.drainSeconds | quote }}
SIDECRED_TOKEN_EXPIRATION: {{ .Values.sidecar.tokenExpiration | quote }}
SIDECRED_SIDECAR_CPU_REQUEST: {{ .Values.sidecar.resources.requests.cpu | quote }}
SIDECRED_SIDECAR_MEMORY_REQUEST: {{ .Values.sidecar.resources.requests.memory | quote }}
SIDECRED_SIDECAR_CPU_LIMIT: {{ .Values.sidecar.resources.limits.cpu | quote }}
SIDECRED_SIDECAR_MEMORY_LIMIT: {{ .Values.sidecar.resources.limits.memory | quote }}
{{- if eq .Values.credentialSource "broker" }}
SIDECRED_BROKER_URL: {{ printf "https://%s.%s.svc:443" (include "sidecred.brokerName" .) .Release.Namespace | quote }}
SIDECRED_BROKER_CA_FILE: {{ printf "%s/ca.crt" (include "sidecred.brokerCaDir" .) | quote }}
{{- end }}
{{- end -}}

{{/*
The pod-level scheduling and security fields both Deployments share.
Arguments: dict "root" $ "values" .Values(.broker) "component" "webhook".
*/}}
{{- define "sidecred.podScheduling" -}}
{{- $values := .values -}}
{{- $selector := include "sidecred.componentSelector" (dict "root" .root "component" .component) | fromYaml -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with include "sidecred.priorityClassName" (dict "root" .root "values" $values) }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- include "sidecred.securityContext" (dict "root" .root "component" .component "key" "podSecurityContext") | nindent 2 }}
affinity:
  {{- if $values.affinity }}
  {{- toYaml $values.affinity | nindent 2 }}
  {{- else }}
  # Preferred, not required: a one-node cluster still runs every replica.
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- toYaml $selector | nindent 14 }}
  {{- end }}
topologySpreadConstraints:
  {{- if $values.topologySpreadConstraints }}
  {{- range $values.topologySpreadConstraints }}
  {{- $constraint := deepCopy . }}
  {{- if not (hasKey $constraint "labelSelector") }}
  {{- $_ := set $constraint "labelSelector" (dict "matchLabels" $selector) }}
  {{- end }}
  - {{- toYaml $constraint | nindent 4 }}
  {{- end }}
  {{- else }}
  # Across zones where nodes have one; a soft rule, so a one-zone cluster schedules as before.
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- toYaml $selector | nindent 8 }}
  {{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A component's priority class: its own value, else the chart's PriorityClass when it
creates one, else none. Arguments: dict "root" $ "values" .Values(.broker). */}}
{{- define "sidecred.priorityClassName" -}}
{{- if .values.priorityClassName -}}
{{- .values.priorityClassName -}}
{{- else if .root.Values.priorityClass.create -}}
{{- include "sidecred.fullname" .root -}}
{{- end -}}
{{- end -}}

{{/* A security context: the webhook's value, and for the broker its own merged over it.
Arguments: dict "root" $ "component" "webhook" "key" "podSecurityContext". */}}
{{- define "sidecred.securityContext" -}}
{{- $context := deepCopy (get .root.Values .key) -}}
{{- if eq .component "broker" -}}
{{- $context = mergeOverwrite $context (deepCopy (get .root.Values.broker .key)) -}}
{{- end -}}
{{- toYaml $context -}}
{{- end -}}

{{/* Draining on the way out (serving.drain): the server's delay after SIGTERM. */}}
{{- define "sidecred.drainArgs" -}}
- --shutdown-delay
- {{ .Values.drain.delaySeconds | quote }}
{{- end -}}

{{/* The container's preStop sleep, before SIGTERM: the endpoints controller takes the
terminating pod out of its Service meanwhile. */}}
{{- define "sidecred.drainLifecycle" -}}
{{- if .Values.drain.preStopSeconds -}}
lifecycle:
  preStop:
    sleep:
      seconds: {{ .Values.drain.preStopSeconds }}
{{- end }}
{{- end -}}

{{/* The pod's grace period: the preStop sleep, the delay and 10 s to finish (serving.limits). */}}
{{- define "sidecred.drainGrace" -}}
{{- $needed := add .Values.drain.preStopSeconds .Values.drain.delaySeconds 10 -}}
{{- if lt (int .Values.drain.terminationGracePeriodSeconds) (int $needed) -}}
{{- fail (printf "drain.terminationGracePeriodSeconds (%v) must be at least preStopSeconds + delaySeconds + 10 (%v)" .Values.drain.terminationGracePeriodSeconds $needed) -}}
{{- end -}}
terminationGracePeriodSeconds: {{ .Values.drain.terminationGracePeriodSeconds }}
{{- end -}}

{{/* HTTPS readiness and liveness probes on the port named https. */}}
{{- define "sidecred.probes" -}}
readinessProbe:
  httpGet:
    path: /readyz
    port: https
    scheme: HTTPS
  periodSeconds: 5
  failureThreshold: 3
livenessProbe:
  httpGet:
    path: /healthz
    port: https
    scheme: HTTPS
  initialDelaySeconds: 5
  periodSeconds: 10
  failureThreshold: 3
{{- end -}}

{{/* A PodDisruptionBudget, only when it cannot block a node drain (2+ replicas).
Arguments: dict "root" $ "values" .Values(.broker) "name" NAME "component" "webhook". */}}
{{- define "sidecred.pdb" -}}
{{- if ge (int .values.replicas) 2 }}
# failurePolicy is Fail: keep a replica up through voluntary disruptions. With
# one replica a budget would block every drain, so none is rendered.
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "sidecred.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  maxUnavailable: {{ .values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "sidecred.componentSelector" (dict "root" .root "component" .component) | nindent 6 }}
{{- end }}
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

{{/* Repositories that hold the sidecar (the injected image, its mirrors and the
webhook's, which carries the same entry point), lowercased, without tag or digest. */}}
{{- define "sidecred.imageRepositories" -}}
{{- $repos := list (lower .Values.image.repository) (lower .Values.sidecar.image.repository) -}}
{{- range .Values.sidecar.repositories }}{{ $repos = append $repos (lower .) }}{{ end -}}
{{- $repos = uniq $repos -}}
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
