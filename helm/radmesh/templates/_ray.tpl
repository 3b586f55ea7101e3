{{/* A Ray pod template (head, worker or job submitter): (dict "root" $ "name" N "head" BOOL "resources" R). */}}
{{- define "radmesh.rayPod" -}}
{{- $root := .root }}
metadata:
  labels:
    {{- include "radmesh.labels" (dict "root" $root "component" "batch") | nindent 4 }}
spec:
  {{- if not (and .head $root.Values.batch.autoscale) }}
  serviceAccountName: {{ include "radmesh.serviceAccountName" (dict "root" $root "component" "batch-worker") }}
  automountServiceAccountToken: false
  {{- end }}
  enableServiceLinks: false
  securityContext:
    {{- include "radmesh.podSecurityContext" $root | nindent 4 }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .name }}
      image: {{ include "radmesh.image" (dict "root" $root "image" $root.Values.image.radmesh) }}
      imagePullPolicy: {{ $root.Values.image.radmesh.pullPolicy }}
      {{- if .head }}
      ports:
        - {name: gcs, containerPort: 6379, protocol: TCP}
        - {name: dashboard, containerPort: 8265, protocol: TCP}
        - {name: client, containerPort: 10001, protocol: TCP}
      {{- end }}
      env:
        {{- include "radmesh.baseEnv" $root | nindent 8 }}
        {{- range $svc := list "assistant" "text" "segmentation" "measurement" "report" }}
        - name: {{ printf "RADMESH_%s_URL" (upper $svc) }}
          value: {{ include "radmesh.serviceAddress" (dict "root" $root "component" $svc) | quote }}
        {{- end }}
        {{- include "radmesh.securityEnv" $root | nindent 8 }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      securityContext:
        {{- include "radmesh.containerSecurityContext" $root | nindent 8 }}
      volumeMounts:
        - {name: tmp, mountPath: /tmp}
        - {name: shm, mountPath: /dev/shm}
        - {name: cache, mountPath: /var/cache/radmesh}
        - {name: data, mountPath: /data}
        {{- include "radmesh.secretMounts" $root | nindent 8 }}
  volumes:
    - name: tmp
      emptyDir: {sizeLimit: 8Gi}
    - name: shm
      emptyDir: {medium: Memory, sizeLimit: 2Gi}
    - name: cache
      emptyDir: {sizeLimit: 4Gi}
    - name: data
      persistentVolumeClaim: {claimName: {{ $root.Values.batch.dataClaim }}}
    {{- include "radmesh.secretVolumes" $root | nindent 4 }}
{{- end }}
