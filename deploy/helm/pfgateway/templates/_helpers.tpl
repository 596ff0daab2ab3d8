{{/* Chart name, trunc 63 (DNS label). */}}
{{- define "pfgateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: release-chart, or the release name when it already contains the
chart name; trunc 63 because some Kubernetes name fields are DNS labels.
*/}}
{{- define "pfgateway.fullname" -}}
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

{{- define "pfgateway.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pfgateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: the Deployment, PDB, Services and NetworkPolicy all select on these. */}}
{{- define "pfgateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pfgateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pfgateway.labels" -}}
helm.sh/chart: {{ include "pfgateway.chart" . }}
{{ include "pfgateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pfgateway
{{- end }}

{{- define "pfgateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pfgateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* registry/repository:tag, or @digest when a digest is given. */}}
{{- define "pfgateway.image" -}}
{{- $repo := .Values.image.repository }}
{{- if .Values.image.registry }}{{ $repo = printf "%s/%s" .Values.image.registry .Values.image.repository }}{{ end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "pfgateway.tlsSecretName" -}}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "pfgateway.fullname" .)) }}
{{- end }}

{{- define "pfgateway.kubeletClientSecretName" -}}
{{- .Values.kubelet.clientCertificate.secretName | default (printf "%s-kubelet-client" (include "pfgateway.fullname" .)) }}
{{- end }}

{{/* Whether any served cluster uses the kubelet backend (needs the kubelet client certificate). */}}
{{- define "pfgateway.usesKubelet" -}}
{{- if not .Values.clusters }}true{{ end }}
{{- range .Values.clusters }}{{ if eq (.backend | default "kubelet") "kubelet" }}true{{ end }}{{ end }}
{{- end }}

{{- define "pfgateway.terminationGracePeriodSeconds" -}}
{{- add .Values.shutdownGracePeriodSeconds .Values.terminationGracePeriodMarginSeconds }}
{{- end }}
