{{- define "kaip.name" -}}kaip-operator{{- end -}}

{{- define "kaip.labels" -}}
app.kubernetes.io/name: kaip-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kaip.selector" -}}
app.kubernetes.io/name: kaip-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kaip.fullname" -}}
{{- if eq .Release.Name "kaip" -}}kaip-operator{{- else -}}{{ printf "%s-kaip-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "kaip.portalLabels" -}}
app.kubernetes.io/name: kaip-portal
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: portal
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kaip.portalSelector" -}}
app.kubernetes.io/name: kaip-portal
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
