// Manifests: YAML or JSON files that declare workloads, in Kubernetes' style.
//
//   apiVersion: petrel.dev/v1
//   kind: Workload
//   metadata: {name: web, labels: {app: web}}
//   spec: {replicas: 2, image: oci-archive:/opt/images/busybox.tar, ...}
//
// A file holds several documents: YAML's "---" separators, a top-level sequence of
// documents, or a document of kind List with `items`. JSON is read as YAML 1.2
// (of which it is a subset), so both report the same positions.
//
// Every error is one line naming file, line, column and field path:
//   web.yaml:7:3: spec.resources.memory: "64Q" is not a quantity
// A file is all or nothing: one error anywhere and no workload of it is returned.
#ifndef PETREL_MANIFEST_H_
#define PETREL_MANIFEST_H_

#include <string>
#include <string_view>
#include <vector>

#include "petrel/spec.h"
#include "petrel/status.h"

namespace petrel {

// Parses and validates `text`; `filename` is used in error messages only.
Result<std::vector<WorkloadSpec>> ParseManifest(std::string_view text, std::string_view filename);

// Reads one file, or every *.yaml, *.yml and *.json file of a directory in name
// order. All or nothing across the files: a duplicate workload name across them is
// an error too. A local image path (oci:, oci-archive:, docker-archive:) may be
// relative to the manifest file's directory; it is returned absolute.
Result<std::vector<WorkloadSpec>> LoadManifests(const std::string& path);
// As above, and every bind mount's source must lie below one of `allowed_host_paths`
// (CheckHostPaths in spec.h; none: any), else the error points at the field:
//   web.yaml:12:19: spec.mounts[0].source: "/etc" is not below an allowed host path (/srv)
Result<std::vector<WorkloadSpec>> LoadManifests(const std::string& path,
                                                const std::vector<std::string>& allowed_host_paths);

}  // namespace petrel

#endif  // PETREL_MANIFEST_H_
