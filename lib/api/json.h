// The JSON shapes of examples/petreld/API.md, shared by the handler and the server's
// streams. Keys are sorted (nlohmann's default object); dumping never throws (bytes
// that are not UTF-8 become U+FFFD).
#ifndef PETREL_LIB_API_JSON_H_
#define PETREL_LIB_API_JSON_H_

#include <nlohmann/json.hpp>
#include <string>

#include "petrel/cluster.h"
#include "petrel/orchestrator.h"

namespace petrel::internal {

nlohmann::json WorkloadJson(const WorkloadState& w);
nlohmann::json EventJson(const Event& e);
// The HTTP status of a failed call (API.md's table): 400, 403, 404, 409, 501, 503, ...
int HttpStatusOf(const Status& s);
// {"phase","bytesDone","bytesTotal","layersDone","layersTotal"}
nlohmann::json PullProgressJson(const PullProgress& p);
// {"id","refs","sizeBytes","createdAt","inUse"}
nlohmann::json ImageJson(const ImageInfo& i);
nlohmann::json ApplyResultJson(const ApplyResult& r);
// NODE and GET /v1/cluster's answer; durations as FormatDurationMs writes them.
nlohmann::json NodeJson(const NodeInfo& n);
nlohmann::json ClusterStatusJson(const ClusterStatus& s);
// GET /v1/cluster's "settings", also PUT /v1/cluster/settings's answer.
nlohmann::json ClusterSettingsJson(const ClusterSettings& s);

// One line of JSON, newline-terminated (response bodies, NDJSON stream lines).
std::string DumpLine(const nlohmann::json& j);

}  // namespace petrel::internal

#endif  // PETREL_LIB_API_JSON_H_
