-- Argo CD health check for LLMDeployment (llm-operator.io/v1alpha1).
--
-- Install it in argocd-cm (or the Helm values of the argo-cd chart, under
-- configs.cm) as:
--
--   resource.customizations.health.llm-operator.io_LLMDeployment: |
--     <this file>
--
-- It reads the conditions the operator writes, in the order kstatus (Flux) reads them on
-- a custom resource (observedGeneration behind -> InProgress; Reconciling=True ->
-- InProgress; Stalled=True -> Failed; then Ready=False -> InProgress, Ready=True or no
-- Ready condition -> Current), so both tools agree:
--   status older than the spec (observedGeneration) -> Progressing
--   Reconciling=True  -> Progressing  (downloading weights, rolling out, waiting for GPUs)
--   Stalled=True      -> Degraded     (nothing improves until the spec or the cluster's nodes change)
--   Ready=True        -> Healthy      (serving every wanted replica, or scaled to zero on purpose:
--                                      like Argo CD's own Deployment check, 0 replicas is Healthy,
--                                      not Suspended, which later sync waves would wait on)
--   anything else     -> Progressing  (no conditions yet: the operator, which always writes
--                                      all three, has not judged this object)
local hs = {}

local function condition(conditions, ctype)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function message(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to handle the latest spec"
  return hs
end

local conditions = obj.status.conditions
local stalled = condition(conditions, "Stalled")
local ready = condition(conditions, "Ready")
local reconciling = condition(conditions, "Reconciling")

if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = message(reconciling, "Reconciling")
  return hs
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = message(stalled, "Stalled")
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message(ready, "Ready")
  return hs
end
hs.status = "Progressing"
hs.message = message(ready, "Waiting for the operator to report Ready")
return hs
