// Wrapper module: pins github.com/tektoncd/pipeline at a release for its CustomResourceDefinitions (config/300-crds),
// which testbed/up installs so the API server can dry-run the Tekton Task and TaskRun that dindcheck's report prints.
// No code of it is built or run: tools.go imports its config package (Tekton's own placeholder for pulling in the
// config files, no dependencies), so `go mod tidy` keeps the pin.
module dindcheck.testbed/tekton

go 1.25.7

require github.com/tektoncd/pipeline v1.0.0
