{{/* The chart's name, overridable. */}}
{{- define "gitlab-runner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* release-chart, truncated to a DNS label. */}}
{{- define "gitlab-runner.fullname" -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gitlab-runner.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The secret with the registration token. */}}
{{- define "gitlab-runner.secret" -}}
{{- default (include "gitlab-runner.fullname" .) .Values.runners.secret | quote -}}
{{- end -}}

{{/* The secret with the S3 credentials (keys accesskey, secretkey). */}}
{{- define "gitlab-runner.cache.secret" -}}
{{- default "s3access" .Values.runners.cache.secretName | quote -}}
{{- end -}}

{{- define "gitlab-runner.cache.s3ServerAddress" -}}
{{- default "" .Values.runners.cache.s3ServerAddress | quote -}}
{{- end -}}

{{- define "gitlab-runner.image" -}}
{{- $image := printf "gitlab/gitlab-runner:alpine-v%s" .Chart.AppVersion -}}
{{- default $image .Values.image -}}
{{- end -}}
