#!/usr/bin/env bash
# Takes Tekton Pipelines' CustomResourceDefinitions from the pinned wrapper module (testbed/go/tekton) into $1/tekton
# (a cache directory that survives fresh clones): Task, TaskRun, Pipeline and PipelineRun, as released in the
# module's config/300-crds. Nothing is compiled or run: testbed/up installs these CRDs (no controller, no webhook) so
# the API server can dry-run the Tekton form of the report's config. Skips when the files for this pin exist (stamp
# .tekton-<version>).
set -euo pipefail
out=${1:?usage: build-tekton.sh OUTDIR}/tekton
here=$(cd "$(dirname "$0")/../go/tekton" && pwd)
module=github.com/tektoncd/pipeline
version=$(awk -v m="$module" '$1 == "require" && $2 == m { print $3 }' "$here/go.mod")
[[ -n $version ]] || { echo "build-tekton: no $module pin in $here/go.mod" >&2; exit 1; }
stamp="$out/.tekton-$version"
crds=(300-task.yaml 300-taskrun.yaml 300-pipeline.yaml 300-pipelinerun.yaml)
cached() { local crd; for crd in "${crds[@]}"; do [[ -f $out/$crd ]] || return 1; done; }
if [[ -f $stamp ]] && cached; then
  echo "tekton $version: CRDs cached in $out"
  exit 0
fi
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
cd "$here"
dir=$(go mod download -json "$module@$version" | awk '$1 == "\"Dir\":" { gsub(/[",]/, "", $2); print $2 }')
[[ -d $dir/config/300-crds ]] || { echo "build-tekton: no config/300-crds in $module@$version ($dir)" >&2; exit 1; }
mkdir -p "$out"
rm -f "$out"/*.yaml "$out"/.tekton-*
for crd in "${crds[@]}"; do install -m 0644 "$dir/config/300-crds/$crd" "$out/$crd"; done
touch "$stamp"
echo "tekton $version: CRDs ($(IFS=' '; echo "${crds[*]}")) in $out"
