{{- define "gitlab-runner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* release-chart (or just the release when it already starts with the chart name), truncated to a DNS label. */}}
{{- define "gitlab-runner.fullname" -}}
{{-   if .Values.fullnameOverride -}}
{{-     .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{-   else -}}
{{-     $name := default .Chart.Name .Values.nameOverride -}}
{{-     if hasPrefix $name .Release.Name -}}
{{-       .Release.Name | trunc 63 | trimSuffix "-" -}}
{{-     else -}}
{{-       printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{-     end -}}
{{-   end -}}
{{- end -}}

{{- define "gitlab-runner.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gitlab-runner.secret" -}}
{{- default (include "gitlab-runner.fullname" .) .Values.runners.secret | quote -}}
{{- end -}}

{{/* The secret with the S3 credentials (keys accesskey, secretkey). */}}
{{- define "gitlab-runner.cache.secret" -}}
{{- if .Values.runners.cache.secretName -}}
{{- .Values.runners.cache.secretName | quote -}}
{{- end -}}
{{- end -}}

{{/* Kept as its own template so that umbrella charts can override the address. */}}
{{- define "gitlab-runner.cache.s3ServerAddress" -}}
{{- default "" .Values.runners.cache.s3ServerAddress | quote -}}
{{- end -}}

{{/* The runner image: `image` when set, else registry/repository:tag. */}}
{{- define "gitlab-runner.image" -}}
{{- coalesce .Values.image (printf "%s/%s:%s" .Values.registry .Values.repository .Values.tag) -}}
{{- end -}}
