{{/* Everything the runner's register and run commands read from the environment. */}}
{{- define "gitlab-runner.runner-env-vars" }}
- name: CI_SERVER_URL
  value: {{ default "" .Values.gitlabUrl | quote }}
- name: REGISTER_NON_INTERACTIVE
  value: "true"
- name: RUNNER_EXECUTOR
  value: "kubernetes"
- name: KUBERNETES_IMAGE
  value: {{ .Values.runners.image | quote }}
- name: KUBERNETES_PRIVILEGED
  value: {{ .Values.runners.privileged | quote }}
- name: KUBERNETES_NAMESPACE
  value: {{ default .Release.Namespace .Values.runners.namespace | quote }}
{{- if .Values.runners.cache.cacheType }}
{{- include "gitlab-runner.cache_s3" . }}
{{- end }}
{{- end -}}
