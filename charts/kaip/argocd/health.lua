-- Argo CD health check for kaip resources (kaip.dev Model, App, TrainingJob).
-- Reads the conditions the kaip operator writes (status.conditions, Kubernetes conventions):
--   Degraded=True for the current generation  -> Degraded (invalid spec, rollback, failed job)
--   a canary in progress                        -> Progressing (traffic is still moving)
--   Ready=True for the current generation      -> Healthy
--   anything else (not reconciled yet, scaling) -> Progressing
-- Written for Argo CD's Lua 5.1 (gopher-lua); uses nothing newer.
local hs = { status = "Progressing", message = "waiting for the kaip operator to reconcile" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata.generation
local function current(condition)
  return condition.observedGeneration == nil or generation == nil
    or condition.observedGeneration == generation
end
local ready, progressing, degraded
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Progressing" then
    progressing = condition
  elseif condition.type == "Degraded" then
    degraded = condition
  end
end
local observed = obj.status.observedGeneration == nil or generation == nil
  or obj.status.observedGeneration == generation
if degraded ~= nil and degraded.status == "True" and current(degraded) and observed then
  hs.status = "Degraded"
  hs.message = degraded.message or degraded.reason or ""
  return hs
end
if progressing ~= nil and progressing.status == "True" and progressing.reason == "CanaryInProgress"
    and current(progressing) then
  hs.message = progressing.message or "canary in progress"
  return hs
end
if ready ~= nil and ready.status == "True" and current(ready) and observed then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end
if progressing ~= nil and progressing.message ~= nil and progressing.message ~= "" then
  hs.message = progressing.message
elseif ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.message
end
return hs
