{{/* ---------------------------------------------------------------- names, labels */}}

{{- define "chorus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; also the RayService's name (so its Serve service is <name>-serve-svc). */}}
{{- define "chorus.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "chorus.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chorus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chorus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "chorus.labels" -}}
helm.sh/chart: {{ include "chorus.chart" . }}
{{ include "chorus.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chorus
{{- end }}

{{- define "chorus.operator.name" -}}
{{- printf "%s-operator" (include "chorus.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* ServiceAccount (and Role) of the Ray workers. */}}
{{- define "chorus.ray.name" -}}
{{- printf "%s-ray" (include "chorus.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* ServiceAccount of the Ray head (KubeRay's autoscaler sidecar). */}}
{{- define "chorus.ray.headName" -}}
{{- printf "%s-ray-head" (include "chorus.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chorus.samples.claimName" -}}
{{- .Values.samples.existingClaim | default (printf "%s-samples" .Release.Name) }}
{{- end }}

{{/* image: (list $ "chorus"|"chorus-gpu"|"chorus-operator") -> registry/name:tag, the tag
     defaulting to appVersion (scripts/build-images.sh tags every image with the package version) */}}
{{- define "chorus.image" -}}
{{- $root := index . 0 }}
{{- $image := $root.Values.image }}
{{- printf "%s/%s:%s" (trimSuffix "/" $image.registry) (index . 1) ($image.tag | default $root.Chart.AppVersion) }}
{{- end }}

{{/* ---------------------------------------------------------------- engines */}}

{{- define "chorus.engineIds" -}}
{{- list "xtts_v2" "styletts2" "piper" "google_tts" "azure_tts" "ibm_watson" | toJson }}
{{- end }}

{{- define "chorus.cloudEngineIds" -}}
{{- list "google_tts" "azure_tts" "ibm_watson" | toJson }}
{{- end }}

{{/* "true" when a cloning engine (the GPU worker group's tenants) is enabled. */}}
{{- define "chorus.gpuEnginesEnabled" -}}
{{- if or (dig "xtts_v2" "enabled" false .Values.engines) (dig "styletts2" "enabled" false .Values.engines) }}true{{ end }}
{{- end }}

{{/* "true" when a cloud engine (the cloud worker group's tenants) is enabled. */}}
{{- define "chorus.cloudEnginesEnabled" -}}
{{- range $id := include "chorus.cloudEngineIds" . | fromJsonArray }}{{ if dig $id "enabled" false $.Values.engines }}true{{ end }}{{ end }}
{{- end }}

{{/* Ray custom resources for a worker group, in the form rayStartParams.resources takes:
     a JSON object, double-quoted for the shell, e.g. '"{\"chorus_gpu\":1000}"'. */}}
{{- define "chorus.ray.customResources" -}}
{{- toJson . | quote | squote }}
{{- end }}

{{/* ---------------------------------------------------------------- API keys */}}

{{- define "chorus.auth.dir" -}}
/var/run/secrets/chorus/api-keys
{{- end }}

{{/* The app args' `auth` (JSON) when keys come from a Secret, else "". Refuses any field
     but existingSecret, secretKey and insecureNoAuth, so a key can never be put in values,
     and refuses keys off unless insecureNoAuth says something else guards the port. */}}
{{- define "chorus.auth.args" -}}
{{- range $field, $_ := .Values.auth -}}
  {{- if not (has $field (list "existingSecret" "secretKey" "insecureNoAuth")) -}}
    {{- fail (printf "auth.%s: keys are never given in values; put the key file in a Secret and name it in auth.existingSecret (docs/security.md)" $field) -}}
  {{- end -}}
{{- end -}}
{{- if and (not .Values.auth.existingSecret) (not .Values.auth.insecureNoAuth) -}}
  {{- fail "auth.existingSecret is empty: without API keys anyone reaching port 8000 may rewrite personalities, download voice recordings and clone voices. Name a Secret holding a key file (make keys with `chorus keys new`; docs/security.md), or set auth.insecureNoAuth=true if something in front of Chorus guards it." -}}
{{- end -}}
{{- if .Values.auth.existingSecret -}}
  {{- if not (regexMatch "^[-._a-zA-Z0-9]+$" .Values.auth.secretKey) -}}
    {{- fail (printf "auth.secretKey: %q is not a Secret key" .Values.auth.secretKey) -}}
  {{- end -}}
{{- dict "keysFile" (printf "%s/%s" (include "chorus.auth.dir" .) .Values.auth.secretKey) | toJson -}}
{{- end -}}
{{- end }}

{{/* ---------------------------------------------------------------- env, volumes */}}

{{/* CHORUS_REDIS_URL from redis.url or redis.existingSecret (key `url`), when configured. */}}
{{- define "chorus.redisEnv" -}}
{{- if .Values.redis.existingSecret }}
- name: CHORUS_REDIS_URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.redis.existingSecret | quote }}, key: url, optional: false}
{{- else if .Values.redis.url }}
{{- if regexMatch "://[^/]*@" .Values.redis.url }}
  {{- fail "redis.url carries credentials, which would be readable in every pod spec: put the URL in a Secret under the key `url` and name it in redis.existingSecret" }}
{{- end }}
- name: CHORUS_REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- Ray groups */}}

{{/* Which Ray group gets what (docs/kubernetes.md#security). The cluster profile places every
     deployment on a group by its custom resource: the Ingress and Piper on `cpu` (chorus_cpu),
     the cloud engines on `cloud` (chorus_cloud), the cloning engines on `gpu` (chorus_gpu); the
     head runs no replica (num-cpus 0) but the Serve controller, which builds the application.
       cpu   the Ingress: API keys, Redis, the Kubernetes personality store (API token)
       cloud the cloud engines: their credentials, which so never share a container with the
             Ingress (which parses uploads, libsndfile and FFmpeg input from anyone)
       head  the app build reads CHORUS_REDIS_URL (chorus.app.build_app); KubeRay's
             autoscaler sidecar needs the API token
       gpu   nothing but the Ray token */}}

{{/* Ray token auth: the Secret holding the token under `auth_token` (KubeRay's key). */}}
{{- define "chorus.ray.authSecret" -}}
{{- .Values.ray.auth.existingSecret | default (printf "%s-ray-auth" (include "chorus.fullname" .)) }}
{{- end }}

{{/* (dict root group) -> env of the group's Ray container. Secrets are referenced, never
     copied into the pod spec. */}}
{{- define "chorus.ray.env" -}}
{{- $root := .root -}}
{{- $group := .group -}}
- name: XDG_CACHE_HOME
  value: /var/cache/chorus
{{- if $root.Values.ray.auth.enabled }}
- name: RAY_AUTH_MODE
  value: token
- name: RAY_AUTH_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ include "chorus.ray.authSecret" $root | quote }}, key: auth_token, optional: false}
{{- end }}
{{- if has $group (list "head" "cpu") }}
{{- include "chorus.redisEnv" $root }}
{{- end }}
{{- if eq $group "cloud" }}
{{- with $root.Values.cloud.azure.existingSecret }}
- name: AZURE_SPEECH_KEY
  valueFrom:
    secretKeyRef: {name: {{ . | quote }}, key: AZURE_SPEECH_KEY, optional: false}
- name: AZURE_SPEECH_REGION
  valueFrom:
    secretKeyRef: {name: {{ . | quote }}, key: AZURE_SPEECH_REGION, optional: false}
{{- end }}
{{- with $root.Values.cloud.ibm.existingSecret }}
- name: TEXT_TO_SPEECH_APIKEY
  valueFrom:
    secretKeyRef: {name: {{ . | quote }}, key: TEXT_TO_SPEECH_APIKEY, optional: false}
- name: TEXT_TO_SPEECH_URL
  valueFrom:
    secretKeyRef: {name: {{ . | quote }}, key: TEXT_TO_SPEECH_URL, optional: false}
{{- end }}
{{- if $root.Values.cloud.google.existingSecret }}
- name: GOOGLE_APPLICATION_CREDENTIALS
  value: /var/run/secrets/chorus/google/credentials.json
{{- end }}
{{- end }}
{{- end }}

{{/* (dict root group) -> volume mounts of the group's Ray container. */}}
{{- define "chorus.ray.volumeMounts" -}}
{{- $root := .root -}}
- {name: samples, mountPath: /var/lib/chorus/samples}
- {name: models, mountPath: /models, readOnly: true}
{{- /* The root filesystem is read-only: Ray's session directory (/tmp/ray), spilled objects
       and temporary files go to /tmp, caches to XDG_CACHE_HOME. Not /tmp/ray itself: KubeRay
       mounts its own log volume there on the head when the autoscaler runs. */}}
- {name: tmp, mountPath: /tmp}
- {name: cache, mountPath: /var/cache/chorus}
{{- if and (eq .group "cpu") $root.Values.auth.existingSecret }}
{{- /* The directory, never a subPath: only a directory mount sees the Secret's updates. */}}
- {name: api-keys, mountPath: {{ include "chorus.auth.dir" $root }}, readOnly: true}
{{- end }}
{{- if and (eq .group "cloud") $root.Values.cloud.google.existingSecret }}
- {name: google-credentials, mountPath: /var/run/secrets/chorus/google, readOnly: true}
{{- end }}
{{- end }}

{{/* (dict root group) -> volumes of the group's Ray pod. */}}
{{- define "chorus.ray.volumes" -}}
{{- $root := .root -}}
- name: samples
  persistentVolumeClaim: {claimName: {{ include "chorus.samples.claimName" $root | quote }}}
- name: models
  persistentVolumeClaim: {claimName: {{ $root.Values.models.existingClaim | quote }}, readOnly: true}
- name: tmp
  emptyDir: {}
- name: cache
  emptyDir: {}
{{- if eq .group "cpu" }}
{{- with $root.Values.auth.existingSecret }}
- name: api-keys
  secret:
    secretName: {{ . | quote }}
    optional: false
    items: [{key: {{ $root.Values.auth.secretKey | quote }}, path: {{ $root.Values.auth.secretKey | quote }}}]
{{- end }}
{{- end }}
{{- if eq .group "cloud" }}
{{- with $root.Values.cloud.google.existingSecret }}
- name: google-credentials
  secret:
    secretName: {{ . | quote }}
    optional: false
    items: [{key: credentials.json, path: credentials.json}]
{{- end }}
{{- end }}
{{- end }}

{{/* The pod template of a Ray group. Args: dict root, group ("head"|"cpu"|"cloud"|"gpu"), container
     (name), image ("chorus"|"chorus-gpu"), resources, nodeSelector, tolerations, ports (optional). */}}
{{- define "chorus.ray.podTemplate" -}}
{{- $root := .root -}}
{{- $ctx := dict "root" $root "group" .group -}}
metadata:
  # Selector labels only: a changed pod template makes KubeRay roll the whole Ray cluster,
  # so a chart version bump alone must not change it.
  labels:
    {{- include "chorus.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: ray
spec:
  {{- if eq .group "head" }}
  {{- /* Its own identity: KubeRay binds the autoscaler's Role (pods, RayCluster) to the head's
         service account, and that must not reach the Ingress's pods. */}}
  serviceAccountName: {{ include "chorus.ray.headName" $root }}
  # KubeRay's autoscaler sidecar calls the API server with this token; nothing else on the head does.
  automountServiceAccountToken: {{ $root.Values.ray.enableInTreeAutoscaling }}
  {{- else }}
  serviceAccountName: {{ include "chorus.ray.name" $root }}
  # Only the CPU group, which hosts the Ingress and its Kubernetes personality store, calls the API server.
  automountServiceAccountToken: {{ eq .group "cpu" }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.ray.podSecurityContext | nindent 4 }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .container }}
      image: {{ include "chorus.image" (list $root .image) | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      {{- with .ports }}
      ports:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      env:
        {{- include "chorus.ray.env" $ctx | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.ray.securityContext | nindent 8 }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      {{- /* KubeRay's own probes (set only where a container has none) run `wget`, which the
             images do not carry: the same checks as HTTP probes, at KubeRay's timings. Ray
             answers 503 while unhealthy. A worker is ready once its Serve proxy is. */}}
      livenessProbe:
        httpGet: {path: /api/local_raylet_healthz, port: 52365}
        initialDelaySeconds: 30
        periodSeconds: 5
        timeoutSeconds: 2
        failureThreshold: 120
      readinessProbe:
        {{- if eq .group "head" }}
        httpGet: {path: /api/gcs_healthz, port: 8265}
        failureThreshold: 10
        {{- else }}
        httpGet: {path: /-/healthz, port: 8000}
        failureThreshold: 1
        {{- end }}
        initialDelaySeconds: 10
        periodSeconds: 5
        timeoutSeconds: 2
      volumeMounts:
        {{- include "chorus.ray.volumeMounts" $ctx | nindent 8 }}
  volumes:
    {{- include "chorus.ray.volumes" $ctx | nindent 4 }}
  {{- with .nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- operator RBAC */}}

{{/* Exactly what the operator does in a namespace it serves (tests/kube run it under
     these rules and fail on any 403). kopf watches VoicePersonalities and patches them
     (finalizer, progress annotations) and their status; setting blockOwnerDeletion on
     children needs update on the owner's finalizers; children are read and created or
     patched, never deleted (the garbage collector does that through ownerReferences).
     No CRD or namespace access: the operator does not scan the cluster. */}}
{{- define "chorus.operator.rules" -}}
- apiGroups: [voice.chorus.dev]
  resources: [voicepersonalities]
  verbs: [list, watch, patch]
- apiGroups: [voice.chorus.dev]
  resources: [voicepersonalities/status]
  verbs: [patch]
- apiGroups: [voice.chorus.dev]
  resources: [voicepersonalities/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, create]
{{- end }}

{{/* Namespaces the operator watches when not cluster-wide (JSON list). */}}
{{- define "chorus.operator.watchNamespaces" -}}
{{- .Values.operator.watchNamespaces | default (list .Release.Namespace) | uniq | toJson }}
{{- end }}

{{- /*
The API server's addresses for the operator's egress policy, as JSON {cidrs, ports}: as
set, or else read at install time from the `kubernetes` Service's EndpointSlice in
`default` (Helm's lookup; network policies see the endpoint's address and port, after the
Service's translation). Only an offline `helm template` finds neither; then TCP 443/6443
stay open to any address, and NOTES.txt says so.
*/}}
{{- define "chorus.operator.apiServer" -}}
{{- $cidrs := .Values.operator.networkPolicy.apiServerCIDRs | default list }}
{{- $ports := list }}
{{- if not $cidrs }}
{{- $slice := lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "kubernetes" }}
{{- range ($slice.endpoints | default list) }}
{{- range .addresses }}
{{- $cidrs = append $cidrs (printf "%s/%s" . (ternary "128" "32" (contains ":" .))) }}
{{- end }}
{{- end }}
{{- range ($slice.ports | default list) }}
{{- $ports = append $ports (int .port) }}
{{- end }}
{{- end }}
{{- dict "cidrs" $cidrs "ports" $ports | toJson }}
{{- end }}
