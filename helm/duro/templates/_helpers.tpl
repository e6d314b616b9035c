{{/* Names and labels shared by every object of the release. */}}
{{- define "duro.fullname" -}}
{{- if contains "duro" .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-duro" .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "duro.selectorLabels" -}}
app.kubernetes.io/name: duro
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "duro.labels" -}}
{{ include "duro.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Nodes: one on the embedded log, `replicas` on Kafka. */}}
{{- define "duro.replicas" -}}
{{- if eq .Values.mode "cluster" -}}{{ .Values.replicas }}{{- else -}}1{{- end -}}
{{- end -}}

{{- define "duro.headless" -}}
{{ include "duro.fullname" . }}-headless
{{- end -}}

{{/* The graceful phase and the close in whole seconds, rounded up, plus the margin. */}}
{{- define "duro.terminationGracePeriodSeconds" -}}
{{- add (div (add .Values.shutdown.timeoutMs .Values.shutdown.closeTimeoutMs 999) 1000) .Values.terminationGraceMarginSeconds -}}
{{- end -}}
