{{/* Everything the runner's register and run commands read from the environment. */}}
{{- define "gitlab-runner.runner-env-vars" }}
- name: CI_SERVER_URL
  value: {{ default "" .Values.gitlabUrl | quote }}
- name: RUNNER_EXECUTOR
  value: "kubernetes"
- name: REGISTER_LOCKED
  value: {{ if or (not (hasKey .Values.runners "locked")) .Values.runners.locked -}}"true"{{- else -}}"false"{{- end }}
{{- range .Values.envVars }}
- name: {{ .name }}
  value: {{ .value | quote }}
{{- end }}
{{- end -}}
