# shellcheck shell=bash
# Tekton Pipelines' CRDs (Task, TaskRun, Pipeline, PipelineRun), as build-tekton.sh took them from the pinned
# module: only the CRDs, no controller and no webhook, so nothing runs a TaskRun here. They let the API server
# dry-run the report's Tekton snippets against Tekton's own OpenAPI schemas (testbed/conformance/test_tekton.py).

TB_TEKTON_CRDS=(tasks.tekton.dev taskruns.tekton.dev pipelines.tekton.dev pipelineruns.tekton.dev)

# tekton_crds_apply: server-side apply (the CRDs are too large for client-side apply's last-applied annotation), then
# wait until every CRD is Established, so a dry run right after testbed/up finds its resource.
tekton_crds_apply() {
  kctl apply --server-side --force-conflicts --field-manager=dindcheck-testbed -f "$TB_BIN/tekton/" >/dev/null
  local crd
  for crd in "${TB_TEKTON_CRDS[@]}"; do
    wait_for "CRD $crd Established" 60 "$TB_LOGS/kube-apiserver.log" \
      kctl wait --for condition=Established --timeout=5s "crd/$crd"
  done
  log "tekton CRDs installed (${TB_TEKTON_CRDS[*]})"
}
