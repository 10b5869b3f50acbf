{{/*
The RayService's serveConfigV2: the cluster Serve profile (files/serve-cluster.yaml, a
byte-for-byte copy of serve/configs/cluster.yaml) with exactly what the values ask for:

  engines.<id>.enabled: false            -> args.engines.<id>.enabled: false, its deployment removed
  engines.<cloud id>.enabled: true       -> args.engines.<id> added, and a CPU deployment (chorus.cloudDeployment)
  engines.<id>.minReplicas/maxReplicas   -> that deployment's autoscaling_config.min_replicas/max_replicas
  ingress.minReplicas/maxReplicas        -> the Ingress deployment's autoscaling_config
  auth.existingSecret                    -> args.auth.keysFile: the key file mounted from that Secret
  auth.insecureNoAuth (no existingSecret) -> args.insecure_no_auth: true (keys off; refused otherwise)
  dashboard.rayDashboard/trace/engineTraces -> args.links (the web dashboard's links; empty ones left out)
*/}}
{{- define "chorus.serveConfig" -}}
{{- $cfg := .Files.Get "files/serve-cluster.yaml" | fromYaml -}}
{{- $app := index $cfg.applications 0 -}}
{{- $engineIds := include "chorus.engineIds" . | fromJsonArray -}}
{{- $cloudIds := include "chorus.cloudEngineIds" . | fromJsonArray -}}
{{- range $id, $e := .Values.engines -}}
  {{- if not (has $id $engineIds) -}}
    {{- fail (printf "engines.%s: unknown engine id (known: %s)" $id (join ", " $engineIds)) -}}
  {{- end -}}
  {{- /* serveConfigV2 is readable by whoever may read the RayService: credentials come from
       Secrets (cloud.*.existingSecret), never from values */ -}}
  {{- range $field, $_ := ($e | default dict).config | default dict -}}
    {{- if regexMatch "(?i)(key|token|secret|password|credential)" $field -}}
      {{- fail (printf "engines.%s.config.%s: credentials are never given in values (they would be readable in the RayService); put them in a Secret named in cloud.*.existingSecret (docs/kubernetes.md)" $id $field) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- /* deployments: drop disabled engines', apply bounds to the rest */ -}}
{{- $deployments := list -}}
{{- range $d := $app.deployments -}}
  {{- $bounds := ternary $.Values.ingress (index $.Values.engines $d.name | default dict) (eq $d.name "Ingress") -}}
  {{- if not (and (hasKey $bounds "enabled") (not $bounds.enabled)) -}}
    {{- include "chorus.autoscalingBounds" (list $d $bounds) -}}
    {{- $deployments = append $deployments $d -}}
  {{- end -}}
{{- end -}}
{{- /* engine args: disable, or add enabled cloud engines */ -}}
{{- range $id := $engineIds -}}
  {{- $e := index $.Values.engines $id | default dict -}}
  {{- if and (hasKey $e "enabled") (not $e.enabled) -}}
    {{- if hasKey $app.args.engines $id -}}
      {{- $_ := set (index $app.args.engines $id) "enabled" false -}}
    {{- end -}}
  {{- else if and $e.enabled (not (hasKey $app.args.engines $id)) -}}
    {{- if not (has $id $cloudIds) -}}
      {{- fail (printf "engines.%s: not in the cluster Serve profile (files/serve-cluster.yaml)" $id) -}}
    {{- end -}}
    {{- $_ := set $app.args.engines $id (dict "enabled" true "timeout_s" ($e.timeoutSeconds | default 15) "config" ($e.config | default dict)) -}}
    {{- $d := include "chorus.cloudDeployment" (list $id $app.args.request_deadline_s) | fromYaml -}}
    {{- include "chorus.autoscalingBounds" (list $d $e) -}}
    {{- $deployments = append $deployments $d -}}
  {{- end -}}
{{- end -}}
{{- $_ := set $app "deployments" $deployments -}}
{{- with include "chorus.auth.args" . -}}
  {{- $_ := set $app.args "auth" (fromJson .) -}}
{{- else -}}
  {{- $_ := set $app.args "insecure_no_auth" true -}}
{{- end -}}
{{- $links := dict -}}
{{- range $field, $url := .Values.dashboard | default dict -}}
  {{- if $url -}}{{- $_ := set $links $field $url -}}{{- end -}}
{{- end -}}
{{- if $links -}}
  {{- $_ := set $app.args "links" $links -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end }}

{{/* (list id request_deadline_s): a cloud engine's Serve deployment, on the CPU worker group,
     half a CPU per replica; drained, a replica waits for its calls as the profile's engines do. */}}
{{- define "chorus.cloudDeployment" -}}
name: {{ index . 0 }}
graceful_shutdown_timeout_s: {{ index . 1 }}
graceful_shutdown_wait_loop_s: 1
max_ongoing_requests: 32
ray_actor_options: {num_cpus: 0.5, resources: {chorus_cloud: 0.01}}
autoscaling_config: {min_replicas: 1, max_replicas: 4, target_ongoing_requests: 16}
{{- end }}

{{/* (list deployment bounds): set autoscaling_config.min_replicas/max_replicas from the
     bounds' minReplicas/maxReplicas when given (null keeps the profile's). Renders nothing. */}}
{{- define "chorus.autoscalingBounds" -}}
{{- $d := index . 0 -}}
{{- $b := index . 1 | default dict -}}
{{- range $key, $field := dict "minReplicas" "min_replicas" "maxReplicas" "max_replicas" -}}
  {{- if not (kindIs "invalid" (index $b $key)) -}}
    {{- $autoscaling := $d.autoscaling_config | default dict -}}
    {{- $_ := set $autoscaling $field (index $b $key) -}}
    {{- $_ := set $d "autoscaling_config" $autoscaling -}}
  {{- end -}}
{{- end -}}
{{- end }}
