{{/* The cache settings themselves live in runners.config; only the credentials' secret is wired here. */}}
{{- define "gitlab-runner.cache.secret" -}}
{{- if hasKey .Values.runners.cache "secretName" -}}
{{- .Values.runners.cache.secretName | quote -}}
{{- end -}}
{{- end -}}

{{/* A projected-volume source with the cache credentials (accesskey/secretkey), when a secret is named. */}}
{{- define "gitlab-runner.cache.projected-secret" -}}
{{- if include "gitlab-runner.cache.secret" . }}
- secret:
    name: {{ include "gitlab-runner.cache.secret" . }}
{{- end }}
{{- end -}}
