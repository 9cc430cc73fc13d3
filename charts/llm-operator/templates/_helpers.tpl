{{/* The chart name, or nameOverride. */}}
{{- define "llm-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: the release name when it already contains the
chart name (so `helm install llm-operator` gives objects named llm-operator), else
release-chart. Truncated to 63 characters, the limit of a DNS label.
*/}}
{{- define "llm-operator.fullname" -}}
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

{{/* name-version, the value of the helm.sh/chart label. */}}
{{- define "llm-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's name and instance labels, on the pods of both the operator and the gateway. */}}
{{- define "llm-operator.instanceLabels" -}}
app.kubernetes.io/name: {{ include "llm-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The labels that select the operator's pod: stable across upgrades. They name the
component, so that the operator's Deployment and Services never select the gateway's pods
(same name and instance labels).
*/}}
{{- define "llm-operator.selectorLabels" -}}
{{ include "llm-operator.instanceLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The operator Deployment's selector. A Deployment's selector cannot change, and charts made
before the gateway joined selected the operator's pod by name and instance only: a release
installed by one keeps that selector (read from the cluster at install and upgrade), so that
`helm upgrade` from it works as it is. The pod carries the component label too, so it matches
either selector; the Service and the ServiceMonitor select by component in both cases.
Rendered without a cluster (helm template), the selector is the current one.
*/}}
{{- define "llm-operator.deploymentSelector" -}}
{{- $live := lookup "apps/v1" "Deployment" .Release.Namespace (include "llm-operator.fullname" .) -}}
{{- $selector := dig "spec" "selector" "matchLabels" (dict) $live -}}
{{- $previous := include "llm-operator.instanceLabels" . | fromYaml -}}
{{- if eq (toJson $selector) (toJson $previous) -}}
{{ include "llm-operator.instanceLabels" . }}
{{- else -}}
{{ include "llm-operator.selectorLabels" . }}
{{- end -}}
{{- end }}

{{/* The labels that select the gateway's pods. */}}
{{- define "llm-operator.gatewaySelectorLabels" -}}
{{ include "llm-operator.instanceLabels" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{/* The same labels as a label selector (llm-operator run --gateway-pods). */}}
{{- define "llm-operator.gatewaySelector" -}}
{{- $labels := include "llm-operator.gatewaySelectorLabels" . | fromYaml -}}
{{- $pairs := list -}}
{{- range $k := keys $labels | sortAlpha }}{{ $pairs = append $pairs (printf "%s=%s" $k (get $labels $k)) }}{{ end -}}
{{- join "," $pairs -}}
{{- end }}

{{/* Labels on every object of the release, whatever its component. */}}
{{- define "llm-operator.commonLabels" -}}
helm.sh/chart: {{ include "llm-operator.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: llm-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Standard labels on the operator's objects. */}}
{{- define "llm-operator.labels" -}}
{{ include "llm-operator.commonLabels" . }}
{{ include "llm-operator.selectorLabels" . }}
{{- end }}

{{/* Standard labels on the gateway's objects. */}}
{{- define "llm-operator.gatewayLabels" -}}
{{ include "llm-operator.commonLabels" . }}
{{ include "llm-operator.gatewaySelectorLabels" . }}
{{- end }}

{{/* The gateway's object names: the full name (cut so that the suffix fits 63 characters) and -gateway. */}}
{{- define "llm-operator.gatewayFullname" -}}
{{- printf "%s-gateway" (include "llm-operator.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/* The ServiceAccount the gateway runs as: its own, not the operator's. */}}
{{- define "llm-operator.gatewayServiceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create }}
{{- default (include "llm-operator.gatewayFullname" .) .Values.gateway.serviceAccount.name }}
{{- else }}
{{- required "gateway.serviceAccount.name must name an existing ServiceAccount when gateway.serviceAccount.create is false" .Values.gateway.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "llm-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image, its tag defaulting to the chart's appVersion. */}}
{{- define "llm-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The namespaces the operator watches in namespaced mode, checked once here. */}}
{{- define "llm-operator.watchedNamespaces" -}}
{{- if not .Values.rbac.namespaces }}
{{- fail "rbac.scope=namespaced needs at least one namespace in rbac.namespaces" }}
{{- end }}
{{- .Values.rbac.namespaces | uniq | toJson }}
{{- end }}

{{/*
RBAC rules for what the operator does inside a namespace it watches. In cluster scope
they go into the ClusterRole; in namespaced scope into a Role in each watched namespace.
Only the verbs the code uses; no wildcards; nothing on Secrets (a model's Hub token
reaches its pods through a secretKeyRef the kubelet resolves, never through the operator).
*/}}
{{- define "llm-operator.namespacedRules" -}}
# The API: kopf lists and watches LLMDeployments into the operator's read model; a
# reconcile reads them there, never with a GET, and writes nothing on the object itself.
- apiGroups: ["llm-operator.io"]
  resources: ["llmdeployments"]
  verbs: ["list", "watch"]
# The API: the operator writes status (conditions, plan, replicas, url) through the
# status subresource.
- apiGroups: ["llm-operator.io"]
  resources: ["llmdeployments/status"]
  verbs: ["patch"]
# The operator-native autoscaler (autoscaling.mode=operator) writes replicas through the
# scale subresource, as an HPA would.
- apiGroups: ["llm-operator.io"]
  resources: ["llmdeployments/scale"]
  verbs: ["patch"]
# Children carry ownerReferences with blockOwnerDeletion: true; the
# OwnerReferencesPermissionEnforcement admission plugin (on in OpenShift and many managed
# clusters) then requires update on the owner's finalizers subresource.
- apiGroups: ["llm-operator.io"]
  resources: ["llmdeployments/finalizers"]
  verbs: ["update"]
# Children: the serving Deployment. create (POST) makes a child the read model has never
# seen, and patch applies one it holds as ours; get only after a create is refused because
# the name is taken, to say whose the object is (never in a steady state); list/watch feed
# the read model the live object is compared with, and wake the owner's reconcile on
# drift; delete to prune what is no longer desired or re-create an immutable child.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Children: the model's Service and the weight cache's PersistentVolumeClaim (same verbs,
# same reasons as the Deployment).
- apiGroups: [""]
  resources: ["services", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Children: the PodDisruptionBudget made when replicas > 1.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Children: the Job that downloads weights into the cache and reports the model's facts.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Children: the HorizontalPodAutoscaler of autoscaling.mode=hpa.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- if .Values.lws.enabled }}
# Children (lws.enabled): the LeaderWorkerSet of a model served across nodes (spec.nodes > 1).
- apiGroups: ["leaderworkerset.x-k8s.io"]
  resources: ["leaderworkersets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
# Pods, read only: the scheduler's Unschedulable message and the download Job's
# termination message go into status, and pod events wake the owner's reconcile; the
# pods of our children only (label-selected watch).
# (The operator's autoscaler reads TGI's /metrics from pod IPs over HTTP: no API verb.)
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Events: kopf and the operator post Events about problems on LLMDeployments; patch
# lets a repeated Event be counted instead of duplicated.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
RBAC rules for the gateway (`llm-operator gateway`), in each namespace it routes to: a
ClusterRole in cluster scope, a Role per namespace in namespaced scope. It reads models and
their pods, and writes only what waking a model from zero takes. Nothing on Secrets (its
API keys reach it as a file the kubelet mounts), no Services, no Deployments.
*/}}
{{- define "llm-operator.gatewayRules" -}}
# Gateway routing: the table of models (name -> LLMDeployment) comes from a list and watch;
# get re-reads one model before waking it.
- apiGroups: ["llm-operator.io"]
  resources: ["llmdeployments"]
  verbs: ["get", "list", "watch"]
# Gateway wake-up: one annotation, llm-operator.io/woken-by-request-at, tells the operator's
# autoscaler that a held request woke the model (so it does not scale it straight back to zero).
- apiGroups: ["llm-operator.io"]
  resources: ["llmdeployments"]
  verbs: ["patch"]
# Gateway wake-up: a model at zero replicas is scaled up through the scale subresource, as
# an HPA would (get to read it, patch or update to set replicas).
- apiGroups: ["llm-operator.io"]
  resources: ["llmdeployments/scale"]
  verbs: ["get", "patch", "update"]
# Gateway routing: requests go to the ready pods of a model, seen through a list and watch
# (never a GET per request).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Events: the gateway posts an Event on a model it woke or could not wake; patch lets a
# repeated Event be counted instead of duplicated (the same two groups as the operator).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
RBAC rules for cluster-scoped objects: a ClusterRole in both scopes, since Roles cannot
grant them. All read-only.
*/}}
{{- define "llm-operator.clusterRules" -}}
# GPU types: the planner reads nodes' nvidia.com/gpu.product labels and GPU capacity to
# check that a model fits the GPUs that exist. Read only, watched into the read model.
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["list", "watch"]
# A weight cache asking for a StorageClass that does not exist is reported in status
# (watched into the read model).
- apiGroups: ["storage.k8s.io"]
  resources: ["storageclasses"]
  verbs: ["list", "watch"]
# Framework (kopf): at start it scans the API for the resources it serves, then watches
# CustomResourceDefinitions to notice our CRD being installed, upgraded or removed.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if eq .Values.rbac.scope "namespaced" }}
# Framework (kopf), namespaced scope only: kopf lists and watches namespaces to match
# them against its -n names, and notices a watched namespace created after it started.
# Without it kopf logs a warning and never sees such a namespace until restarted. (With
# -A kopf does not look at namespaces at all, so cluster scope does not grant this.)
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}

{{/*
Refuse clusters older than the CRD needs (its CEL validation rules need Kubernetes 1.29).
Not Chart.yaml's kubeVersion: `helm template` checks that against its own default version
(v1.20.0) and fails, so kustomize's helmCharts, helmfile and `helm template | kubectl apply`
could not render the chart at all. Checked here instead, against the cluster's version when
Helm talks to a cluster (lookup answers only then) or against an explicit --kube-version.
*/}}
{{- define "llm-operator.checkKubeVersion" -}}
{{- $version := .Capabilities.KubeVersion.Version }}
{{- $cluster := lookup "v1" "Namespace" "" "kube-system" }}
{{- if and (semverCompare "<1.29.0-0" $version) (or $cluster (ne $version "v1.20.0")) }}
{{- fail (printf "llm-operator needs Kubernetes 1.29 or newer (the LLMDeployment CRD's validation rules use CEL of 1.29), and this is %s. Upgrade the cluster, or render for a newer one with helm template --kube-version." $version) }}
{{- end }}
{{- end }}

{{/*
The catalog's extra entries as the operator reads them (--catalog-file).
*/}}
{{- define "llm-operator.catalogFile" -}}
{{ toYaml .Values.catalog.extraModels }}
{{- end }}
