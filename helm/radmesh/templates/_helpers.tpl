{{/*
Shared helpers. Ports come from files/services.json (generated from radmesh.services.SERVICES
by scripts/gen_chart_ports.py), never from values, so the chart and `radmesh up` agree.
*/}}

{{- define "radmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "radmesh.fullname" -}}
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

{{/* The generated port table: .services.NAME.{port,metricsPort}, .ui.port, .triton.{http,grpc,metrics}. */}}
{{- define "radmesh.ports" -}}
{{- .Files.Get "files/services.json" | required "files/services.json is missing: run scripts/gen_chart_ports.py" }}
{{- end }}

{{/* Object name of a component: (dict "root" $ "component" "text"). */}}
{{- define "radmesh.componentName" -}}
{{- printf "%s-%s" (include "radmesh.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "radmesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: radmesh
{{ include "radmesh.selectorLabels" . }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "radmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "radmesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* An image reference from (dict "root" $ "image" .Values.image.radmesh): repo:tag[@digest]. */}}
{{- define "radmesh.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion }}
{{- if eq (toString $tag) "latest" }}{{ fail "image tags must not be `latest`: pin a version (or a digest)" }}{{ end }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{- define "radmesh.serviceAccountName" -}}
{{- if .root.Values.serviceAccount.create }}{{ include "radmesh.componentName" . }}{{ else }}default{{ end }}
{{- end }}

{{/* In-cluster address HOST:PORT of a radmesh service. */}}
{{- define "radmesh.serviceAddress" -}}
{{- $ports := include "radmesh.ports" .root | fromJson }}
{{- printf "%s:%v" (include "radmesh.componentName" .) (index $ports.services .component).port }}
{{- end }}

{{- define "radmesh.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "radmesh.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* Writable paths under a read-only root: HOME and the radmesh cache. */}}
{{- define "radmesh.baseEnv" -}}
- name: HOME
  value: /tmp
- name: RADMESH_CACHE
  value: /var/cache/radmesh
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- end }}

{{/* TLS and API-token environment, for containers of radmesh processes. */}}
{{- define "radmesh.securityEnv" -}}
{{- if .Values.tls.enabled }}
- name: RADMESH_TLS_CERT
  value: /etc/radmesh/tls/tls.crt
- name: RADMESH_TLS_KEY
  value: /etc/radmesh/tls/tls.key
- name: RADMESH_TLS_CA
  value: /etc/radmesh/tls/ca.crt
{{- if .Values.tls.mutual }}
# servers require client certificates signed by the same CA (callers show their tls.crt)
- name: RADMESH_TLS_CLIENT_CA
  value: /etc/radmesh/tls/ca.crt
{{- end }}
{{- end }}
{{- if .Values.apiToken.enabled }}
# a file, not the value: environment variables leak into crash dumps and `kubectl describe`
- name: RADMESH_AUTH_TOKEN_FILE
  value: /etc/radmesh/api-token/{{ .Values.apiToken.secretKey }}
{{- end }}
{{- end }}

{{- define "radmesh.secretMounts" -}}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/radmesh/tls
  readOnly: true
{{- end }}
{{- if .Values.apiToken.enabled }}
- name: api-token
  mountPath: /etc/radmesh/api-token
  readOnly: true
{{- end }}
{{- end }}

{{- define "radmesh.secretVolumes" -}}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- if .Values.apiToken.enabled }}
- name: api-token
  secret:
    secretName: {{ .Values.apiToken.secretName }}
    defaultMode: 0440
    items:
      - {key: {{ .Values.apiToken.secretKey }}, path: {{ .Values.apiToken.secretKey }}}
{{- end }}
{{- end }}

{{/* Probes of a radmesh gRPC service: (dict "root" $ "port" PORT "startupS" SECONDS "component" NAME). */}}
{{- define "radmesh.grpcProbes" -}}
{{- $p := .root.Values.probes }}
{{- $check := dict "grpc" (dict "port" .port) }}
{{- if .root.Values.tls.enabled }}
{{- /* The kubelet's grpc probe speaks plaintext only, and a TCP connect passes for a wedged server:
  ask grpc.health.v1 over TLS from inside the container (CA, cert and key from its RADMESH_TLS_*
  env), checking the certificate against the Service's name, which the certificate must carry. */}}
{{- $name := include "radmesh.componentName" (dict "root" .root "component" .component) }}
{{- $check = dict "exec" (dict "command" (list "python" "-m" "radmesh.common.healthcheck" "--target" (printf "127.0.0.1:%v" .port) "--tls-server-name" $name "--timeout-s" (printf "%v" $p.timeoutS))) }}
{{- end }}
startupProbe:
  {{- toYaml $check | nindent 2 }}
  periodSeconds: 5
  timeoutSeconds: {{ $p.timeoutS }}
  failureThreshold: {{ div (add .startupS 4) 5 }}
readinessProbe:
  {{- toYaml $check | nindent 2 }}
  periodSeconds: {{ $p.readinessPeriodS }}
  timeoutSeconds: {{ $p.timeoutS }}
  failureThreshold: 2
livenessProbe:
  {{- toYaml $check | nindent 2 }}
  periodSeconds: {{ $p.livenessPeriodS }}
  timeoutSeconds: {{ $p.timeoutS }}
  failureThreshold: {{ $p.livenessFailureThreshold }}
{{- end }}

{{/* Fail unless requests equal limits key by key (Guaranteed QoS): (dict "what" "triton.resources" "resources" R). */}}
{{- define "radmesh.assertGuaranteed" -}}
{{- $r := .resources }}
{{- $keys := concat (keys $r.requests) (keys $r.limits) | uniq }}
{{- range $k := $keys }}
{{- if ne (toString (index $r.requests $k | default "")) (toString (index $r.limits $k | default "")) }}
{{- fail (printf "%s: requests must equal limits (Guaranteed QoS), %s differs (write both the same way, e.g. \"4\")" $.what $k) }}
{{- end }}
{{- end }}
{{- end }}
