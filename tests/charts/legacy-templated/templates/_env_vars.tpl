{{/* Everything the runner's register and run commands read from the environment. */}}
{{- define "gitlab-runner.runner-env-vars" }}
- name: CI_SERVER_URL
  value: {{ default "" .Values.gitlabUrl | quote }}
- name: CLONE_URL
  value: {{ default "" .Values.runners.cloneUrl | quote }}
- name: RUNNER_EXECUTOR
  value: "kubernetes"
- name: REGISTER_LOCKED
  value: {{ if or (not (hasKey .Values.runners "locked")) .Values.runners.locked -}}"true"{{- else -}}"false"{{- end }}
- name: RUNNER_TAG_LIST
  value: {{ default "" .Values.runners.tags | quote }}
{{- include "gitlab-runner.cache" . }}
{{- range .Values.envVars }}
- name: {{ .name }}
  value: {{ .value | quote }}
{{- end }}
{{- end -}}
